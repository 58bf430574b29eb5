"""droid_common.ros.declare under ROS 2: a whole number given for a floating-point
parameter (``latency_ms: 30`` in a YAML file) is that number, not a node that dies."""

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_common.ros import declare  # noqa: E402
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402


@pytest.fixture
def context(ros_context):
    return ros_context


def node_with(context, **overrides):
    return Node('params', context=context, start_parameter_services=False,
                parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])


def test_a_whole_number_for_a_double_is_that_number(context):
    node = node_with(context, latency_ms=30, gains=[1, 2], count=3, name='x')
    try:
        v = declare(node, 'latency_ms', 60.0, 'output latency [ms]', min_value=0.0,
                    max_value=1000.0)
        assert v == 30.0 and isinstance(v, float)
        assert node.get_parameter('latency_ms').type_ == Parameter.Type.DOUBLE
        assert declare(node, 'gains', [1.0], 'gains') == [1.0, 2.0]
        assert declare(node, 'count', 1, 'an integer stays an integer') == 3
        assert declare(node, 'name', 'y', 'a string') == 'x'
        # the range still applies to the number
        node2 = node_with(context, latency_ms=5000)
        with pytest.raises(InvalidParameterValueException):
            declare(node2, 'latency_ms', 60.0, 'output latency [ms]', min_value=0.0,
                    max_value=1000.0)
        node2.destroy_node()
    finally:
        node.destroy_node()


def test_a_string_for_a_double_is_still_refused(context):
    from rclpy.exceptions import InvalidParameterTypeException
    node = node_with(context, latency_ms='fast')
    try:
        with pytest.raises(InvalidParameterTypeException):
            declare(node, 'latency_ms', 60.0, 'output latency [ms]')
    finally:
        node.destroy_node()

"""The rclpy conventions every droid node shell follows (this module imports rclpy).

- :func:`run` is the Jazzy ``main()`` idiom (no ``with rclpy.init()`` on Jazzy).
- :func:`declare` declares a parameter with a descriptor (description, range, read-only).
- QoS profiles: :data:`SENSOR_QOS` for audio/amplitude, :data:`RELIABLE_QOS` for the
  conversation stream, :data:`LATCHED_QOS` for state (mode, persona, music/eye state) and
  :data:`LATCHED_SUB_QOS` to subscribe to it.
- :class:`Diagnostics` reports the node's health on ``/diagnostics``.
- :func:`to_time_msg` / :func:`to_sec` convert between node-clock seconds and stamps.
"""

from __future__ import annotations

import sys

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.executors import ExternalShutdownException
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from droid_common.names import DIAGNOSTICS
from droid_common.secrets import redact

SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)
# Subscribing to a latched topic: the last state on joining, then every change (a depth of
# 1 would drop a change that comes before the previous one was handled).
LATCHED_SUB_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             history=HistoryPolicy.KEEP_LAST)

# Diagnostic levels as ints (diagnostic_msgs uses `byte`, i.e. bytes in Python).
OK, WARN, ERROR, STALE = 0, 1, 2, 3

_PTYPE = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def run(node_factory, args=None, executor_factory=None) -> None:
    """Create the node, spin it until Ctrl-C / launch shutdown, then clean up."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_factory()
        if executor_factory is None:
            rclpy.spin(node)
        else:
            executor = executor_factory()
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.try_shutdown()


def declare(node, name: str, default, description: str, *, min_value=None, max_value=None,
            step=None, read_only: bool = False, choices=None, dynamic_type: bool = False):
    """Declare a parameter with a descriptor and return its value.

    ``min_value``/``max_value`` become an integer or floating-point range (so
    ``ros2 param set`` rejects out-of-range values); ``choices`` is listed in the
    descriptor's constraints and enforced by :func:`check_choice`.
    """
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               dynamic_typing=dynamic_type)
    if isinstance(default, (list, tuple)):
        kinds = {bool: ParameterType.PARAMETER_BOOL_ARRAY,
                 int: ParameterType.PARAMETER_INTEGER_ARRAY,
                 float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                 str: ParameterType.PARAMETER_STRING_ARRAY}
        elem = type(default[0]) if default else str
        desc.type = kinds[elem]
    else:
        desc.type = _PTYPE[type(default)]
    if min_value is not None or max_value is not None:
        if isinstance(default, bool):
            raise TypeError(f'{name}: a bool parameter has no range')
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(min_value), to_value=int(max_value),
                                               step=int(step or 0))]
        else:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(min_value), to_value=float(max_value), step=float(step or 0.0))]
    if choices:
        desc.additional_constraints = 'one of: ' + ', '.join(map(str, choices))
    if isinstance(default, (list, tuple)) and not default:
        # An empty list has no type rclpy can infer: declare by type.
        from rclpy.parameter import Parameter
        return node.declare_parameter(name, Parameter.Type(desc.type), desc).value or []
    return node.declare_parameter(name, default, desc).value


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"parameter '{name}' is {value!r}; expected one of {list(choices)}")


def to_time_msg(seconds: float) -> TimeMsg:
    """Seconds on the node clock -> builtin_interfaces/Time."""
    nanos = int(round(seconds * 1e9))
    return TimeMsg(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)


def to_sec(stamp) -> float:
    """builtin_interfaces/Time (or rclpy Time) -> seconds."""
    if hasattr(stamp, 'nanoseconds'):
        return stamp.nanoseconds * 1e-9
    return stamp.sec + stamp.nanosec * 1e-9


def now_sec(node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


class Diagnostics:
    """Publishes this node's health on /diagnostics, on change and every ``period`` s.

    One status per named component (default: the node itself)::

        diag = Diagnostics(node, hardware_id='usb mic')
        diag.set(ERROR, 'no input device', device='default')

    Messages and values pass through :func:`droid_common.secrets.redact`.
    """

    def __init__(self, node, hardware_id: str = '', period: float = 1.0):
        self._node = node
        self._hardware_id = hardware_id
        self._statuses: dict = {}
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self._timer = node.create_timer(period, self.publish)

    def set(self, level, message: str, component: str = '', **values) -> None:
        name = self._node.get_fully_qualified_name().lstrip('/')
        if component:
            name = f'{name}: {component}'
        level = bytes([level]) if isinstance(level, int) else bytes(level)
        status = DiagnosticStatus(level=level, name=name, message=redact(message),
                                  hardware_id=self._hardware_id,
                                  values=[KeyValue(key=str(k), value=redact(v))
                                          for k, v in values.items()])
        previous = self._statuses.get(name)
        self._statuses[name] = status
        if previous is None or previous.level != status.level or \
                previous.message != status.message:
            self.publish()

    def level(self, component: str = '') -> int:
        name = self._node.get_fully_qualified_name().lstrip('/')
        if component:
            name = f'{name}: {component}'
        status = self._statuses.get(name)
        return int(status.level[0]) if status is not None else OK

    def publish(self) -> None:
        if not self._statuses:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = list(self._statuses.values())
        self._pub.publish(msg)


def log_prefix(conversation_id: str) -> str:
    """Prefix for log lines about one conversation: ``[conv 1a2b3c4d5e6f] ``."""
    return f'[conv {conversation_id}] ' if conversation_id else ''


def fail_fast(node, message: str) -> None:
    """Log a clear fatal error (no stack trace) and exit with status 1."""
    node.get_logger().fatal(redact(message))
    sys.exit(1)

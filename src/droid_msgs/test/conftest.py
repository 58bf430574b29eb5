"""Shared fixtures of droid_msgs' tests."""

import pytest


@pytest.fixture
def ros_context():
    """An rclpy context of its own on a free domain (the test skips without ROS 2)."""
    rclpy = pytest.importorskip('rclpy')
    from droid_common.testing import free_domain
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=free_domain())
    yield ctx
    rclpy.try_shutdown(context=ctx)

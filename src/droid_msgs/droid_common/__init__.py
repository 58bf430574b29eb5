"""Shared plain-Python helpers of the droid (no rclpy import at package level).

- :mod:`droid_common.names`: topic, service and action names (relative, so a launch
  ``namespace`` applies to the whole droid).
- :mod:`droid_common.contract`: constants and field lists read from the droid_msgs
  interface files themselves, so plain-Python logic never hand-copies the contract.
- :mod:`droid_common.ids`: conversation ids.
- :mod:`droid_common.ros`: the rclpy conventions every node shell follows (imports rclpy).
"""

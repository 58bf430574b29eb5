#!/usr/bin/env bash
# Source ROS 2 and the droid's workspace, then run the command.
set -e
source /opt/ros/jazzy/setup.bash
source /ws/install/setup.bash
exec "$@"

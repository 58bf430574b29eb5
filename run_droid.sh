#!/usr/bin/env bash
# Run the droid: installs what it needs (see .ci/env.sh), builds the workspace when a
# source file is newer than the last build, and starts droid.launch.py with your arguments.
#
#   ./run_droid.sh                      # the real droid (degrades to what works)
#   ./run_droid.sh profile:=mock        # no microphone, speaker, serial device or API key
#   ./run_droid.sh --show-args          # every launch argument, described
set -euo pipefail
# shellcheck source=.ci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/.ci/env.sh"
if [ -z "$ROS_SETUP" ]; then
  echo "ROS 2 Jazzy not found (source /opt/ros/jazzy/setup.bash, or use docker/: see README)" >&2
  exit 1
fi
if [ ! -f install/setup.bash ] || [ -n "$(find src -newer install/setup.bash -type f -print -quit)" ]; then
  say "building the workspace"
  colcon build --base-paths src --event-handlers console_cohesion- summary+ \
    --cmake-args -DPython3_EXECUTABLE="$(command -v python3)"
fi
set +u
source install/setup.bash
set -u
exec ros2 launch droid_bringup droid.launch.py "$@"

#!/usr/bin/env bash
# The droid's one test command (named in README.md, called by .ci/run).
#
#  * With ROS 2 (sourced, or /opt/ros/jazzy/setup.bash present): colcon build,
#    colcon test, colcon test-result --verbose; fails on any failure.
#  * Without ROS 2: every test that does not need ROS runs with pytest; the tests that
#    need rclpy skip and are listed at the end with the reason.
#
# Either way it first installs what the tests need: Debian packages (espeak-ng,
# pulseaudio, PortAudio; only when missing and apt-get is usable) and the pinned Python
# dependencies in a virtual environment (cached by the hash of the requirements files;
# override its place with DROID_VENV). DROID_NO_ROS=1 forces the path without ROS 2.
set -euo pipefail
# shellcheck source=.ci/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/.ci/env.sh"
# Hypothesis keeps its files out of the source tree (a file written under src/ would make
# run_droid.sh rebuild the workspace, in the middle of the tests that run it).
export HYPOTHESIS_STORAGE_DIRECTORY="${HYPOTHESIS_STORAGE_DIRECTORY:-${XDG_CACHE_HOME:-$HOME/.cache}/droid/hypothesis}"

summary_line() {  # colcon test-result output -> "N passed, N failed, N skipped"
  awk '/^Summary:/ {t=$2; e=$4; f=$6; s=$8; printf "%d passed, %d failed, %d skipped\n", t-e-f-s, e+f, s}'
}

if [ -n "$ROS_SETUP" ]; then
  say "ROS 2 found ($ROS_SETUP): colcon build + colcon test"
  install_dashboard_test_deps
  export PYTHONDONTWRITEBYTECODE=1
  # The tests' graph is isolated (the run path never is): a domain of its own, not the one
  # a droid of yours may be using, and DDS on this machine's loopback only.
  export ROS_DOMAIN_ID="${DROID_TEST_DOMAIN_ID:-$((20 + RANDOM % 80))}"
  export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
  unset ROS_STATIC_PEERS
  export CYCLONEDDS_URI='<CycloneDDS><Domain><General><Interfaces><NetworkInterface name="lo"/></Interfaces></General></Domain></CycloneDDS>'
  trap 'ros2 daemon stop >/dev/null 2>&1 || true' EXIT
  colcon build --base-paths src --event-handlers console_cohesion- summary+ \
    --cmake-args -DPython3_EXECUTABLE="$(command -v python3)" -DBUILD_TESTING=ON
  rc=0
  # One package at a time: the ROS-level tests of different packages must not share a graph.
  colcon test --base-paths src --executor sequential --event-handlers console_direct+ \
    --return-code-on-test-failure --pytest-args ' -rs' ' -p' 'no:cacheprovider' || rc=$?
  out=$(colcon test-result --verbose --test-result-base build) || rc=1
  echo "$out"
  echo "$out" | summary_line
  exit "$rc"
fi

say "ROS 2 not found: running every test that does not need ROS with pytest"
PYTHONPATH="$(printf '%s:' "$ROOT"/src/*)${PYTHONPATH:-}"
export PYTHONPATH
rc=0
python -m pytest src -rs -p no:cacheprovider --import-mode=importlib "$@" \
  | tee /tmp/droid-pytest-$$.log || rc=${PIPESTATUS[0]}
say "skipped without ROS 2 (they need rclpy; run with /opt/ros/jazzy sourced):"
grep -E '^SKIPPED' /tmp/droid-pytest-$$.log | sed 's/^/  /' || echo "  (none)"
rm -f /tmp/droid-pytest-$$.log
if [ "$rc" = 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"

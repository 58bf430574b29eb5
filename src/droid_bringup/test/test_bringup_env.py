"""`.ci/env.sh`, the setup shared by run_tests.sh and run_droid.sh (plain Python, bash).

- With everything installed it does nothing: no apt-get, no pip, whatever the PATH
  (a user's PATH often lacks /sbin, where ldconfig lives).
- It leaves the user's DDS settings alone (only the test command isolates its graph).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV_SH = ROOT / '.ci' / 'env.sh'
ROS_SETUP = Path('/opt/ros/jazzy/setup.bash')


def _fake_tools(tmp_path: Path) -> tuple[Path, Path]:
    """A bin directory whose apt-get/apt/pip/sudo only record that they were called, and
    whose ``id`` says root (so env.sh would use apt-get for anything it finds missing)."""
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir()
    calls = tmp_path / 'calls.log'
    calls.write_text('')
    for name in ('apt-get', 'apt', 'pip', 'pip3', 'sudo'):
        tool = fake_bin / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit 0\n')
        tool.chmod(0o755)
    (fake_bin / 'id').write_text('#!/bin/sh\necho 0\n')
    (fake_bin / 'id').chmod(0o755)
    return fake_bin, calls


def _fake_venv(tmp_path: Path) -> Path:
    """An already complete venv (env.sh only activates it)."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    (venv / 'bin' / 'activate').write_text('# nothing to activate\n')
    (venv / '.complete').write_text('')
    return venv


def _source_env_sh(tmp_path: Path, path: str, **extra):
    """Source env.sh in a clean bash; return (process, its environment, installer calls)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    fake_bin, calls = _fake_tools(tmp_path)
    env = {'PATH': f'{fake_bin}:{path}', 'HOME': str(tmp_path), 'LANG': 'C.UTF-8',
           'DROID_VENV': str(_fake_venv(tmp_path))}
    env.update(extra)
    proc = subprocess.run(['/bin/bash', '-c', f'set -euo pipefail; source {ENV_SH}; env'],
                          env=env, capture_output=True, text=True, timeout=120)
    after = dict(line.split('=', 1) for line in proc.stdout.splitlines() if '=' in line)
    return proc, after, calls.read_text()


def _installed(package: str) -> bool:
    out = subprocess.run(['dpkg-query', '-W', '-f=${Status}', package], capture_output=True,
                         text=True)
    return out.returncode == 0 and out.stdout.strip().endswith(' installed')


NO_SBIN = '/usr/bin:/bin'
FULL_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


@pytest.mark.skipif(shutil.which('dpkg-query') is None, reason='needs a Debian system (dpkg)')
@pytest.mark.parametrize('path', [NO_SBIN, FULL_PATH], ids=['no-sbin', 'full'])
def test_nothing_is_installed_when_everything_is_there(tmp_path, path):
    proc, _, calls = _source_env_sh(tmp_path, path, DROID_NO_ROS='1')
    wanted = set()
    for line in calls.splitlines():
        if line.startswith('apt-get install'):
            wanted.update(w for w in line.split()[2:] if not w.startswith('-'))
    falsely_missing = sorted(p for p in wanted if _installed(p))
    assert not falsely_missing, f'installed packages reported missing: {falsely_missing}'
    if wanted:
        pytest.skip(f'this machine really lacks {sorted(wanted)}')
    assert proc.returncode == 0, proc.stderr
    assert calls == '', f'env.sh ran installers with everything installed: {calls!r}'


DDS_VARS = ('CYCLONEDDS_URI', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS',
            'ROS_DOMAIN_ID', 'ROS_LOCALHOST_ONLY', 'RMW_IMPLEMENTATION',
            'FASTRTPS_DEFAULT_PROFILES_FILE')


def _plain_ros_env(tmp_path: Path, **extra) -> dict:
    """What a shell has after just `source /opt/ros/jazzy/setup.bash`."""
    env = {'PATH': FULL_PATH, 'HOME': str(tmp_path), 'LANG': 'C.UTF-8', **extra}
    out = subprocess.run(['/bin/bash', '-c', f'source {ROS_SETUP}; env'], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


@pytest.mark.skipif(not ROS_SETUP.exists(), reason='needs ROS 2 Jazzy in /opt/ros/jazzy')
def test_the_run_path_leaves_dds_settings_alone(tmp_path):
    """run_droid.sh's environment has exactly the DDS settings a plain ROS shell has."""
    plain = _plain_ros_env(tmp_path)
    proc, env, _ = _source_env_sh(tmp_path / 'plain', FULL_PATH)
    assert proc.returncode == 0, proc.stderr
    assert env.get('ROS_DISTRO') == 'jazzy'
    assert {v: env.get(v) for v in DDS_VARS} == {v: plain.get(v) for v in DDS_VARS}
    assert 'CYCLONEDDS_URI' not in env
    # ... and what the user set stays as it is
    mine = {'ROS_DOMAIN_ID': '42', 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET',
            'ROS_STATIC_PEERS': '192.0.2.7'}
    proc, env, _ = _source_env_sh(tmp_path / 'mine', FULL_PATH, **mine)
    assert proc.returncode == 0, proc.stderr
    assert {k: env.get(k) for k in mine} == mine and 'CYCLONEDDS_URI' not in env

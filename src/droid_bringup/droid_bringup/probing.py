"""Drive the ``probe`` executable from Python (plain Python: subprocess + JSON lines).

Used by the multi-machine tests and the network benchmark::

    with ProbeClient(lab.exec_args(body, ['ros2', 'run', 'droid_bringup', 'probe',
                                          '--diagnostics']), env=env) as probe:
        probe.send('inject - hey jarvis, hello')
        reply = probe.wait_for(lambda e: e.get('topic') == 'brain/reply', timeout=60)

:func:`ros_host_env` is the environment of one lab host's ROS processes: the discovery
settings of a real multi-machine setup (README "Many machines"), no loopback pinning.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def ros_host_env(domain_id: int, discovery_range: str = 'SUBNET', static_peers=(),
                 config_home: str | None = None, **extra) -> dict:
    """Environment for ROS processes on one host of a network-namespace lab."""
    env = dict(os.environ)
    for key in ('CYCLONEDDS_URI', 'ROS_LOCALHOST_ONLY', 'ROS_STATIC_PEERS',
                'FASTRTPS_DEFAULT_PROFILES_FILE'):
        env.pop(key, None)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = discovery_range
    if static_peers:
        env['ROS_STATIC_PEERS'] = ';'.join(static_peers)
    if config_home:
        env['XDG_CONFIG_HOME'] = str(config_home)
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_COLORIZED_OUTPUT'] = '0'
    env.update({k: str(v) for k, v in extra.items()})
    return env


class ProbeClient:
    """A ``probe`` process: commands to its stdin, JSON events collected from its stdout."""

    def __init__(self, args, env=None):
        self.args = list(args)
        self.env = env
        self.events: list = []
        self.lines: list = []          # non-JSON output (logs)
        self._cond = threading.Condition()
        self.proc = None
        fd, self.stderr_path = tempfile.mkstemp(prefix='droid-probe-', suffix='.log')
        os.close(fd)

    def __enter__(self) -> ProbeClient:
        self._stderr = open(self.stderr_path, 'wb')
        self.proc = subprocess.Popen(self.args, env=self.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     bufsize=1, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            try:
                event = json.loads(line)
            except ValueError:
                with self._cond:
                    self.lines.append(line)
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def send(self, command: str) -> float:
        """Send one command line; returns the monotonic time it was sent."""
        t = time.monotonic()
        self.proc.stdin.write(command + '\n')
        self.proc.stdin.flush()
        return t

    def wait_for(self, pred, timeout: float, since: float = 0.0):
        """The first event (at or after monotonic ``since``) matching ``pred``, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if e.get('t', 0.0) >= since and pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None):
                    return None
                self._cond.wait(min(left, 0.2))

    def select(self, pred, since: float = 0.0, until: float = float('inf')) -> list:
        with self._cond:
            return [e for e in self.events if since <= e.get('t', 0.0) <= until and pred(e)]

    def stderr(self) -> str:
        return Path(self.stderr_path).read_text(errors='replace')

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.send('quit')
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=5)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue

    def __exit__(self, *exc) -> bool:
        self.stop()
        self._stderr.close()
        try:
            os.unlink(self.stderr_path)
        except OSError:
            pass
        return False

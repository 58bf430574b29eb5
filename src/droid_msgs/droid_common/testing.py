"""Test helpers shared by the droid's test suites (plain Python; no rclpy).

- :class:`PulseAudioServer`: a private PulseAudio daemon with a null sink (and
  optionally a pipe source fed from the test) so real sounddevice streams run with no
  sound card. Started and stopped by the test (by PID), on a private unix socket.
- :func:`free_port`: a free TCP port on 127.0.0.1 for local stand-in servers.
- :func:`speech`: espeak-ng speech at 16 kHz mono int16, for tests that need real speech.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from droid_common.audio import MIC_RATE, espeak, to_int16_mono


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def speech(text: str, voice: str = 'en-us', rate_wpm: float = 0.0) -> np.ndarray:
    """espeak-ng speech as 16 kHz mono int16 samples."""
    samples, rate = espeak(text, voice=voice, rate_wpm=rate_wpm)
    return to_int16_mono(samples, rate, MIC_RATE)


class PulseAudioServer:
    """A throwaway PulseAudio daemon: null sink ``droid_null`` (its monitor records what is
    played) and, with ``pipe_source=True``, a 16 kHz mono source ``droid_mic`` fed by
    :meth:`feed`. Use as a context manager; :attr:`env` holds the variables a client
    process needs (``PULSE_SERVER``); entering also sets them in ``os.environ``.
    """

    SINK = 'droid_null'
    SOURCE = 'droid_mic'

    def __init__(self, pipe_source: bool = False, rate: int = MIC_RATE):
        self.pipe_source = pipe_source
        self.rate = rate
        self._dir = None
        self._proc = None
        self._fifo_fd = None
        self._saved_env = {}
        self.env = {}

    @staticmethod
    def available() -> bool:
        return shutil.which('pulseaudio') is not None and shutil.which('pactl') is not None

    def __enter__(self):
        if not self.available():
            raise RuntimeError('pulseaudio/pactl not installed (Debian: pulseaudio pulseaudio-utils)')
        self._dir = tempfile.mkdtemp(prefix='droid-pulse-')
        sock = os.path.join(self._dir, 'native')
        args = ['pulseaudio', '--daemonize=no', '--exit-idle-time=-1', '--disallow-exit',
                '--use-pid-file=no', '--system=no', '-n', '--log-target=stderr',
                f'--load=module-native-protocol-unix socket={sock} auth-anonymous=1',
                f'--load=module-null-sink sink_name={self.SINK} rate={self.rate}']
        if self.pipe_source:
            fifo = os.path.join(self._dir, 'mic.fifo')
            args.append(f'--load=module-pipe-source source_name={self.SOURCE} file={fifo} '
                        f'format=s16le rate={self.rate} channels=1')
        env = dict(os.environ, XDG_RUNTIME_DIR=self._dir, HOME=self._dir,
                   PULSE_RUNTIME_PATH=self._dir)
        self._log = open(os.path.join(self._dir, 'pulse.log'), 'wb')
        self._proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=self._log,
                                      start_new_session=True)
        self.env = {'PULSE_SERVER': f'unix:{sock}', 'PULSE_SINK': self.SINK}
        if self.pipe_source:
            self.env['PULSE_SOURCE'] = self.SOURCE
        deadline = time.monotonic() + 15.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError('pulseaudio exited: ' + self.log())
            ok = subprocess.run(['pactl', 'info'], env=dict(os.environ, **self.env),
                                capture_output=True).returncode == 0
            if ok:
                break
            time.sleep(0.1)
        else:
            self.__exit__(None, None, None)
            raise RuntimeError('pulseaudio did not come up: ' + self.log())
        if self.pipe_source:
            # Open the write end non-blocking once the daemon holds the read end.
            self._fifo_fd = os.open(os.path.join(self._dir, 'mic.fifo'),
                                    os.O_WRONLY | os.O_NONBLOCK)
        self.realtime = self._realtime()
        for k, v in self.env.items():
            self._saved_env[k] = os.environ.get(k)
            os.environ[k] = v
        return self

    def _realtime(self, priority: int = 10) -> bool:
        """Real-time scheduling for the daemon's threads, as a desktop PulseAudio gets its
        IO threads through rtkit, where allowed (root or CAP_SYS_NICE): a null sink has no
        hardware clock, and a starved daemon would play late on a loaded test machine."""
        ok = False
        try:
            tids = os.listdir(f'/proc/{self._proc.pid}/task')
        except OSError:
            return False
        for tid in tids:
            try:
                os.sched_setscheduler(int(tid), os.SCHED_FIFO, os.sched_param(priority))
                ok = True
            except (OSError, AttributeError):
                pass
        return ok

    def feed(self, samples: np.ndarray) -> None:
        """Write int16 mono samples into the pipe source (blocking until written)."""
        data = np.asarray(samples, dtype='<i2').tobytes()
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._fifo_fd, view)
                view = view[n:]
            except BlockingIOError:
                time.sleep(0.005)

    def log(self) -> str:
        try:
            return Path(self._dir, 'pulse.log').read_text(errors='replace')[-2000:]
        except OSError:
            return ''

    def __exit__(self, *exc):
        for k, v in self._saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        if getattr(self, '_log', None):
            self._log.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        return False


class Process:
    """A command started by a test in its own process group, stopped by the test:
    SIGINT, then SIGTERM, then SIGKILL to the group (a process blocked in spin() sometimes
    misses SIGINT). Output goes to a log file readable with :meth:`output`."""

    def __init__(self, args, env=None, log_path=None):
        self.args = list(args)
        self.env = env
        fd, default = tempfile.mkstemp(prefix='droid-proc-', suffix='.log')
        os.close(fd)
        self.log_path = log_path or default
        self.proc = None

    def __enter__(self):
        self._log = open(self.log_path, 'wb')
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        return self

    def output(self) -> str:
        return Path(self.log_path).read_text(errors='replace')

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return True
            if self.proc.poll() is not None:
                return needle in self.output()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children left in the group (e.g. nodes of a launch) go too
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return self.proc.returncode

    def __exit__(self, *exc):
        self.stop()
        self._log.close()
        return False


_DOMAIN_LOCKS: dict = {}


def free_domain(lo: int = 100, hi: int = 200) -> int:
    """A ROS domain id in [lo, hi) that no other process on this machine holds through this
    function (an exclusive lock on /tmp/droid-ros-domain-<id>.lock, kept until the process
    ends): several test runs at once on one machine then never share a graph. Each call
    takes a new id while there are free ones, then this process's own ids again, oldest
    first."""
    import fcntl
    span = hi - lo
    start = os.getpid() % span
    for k in range(span):
        domain = lo + (start + k) % span
        if domain in _DOMAIN_LOCKS:
            continue
        f = open(os.path.join(tempfile.gettempdir(), f'droid-ros-domain-{domain}.lock'), 'w')
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _DOMAIN_LOCKS[domain] = f
        return domain
    own = [d for d in _DOMAIN_LOCKS if lo <= d < hi]
    if not own:
        raise RuntimeError(f'no free ROS domain id in [{lo}, {hi})')
    domain = own[0]
    _DOMAIN_LOCKS[domain] = _DOMAIN_LOCKS.pop(domain)     # now the newest
    return domain


def ros_test_env(**extra) -> dict:
    """Environment for ROS processes a test starts: loopback-only DDS, a private domain."""
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    env.setdefault('CYCLONEDDS_URI', '<CycloneDDS><Domain><General><Interfaces>'
                   '<NetworkInterface name="lo"/></Interfaces></General></Domain></CycloneDDS>')
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_COLORIZED_OUTPUT'] = '0'
    env.update({k: str(v) for k, v in extra.items()})
    return env

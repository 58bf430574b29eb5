"""Helpers for droid_audio's ROS-level tests and benchmark (imports rclpy lazily).

- :func:`ros_env`: environment for node processes on a private ROS domain (localhost).
- :class:`NodeProcess`: a node started as ``python -m droid_audio.<module>`` (works from
  the source tree or the install), stopped with SIGINT, then SIGTERM/SIGKILL fallbacks.
- :class:`Harness`: an rclpy context + test node on that domain, with topic collectors,
  a service caller and graph introspection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PKG_SRC = str(Path(__file__).resolve().parent.parent)   # src/droid_audio (or site-packages)


def pick_domain() -> int:
    """A ROS domain id for one test (no other test process on this machine has it)."""
    from droid_common.testing import free_domain
    return free_domain()


def ros_env(domain: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_LOCALHOST_ONLY', None)
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    paths = [PKG_SRC] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    env['PYTHONPATH'] = os.pathsep.join(dict.fromkeys(paths))
    if extra:
        env.update(extra)
    return env


class NodeProcess:
    """``python -m droid_audio.<module> --ros-args ...`` in its own process group."""

    def __init__(self, module: str, domain: int, params: dict | None = None,
                 namespace: str = '', name: str = '', env: dict | None = None,
                 log_path: str | None = None):
        args = [sys.executable, '-m', f'droid_audio.{module}', '--ros-args']
        if namespace:
            args += ['-r', f'__ns:={namespace}']
        if name:
            args += ['-r', f'__node:={name}']
        for k, v in (params or {}).items():
            args += ['-p', f'{k}:={_param_text(v)}']
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, 'wb') if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=ros_env(domain, env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self.log_path:
            return ''
        try:
            return Path(self.log_path).read_text(errors='replace')[-6000:]
        except OSError:
            return ''

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL (to this process only, by pid)."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0),
                          (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL
        return self.proc.returncode


def _param_text(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(_param_text(x) if not isinstance(x, str) else f"'{x}'"
                              for x in v) + ']'
    return str(v)


class Harness:
    """A test-side rclpy node on ``domain`` spinning in a background thread."""

    def __init__(self, domain: int, name: str = 'audio_test_harness'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.messages: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._stop.is_set():
                    return
                raise

    def collect(self, msg_type, topic: str, qos) -> list:
        box = self.messages.setdefault(topic, [])

        def cb(msg):
            with self._lock:
                box.append(msg)
        self.node.create_subscription(msg_type, topic, cb, qos)
        return box

    def got(self, topic: str) -> list:
        with self._lock:
            return list(self.messages.get(topic, []))

    def clear(self, topic: str | None = None) -> None:
        with self._lock:
            for k in ([topic] if topic else list(self.messages)):
                self.messages.get(k, []).clear()

    def wait_for(self, predicate, timeout: float, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'service {name} not available')
            future = client.call_async(request)
            if not self.wait_for(future.done, timeout):
                raise TimeoutError(f'service {name} did not answer')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def graph(self, node_name: str, namespace: str) -> dict:
        """{'pub': {...}, 'sub': {...}, 'srv': {...}} of (name, types) for one node, names
        relative to ``namespace`` (absolute names such as /rosout stay absolute)."""
        def rel(name):
            prefix = namespace.rstrip('/') + '/'
            return name.removeprefix(prefix)
        n = self.node
        return {
            'pub': {(rel(t), tuple(ty)) for t, ty in
                    n.get_publisher_names_and_types_by_node(node_name, namespace)},
            'sub': {(rel(t), tuple(ty)) for t, ty in
                    n.get_subscriber_names_and_types_by_node(node_name, namespace)},
            'srv': {(rel(t), tuple(ty)) for t, ty in
                    n.get_service_names_and_types_by_node(node_name, namespace)},
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


# ---- real speech through the running graph (tests and benchmark) -------------------------

def _sec(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class CpuHog:
    """Busy processes (one per ``n``) that load the CPU while they run; stopped by pid."""

    def __init__(self, n: int = 1):
        code = 'import time\nwhile True:\n    sum(i * i for i in range(10000))\n'
        self.procs = [subprocess.Popen([sys.executable, '-c', code], start_new_session=True)
                      for _ in range(n)]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(5.0)


class SpeechRun:
    """Plays real speech clips through the mock microphone of a running graph (mock
    microphone + listener + stt on ``harness``'s domain) one after the other, and
    records what came out for each: the wake word's conversation, the transcriptions,
    the listener's end of utterance and the mock microphone's true end of speech."""

    def __init__(self, harness, workdir):
        from droid_common import names
        from droid_common.ros import RELIABLE_QOS
        from diagnostic_msgs.msg import DiagnosticArray

        from droid_msgs.msg import Transcription, Utterance, WakeWord
        self.h = harness
        self.names = names
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for typ, topic in ((Transcription, names.TRANSCRIPTION), (Utterance, names.UTTERANCE),
                           (WakeWord, names.WAKE_WORD), (Transcription, names.MOCK_TRANSCRIPT)):
            harness.collect(typ, topic, RELIABLE_QOS)
        harness.collect(DiagnosticArray, names.DIAGNOSTICS, 10)
        self._n = 0

    def play(self, samples, transcript: str = '', padding: float = 0.3,
             timeout: float = 60.0, final_timeout: float = 30.0, settle: float = 2.5) -> dict:
        """Inject ``samples`` (16 kHz int16, speech up to its last sample); wait up to
        ``timeout`` s (after the audio) for the utterance it wakes to end, then up to
        ``final_timeout`` s for its final, then ``settle`` s for anything that should
        not come."""
        import soundfile

        from droid_msgs.msg import Utterance
        from droid_msgs.srv import InjectUtterance
        names, h = self.names, self.h
        self._n += 1
        path = self.workdir / f'clip{self._n:03d}.wav'
        soundfile.write(str(path), samples, 16000, subtype='PCM_16')
        n_wakes = len(h.got(names.WAKE_WORD))
        n_mock = len(h.got(names.MOCK_TRANSCRIPT))
        res = h.call(InjectUtterance, names.INJECT_UTTERANCE,
                     InjectUtterance.Request(wav_path=str(path), transcript=transcript or '-',
                                             padding=padding))
        if not res.success:
            raise RuntimeError(res.message)
        rec = {'transcript': transcript, 'cid': None, 'finals': [], 'partials': [],
               'ended': None, 'speech_end': None, 'wakes': 0}

        def ended():
            wakes = h.got(names.WAKE_WORD)[n_wakes:]
            if not wakes:
                return False
            rec['cid'] = wakes[0].conversation_id
            return any(u.conversation_id == rec['cid'] and
                       u.state in (Utterance.ENDED, Utterance.CANCELLED)
                       for u in h.got(names.UTTERANCE))

        def final():
            return any(m.conversation_id == rec['cid'] and m.is_final
                       for m in h.got(names.TRANSCRIPTION))

        if h.wait_for(ended, res.duration + timeout):
            h.wait_for(final, final_timeout)
        # nothing more may follow for this conversation (a second final, a late partial)
        time.sleep(settle)
        mock = h.got(names.MOCK_TRANSCRIPT)[n_mock:]
        if mock:
            rec['speech_end'] = _sec(mock[0].audio_end)
        rec['wakes'] = len(h.got(names.WAKE_WORD)) - n_wakes
        cid = rec['cid']
        if cid is not None:
            msgs = [m for m in h.got(names.TRANSCRIPTION) if m.conversation_id == cid]
            rec['finals'] = [m for m in msgs if m.is_final]
            rec['partials'] = [m for m in msgs if not m.is_final]
            ends = [u for u in h.got(names.UTTERANCE) if u.conversation_id == cid and
                    u.state == Utterance.ENDED]
            rec['ended'] = ends[0] if ends else None
        return rec

    def dropped_chunks(self) -> int | None:
        """The listener's latest ``dropped_chunks`` figure on /diagnostics."""
        for msg in reversed(self.h.got(self.names.DIAGNOSTICS)):
            for st in msg.status:
                if st.name.startswith('listener') and 'worker' in st.name:
                    for kv in st.values:
                        if kv.key == 'dropped_chunks':
                            return int(kv.value)
        return None


def latency(rec: dict) -> dict:
    """End of speech -> final transcription [s], from the true end of speech (mock
    microphone) and from the listener's end of voiced audio (Utterance.audio_end)."""
    if not rec['finals']:
        return {}
    final = rec['finals'][0]
    out = {'from_speech_end': _sec(final.header.stamp) - rec['speech_end']}
    if rec['ended'] is not None:
        out['from_vad_end'] = _sec(final.header.stamp) - _sec(rec['ended'].audio_end)
        out['endpoint_wait'] = _sec(rec['ended'].header.stamp) - _sec(rec['ended'].audio_end)
    return out

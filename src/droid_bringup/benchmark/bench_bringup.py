"""Graph overhead and memory of the whole droid, on real ROS 2, with instant mock backends.

    python3 src/droid_bringup/benchmark/bench_bringup.py [--turns 1000] [--latency-turns 200]

Starts the mock droid (droid.launch.py profile:=mock without the audio front end) with
instant backends (no time to first token, instant token rate, instant mock speech), then
drives turns by publishing final transcriptions, as the STT or the chat would (the next turn
starts once the reply has been spoken to the end, so no turn pays for interrupting the one
before it). For each turn
it measures, from the droid's own TraceEvents, the overhead from the final transcription to
the first audio chunk (p50/p99 over --latency-turns turns), and the total RSS of the droid's
processes after 100 turns and after --turns turns. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import psutil
import rclpy
from rclpy.node import Node

from droid_bringup.latency import LatencyTracker, Trace, breakdown, percentile
from droid_common import names
from droid_common.ids import new_conversation_id
from droid_common.ros import RELIABLE_QOS, to_sec
from droid_common.testing import Process, ros_test_env
from droid_msgs.msg import TraceEvent, Transcription

INSTANT = """
brain:
  ros__parameters:
    backend: mock
    mock_time_to_first_token_s: 0.0
    mock_token_rate: 0.0        # unpaced
tts:
  ros__parameters:
    backend: mock
    output: mock
    words_per_minute: 2000.0
    mock_block_ms: 5.0
"""


class Driver(Node):
    def __init__(self):
        super().__init__('bench_driver')
        self.pub = self.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        self.create_subscription(TraceEvent, names.TRACE, self.on_trace, RELIABLE_QOS)
        self.first_audio = {}
        self.done = {}
        self.tracker = LatencyTracker(max_turns=300)
        self.sent = {}                   # conversation id -> the transcription's stamp [s]
        self.cv = threading.Condition()

    def on_trace(self, m):
        self.tracker.add(Trace(m.stage, to_sec(m.header.stamp), m.conversation_id,
                               m.utterance_id, to_sec(m.input_stamp), m.node, m.detail))
        with self.cv:
            if m.stage == TraceEvent.STAGE_FIRST_AUDIO:
                self.first_audio.setdefault(m.conversation_id, to_sec(m.header.stamp))
            if m.stage in (TraceEvent.STAGE_SPEECH_DONE, TraceEvent.STAGE_REPLY_DONE):
                self.done.setdefault(m.conversation_id, set()).add(m.stage)
            self.cv.notify_all()

    def turn(self, text: str, timeout: float = 10.0):
        cid = new_conversation_id()
        now = self.get_clock().now()
        msg = Transcription(conversation_id=cid, utterance_id=1, text=text, is_final=True,
                            confidence=1.0, language='en', source='bench')
        msg.header.stamp = now.to_msg()
        self.pub.publish(msg)
        t0 = now.nanoseconds * 1e-9
        self.sent[cid] = t0
        deadline = time.monotonic() + timeout
        with self.cv:
            while len(self.done.get(cid, ())) < 2:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            fa = self.first_audio.pop(cid, None)
            self.done.pop(cid, None)
        return None if fa is None else (fa - t0) * 1000.0


def droid_rss(launch_pid: int) -> dict:
    """RSS [bytes] of each process the launch started, keyed by executable name."""
    try:
        procs = psutil.Process(launch_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for p in procs:
        try:
            cmd = p.cmdline()
            name = next((os.path.basename(c) for c in cmd[1:] if '/lib/droid_' in c),
                        os.path.basename(cmd[0]) if cmd else str(p.pid))
            out[name] = out.get(name, 0) + p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--turns', type=int, default=1000)
    ap.add_argument('--latency-turns', type=int, default=200)
    ap.add_argument('--text', default='hello there')
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        f.write(INSTANT)
        params = f.name
    cmd = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=mock',
           f'params_file:={params}', 'disable:=microphone,listener,stt', 'log_level:=warn']
    env = ros_test_env(ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '61'))
    os.environ.update({k: env[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE', 'CYCLONEDDS_URI',
                                           'ROS_DOMAIN_ID')})
    with Process(cmd, env=env) as launch:
        rclpy.init()
        node = Driver()
        spinner = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
        spinner.start()
        deadline = time.monotonic() + 90
        while node.count_subscribers(names.TRANSCRIPTION) < 1 or \
                node.count_publishers(names.TRACE) < 3:
            if time.monotonic() > deadline:
                print(launch.output()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.2)
        for _ in range(5):                       # warm-up
            node.turn(args.text)
        overhead, failures, rss100 = [], 0, {}
        t_start = time.monotonic()
        for i in range(1, args.turns + 1):
            ms = node.turn(args.text)
            if ms is None:
                failures += 1
            elif i <= args.latency_turns:
                overhead.append(ms)
            if i == 100:
                rss100 = droid_rss(launch.proc.pid)
        wall = time.monotonic() - t_start
        rss_end = droid_rss(launch.proc.pid)
        stages = {}
        for turn in list(node.tracker.turns.values()):
            for label, ms in breakdown(turn)['ms'].items():
                stages.setdefault(label, []).append(ms)
        stage_p50 = {k: round(percentile(v, 50), 3) for k, v in sorted(stages.items())}
        # each hand-off on the way, from the final transcription's stamp
        since = {}
        for turn in list(node.tracker.turns.values()):
            t0 = node.sent.get(turn.conversation_id)
            for stage in ('llm_request', 'first_token', 'first_sentence', 'first_audio'):
                if t0 is not None and stage in turn.first:
                    since.setdefault(stage, []).append((turn.first[stage].stamp - t0) * 1000.0)
        since_p50 = {k: {'p50': round(percentile(v, 50), 3), 'p99': round(percentile(v, 99), 3)}
                     for k, v in since.items()}
        node.destroy_node()
        rclpy.try_shutdown()
    os.unlink(params)
    total100, total_end = sum(rss100.values()), sum(rss_end.values())
    per_node = {k: {'after_100_mb': round(rss100.get(k, 0) / 2**20, 1),
                    'end_mb': round(v / 2**20, 1)} for k, v in sorted(rss_end.items())}
    print(json.dumps({
        'benchmark': 'droid_bringup graph overhead (mock, instant backends)',
        'turns': args.turns, 'failed_turns': failures,
        'final_transcript_to_first_audio_ms': {
            'n': len(overhead), 'p50': round(percentile(overhead, 50), 3),
            'p99': round(percentile(overhead, 99), 3), 'target_p99': 10.0},
        'rss_mb_after_100_turns': round(total100 / 2**20, 1),
        f'rss_mb_after_{args.turns}_turns': round(total_end / 2**20, 1),
        'rss_growth_pct': round(100.0 * (total_end - total100) / total100, 2) if total100 else None,
        'rss_per_process': per_node,
        'target_rss_growth_pct': 5.0,
        'turns_per_s': round(args.turns / wall, 1),
        'stage_p50_ms_last_300_turns': stage_p50,
        'from_final_transcript_ms_last_300_turns': since_p50,
    }, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Benchmark of the brain node (mock backend): prints JSON.

1. Time to first sentence after the final transcription, mock backend at a fixed token
   rate, for a 1-sentence and a 20-sentence reply with the same first sentence. The
   reply's length must not delay its first sentence: ratio (20 / 1) <= 1.1.
2. Node overhead per streamed token: an unpaced mock (time to first token 0, token rate
   0 = as fast as possible) streams a long reply; (end-of-reply marker received - final
   transcription published) / tokens. Also the same for the engine alone (no ROS).

The brains run as the installed ``brain`` executable in their own processes; the probe
(publisher of transcriptions, subscriber of replies) is this process.

Run (ROS 2 sourced, workspace built and sourced):
    python3 src/droid_brain/benchmark/bench_brain.py [--runs 7] [--rate 40] [--ttft 0.2]
"""

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import yaml

FIRST = 'Hello there, traveller, welcome to the cantina at Black Spire Outpost.'
OTHER = 'The band is warming up and the drinks are cold tonight.'
LONG_WORDS = 400


def script(path: Path) -> None:
    long_text = ' '.join(f'word{n}{"." if n % 12 == 11 else ""}' for n in range(LONG_WORDS))
    path.write_text(yaml.safe_dump({'rules': [
        {'match': r'\bone\b', 'reply': FIRST},
        {'match': r'\btwenty\b', 'reply': ' '.join([FIRST] + [OTHER] * 19)},
        {'match': r'\blong\b', 'reply': long_text}],
        'default': {'reply': 'Default.'}}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=7)
    ap.add_argument('--rate', type=float, default=40.0, help='mock tokens per second')
    ap.add_argument('--ttft', type=float, default=0.2, help='mock time to first token [s]')
    args = ap.parse_args()

    import os
    import signal
    import subprocess

    import rclpy
    from droid_brain.engine import Engine, RecordingSink, Turn
    from droid_brain.memory import SessionMemory
    from droid_brain.mock_llm import MockBackend, MockScript, tokens
    from droid_common import names
    from droid_common.ros import RELIABLE_QOS
    from rclpy.executors import MultiThreadedExecutor

    from droid_msgs.msg import ReplySentence, Transcription

    tmp = Path(tempfile.mkdtemp(prefix='bench_brain_'))
    script_path = tmp / 'script.yaml'
    script(script_path)
    rclpy.init()
    ns = '/bench_' + uuid.uuid4().hex[:6]
    procs = []

    def brain(name, rate, ttft):
        """The installed brain executable in its own process (as in the real graph)."""
        from ament_index_python.packages import get_package_prefix
        exe = os.path.join(get_package_prefix('droid_brain'), 'lib', 'droid_brain', 'brain')
        cmd = [exe, '--ros-args', '-r', f'__node:={name}',
               '-r', f'__ns:={ns}/{name}', '-p', 'backend:=mock',
               '-p', f'mock_script:={script_path}', '-p', f'mock_token_rate:={float(rate)}',
               '-p', f'mock_time_to_first_token_s:={float(ttft)}',
               '-p', 'token_budget:=1000000', '-p', f'state_file:={tmp / "state.yaml"}',
               '--log-level', 'warn']
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      env=dict(os.environ), start_new_session=True))

    brain('paced', args.rate, args.ttft)
    brain('fast', 0.0, 0.0)
    probe = rclpy.create_node('bench_probe', namespace=ns)
    lock = threading.Condition()
    got = {}

    def on_reply(msg, brain_name):
        t = time.monotonic()
        with lock:
            got.setdefault((brain_name, msg.conversation_id), []).append((t, msg))
            lock.notify_all()

    pubs = {}
    for b in ('paced', 'fast'):
        pubs[b] = probe.create_publisher(Transcription, f'{ns}/{b}/{names.TRANSCRIPTION}',
                                         RELIABLE_QOS)
        probe.create_subscription(ReplySentence, f'{ns}/{b}/{names.REPLY}',
                                  lambda m, b=b: on_reply(m, b), RELIABLE_QOS)
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(probe)
    threading.Thread(target=ex.spin, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(p.get_subscription_count() >= 1
                                                  for p in pubs.values()):
        time.sleep(0.05)

    def turn(b, text, want_final=False):
        cid = uuid.uuid4().hex[:12]
        msg = Transcription(conversation_id=cid, utterance_id=1, text=text, is_final=True)
        msg.header.stamp = probe.get_clock().now().to_msg()
        t0 = time.monotonic()
        pubs[b].publish(msg)

        def ready():
            rs = got.get((b, cid), [])
            return any(m.is_final for _, m in rs) if want_final else bool(rs)
        with lock:
            assert lock.wait_for(ready, 60), 'no reply'
        rs = got[(b, cid)]
        first = rs[0][0] - t0
        end = next(t for t, m in rs if m.is_final) - t0 if want_final else None
        return first, end, rs

    # 1. time to first sentence (wait for each reply to finish before the next turn)
    res = {'one': [], 'twenty': []}
    turn('paced', 'one', want_final=True)                      # warm-up
    for _ in range(args.runs):
        for kind in ('one', 'twenty'):
            first, _, rs = turn('paced', kind, want_final=True)
            assert rs[0][1].text == FIRST
            res[kind].append(first)
    t1 = statistics.median(res['one'])
    t20 = statistics.median(res['twenty'])
    n_first = len(tokens(FIRST))
    # Stream arithmetic: the last token of sentence 1 comes at ttft + (n - 1) / rate; a
    # 1-sentence reply then ends (flush), a longer one needs the next word's token to
    # see the boundary (one token period: the price of not splitting "3.5" or "Dr.").
    expect_1 = args.ttft + (n_first - 1) / args.rate
    expect_20 = expect_1 + 1.0 / args.rate

    # 2. node overhead per streamed token (unpaced mock)
    n_long = len(tokens(' '.join(f'word{n}' for n in range(LONG_WORDS))))
    per_token = []
    turn('fast', 'long', want_final=True)                     # warm-up
    for _ in range(args.runs):
        _, end, rs = turn('fast', 'long', want_final=True)
        per_token.append(end / n_long)

    # Engine alone (no ROS), same script, unpaced.
    eng_per_token = []
    backend = MockBackend(MockScript.load(script_path), time_to_first_token=0.0, token_rate=0.0)
    for _ in range(args.runs):
        sink = RecordingSink()
        eng = Engine(backend, SessionMemory('sys', 1000000), sink)
        t0 = time.monotonic()
        eng.run_turn(Turn('b', 1, 'long'))
        eng_per_token.append((time.monotonic() - t0) / n_long)

    ex.shutdown(timeout_sec=2)
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
    probe.destroy_node()
    rclpy.try_shutdown()

    out = {
        'mock_token_rate_per_s': args.rate,
        'mock_time_to_first_token_s': args.ttft,
        'runs': args.runs,
        'first_sentence_tokens': n_first,
        'stream_time_to_first_sentence_1_s': round(expect_1, 4),
        'stream_time_to_first_sentence_20_s': round(expect_20, 4),
        'time_to_first_sentence_1_sentence_s': round(t1, 4),
        'time_to_first_sentence_20_sentences_s': round(t20, 4),
        'ratio_20_over_1': round(t20 / t1, 4),
        'ratio_ok': t20 / t1 <= 1.1,
        'all_1_sentence_s': [round(x, 4) for x in res['one']],
        'all_20_sentences_s': [round(x, 4) for x in res['twenty']],
        'overhead_tokens_per_reply': n_long,
        'node_overhead_per_token_us': round(statistics.median(per_token) * 1e6, 1),
        'engine_only_per_token_us': round(statistics.median(eng_per_token) * 1e6, 1),
    }
    print(json.dumps(out, indent=2))
    return 0 if out['ratio_ok'] else 1


if __name__ == '__main__':
    sys.exit(main())

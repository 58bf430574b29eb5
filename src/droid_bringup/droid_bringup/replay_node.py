"""replay: play a replay bag into the droid under sim time and record what it publishes.

    ros2 launch droid_bringup droid.launch.py profile:=mock use_sim_time:=true disable:=microphone
    ros2 run droid_bringup replay --bag test/bags/cantina --out /tmp/out.jsonl

The node owns /clock: it advances sim time in fixed ticks (``--tick-ms``), publishing each
bag message when its time comes. It moves to the next tick only once the graph has been
quiet (no message on any topic) for ``--quiet-ms`` of wall time, so every reaction to a
tick happens within that tick and the output is the same on every run, timestamps
included. Recorded events (see droid_bringup.replay) go to ``--out`` as JSON lines.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from rosidl_runtime_py.convert import message_to_ordereddict
from rosidl_runtime_py.utilities import get_message

from droid_bringup.replay import (RECORDED_STAGES, Normaliser, read_bag, sort_events,
                                  write_events)
from droid_common.contract import constants_with_prefix
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS

STAGES = constants_with_prefix('TraceEvent', 'STAGE_')
KEEP_STAGES = {STAGES[s] for s in RECORDED_STAGES}
TYPES = {
    'speech/transcription': 'droid_msgs/msg/Transcription',
    'brain/reply': 'droid_msgs/msg/ReplySentence',
    'brain/sentiment': 'droid_msgs/msg/Sentiment',
    'voice/speech_event': 'droid_msgs/msg/SpeechEvent',
    'eyes/state': 'droid_msgs/msg/EyeState',
    'mode': 'droid_msgs/msg/SystemMode',
    'trace': 'droid_msgs/msg/TraceEvent',
}
LATCHED = {'eyes/state', 'mode'}


class Replay(Node):
    def __init__(self, bag_messages):
        super().__init__('replay')
        self.messages = bag_messages
        self.events = []
        self.lock = threading.Lock()
        self.last_activity = 0.0      # wall time of the last message the graph published
        self.clock_pub = self.create_publisher(
            Clock, '/clock', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.pubs = {}
        for m in bag_messages:
            if m.topic not in self.pubs:
                self.pubs[m.topic] = self.create_publisher(get_message(m.msgtype), m.topic,
                                                           RELIABLE_QOS)
        for topic, typename in TYPES.items():
            qos = LATCHED_QOS if topic in LATCHED else RELIABLE_QOS
            self.create_subscription(get_message(typename), topic,
                                     lambda msg, t=topic: self.record(t, msg), qos)
        self.watched = set()

    def mark_busy(self, _msg=None):
        self.last_activity = time.monotonic()

    def watch_graph(self) -> None:
        """Listen (raw, best effort) to every other topic of the graph: any traffic on
        them means the graph is still working on the current tick."""
        own = {'/' + t for t in self.pubs} | {'/clock', '/rosout', '/parameter_events'}
        for name, types in self.get_topic_names_and_types():
            if name in own or name in self.watched:
                continue
            try:
                cls = get_message(types[0])
            except (AttributeError, ModuleNotFoundError, ValueError):
                continue
            self.watched.add(name)
            self.create_subscription(cls, name, self.mark_busy, SENSOR_QOS, raw=True)

    def record(self, topic, msg):
        self.last_activity = time.monotonic()
        if topic == 'trace' and msg.stage not in KEEP_STAGES:
            return
        fields = message_to_ordereddict(msg)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.events.append((stamp, topic, dict(fields)))

    def graph_ready(self, expect_publishers) -> bool:
        subs_ok = all(self.count_subscribers(p.topic_name) > 0 for p in self.pubs.values())
        pubs_ok = all(self.count_publishers(t) > 0 for t in expect_publishers)
        return subs_ok and pubs_ok

    def tick(self, t_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t_ns, 1_000_000_000)
        self.clock_pub.publish(msg)


def main(argv=None):
    p = argparse.ArgumentParser(prog='replay', description=__doc__.splitlines()[0])
    p.add_argument('--bag', required=True)
    p.add_argument('--out', help='write recorded events (JSON lines) here')
    p.add_argument('--tick-ms', type=float, default=20.0, help='sim time per clock tick')
    p.add_argument('--min-wall-ms', type=float, default=5.0, help='least wall time per tick')
    p.add_argument('--quiet-ms', type=float, default=40.0,
                   help='wall time without any message before the next tick')
    p.add_argument('--max-wall-ms', type=float, default=1000.0, help='most wall time per tick')
    p.add_argument('--lead-s', type=float, default=1.0, help='sim seconds before the first message')
    p.add_argument('--tail-s', type=float, default=10.0, help='sim seconds after the last message')
    p.add_argument('--ready-timeout', type=float, default=60.0,
                   help='wall seconds to wait for the graph to come up')
    p.add_argument('--expect', default=','.join(TYPES),
                   help='comma-separated topics that must have a publisher before starting')
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)

    import rclpy
    rclpy.init()
    messages = read_bag(args.bag)
    if not messages:
        print(f'replay: {args.bag} has no messages', file=sys.stderr)
        sys.exit(2)
    node = Replay(messages)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    tick_ns = int(args.tick_ms * 1e6)
    start_ns = messages[0].t_ns - int(args.lead_s * 1e9)
    start_ns -= start_ns % tick_ns
    end_ns = messages[-1].t_ns + int(args.tail_s * 1e9)
    rc = 0
    try:
        expect = [t for t in args.expect.split(',') if t]
        deadline = time.monotonic() + args.ready_timeout
        while not node.graph_ready(expect):
            if time.monotonic() > deadline:
                missing = [t for t in expect if node.count_publishers(t) == 0]
                print(f'replay: graph not ready after {args.ready_timeout:.0f} s; no publisher '
                      f'on {missing}', file=sys.stderr)
                sys.exit(3)
            time.sleep(0.1)
        # Hold the start time long enough for every node to take it, then advance.
        for _ in range(20):
            node.tick(start_ns)
            time.sleep(0.05)
        node.watch_graph()
        min_wall, quiet = args.min_wall_ms / 1000.0, args.quiet_ms / 1000.0
        max_wall = args.max_wall_ms / 1000.0
        i = 0
        t = start_ns
        while t <= end_ns:
            node.tick(t)
            while i < len(messages) and messages[i].t_ns <= t:
                node.pubs[messages[i].topic].publish(messages[i].raw)
                i += 1
            ticked = time.monotonic()
            time.sleep(min_wall)
            while True:
                now = time.monotonic()
                if now - max(node.last_activity, ticked) >= quiet or now - ticked >= max_wall:
                    break
                time.sleep(0.002)
            t += tick_ns
        time.sleep(0.5)   # let the last messages arrive
        norm = Normaliser()
        # Startup (latched states, first reactions to the mode) settles during the lead
        # time; what counts is what the graph does once the inputs start.
        with node.lock:
            raw_events = [e for e in node.events if e[0] >= messages[0].t_ns]
        raw_events.sort(key=lambda e: (e[0], e[1]))
        events = sort_events([norm.event(s, topic, f) for s, topic, f in raw_events])
        if args.out:
            write_events(events, args.out)
        print(f'replay: {len(messages)} messages in, {len(events)} events recorded, '
              f'sim {(end_ns - start_ns) / 1e9:.1f} s', flush=True)
    except KeyboardInterrupt:
        rc = 130
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(rc)


if __name__ == '__main__':
    main()

"""replay: play a replay bag into the droid under sim time and record what it publishes.

    ros2 launch droid_bringup droid.launch.py profile:=mock use_sim_time:=true disable:=microphone
    ros2 run droid_bringup replay --bag test/bags/cantina --out /tmp/out.jsonl

The node owns /clock: it advances sim time in fixed ticks (``--tick-ms``), publishing each
bag message when its time comes. A tick: a PREPARE ``droid_msgs/ActivityProbe`` on
``activity/probe`` gives every node the new time, to apply before it handles anything else
(so a message from a node already at the new time is never handled at the old one); once
all have answered, ``/clock`` and the tick's bag messages go out, then SETTLE probes: every
node answers with a ``droid_msgs/ActivityReport`` once it is idle at that time, with the
number of messages it has sent and handled per topic, service and action. The tick is over
when every node has answered idle and every message sent has been handled, confirmed by a
second answer with the same counts (:class:`droid_bringup.replay.Quiescence`). No wall-clock
window is involved, so the output is the same on every run and at any speed, timestamps
included. It starts only once every node is up, matched with its peers, idle and done with
its startup messages. Recorded events (see droid_bringup.replay) go to ``--out`` as JSON
lines.

Which nodes must answer: the droid's nodes for ``--role`` (default ``all``;
droid_bringup.profiles) minus ``--disable`` (default ``microphone``, as the launch line
above), or ``--nodes``. Every droid node
reports (droid_common.ros_activity); another node publishing into the graph during a replay
makes it wait for messages nobody accounts for.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from rosidl_runtime_py.convert import message_to_ordereddict
from rosidl_runtime_py.utilities import get_message

from droid_bringup.profiles import parts_of
from droid_bringup.replay import (PUBLISHER, RECORDED_STAGES, SUBSCRIBER, Normaliser,
                                  Quiescence, read_bag, report_from_msg, sort_events,
                                  write_events)
from droid_common import names
from droid_common.contract import constants_with_prefix
from droid_common.ros import LATCHED_SUB_QOS, RELIABLE_QOS
from droid_msgs.msg import ActivityProbe, ActivityReport

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


class ReplayError(RuntimeError):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Replay(Node):
    def __init__(self, bag_messages, expected_nodes):
        super().__init__('replay')
        self.messages = bag_messages
        self.events = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        ns = self.get_namespace().rstrip('/')
        self.quiet = Quiescence([f'{ns}/{n}' for n in expected_nodes],
                                own_name=self.get_fully_qualified_name())
        self.seq = 0
        self.verbose = False
        self.clock_pub = self.create_publisher(
            Clock, '/clock', QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.probe_pub = self.create_publisher(ActivityProbe, names.ACTIVITY_PROBE, qos)
        self.create_subscription(ActivityReport, names.ACTIVITY_REPORT, self._on_report, qos)
        self.pubs, self.sent = {}, Counter()
        for m in bag_messages:
            if m.topic not in self.pubs:
                self.pubs[m.topic] = self.create_publisher(get_message(m.msgtype), m.topic,
                                                           RELIABLE_QOS)
        self.subs, self.received = {}, Counter()
        for topic, typename in TYPES.items():
            qos_t = LATCHED_SUB_QOS if topic in LATCHED else RELIABLE_QOS
            self.subs[topic] = self.create_subscription(
                get_message(typename), topic, lambda msg, t=topic: self.record(t, msg), qos_t)

    # -- what the replay itself sends and receives ---------------------------------------
    def record(self, topic, msg):
        if topic != 'trace' or msg.stage in KEEP_STAGES:
            fields = message_to_ordereddict(msg)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            with self.lock:
                self.events.append((stamp, topic, dict(fields)))
        with self.lock:
            self.received[topic] += 1

    def publish_input(self, m) -> None:
        self.pubs[m.topic].publish(m.raw)
        with self.lock:
            self.sent[m.topic] += 1

    def own_channels(self) -> list:
        with self.lock:
            sent, received = dict(self.sent), dict(self.received)
        out = [(PUBLISHER, pub.topic_name, sent.get(topic, 0), pub.get_subscription_count(),
                False) for topic, pub in self.pubs.items()]
        out += [(SUBSCRIBER, sub.topic_name, received.get(topic, 0), sub.get_publisher_count(),
                 topic in LATCHED) for topic, sub in self.subs.items()]
        return out

    # -- clock and probes ----------------------------------------------------------------
    def tick(self, t_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t_ns, 1_000_000_000)
        self.clock_pub.publish(msg)

    def probe(self, t_ns: int, step: int = ActivityProbe.STEP_SETTLE) -> int:
        with self.lock:
            self.seq += 1
            seq = self.seq
        msg = ActivityProbe(seq=seq, step=step)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(t_ns, 1_000_000_000)
        self.probe_pub.publish(msg)
        return seq

    def _on_report(self, msg) -> None:
        with self.cond:
            self.quiet.receive(report_from_msg(msg))
            self.cond.notify_all()

    def wait_answers(self, seq: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.quiet.answered(seq), timeout)

    def prepare(self, t_ns: int, timeout: float) -> int:
        """Every node keeps ``t_ns`` to apply before it handles anything: then no node can
        get a message of the new tick while its clock still shows the old one."""
        start = time.monotonic()
        seq = self.probe(t_ns, ActivityProbe.STEP_PREPARE)
        while not self.wait_answers(seq, 0.5):
            if time.monotonic() - start > timeout:
                with self.lock:
                    waiting = self.quiet.waiting_for(seq)
                raise ReplayError(4, f'tick {t_ns} ns: not prepared after {timeout:.0f} s:\n  '
                                  + '\n  '.join(waiting))
        return 1

    # -- the two phases ------------------------------------------------------------------
    def start(self, t_ns: int, timeout: float) -> int:
        """Hold /clock at ``t_ns`` until the graph is up, matched and idle; returns rounds."""
        deadline = time.monotonic() + timeout
        rounds = 0
        while True:
            seq = self.probe(t_ns, ActivityProbe.STEP_PREPARE)
            if self.wait_answers(seq, 1.0):
                self.tick(t_ns)
                seq = self.probe(t_ns)
            rounds += 1
            if self.wait_answers(seq, 1.0):
                own = self.own_channels()
                with self.lock:
                    problems = self.quiet.start(seq, own)
                if not problems:
                    if self.verbose:
                        print(f'replay: started at {t_ns} ns after {rounds} rounds; baseline '
                              + ', '.join(f'{k}={v}' for k, v in sorted(self.quiet.offsets.items())
                                          if v), flush=True)
                    return rounds
            else:
                with self.lock:
                    problems = self.quiet.waiting_for(seq)
            if time.monotonic() > deadline:
                raise ReplayError(3, f'graph not ready after {timeout:.0f} s:\n  '
                                  + '\n  '.join(problems))
            if problems != ['confirming']:
                time.sleep(0.05)

    def settle(self, t_ns: int, timeout: float, log_after: float = 10.0) -> int:
        """Probe until the tick ``t_ns`` is over; returns the number of probe rounds."""
        start = time.monotonic()
        rounds = 0
        logged = start
        while True:
            seq = self.probe(t_ns)
            rounds += 1
            while not self.wait_answers(seq, 0.5):
                now = time.monotonic()
                self.tick(t_ns)          # /clock is best effort: say it again
                if now - logged > log_after:
                    logged = now
                    with self.lock:
                        waiting = self.quiet.waiting_for(seq)
                    self.get_logger().warning(f'tick {t_ns} ns: still waiting for\n  '
                                              + '\n  '.join(waiting))
                if now - start > timeout:
                    with self.lock:
                        waiting = self.quiet.waiting_for(seq)
                    raise ReplayError(4, f'tick {t_ns} ns not finished after {timeout:.0f} s; '
                                      'waiting for:\n  ' + '\n  '.join(waiting))
            own = self.own_channels()
            with self.lock:
                problems = self.quiet.settled(seq, own, t_ns)
            if not problems:
                return rounds
            if time.monotonic() - start > timeout:
                self.quiet.verbose = True
                with self.lock:
                    problems = self.quiet.settled(seq, own, t_ns)
                    if self.verbose:
                        problems.append(f'the replay: {own}')
                raise ReplayError(4, f'tick {t_ns} ns not finished after {timeout:.0f} s:\n  '
                                  + '\n  '.join(problems))


def expected_nodes(nodes: str, disable: str, role: str = 'all') -> list:
    """The node names that must report: ``nodes``, else the parts a ``role`` host starts
    (as droid.launch.py does) minus ``disable``."""
    if nodes:
        return [n.strip() for n in nodes.split(',') if n.strip()]
    skipped = {n.strip() for n in disable.split(',') if n.strip()}
    return [name for name in parts_of(role) if name not in skipped]


def main(argv=None):
    p = argparse.ArgumentParser(prog='replay', description=__doc__.splitlines()[0])
    p.add_argument('--bag', required=True)
    p.add_argument('--out', help='write recorded events (JSON lines) here')
    p.add_argument('--tick-ms', type=float, default=20.0, help='sim time per clock tick')
    p.add_argument('--min-wall-ms', type=float, default=0.0,
                   help='least wall time per tick (slow the replay down; the output is the same)')
    p.add_argument('--lead-s', type=float, default=1.0, help='sim seconds before the first message')
    p.add_argument('--tail-s', type=float, default=10.0, help='sim seconds after the last message')
    p.add_argument('--ready-timeout', type=float, default=90.0,
                   help='wall seconds to wait for the graph to come up')
    p.add_argument('--tick-timeout', type=float, default=120.0,
                   help='wall seconds a tick may take before the replay gives up')
    p.add_argument('--disable', default='microphone',
                   help='droid nodes not running (as the launch argument disable:=)')
    p.add_argument('--role', default='all',
                   help='the role the droid was launched with (as the launch argument role:=)')
    p.add_argument('--verbose', action='store_true', help='say how each tick settles')
    p.add_argument('--nodes', default='',
                   help='comma-separated node names that must report (default: the droid\'s)')
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)

    import rclpy
    rclpy.init()
    messages = read_bag(args.bag)
    if not messages:
        print(f'replay: {args.bag} has no messages', file=sys.stderr)
        sys.exit(2)
    node = Replay(messages, expected_nodes(args.nodes, args.disable, args.role))
    node.verbose = args.verbose
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    tick_ns = int(round(args.tick_ms * 1e6))
    start_ns = messages[0].t_ns - int(args.lead_s * 1e9)
    start_ns -= start_ns % tick_ns
    end_ns = messages[-1].t_ns + int(args.tail_s * 1e9)
    rc = 0
    try:
        wall0 = time.monotonic()
        rounds = node.start(start_ns, args.ready_timeout)
        wall1 = time.monotonic()
        min_wall = args.min_wall_ms / 1000.0
        i, ticks = 0, 0
        t = start_ns
        while t <= end_ns:
            ticked = time.monotonic()
            rounds += node.prepare(t, args.tick_timeout)
            node.tick(t)
            while i < len(messages) and messages[i].t_ns <= t:
                node.publish_input(messages[i])
                i += 1
            rounds += node.settle(t, args.tick_timeout)
            ticks += 1
            left = min_wall - (time.monotonic() - ticked)
            if left > 0:
                time.sleep(left)
            t += tick_ns
        # One more tick: the last one's end-of-tick outputs (activity.defer) come out.
        rounds += node.prepare(t, args.tick_timeout)
        node.tick(t)
        rounds += node.settle(t, args.tick_timeout)
        for note in node.quiet.notes:
            print(f'replay: note: {note}', flush=True)
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
              f'sim {(end_ns - start_ns) / 1e9:.1f} s in {ticks} ticks, '
              f'{rounds} probe rounds; wall {wall1 - wall0:.1f} s to start, '
              f'{time.monotonic() - wall1:.1f} s to replay', flush=True)
    except ReplayError as exc:
        print(f'replay: {exc}', file=sys.stderr, flush=True)
        rc = exc.code
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

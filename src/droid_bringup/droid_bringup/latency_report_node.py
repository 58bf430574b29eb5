"""latency_report: per-turn latency breakdowns, live or from a bag.

    ros2 run droid_bringup latency_report                 # live, prints each turn
    ros2 run droid_bringup latency_report --bag my_bag    # from a recorded bag (no ROS needed)
    ros2 run droid_bringup latency_report --bag my_bag --json
    ros2 run droid_bringup latency_report --plot turns.png   # + a waterfall per turn

A turn is printed when its reply has finished (speech done, barge-in, or reply done and
``--settle`` seconds without news), with its stages counted from the end of the user's
speech. ``--plot`` draws the turns (live: the last ``--plot-turns``, redrawn after each
one) as waterfalls of those stages (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import sys

from droid_common import names
from droid_bringup.latency import (
    LatencyTracker,
    PlotUnavailable,
    Trace,
    breakdown,
    format_turn,
    plot_waterfall,
)

FINISHING = ('speech_done', 'barge_in')


def _args(argv):
    p = argparse.ArgumentParser(prog='latency_report', description=__doc__.splitlines()[0])
    p.add_argument('--bag', help='read TraceEvents from this rosbag2 directory or .mcap')
    p.add_argument('--topic', default='/' + names.TRACE, help='trace topic in the bag')
    p.add_argument('--json', action='store_true', help='print one JSON object per turn')
    p.add_argument('--settle', type=float, default=2.0,
                   help='live: print a turn this many seconds after its last event')
    p.add_argument('--plot', metavar='FILE', help='draw the turns as waterfalls into FILE '
                   '(.png, .svg, ...; needs matplotlib)')
    p.add_argument('--plot-turns', type=int, default=30,
                   help='live: how many of the latest turns the plot shows')
    return p.parse_known_args(argv)[0]


def plot_rows(breakdowns) -> list:
    """(label, marks) of the turns that have marks after the end of speech."""
    return [(f"{b['conversation_id'][:8]}#{b['utterance_id']}", b['from_end_of_speech_ms'])
            for b in breakdowns if b.get('from_end_of_speech_ms')]


def write_plot(path: str, breakdowns) -> bool:
    rows = plot_rows(breakdowns)
    if not rows:
        return False
    try:
        plot_waterfall(rows, path, 'latency_report: stages after the end of speech')
    except PlotUnavailable as exc:
        print(f'latency_report: {exc}', file=sys.stderr)
        return False
    return True


def _emit(b: dict, as_json: bool) -> None:
    print(json.dumps(b, sort_keys=True) if as_json else format_turn(b), flush=True)


def traces_from_bag(path: str, topic: str):
    from rosbags.highlevel import AnyReader
    from droid_common.bagtypes import typestore
    from pathlib import Path
    store = typestore()
    with AnyReader([Path(path)], default_typestore=store) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            raise SystemExit(f'latency_report: no {topic} topic in {path}')
        for conn, _, raw in reader.messages(connections=conns):
            m = reader.deserialize(raw, conn.msgtype)
            yield Trace(stage=m.stage, stamp=m.header.stamp.sec + m.header.stamp.nanosec * 1e-9,
                        conversation_id=m.conversation_id, utterance_id=m.utterance_id,
                        input_stamp=m.input_stamp.sec + m.input_stamp.nanosec * 1e-9,
                        node=m.node, detail=m.detail)


def report_bag(path: str, topic: str, as_json: bool, plot: str | None = None) -> int:
    tracker = LatencyTracker()
    for trace in traces_from_bag(path, topic):
        tracker.add(trace)
    done = []
    for turn in tracker.turns.values():
        done.append(breakdown(turn))
        _emit(done[-1], as_json)
    if plot and not write_plot(plot, done):
        return 1
    return 0


def report_live(args) -> None:
    from droid_msgs.msg import TraceEvent
    from rclpy.node import Node

    from droid_common.ros import RELIABLE_QOS, now_sec, run, to_sec

    class LatencyReport(Node):
        def __init__(self):
            super().__init__('latency_report')
            self.tracker = LatencyTracker()
            self.last_seen = {}
            self.printed = set()
            self.done = []
            self.create_subscription(TraceEvent, names.TRACE, self.on_trace, RELIABLE_QOS)
            self.create_timer(0.5, self.flush)

        def on_trace(self, m):
            trace = Trace(stage=m.stage, stamp=to_sec(m.header.stamp),
                          conversation_id=m.conversation_id, utterance_id=m.utterance_id,
                          input_stamp=to_sec(m.input_stamp), node=m.node, detail=m.detail)
            turn = self.tracker.add(trace)
            key = (turn.conversation_id, turn.utterance_id)
            self.last_seen[key] = now_sec(self)
            if trace.stage_name in FINISHING and key not in self.printed:
                self.printed.add(key)
                self.emit(breakdown(turn))

        def emit(self, b):
            _emit(b, args.json)
            if args.plot:
                self.done = (self.done + [b])[-max(1, args.plot_turns):]
                write_plot(args.plot, self.done)

        def flush(self):
            now = now_sec(self)
            for key, seen in list(self.last_seen.items()):
                if key not in self.printed and now - seen >= args.settle:
                    self.printed.add(key)
                    self.emit(breakdown(self.tracker.turns[key]))
                if now - seen > 60.0:
                    self.last_seen.pop(key, None)
                    self.printed.discard(key)

    run(LatencyReport)


def main(argv=None) -> None:
    args = _args(sys.argv[1:] if argv is None else argv)
    if args.bag:
        sys.exit(report_bag(args.bag, args.topic, args.json, args.plot))
    report_live(args)


if __name__ == '__main__':
    main()

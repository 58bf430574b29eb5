"""Deterministic replay of recorded droid inputs under sim time (plain Python).

A replay bag (rosbag2, mcap, written with ``rosbags``) holds the droid's *inputs*: the
microphone chunks (``/audio/mic``) and, for the mock STT, the scripted transcripts
(``/audio/mock_transcript``). The replay node publishes them at their bag times while it
drives ``/clock`` itself in fixed ticks, so every node (run with ``use_sim_time``) sees the
same time line on every run. It records what the graph publishes as normalised JSON
events (:class:`Normaliser`), which the replay tests compare with the expected output.

When may the clock move on? :class:`Quiescence` decides from what the nodes themselves
report (``droid_msgs/ActivityReport``, see :mod:`droid_common.activity`): the replay
probes, and every expected node answers once it is idle at the current tick; the tick is
over when every node is idle at that time and, channel by channel, every message sent has
been handled (a subscription has handled all its publishers have published; the graph's
service and action servers have handled every request sent), confirmed by a second round
of answers with the same counts. Wall time plays no part, so a slow or loaded machine
gives the same output, only later.

Normalisation keeps stamps (as integer nanoseconds) and replaces the random conversation
ids by ``c1``, ``c2``... in order of first appearance; floats are rounded.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from droid_common.activity import PUBLISHER, RECEIVER, ROLE_NAMES, SENDER, SUBSCRIBER

# What the replay records: topic (relative) -> fields kept per message.
RECORDED = {
    'speech/transcription': ('conversation_id', 'utterance_id', 'text', 'is_final', 'source'),
    'brain/reply': ('conversation_id', 'utterance_id', 'index', 'text', 'is_final',
                    'interrupted', 'persona'),
    'brain/sentiment': ('conversation_id', 'utterance_id', 'label', 'score'),
    'voice/speech_event': ('conversation_id', 'utterance_id', 'sentence_index', 'event', 'text',
                           'played', 'last_in_reply', 'backend'),
    'eyes/state': ('conversation_id', 'pattern', 'color', 'brightness', 'speed', 'source'),
    'mode': ('mode', 'previous_mode', 'reason'),
    'trace': ('conversation_id', 'utterance_id', 'stage', 'detail'),
}
# Trace stages recorded (tool goals and results: the tool calls of the turn).
RECORDED_STAGES = ('tool_goal', 'tool_result')


@dataclass
class BagMessage:
    t_ns: int           # bag receive time = sim time at which to publish it
    topic: str          # relative topic name (leading '/' stripped)
    msgtype: str        # e.g. 'droid_msgs/msg/AudioChunk'
    raw: bytes          # CDR bytes, published as they are


def read_bag(path: str | Path) -> list:
    """All messages of a replay bag, in time order."""
    from rosbags.highlevel import AnyReader
    from droid_common.bagtypes import typestore
    out = []
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        for conn, t_ns, raw in reader.messages():
            out.append(BagMessage(int(t_ns), conn.topic.lstrip('/'), conn.msgtype, bytes(raw)))
    out.sort(key=lambda m: m.t_ns)
    return out


class Normaliser:
    """Turns recorded messages into comparable, deterministic JSON-able dicts."""

    def __init__(self, float_digits: int = 3):
        self.ids: dict = {}
        self.digits = float_digits

    def conv(self, cid: str) -> str:
        if not cid:
            return ''
        if cid not in self.ids:
            self.ids[cid] = f'c{len(self.ids) + 1}'
        return self.ids[cid]

    def value(self, key: str, v):
        if key == 'conversation_id':
            return self.conv(v)
        if isinstance(v, float):
            return round(v, self.digits)
        if isinstance(v, dict):
            return {k: self.value(k, x) for k, x in v.items()}
        return v

    def event(self, stamp_ns: int, topic: str, fields: dict) -> dict:
        return {'t': int(stamp_ns), 'topic': topic,
                **{k: self.value(k, fields[k]) for k in RECORDED[topic] if k in fields}}


def sort_events(events: list) -> list:
    """Stable order independent of arrival order across topics: by stamp, topic, content."""
    return sorted(events, key=lambda e: (e['t'], e['topic'], json.dumps(e, sort_keys=True)))


def write_events(events: list, path: str | Path) -> None:
    Path(path).write_text(''.join(json.dumps(e, sort_keys=True) + '\n' for e in events))


def read_events(path: str | Path) -> list:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def diff(expected: list, actual: list, limit: int = 20) -> list:
    """Human-readable differences between two event lists (empty when identical)."""
    out = []
    for i in range(max(len(expected), len(actual))):
        e = expected[i] if i < len(expected) else None
        a = actual[i] if i < len(actual) else None
        if e != a:
            out.append(f'#{i}: expected {json.dumps(e, sort_keys=True)}\n'
                       f'      actual   {json.dumps(a, sort_keys=True)}')
            if len(out) >= limit:
                break
    return out


# ---- when is a tick over? ------------------------------------------------------------------

@dataclass
class Report:
    """One node's answer to a probe (a droid_msgs/ActivityReport, as plain data)."""

    node: str
    probe: int
    idle: bool
    now_ns: int
    channels: list = field(default_factory=list)   # [(role, name, count, matched, latched)]
    busy: str = ''
    next_due_ns: int = 0


def report_from_msg(msg) -> Report:
    stamp = msg.header.stamp
    due = msg.next_due
    return Report(node=msg.node, probe=int(msg.probe), idle=bool(msg.idle),
                  now_ns=stamp.sec * 1_000_000_000 + stamp.nanosec,
                  channels=list(zip((int(r) for r in msg.channel_roles), msg.channel_names,
                                    (int(c) for c in msg.channel_counts),
                                    (int(m) for m in msg.channel_matched),
                                    (bool(x) for x in msg.channel_latched))),
                  busy=msg.busy, next_due_ns=due.sec * 1_000_000_000 + due.nanosec)


def _keyed(channels_by_node: dict) -> list:
    """[(node, role, name, nth, count, matched, latched)]: nth tells apart two channels of
    one node with the same role and name (two subscriptions of a topic)."""
    out = []
    for node in sorted(channels_by_node):
        seen = Counter()
        for role, name, count, matched, latched in channels_by_node[node]:
            nth = seen[(role, name)]
            seen[(role, name)] += 1
            out.append((node, role, name, nth, count, matched, latched))
    return out


def deficits(channels_by_node: dict) -> dict:
    """Messages sent but not yet handled, per channel key.

    ``('sub', node, topic, nth)``: all the topic's publishers have published minus what this
    subscription has handled (topics nobody in the graph publishes are left out);
    ``('p2p', name)``: what the graph's senders sent minus what its receivers handled.
    """
    rows = _keyed(channels_by_node)
    published, sent, handled = defaultdict(int), defaultdict(int), defaultdict(int)
    for _node, role, name, _nth, count, _m, _l in rows:
        if role == PUBLISHER:
            published[name] += count
        elif role == SENDER:
            sent[name] += count
        elif role == RECEIVER:
            handled[name] += count
    out = {}
    for node, role, name, nth, count, _m, _l in rows:
        if role == SUBSCRIBER and name in published:
            out[('sub', node, name, nth)] = published[name] - count
    for name in sorted(set(sent) | set(handled)):
        if name in sent and name in handled:
            out[('p2p', name)] = sent[name] - handled[name]
    return out


def explain(channels_by_node: dict, key: tuple) -> str:
    """Who sent and handled what on the channel of a deficits() key."""
    name = key[2] if key[0] == 'sub' else key[1]
    parts = []
    for node, role, n, nth, count, _m, _l in _keyed(channels_by_node):
        if n != name:
            continue
        if key[0] == 'sub' and role == SUBSCRIBER and (node, nth) != (key[1], key[3]):
            continue
        parts.append(f'{node} {ROLE_NAMES.get(role, role)} {count}')
    return ', '.join(parts)


def counts_key(channels_by_node: dict) -> tuple:
    return tuple((n, r, name, nth, c) for n, r, name, nth, c, _m, _l in _keyed(channels_by_node))


def describe_key(key: tuple) -> str:
    if key[0] == 'sub':
        return f'{key[2]} -> {key[1]}' + (f' (#{key[3] + 1})' if key[3] else '')
    return key[1]


def startup_problems(channels_by_node: dict) -> list:
    """Why the graph is not ready to start: endpoints not matched yet, or a latched
    message not delivered yet (a late subscriber gets the last one)."""
    rows = _keyed(channels_by_node)
    pubs, subs, receivers, published = Counter(), Counter(), Counter(), defaultdict(int)
    for _node, role, name, _nth, count, _m, _l in rows:
        if role == PUBLISHER:
            pubs[name] += 1
            published[name] += count
        elif role == SUBSCRIBER:
            subs[name] += 1
        elif role == RECEIVER:
            receivers[name] += 1
    problems = []
    for node, role, name, nth, count, matched, latched in rows:
        if role == PUBLISHER and subs[name] and 0 <= matched < subs[name]:
            problems.append(f'{node} publishes {name} to {matched} of {subs[name]} subscribers')
        elif role == SUBSCRIBER and pubs[name] and 0 <= matched < pubs[name]:
            problems.append(f'{node} subscribes {name} from {matched} of {pubs[name]} '
                            'publishers')
        elif role == SUBSCRIBER and latched and published[name] and count == 0:
            problems.append(f'{node} has not received the latched {name} yet')
        elif role == SENDER and receivers[name] and matched == 0:
            problems.append(f'{node}: no server for {name} yet')
    return problems


class Quiescence:
    """Decides, from the nodes' reports, when the graph has finished a tick.

    ``expected``: the fully qualified names of the nodes that must answer. ``own`` (given
    to each check): the replay's own channels, as exact as its counters.
    """

    def __init__(self, expected, own_name: str = '/replay'):
        self.expected = sorted(set(expected))
        self.own_name = own_name
        self.latest: dict = {}        # node -> Report (the latest answer)
        self.offsets: dict | None = None
        self.last_counts = None
        self.notes: list = []         # things worth a log line (absorbed late messages)
        self.verbose = False          # problems say who sent and handled what

    def receive(self, report: Report) -> None:
        old = self.latest.get(report.node)
        if old is None or report.probe >= old.probe:
            self.latest[report.node] = report

    def answered(self, seq: int) -> bool:
        """Every expected node has answered probe ``seq`` idle."""
        return all((r := self.latest.get(n)) is not None and r.probe == seq and r.idle
                   for n in self.expected)

    def waiting_for(self, seq: int) -> list:
        out = []
        for n in self.expected:
            r = self.latest.get(n)
            if r is None:
                out.append(f'{n}: no answer yet')
            elif r.probe != seq or not r.idle:
                out.append(f'{n}: ' + (f'busy ({r.busy})' if not r.idle else
                                       f'answered probe {r.probe} of {seq}'))
        return out

    def _channels(self, own: list) -> dict:
        chans = {n: self.latest[n].channels for n in self.expected if n in self.latest}
        chans[self.own_name] = list(own)
        return chans

    def start(self, seq: int, own: list) -> list:
        """Try to take the starting point (after probe ``seq`` was answered): returns what
        is not ready yet; [] = started (the baseline of every channel is taken)."""
        chans = self._channels(own)
        problems = startup_problems(chans)
        counts = counts_key(chans)
        confirmed = counts == self.last_counts
        self.last_counts = counts
        if problems:
            return problems
        if not confirmed:
            return ['confirming']
        self.offsets = deficits(chans)
        return []

    def settled(self, seq: int, own: list, t_ns: int) -> list:
        """After probe ``seq`` was answered at tick ``t_ns``: what is not finished yet
        ([] = the tick is over)."""
        if self.offsets is None:
            raise RuntimeError('start() first')
        problems = []
        for n in self.expected:
            r = self.latest[n]
            if r.now_ns != t_ns:
                problems.append(f'{n}: clock {r.now_ns} ns, tick {t_ns} ns')
        chans = self._channels(own)
        late, new = {}, {}
        for key, d in deficits(chans).items():
            base = self.offsets.get(key)
            if base is None:             # a channel that appeared since the start
                new[key] = d
            elif d > base:
                problems.append(f'{describe_key(key)}: {d - base} message(s) not handled yet'
                                + (f' ({explain(chans, key)}; at the start {base})'
                                   if self.verbose else ''))
            elif d < base:
                late[key] = d
        counts = counts_key(chans)
        confirmed = counts == self.last_counts
        self.last_counts = counts
        if problems:
            return problems
        if not confirmed:
            return ['confirming']
        # Settled, and more handled than sent since the start: messages from before the
        # start arrived late (or someone outside the graph published). Only now, with
        # nothing else pending, is that what it means.
        for key, d in late.items():
            self.notes.append(f'{describe_key(key)}: {self.offsets[key] - d} message(s) from '
                              'before the start arrived late')
            self.offsets[key] = d
        self.offsets.update(new)
        return []


"""Deterministic replay of recorded droid inputs under sim time (plain Python).

A replay bag (rosbag2, mcap, written with ``rosbags``) holds the droid's *inputs*: the
microphone chunks (``/audio/mic``) and, for the mock STT, the scripted transcripts
(``/audio/mock_transcript``). The replay node publishes them at their bag times while it
drives ``/clock`` itself in fixed ticks, so every node (run with ``use_sim_time``) sees the
same time line on every run. It records what the graph publishes as normalised JSON
events (:func:`normalise`), which the replay tests compare with the expected output.

Normalisation keeps stamps (as integer nanoseconds) and replaces the random conversation
ids by ``c1``, ``c2``... in order of first appearance; floats are rounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

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

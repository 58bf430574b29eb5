"""Per-turn latency breakdowns from TraceEvents (plain Python).

Every stage of the droid publishes a ``droid_msgs/TraceEvent`` stamped on its node clock,
with the conversation id, the utterance (turn) id and the stamp of the message that
triggered it. :class:`LatencyTracker` groups them by turn and :func:`breakdown` turns one
turn into the figures ``latency_report`` prints:

    wake -> end of speech -> final transcript -> first sentence -> first audio -> eyes

plus the graph's own overhead: the hand-off delays (stamp minus input stamp) of the stages
that only forward a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from droid_common.contract import constants_with_prefix

STAGE = constants_with_prefix('TraceEvent', 'STAGE_')       # {'wake': 0, ...}
STAGE_NAME = {v: k for k, v in STAGE.items()}

# (label, from stage, to stage): the intervals of a turn, in pipeline order.
INTERVALS = (
    ('user_speech', 'speech_start', 'speech_end'),
    ('stt', 'speech_end', 'final_transcript'),
    ('llm_first_token', 'llm_request', 'first_token'),
    ('llm_first_sentence', 'final_transcript', 'first_sentence'),
    ('tts_first_audio', 'first_sentence', 'first_audio'),
    ('end_of_speech_to_first_audio', 'speech_end', 'first_audio'),
    ('final_transcript_to_first_audio', 'final_transcript', 'first_audio'),
    ('eyes_after_first_sentence', 'first_sentence', 'eyes_reacted'),
    ('reply_total', 'final_transcript', 'reply_done'),
)
# Stages whose node only forwards the triggering message: stamp - input_stamp is the
# graph's own overhead (transport + queueing + conversion).
HANDOFF_STAGES = ('llm_request', 'eyes_reacted')


@dataclass
class Trace:
    stage: int
    stamp: float            # [s] node clock
    conversation_id: str
    utterance_id: int
    input_stamp: float = 0.0
    node: str = ''
    detail: str = ''

    @property
    def stage_name(self) -> str:
        return STAGE_NAME.get(self.stage, f'stage_{self.stage}')


@dataclass
class Turn:
    conversation_id: str
    utterance_id: int
    first: dict = field(default_factory=dict)     # stage name -> first Trace of that stage
    events: list = field(default_factory=list)


class LatencyTracker:
    """Collects traces into turns. A WAKE with utterance 0 belongs to the conversation's
    first utterance."""

    def __init__(self, max_turns: int = 1000):
        self.max_turns = max_turns
        self.turns: dict = {}

    def add(self, trace: Trace) -> Turn:
        utterance = trace.utterance_id or 1
        key = (trace.conversation_id, utterance)
        turn = self.turns.get(key)
        if turn is None:
            turn = self.turns[key] = Turn(trace.conversation_id, utterance)
            while len(self.turns) > self.max_turns:
                self.turns.pop(next(iter(self.turns)))
        turn.events.append(trace)
        turn.first.setdefault(trace.stage_name, trace)
        return turn


def breakdown(turn: Turn) -> dict:
    """Figures of one turn in milliseconds (only the intervals whose stages were seen)."""
    out = {'conversation_id': turn.conversation_id, 'utterance_id': turn.utterance_id,
           'stages': sorted(turn.first, key=lambda s: STAGE.get(s, 99))}
    ms = {}
    for label, a, b in INTERVALS:
        if a in turn.first and b in turn.first:
            ms[label] = round((turn.first[b].stamp - turn.first[a].stamp) * 1000.0, 3)
    overhead = [(t.stamp - t.input_stamp) * 1000.0 for t in turn.first.values()
                if t.stage_name in HANDOFF_STAGES and t.input_stamp > 0]
    if overhead:
        ms['graph_overhead'] = round(sum(overhead), 3)
    tools = [t.detail for t in turn.events if t.stage_name == 'tool_goal']
    if tools:
        out['tools'] = tools
    out['ms'] = ms
    return out


def format_turn(b: dict) -> str:
    """One human-readable block for a turn."""
    lines = [f"turn {b['conversation_id']}#{b['utterance_id']}  "
             f"(stages: {', '.join(b['stages'])})"]
    for label, _, _ in INTERVALS:
        if label in b['ms']:
            lines.append(f'  {label:<34}{b["ms"][label]:>10.1f} ms')
    if 'graph_overhead' in b['ms']:
        lines.append(f'  {"graph_overhead":<34}{b["ms"]["graph_overhead"]:>10.1f} ms')
    for tool in b.get('tools', []):
        lines.append(f'  tool: {tool}')
    return '\n'.join(lines)


def percentile(values, q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float('nan')
    k = max(0, min(len(xs) - 1, math.ceil(q / 100.0 * len(xs)) - 1))
    return xs[k]

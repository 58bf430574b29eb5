"""Per-turn latency breakdowns from TraceEvents (plain Python).

Every stage of the droid publishes a ``droid_msgs/TraceEvent`` stamped on its node clock,
with the conversation id, the utterance (turn) id and the stamp of the message that
triggered it. :class:`LatencyTracker` groups them by turn and :func:`breakdown` turns one
turn into the figures ``latency_report`` prints:

    wake -> end of speech -> final transcript -> first sentence -> first audio -> eyes

plus the graph's own overhead: the hand-off delays (stamp minus input stamp) of the stages
that only forward a message, and the marks of the voice path counted from the end of the
user's speech (:func:`marks`: endpoint, final transcript, LLM request, first token, first
sentence, first audio). :func:`plot_waterfall` draws turns as waterfalls of those marks
(matplotlib, optional).
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
# The voice path, in pipeline order: (stage, label). Marks are counted from the end of the
# user's speech (the listener's end of voiced audio, carried by speech_end's input stamp).
VOICE_PATH = (
    ('speech_end', 'endpoint'),
    ('final_transcript', 'final transcript'),
    ('llm_request', 'LLM request'),
    ('first_token', 'first token'),
    ('first_sentence', 'first sentence'),
    ('first_audio', 'first audio'),
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
    since = marks(turn)
    if since:
        out['from_end_of_speech_ms'] = since
    return out


def end_of_speech(turn: Turn) -> float | None:
    """When the user stopped speaking [s, node clock]: the end of voiced audio the listener
    reported with its endpoint (speech_end's input stamp), else the endpoint itself."""
    t = turn.first.get('speech_end')
    if t is None:
        return None
    return t.input_stamp if t.input_stamp > 0 else t.stamp


def marks(turn: Turn, origin: float | None = None) -> dict:
    """``{stage: ms}`` of the voice path's stages seen in this turn, counted from ``origin``
    (default: :func:`end_of_speech`). Empty without an origin."""
    origin = end_of_speech(turn) if origin is None else origin
    if origin is None:
        return {}
    return {stage: round((turn.first[stage].stamp - origin) * 1000.0, 3)
            for stage, _ in VOICE_PATH if stage in turn.first}


class PlotUnavailable(RuntimeError):
    pass


def plot_waterfall(rows, path, title: str = '') -> str:
    """Draw turns as waterfalls into ``path`` (PNG, SVG, ... by its suffix).

    ``rows``: ``[(label, {stage: ms from the end of the user's speech}), ...]``; stage names
    are those of :data:`VOICE_PATH` plus any extra (e.g. ``'audible'``). Each turn is one
    lane: from 0 (the user stopped speaking) each segment runs up to the next mark in time
    order and is coloured by the mark it waits for, so the longest colours are where the
    time goes. Needs matplotlib (:class:`PlotUnavailable` says how to get it).
    """
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError as exc:
        raise PlotUnavailable(f'plotting needs matplotlib ({exc}): pip install matplotlib '
                              '(pinned in requirements-test.txt)') from None
    labels = dict(VOICE_PATH)
    order = [s for s, _ in VOICE_PATH]
    for _, m in rows:
        order += [s for s in m if s not in order]
    cmap = plt.get_cmap('tab10')
    colour = {s: cmap(i % 10) for i, s in enumerate(order)}
    height = max(2.5, 0.28 * len(rows) + 1.4)
    fig, ax = plt.subplots(figsize=(11, height))
    for y, (_, m) in enumerate(rows):
        prev = 0.0
        for stage, ms in sorted(m.items(), key=lambda kv: kv[1]):
            start, end = min(prev, ms), max(prev, ms)
            ax.barh(y, end - start, left=start, height=0.7, color=colour[stage],
                    edgecolor='white', linewidth=0.4)
            prev = max(prev, ms)
        if m:
            ax.text(prev + 5, y, f'{prev:.0f}', va='center', fontsize=7)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color='black', linewidth=0.8)
    ax.set_xlabel("ms after the end of the user's speech (each segment: waiting for ...)")
    ax.set_title(title or 'voice-to-voice per turn')
    ax.legend(handles=[Patch(color=colour[s], label=labels.get(s, s)) for s in order
                       if any(s in m for _, m in rows)], fontsize=7, loc='upper left',
              bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def format_turn(b: dict) -> str:
    """One human-readable block for a turn."""
    lines = [f"turn {b['conversation_id']}#{b['utterance_id']}  "
             f"(stages: {', '.join(b['stages'])})"]
    for label, _, _ in INTERVALS:
        if label in b['ms']:
            lines.append(f'  {label:<34}{b["ms"][label]:>10.1f} ms')
    if 'graph_overhead' in b['ms']:
        lines.append(f'  {"graph_overhead":<34}{b["ms"]["graph_overhead"]:>10.1f} ms')
    since = b.get('from_end_of_speech_ms') or {}
    if since:
        lines.append('  after the end of speech:')
        for stage, label in VOICE_PATH:
            if stage in since:
                lines.append(f'    {label:<32}{since[stage]:>10.1f} ms')
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

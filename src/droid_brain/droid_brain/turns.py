"""Which final transcriptions become brain turns (plain Python, no rclpy).

:class:`TurnTracker` is the brain's gate between ``speech/transcription`` and the turn
worker. Messages arrive from several publishers (stt, chat, a replayed bag), possibly late,
duplicated or out of order; a stale one must not cancel the reply to a newer one.

- partial transcriptions and empty (whitespace-only) texts are not turns;
- the same (conversation, utterance) is answered once;
- within the current conversation, an utterance older than the newest one seen is stale;
- a conversation that was superseded by another is stale for good (``history`` of them
  are remembered), and so is a new conversation stamped before the current one started;
- a stamp that is zero, negative or not finite counts as "received now";
- over-long text is cut to ``max_chars`` (the LLM gets a bounded request).

:meth:`TurnTracker.admit` returns a :class:`Decision`; ``decision.text`` is None when the
message is not a turn, with ``decision.reason`` saying why (for the log).
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class Decision:
    text: str | None
    reason: str = ''
    stamp: float = 0.0          # the stamp used (the message's, or ``now``)
    truncated: bool = False


def _finite_stamp(stamp, now: float) -> float:
    try:
        s = float(stamp)
    except (TypeError, ValueError):
        return now
    return s if math.isfinite(s) and s > 0.0 else now


class TurnTracker:
    def __init__(self, history: int = 64, max_chars: int = MAX_TEXT_CHARS):
        self.history = max(1, int(history))
        self.max_chars = max(1, int(max_chars))
        self.conversation_id = ''
        self.utterance_id = 0
        self.start = -math.inf            # stamp of the current conversation's first turn
        self._old: collections.OrderedDict = collections.OrderedDict()
        self._answered: collections.OrderedDict = collections.OrderedDict()
        self.ignored = collections.Counter()

    def _ignore(self, reason: str, stamp: float) -> Decision:
        self.ignored[reason.split(':')[0]] += 1
        return Decision(None, reason, stamp)

    def admit(self, conversation_id, utterance_id, text, is_final: bool, stamp,
              now: float) -> Decision:
        now = _finite_stamp(now, 0.0)
        stamp = _finite_stamp(stamp, now)
        cid = conversation_id if isinstance(conversation_id, str) else str(conversation_id or '')
        try:
            uid = int(utterance_id)
        except (TypeError, ValueError, OverflowError):
            uid = 0
        if not is_final:
            return self._ignore('partial', stamp)
        text = text if isinstance(text, str) else ''
        text = text.strip()
        if not text:
            return self._ignore('empty text', stamp)
        key = (cid, uid)
        if key in self._answered:
            return self._ignore(f'duplicate: utterance {uid} was answered already', stamp)
        if cid:
            if cid in self._old:
                return self._ignore(f'stale: conversation {cid} was superseded', stamp)
            if cid == self.conversation_id:
                if uid < self.utterance_id:
                    return self._ignore(f'stale: utterance {uid} is older than '
                                        f'{self.utterance_id}', stamp)
            else:
                if self.conversation_id and stamp < self.start:
                    return self._ignore('stale: stamped before the current conversation '
                                        'started', stamp)
                if self.conversation_id:
                    self._old[self.conversation_id] = True
                    while len(self._old) > self.history:
                        self._old.popitem(last=False)
                self.conversation_id, self.utterance_id, self.start = cid, 0, stamp
            self.utterance_id = max(self.utterance_id, uid)
        self._answered[key] = True
        while len(self._answered) > 2 * self.history:
            self._answered.popitem(last=False)
        truncated = len(text) > self.max_chars
        if truncated:
            text = text[:self.max_chars].rstrip()
        return Decision(text, 'truncated' if truncated else '', stamp, truncated)

"""Reply sentences in order per turn; stale turns dropped (plain Python, no rclpy).

A *turn* is ``(conversation_id, utterance_id)``. The tracker follows one current turn:

- a sentence of the current turn is released in ``index`` order (out-of-order ones wait
  in a small reorder buffer, a gap is skipped after ``reorder_timeout`` seconds);
- a sentence of an *older* turn is dropped: same conversation with a smaller utterance id,
  or a conversation that was already superseded;
- a sentence of a *newer* turn (a new conversation, or a larger utterance id of the same
  conversation) supersedes the current turn: the node interrupts what it is saying and
  drops the queued sentences of the old turn;
- after :meth:`TurnTracker.interrupt` (barge-in) the rest of the current turn is dropped;
- the end-of-reply marker (``is_final``) tells which sentence is the last one.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Sentence:
    """One droid_msgs/ReplySentence, as plain data (times in node-clock seconds)."""

    conversation_id: str
    utterance_id: int
    index: int
    text: str = ''
    is_final: bool = False
    interrupted: bool = False
    persona: str = ''
    stamp: float = 0.0
    received: float = 0.0

    @property
    def key(self) -> tuple:
        return (self.conversation_id, int(self.utterance_id))


@dataclass(frozen=True)
class Speak:
    """Release this sentence for speaking (``last_in_reply`` if the end marker is known)."""
    sentence: Sentence
    last_in_reply: bool


@dataclass(frozen=True)
class Supersede:
    """The turn ``old`` is replaced by the newer turn ``new``: stop it, drop its queue."""
    old: tuple
    new: tuple


@dataclass(frozen=True)
class Drop:
    sentence: Sentence
    reason: str


@dataclass(frozen=True)
class ReplyEnd:
    """The reply of ``key`` is complete; ``last_index`` is its last sentence (-1 = none)."""
    key: tuple
    last_index: int
    interrupted: bool


class TurnTracker:
    """Decides what to do with each incoming reply sentence. Not thread-safe: call it
    from one thread (the node's subscription callback)."""

    def __init__(self, reorder_timeout: float = 2.0, remember: int = 256):
        self.reorder_timeout = float(reorder_timeout)
        self._remember = int(remember)
        self.current: tuple | None = None
        self._retired: OrderedDict = OrderedDict()   # conversation id -> True
        self._reset_turn()

    def _reset_turn(self) -> None:
        self._next_index = 0
        self._pending: dict = {}          # index -> Sentence waiting for a gap
        self._end_index: int | None = None
        self._end_interrupted = False
        self._end_sent = False
        self._end_received = 0.0
        self._interrupted = False

    # -- queries ----------------------------------------------------------------------
    def is_stale(self, key: tuple) -> bool:
        """True if ``key`` is older than the current turn (its sentences are dropped)."""
        if self.current is None:
            return key[0] in self._retired
        cid, utt = key
        if cid == self.current[0]:
            return utt < self.current[1]
        return cid in self._retired

    @property
    def end_known(self) -> bool:
        return self._end_index is not None

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    # -- events -----------------------------------------------------------------------
    def interrupt(self) -> tuple | None:
        """Barge-in: the rest of the current turn is dropped. Returns the turn."""
        if self.current is not None:
            self._interrupted = True
            self._pending.clear()
        return self.current

    def add(self, s: Sentence, now: float = 0.0) -> list:
        """Feed one sentence (or end marker); return the actions, in order."""
        actions: list = []
        key = s.key
        if self.current != key:
            if self.is_stale(key):
                return [Drop(s, 'older turn')]
            if self.current is not None:
                actions.append(Supersede(self.current, key))
                if self.current[0] != key[0]:
                    self._retire(self.current[0])
            self.current = key
            self._reset_turn()
        if self._interrupted:
            return actions + [Drop(s, 'turn interrupted')]
        if s.is_final:
            if self._end_index is None:
                self._end_index = int(s.index)
                self._end_interrupted = bool(s.interrupted)
                self._end_received = s.received
        elif s.index < self._next_index or s.index in self._pending:
            return actions + [Drop(s, 'duplicate')]
        elif self._end_index is not None and s.index >= self._end_index:
            return actions + [Drop(s, 'after end of reply')]
        else:
            self._pending[int(s.index)] = s
        actions += self._release()
        return actions

    def poll(self, now: float) -> list:
        """Skip a gap in the indices after ``reorder_timeout`` seconds; call periodically."""
        if self._interrupted:
            return []
        if self._pending:
            oldest = min(p.received for p in self._pending.values())
            if now - oldest >= self.reorder_timeout:
                self._next_index = min(self._pending)
                return self._release()
        elif (self._end_index is not None and not self._end_sent
              and now - self._end_received >= self.reorder_timeout):
            self._next_index = self._end_index   # sentences that never came
            return self._release()
        return []

    # -- internals --------------------------------------------------------------------
    def _release(self) -> list:
        out = []
        while self._next_index in self._pending:
            s = self._pending.pop(self._next_index)
            self._next_index += 1
            last = self._end_index is not None and s.index == self._end_index - 1
            out.append(Speak(s, last))
        if (self._end_index is not None and not self._end_sent
                and self._next_index >= self._end_index):
            self._end_sent = True
            self._pending.clear()
            out.append(ReplyEnd(self.current, self._end_index - 1, self._end_interrupted))
        return out

    def _retire(self, cid: str) -> None:
        self._retired[cid] = True
        self._retired.move_to_end(cid)
        while len(self._retired) > self._remember:
            self._retired.popitem(last=False)

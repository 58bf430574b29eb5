"""Preemptive generation: start the reply before the final transcription (plain Python).

The final transcription of an utterance comes some time after the user stopped speaking
(the listener's end-of-turn silence, then the final decode). The latest *partial* usually
holds the same words already, so the brain may send the LLM request early and keep it when
the final matches:

* :class:`Preemptor` decides **when** to start and **whether to keep** the result. A start
  is due when the latest partial of an utterance has stayed the same for ``stable_s``
  (0 = never by time alone), or at once when the end of the turn is known or likely
  (:meth:`Preemptor.end_of_turn`: the listener ended the utterance, or an end-of-turn model
  is confident) -- if the partial covers the speech: a partial decoded from audio that ends
  before the end of speech lacks the last words, and is not worth a request. With
  ``on_pause``, a start is also due as soon as a partial covers all the voiced audio so far
  and some silence after it (:meth:`Preemptor.pause_due`; the voiced-so-far mark comes from
  the listener's ``Utterance.audio_end``, :meth:`Preemptor.voiced`): the user paused, and
  speech-to-text decodes a pause before the listener has decided that the turn is over,
  so the request starts that much sooner. Voice after that pause makes a reply started
  from it stale at once. A newer,
  different partial makes a started reply stale (cancel it); the
  final keeps it when the texts match after :func:`normalise` (case, punctuation and spaces
  ignored), else the reply is cancelled and restarted from the final.
* :class:`ReplyGate` holds what a tentative reply produces (sentences, traces, the end of
  the reply) until it is confirmed: nothing reaches the user, the tools or the memory from a
  reply that is then thrown away.

Times are in seconds on the caller's clock; the preemptor has no thread of its own.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

_PUNCT = re.compile(r"[^\w\s']+")
_WS = re.compile(r'\s+')

KEEP, RESTART = 'keep', 'restart'


def normalise(text: str) -> str:
    """Text as compared between a partial and the final: lower case, no punctuation,
    single spaces ("What time is it?" == "what time is it")."""
    return _WS.sub(' ', _PUNCT.sub(' ', (text or '').lower())).strip()


@dataclass
class _Candidate:
    key: tuple
    text: str
    norm: str
    since: float                     # when this text became the latest partial
    audio_end: float = 0.0           # end of the audio it was decoded from (0 = unknown)
    started_at: float | None = None  # when a tentative reply was started from it
    started_text: str = ''
    at_pause: bool = False           # started by pause_due


@dataclass
class PreemptStats:
    started: int = 0          # tentative replies started
    kept: int = 0             # ... confirmed by the final (hits)
    restarted: int = 0        # ... the final differed: cancelled, restarted from the final
    stale: int = 0            # ... a newer, different partial came first: cancelled
    uncovered: int = 0        # end of turn, but the partial did not cover the speech: no start
    on_pause: int = 0         # ... of the started: at a pause, before the end of the turn
    resumed: int = 0          # ... of the stale: the user went on speaking after the pause
    saved_s: list = field(default_factory=list)   # per hit: final time - start time

    @property
    def hit_rate(self) -> float | None:
        decided = self.kept + self.restarted
        return self.kept / decided if decided else None

    def as_dict(self) -> dict:
        saved = sorted(self.saved_s)
        return {'started': self.started, 'kept': self.kept, 'restarted': self.restarted,
                'stale': self.stale, 'uncovered': self.uncovered,
                'on_pause': self.on_pause, 'resumed': self.resumed,
                'hit_rate': None if self.hit_rate is None else round(self.hit_rate, 3),
                'saved_ms_p50': round(saved[len(saved) // 2] * 1000.0, 1) if saved else None}


class Preemptor:
    """When to start a tentative reply, and whether the final keeps it. Thread-safe."""

    PAUSE_S = 0.03        # a partial reaching this far past the voiced audio: a pause

    def __init__(self, stable_s: float = 0.0, enabled: bool = True, on_pause: bool = False):
        self.enabled = bool(enabled)
        self.stable_s = max(0.0, float(stable_s))
        self.on_pause = bool(on_pause)
        self.stats = PreemptStats()
        self._cand: _Candidate | None = None
        self._ended: tuple | None = None          # (key, speech_end): the turn has ended
        self._voiced: tuple | None = None         # (key, end of the voiced audio so far)
        self._lock = threading.Lock()

    def partial(self, key: tuple, text: str, now: float, audio_end: float = 0.0) -> bool:
        """A partial transcription (``audio_end``: end of the audio it was decoded from,
        0 = unknown). True if a started tentative reply is now stale (the caller cancels
        it; a new one may start from this text later)."""
        if not self.enabled:
            return False
        norm = normalise(text)
        with self._lock:
            c = self._cand
            if c is not None and c.key == key and c.norm == norm:
                c.audio_end = max(c.audio_end, float(audio_end))
                return False                       # same words: stability goes on
            stale = c is not None and c.started_at is not None
            if stale:
                self.stats.stale += 1
            self._cand = _Candidate(key, text, norm, now, float(audio_end)) if norm else None
            return stale

    def voiced(self, key: tuple, voiced_end: float) -> bool:
        """The listener's voiced-so-far mark of an open utterance (capture time just after
        its last voiced audio; 0 = none yet). True if a reply started at a pause is now
        stale: the user went on speaking (the caller cancels it)."""
        if not self.enabled or not voiced_end > 0.0:
            return False
        with self._lock:
            old = self._voiced
            if old is None or old[0] != key or voiced_end > old[1]:
                self._voiced = (key, float(voiced_end))
            c = self._cand
            if c is not None and c.key == key and c.at_pause and c.started_at is not None \
                    and voiced_end > c.audio_end + 1e-3 and \
                    (self._ended is None or self._ended[0] != key):
                self.stats.stale += 1
                self.stats.resumed += 1
                self._cand = None                  # the same words may start again later
                return True
            return False

    def pause_due(self, now: float) -> tuple | None:
        """``(key, text)`` when the latest partial covers all the voiced audio so far and
        at least ``PAUSE_S`` after it (the user paused; ``on_pause`` only), else None."""
        with self._lock:
            c, v = self._cand, self._voiced
            if not (self.enabled and self.on_pause) or c is None or c.started_at is not None \
                    or v is None or v[0] != c.key or not c.audio_end >= v[1] + self.PAUSE_S:
                return None
            self.stats.on_pause += 1
            c.at_pause = True
            return self._start(c, now)

    @property
    def latest(self) -> tuple | None:
        """``(key, text)`` of the latest partial, if any."""
        with self._lock:
            c = self._cand
            return None if c is None else (c.key, c.text)

    def end_of_turn(self, key: tuple, now: float, speech_end: float = 0.0) -> tuple | None:
        """The end of this utterance is known or likely (``speech_end``: when the voiced
        audio ended, 0 = unknown): ``(key, text)`` to start a tentative reply from now, or
        None (no partial, already started, or the partial does not cover the speech)."""
        if not self.enabled:
            return None
        with self._lock:
            self._ended = (key, float(speech_end))
            c = self._cand
            if c is None or c.key != key or c.started_at is not None:
                return None
            if speech_end > 0.0 and 0.0 < c.audio_end < speech_end:
                self.stats.uncovered += 1
                return None
            return self._start(c, now)

    def due(self, now: float) -> tuple | None:
        """``(key, text)`` when the latest partial has been stable for ``stable_s``, or
        when it came after the end of its turn (delivered late) and covers the speech."""
        with self._lock:
            c = self._cand
            if not self.enabled or c is None or c.started_at is not None:
                return None
            if self._ended is not None and self._ended[0] == c.key and \
                    not 0.0 < c.audio_end < self._ended[1]:
                return self._start(c, now)
            if self.stable_s <= 0.0 or now - c.since < self.stable_s:
                return None
            return self._start(c, now)

    def next_due(self) -> float | None:
        """When :meth:`due` may next give a start (None: not before new input)."""
        with self._lock:
            c = self._cand
            if not self.enabled or self.stable_s <= 0.0 or c is None or c.started_at is not None:
                return None
            return c.since + self.stable_s

    def final(self, key: tuple, text: str, now: float) -> str | None:
        """The final transcription: ``KEEP`` the tentative reply, ``RESTART`` (cancel it
        and start from the final), or None (no tentative reply for this utterance)."""
        with self._lock:
            c = self._cand
            if self._ended is not None and self._ended[0] == key:
                self._ended = None
            if self._voiced is not None and self._voiced[0] == key:
                self._voiced = None
            if c is None or c.key != key:
                return None
            self._cand = None
            if c.started_at is None:
                return None
            if normalise(text) == normalise(c.started_text):
                self.stats.kept += 1
                self.stats.saved_s = (self.stats.saved_s + [max(0.0, now - c.started_at)])[-500:]
                return KEEP
            self.stats.restarted += 1
            return RESTART

    def forget(self) -> None:
        """Drop the candidate (a new conversation, the droid interrupted, ...)."""
        with self._lock:
            self._cand = None
            self._ended = None
            self._voiced = None

    def _start(self, c: _Candidate, now: float) -> tuple:
        c.started_at = now
        c.started_text = c.text
        self.stats.started += 1
        return c.key, c.text


PENDING, OPEN, DISCARDED = 'pending', 'open', 'discarded'


class ReplyGate:
    """Holds a tentative reply's output until :meth:`open` (confirmed: what was held goes
    out in order, later output goes straight through) or :meth:`discard` (nothing of it
    ever goes out). Every output goes through :meth:`run`, so the order is kept across
    threads."""

    def __init__(self):
        self._cond = threading.Condition()
        self.state = PENDING
        self._held: list = []
        self.waiting = threading.Event()      # someone waits for the verdict (tests)

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    def run(self, call) -> None:
        """Run ``call()`` now if open, hold it while pending, drop it if discarded."""
        with self._cond:
            if self.state == OPEN:
                call()
            elif self.state == PENDING:
                self._held.append(call)

    def open(self) -> bool:
        """Confirm: release what was held (in order). False if already discarded."""
        with self._cond:
            if self.state == DISCARDED:
                return False
            if self.state == PENDING:
                self.state = OPEN
                held, self._held = self._held, []
                for call in held:
                    call()
                self._cond.notify_all()
            return True

    def discard(self) -> bool:
        """Throw the reply away; False if it was already confirmed."""
        with self._cond:
            if self.state == OPEN:
                return False
            self.state = DISCARDED
            self._held.clear()
            self._cond.notify_all()
            return True

    def wait_decided(self, timeout: float | None = None) -> bool:
        """Block until confirmed (True) or discarded (False); False on timeout."""
        with self._cond:
            if self.state == PENDING:
                self.waiting.set()
            self._cond.wait_for(lambda: self.state != PENDING, timeout)
            return self.state == OPEN

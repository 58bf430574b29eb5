"""The mode state machine of the mode manager (plain Python; time in node-clock seconds).

* ``set(mode)`` (the service): any valid mode; an invalid one is refused with a message.
  An explicit INTERACTIVE stays until changed (no timeout).
* ``wake()``: from IDLE or AMBIENT to INTERACTIVE (reason "wake word"), remembering where
  it came from; in SLEEP the wake word is ignored (the microphone is off there).
* ``activity()`` / ``speech(speaking)``: conversation activity; while the droid speaks the
  timeout does not run.
* ``tick()``: after ``timeout`` seconds without activity, a wake-word INTERACTIVE returns
  to the mode it came from (reason "interactive timeout"). ``timeout`` 0 = never.
* Time that is not finite is ignored (the input still counts, at the last good time); a
  clock that goes back (``/clock`` restarted by a replay) restarts the timeout from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from droid_common.contract import constants

MODES = {k.lower(): v for k, v in constants('SystemMode').items()}
_NAMES = {v: k for k, v in MODES.items()}
SPEAKING_MAX_S = 120.0


@dataclass(frozen=True)
class ModeChange:
    mode: int
    previous: int
    reason: str
    stamp: float


def _mode(value) -> int | None:
    """A valid SystemMode constant as an int, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        mode = int(value)
    except (ValueError, OverflowError):
        return None
    return mode if mode == value and mode in _NAMES else None


class ModeMachine:
    def __init__(self, initial: int, timeout: float, now: float):
        mode = _mode(initial)
        if mode is None:
            raise ValueError(f'unknown mode {initial}')
        self.mode = mode
        self.timeout = float(timeout)
        self.return_mode: int | None = None     # set while in a wake-word INTERACTIVE
        self.last_activity = now if math.isfinite(now) else 0.0
        self.speaking = False
        self.last_change = ModeChange(mode, mode, 'startup', self.last_activity)

    def _time(self, now) -> float:
        """``now``, or the last good time when it is not a finite number."""
        try:
            now = float(now)
        except (TypeError, ValueError):
            return self.last_activity
        return now if math.isfinite(now) else self.last_activity

    @staticmethod
    def name(mode: int) -> str:
        return _NAMES.get(mode, str(mode))

    @property
    def mode_name(self) -> str:
        return self.name(self.mode)

    def _change(self, mode: int, reason: str, now: float) -> ModeChange:
        change = ModeChange(mode, self.mode, reason, now)
        self.mode = mode
        self.last_change = change
        self.last_activity = now
        return change

    def set(self, mode: int, reason: str, now: float) -> tuple:
        """Returns ``(change or None, error message or '')``."""
        valid = _mode(mode)
        if valid is None:
            shown = repr(mode) if len(repr(mode)) <= 40 else repr(mode)[:37] + '...'
            return None, (f'invalid mode {shown}; valid: ' +
                          ', '.join(f'{v}={k}' for k, v in sorted(MODES.items(),
                                                                    key=lambda kv: kv[1])))
        mode, now = valid, self._time(now)
        self.return_mode = None
        if mode == self.mode:
            self.last_activity = now
            return None, ''
        return self._change(mode, reason, now), ''

    def wake(self, now: float):
        now = self._time(now)
        self.last_activity = now
        if self.mode == MODES['sleep']:
            return None
        if self.mode == MODES['interactive']:
            return None
        self.return_mode = self.mode
        return self._change(MODES['interactive'], 'wake word', now)

    def activity(self, now: float) -> None:
        self.last_activity = self._time(now)

    def speech(self, speaking: bool, now: float) -> None:
        self.speaking = bool(speaking)
        self.last_activity = self._time(now)

    def tick(self, now: float):
        now = self._time(now)
        if now < self.last_activity:
            self.last_activity = now        # the clock went back: count from here
        if (self.mode != MODES['interactive'] or self.return_mode is None or
                not self.timeout > 0):
            return None
        if self.speaking and now - self.last_activity < SPEAKING_MAX_S:
            return None     # a STARTED without its ENDED counts for SPEAKING_MAX_S at most
        if now - self.last_activity < self.timeout:
            return None
        back, self.return_mode = self.return_mode, None
        return self._change(back, 'interactive timeout', now)

"""Clocks for the plain-Python logic: ``now()`` in seconds and a cancellable sleep.

The brain node passes a :class:`FuncClock` over its node clock (so ``use_sim_time`` drives
the mock backend) with the node's :class:`~droid_common.activity.Activity`, so a sleep is
known to the replay as idle until its time; tests and benchmarks may use
:class:`MonotonicClock`.
"""

from __future__ import annotations

import threading
import time


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        """Sleep until ``now() >= t``; False if ``cancel`` was set first."""
        cancel = cancel or threading.Event()
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return not cancel.is_set()
            if cancel.wait(remaining):
                return False


class FuncClock(MonotonicClock):
    """A clock read through a function (e.g. the node clock).

    Sleeps in steps of at most ``poll`` seconds of wall time so a simulated clock that
    jumps is followed; with the normal clock the wake-up is on time.
    """

    def __init__(self, now_fn, poll: float = 0.01, activity=None):
        self._now = now_fn
        self._poll = poll
        self.activity = activity

    def now(self) -> float:
        return self._now()

    def sleep_until(self, t: float, cancel: threading.Event | None = None) -> bool:
        if self.activity is not None:
            return self.activity.sleep_until(t, cancel, poll=self._poll)
        cancel = cancel or threading.Event()
        while True:
            remaining = t - self.now()
            if remaining <= 0:
                return not cancel.is_set()
            if cancel.wait(min(remaining, self._poll)):
                return False

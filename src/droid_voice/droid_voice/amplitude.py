"""Speech amplitude aligned with playback time, and a due-time event queue (plain Python).

The player renders audio ahead of when it is heard; :class:`AmplitudeMeter` measures the
RMS of exactly those samples in windows of ``1/rate_hz`` s and stamps each value with the
time its window is heard (its middle); :class:`DueQueue` holds such timed events until
the clock reaches them, so the published amplitude is time-aligned with the sound.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading

import numpy as np

_SINE_RMS = 1.0 / math.sqrt(2.0)


def rms_norm(x: np.ndarray) -> float:
    """RMS of float samples in [-1, 1], normalised so a full-scale sine is 1 (clipped)."""
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return 0.0
    return float(min(1.0, math.sqrt(float(np.mean(x * x))) / _SINE_RMS))


class AmplitudeMeter:
    """RMS over consecutive windows of the rendered samples."""

    def __init__(self, sample_rate: int, rate_hz: float = 50.0):
        if rate_hz <= 0:
            raise ValueError('rate_hz must be > 0')
        self.sample_rate = int(sample_rate)
        self.window = max(1, round(self.sample_rate / float(rate_hz)))
        self._buf = np.zeros(0, dtype=np.float32)
        self._t_start = 0.0

    def feed(self, samples: np.ndarray, t_start: float) -> list:
        """Add samples heard from ``t_start``; return ``[(t_heard, amplitude), ...]``
        for every window completed (t_heard = middle of the window)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._buf.size == 0:
            self._t_start = t_start
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
        out = []
        while self._buf.size >= self.window:
            w, self._buf = self._buf[:self.window], self._buf[self.window:]
            out.append((self._t_start + 0.5 * self.window / self.sample_rate, rms_norm(w)))
            self._t_start += self.window / self.sample_rate
        return out

    def flush(self) -> list:
        """The partial window left (if any), then reset."""
        out = []
        if self._buf.size:
            n = self._buf.size
            out.append((self._t_start + 0.5 * n / self.sample_rate, rms_norm(self._buf)))
        self._buf = np.zeros(0, dtype=np.float32)
        return out


class DueQueue:
    """Thread-safe queue of events released when the clock reaches their due time.

    A consumer needs no polling: after :meth:`pop_due` it sleeps in :meth:`wait` until the
    next due time (:meth:`next_due`) or until :meth:`push` adds an event (which may be due
    earlier); a push between the two is never missed (``pop_due`` clears the flag that
    ``push`` sets, under the same lock).
    """

    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._pushed = threading.Event()

    def push(self, due: float, event) -> bool:
        """Add ``event``; True if it is now the first one due (a consumer waiting for the
        one that was first must wake)."""
        with self._lock:
            item = (float(due), next(self._seq), event)
            heapq.heappush(self._heap, item)
            self._pushed.set()
            return self._heap[0] is item

    def pop_due(self, now: float) -> list:
        out = []
        with self._lock:
            self._pushed.clear()
            while self._heap and self._heap[0][0] <= now:
                out.append(heapq.heappop(self._heap)[2])
        return out

    def wait(self, timeout: float) -> bool:
        """Sleep until an event is pushed (True) or ``timeout`` seconds pass (False)."""
        return self._pushed.wait(max(0.0, timeout))

    def wake(self) -> None:
        """Wake a consumer sleeping in :meth:`wait` (e.g. to shut down)."""
        self._pushed.set()

    def next_due(self) -> float | None:
        with self._lock:
            return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)

"""Gain envelopes (plain Python): music ducking under speech, and the barge-in fade-out.

Times are seconds on the node clock; gains are linear amplitude factors in [0, 1].
Durations are clamped to [0, :data:`MAX_DURATION_S`] (not a number = 0); a time that is
not finite makes a change happen at once, so the gain is always a number in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

MAX_DURATION_S = 3600.0


def _duration(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if x != x else min(MAX_DURATION_S, max(0.0, x))


class DuckingEnvelope:
    """Music gain as a function of time: ramps down to ``duck_level`` when speech starts
    (in ``duck_ramp`` s from full gain), and back to 1 ``unduck_delay`` s after speech
    stops (in ``unduck_ramp`` s). Ramps are linear at a constant slope, so a ramp that
    starts half way takes half the time; a new duck during the unduck delay or ramp
    turns around from the gain reached.
    """

    def __init__(self, duck_level: float = 0.2, duck_ramp: float = 0.1,
                 unduck_delay: float = 0.5, unduck_ramp: float = 0.6):
        if not 0.0 <= duck_level <= 1.0:
            raise ValueError('duck_level must be in [0, 1]')
        self.duck_level = float(duck_level)
        self.duck_ramp = _duration(duck_ramp)
        self.unduck_delay = _duration(unduck_delay)
        self.unduck_ramp = _duration(unduck_ramp)
        self._ducked = False
        # A ramp: gain g0 until t0, then linear to `target` reached at t1.
        self._g0, self._t0, self._target, self._t1 = 1.0, 0.0, 1.0, 0.0

    @property
    def ducked(self) -> bool:
        """The requested state (True from the duck request until the unduck request)."""
        return self._ducked

    def set_ducked(self, ducked: bool, t: float) -> None:
        if bool(ducked) == self._ducked:
            return
        self._ducked = bool(ducked)
        target = self.duck_level if ducked else 1.0
        if not math.isfinite(t):
            # No usable time: the change happens at once.
            self._g0, self._t0, self._target, self._t1 = target, -math.inf, target, -math.inf
            return
        g = self.gain(t)
        span = max(1e-9, 1.0 - self.duck_level)
        if ducked:
            start, ramp = t, self.duck_ramp
        else:
            start, ramp = t + self.unduck_delay, self.unduck_ramp
        self._g0, self._t0, self._target = g, start, target
        self._t1 = start + ramp * abs(g - target) / span

    def gain(self, t: float) -> float:
        if not t > self._t0:                 # (a NaN time too: the gain before the ramp)
            return self._g0
        if t >= self._t1:
            return self._target
        frac = (t - self._t0) / (self._t1 - self._t0)
        return min(1.0, max(0.0, self._g0 + (self._target - self._g0) * frac))

    def gains(self, t: float, n: int, rate: float) -> np.ndarray:
        """Per-sample gains for ``n`` samples starting at time ``t``."""
        n = max(0, int(n))
        if not (math.isfinite(t) and rate > 0 and math.isfinite(self._t0)):
            return np.full(n, self.gain(t), dtype=np.float32)
        times = t + np.arange(n, dtype=np.float64) / float(rate)
        g = np.interp(times, [self._t0, max(self._t1, self._t0 + 1e-9)], [self._g0, self._target])
        return np.clip(g, 0.0, 1.0).astype(np.float32)

    def ramping(self, t: float) -> bool:
        """True while the gain is still to change (including the unduck delay)."""
        return self._g0 != self._target and t < self._t1


class FadeOut:
    """A linear fade to silence over ``samples`` samples, applied block by block."""

    def __init__(self, samples: int):
        self.total = max(1, int(samples))
        self.done_samples = 0

    @property
    def finished(self) -> bool:
        return self.done_samples >= self.total

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Return the faded block, truncated at the end of the fade."""
        n = min(len(block), self.total - self.done_samples)
        if n <= 0:
            return block[:0]
        start = self.done_samples
        g = 1.0 - (np.arange(start, start + n, dtype=np.float32) + 1.0) / self.total
        self.done_samples += n
        shape = (n,) + (1,) * (block.ndim - 1)
        return block[:n] * g.reshape(shape)

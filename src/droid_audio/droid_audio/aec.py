"""Echo cancellation of the droid's own voice and music on the microphone path (plain
Python, no rclpy).

The tts and music nodes publish what they play on ``audio/playback`` (16 kHz mono,
stamped with the time it is heard). :class:`ReferenceBuffer` lays those blocks on a
timeline (several players add up); :class:`EchoCanceller` runs WebRTC audio processing
(AEC3 echo cancellation, optional noise suppression and high-pass filter; the ``livekit``
wheel's ``rtc.AudioProcessingModule``, Apache-2.0) on every 10 ms of microphone audio, with
the reference heard ``lead_ms`` earlier than the microphone audio it goes with. AEC3
estimates the remaining delay (the room, the sound card) itself, but only a causal one: an
echo that reaches the microphone before its reference cannot be cancelled, and the two
stamps (playback: when it is heard; capture: when it was recorded) are each a few tens of
ms off. The lead (90 ms) keeps the reference ahead of its echo however the two errors add
up (the echo tests find the echo between 37 ms before and 28 ms after the reference's stamp,
a different offset each run; a lead of 90 ms costs no waiting for the reference, 120 ms
makes the microphone wait 20-40 ms a block while the droid talks). ``delay_ms`` is only a
hint to AEC3.

The stamps can also be off by more than the lead allows: a sound server that misreports
its latency, a Bluetooth speaker (a quarter of a second late), a microphone anchored late
under load. An echo more than ``lead_ms`` early is never cancelled, for the whole run. So
the canceller also measures where the echo really is (:class:`EchoDelayEstimator`: the
cross-correlation, PHAT-weighted, of the raw microphone audio with the reference, twice a
second while the droid plays) and, when two measurements agree (or one is very clear) that
the echo lies outside what AEC3 handles well (0-380 ms after its reference), moves the
reference so the echo comes ``target`` ms after it (``auto_delay``;
:attr:`EchoCanceller.lead_s` is the lead in use).

Without the ``livekit`` package the canceller is unavailable (:attr:`EchoCanceller.error`)
and the microphone audio passes through unchanged; the listener's self-hearing guard stays
as the backstop either way.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

RATE = 16000
FRAME = RATE // 100                      # 10 ms: what WebRTC audio processing works on


class ReferenceBuffer:
    """What was played, on a timeline: ``add(t, samples)``, ``take(t, n)``. Thread-safe.

    Keeps ``seconds`` of audio behind the newest sample; blocks older than that, or
    further than ``seconds`` ahead of the newest one read, are ignored.
    """

    def __init__(self, seconds: float = 4.0, rate: int = RATE):
        self.rate = int(rate)
        self.size = int(seconds * rate)
        self._buf = np.zeros(self.size, dtype=np.float32)
        self._origin: int | None = None   # absolute sample index of _buf[0]
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.blocks = 0
        self.last_t: float | None = None
        self.covered_until: float | None = None   # end time of the newest block received

    def _index(self, t: float) -> int:
        return int(round(t * self.rate))

    def _slide(self, end: int) -> None:
        """Make ``end`` (absolute, exclusive) fit: slide the window forward."""
        if self._origin is None:
            self._origin = end - self.size
        shift = end - (self._origin + self.size)
        if shift <= 0:
            return
        if shift >= self.size:
            self._buf[:] = 0.0
        else:
            self._buf[:-shift] = self._buf[shift:]
            self._buf[-shift:] = 0.0
        self._origin += shift

    def add(self, t: float, samples) -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.size == 0 or not np.isfinite(t):
            return
        start = self._index(t)
        with self._lock:
            if self._origin is not None and start + x.size > self._origin + 2 * self.size:
                self._origin = None      # a jump far ahead (a new clock): start afresh
                self._buf[:] = 0.0
            self._slide(start + x.size)
            lo = max(start, self._origin)
            if lo >= start + x.size:
                return                   # entirely too old
            i = lo - self._origin
            self._buf[i:i + (start + x.size - lo)] += x[lo - start:]
            self.blocks += 1
            self.last_t = t
            end = t + x.size / self.rate
            if self.covered_until is None or end > self.covered_until:
                self.covered_until = end
            self._arrived.notify_all()

    def wait_covered(self, t_end: float, timeout: float, active_s: float = 1.0) -> bool:
        """Wait (up to ``timeout`` s) until the reference reaches ``t_end``, if a player
        is active (its stream reached within ``active_s`` of ``t_end``). The players
        stream their audio slightly ahead of time, but under load a block can arrive after
        the microphone audio it echoes in: cancelling against a missing reference would
        let that echo through. True if covered (or no player is active)."""
        deadline = None
        with self._lock:
            while True:
                cov = self.covered_until
                if cov is None or cov >= t_end or cov < t_end - active_s:
                    return True

                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                if now >= deadline:
                    return False
                self._arrived.wait(deadline - now)

    def take(self, t: float, n: int) -> np.ndarray:
        """``n`` samples heard from time ``t`` (zeros where nothing was played)."""
        out = np.zeros(n, dtype=np.float32)
        start = self._index(t)
        with self._lock:
            if self._origin is None:
                return out
            lo = max(start, self._origin)
            hi = min(start + n, self._origin + self.size)
            if hi > lo:
                out[lo - start:hi - start] = self._buf[lo - self._origin:hi - self._origin]
        return out


class EchoDelayEstimator:
    """Where the echo of the reference lies in the microphone audio, by the stamps.

    ``push(samples, t)`` keeps the last ``window_s`` of raw microphone audio (continuous,
    ``t`` = capture time of its first sample); ``estimate(reference)`` cross-correlates
    it, at 8 kHz with PHAT weighting (robust to the room's colouring and to the user
    talking over it), with the reference heard up to ``max_lag_s`` before or after, and
    returns the lag in seconds (positive: the echo reaches the microphone that long after
    its reference's stamp) or None when there is nothing to measure (no reference
    playing, no echo, or no clear peak).
    """

    def __init__(self, window_s: float = 1.0, max_lag_s: float = 0.5,
                 min_rms: float = 30.0, min_peak_ratio: float = 12.0):
        self.window = int(window_s * RATE)          # 16 kHz samples kept
        self.max_lag_s = float(max_lag_s)
        self.min_rms = float(min_rms)
        self.min_peak_ratio = float(min_peak_ratio)
        self._mic = np.zeros(0, dtype=np.float32)
        self._t_end: float | None = None           # capture time just after the last sample
        self.last_ratio = 0.0

    def reset(self) -> None:
        self._mic = np.zeros(0, dtype=np.float32)
        self._t_end = None

    def push(self, samples, t: float) -> None:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._t_end is not None and abs(t - self._t_end) > 1e-3:
            self.reset()                            # not continuous: start again
        self._mic = np.concatenate([self._mic, x])[-self.window:]
        self._t_end = t + x.size / RATE

    @property
    def ready(self) -> bool:
        return self._mic.size >= self.window

    @staticmethod
    def _down(x: np.ndarray) -> np.ndarray:
        """16 kHz -> 8 kHz (pairs averaged: enough of a low-pass for a correlation)."""
        n = x.size // 2 * 2
        return 0.5 * (x[:n:2] + x[1:n:2])

    def estimate(self, reference: ReferenceBuffer) -> float | None:
        if not self.ready:
            return None
        n16 = self.window
        mic16 = self._mic
        t0 = self._t_end - n16 / RATE
        lag16 = int(round(self.max_lag_s * RATE))
        ref16 = reference.take(t0 - self.max_lag_s, n16 + 2 * lag16)
        if np.sqrt(np.mean(ref16 ** 2)) < self.min_rms or \
                np.sqrt(np.mean(mic16.astype(np.float64) ** 2)) < self.min_rms:
            return None
        m, r = self._down(mic16), self._down(ref16)
        m = m - m.mean()
        r = r - r.mean()
        size = 1 << int(np.ceil(np.log2(m.size + r.size)))
        cross = np.conj(np.fft.rfft(m, size)) * np.fft.rfft(r, size)
        cross /= np.abs(cross) + 1e-12
        cc = np.fft.irfft(cross, size)[:lag16 + 1]   # 8 kHz shifts 0 .. 2 max_lag
        peak = int(np.argmax(cc))
        noise = float(np.median(np.abs(cc))) + 1e-12
        self.last_ratio = float(cc[peak]) / noise
        if self.last_ratio < self.min_peak_ratio:
            return None
        # mic[i] ~ ref[i + d]: the echo is heard max_lag - d after the reference's stamp
        return self.max_lag_s - peak / (RATE / 2)


class EchoCanceller:
    """WebRTC AEC on 16 kHz mono int16 blocks, 10 ms at a time, with a reference buffer."""

    def __init__(self, reference: ReferenceBuffer, noise_suppression: bool = False,
                 high_pass: bool = True, delay_ms: int = 0, resync_s: float = 0.5,
                 max_wait_s: float = 0.15, lead_ms: float = 90.0, auto_delay: bool = True,
                 good_delay_ms: tuple = (0.0, 380.0), target_delay_ms: float = 60.0,
                 every_s: float = 0.5, follow_ms: float = 30.0):
        self.reference = reference
        self.lead_s = float(lead_ms) / 1000.0
        self.good_delay_s = (good_delay_ms[0] / 1000.0, good_delay_ms[1] / 1000.0)
        self.target_delay_s = float(target_delay_ms) / 1000.0
        self.every = int(every_s * RATE)
        self.sure_ratio = 30.0          # a peak this clear is believed at once (a voice that
        #                                 is not the droid's: <= 11; the echo alone: 100-500)
        self.estimator = EchoDelayEstimator() if auto_delay else None
        self.echo_lag_s: float | None = None        # last measured: echo after its stamp
        self.auto_aligned = 0                        # times the lead was moved
        self._since_estimate = 0
        self._last_lag: float | None = None
        self.max_wait_s = float(max_wait_s)
        self.late_reference = 0
        self.late_at: deque = deque(maxlen=8)        # capture times of the last late blocks
        self.lags: deque = deque(maxlen=8)           # (capture time, lag [s]) last measured
        self.waited_s = 0.0                          # time spent waiting for the reference
        self.resync_s = float(resync_s)
        self._next_t: float | None = None
        self.follow_s = float(follow_ms) / 1000.0
        self.moves: deque = deque(maxlen=8)          # (capture time, shift [s]) followed
        self.resyncs = 0
        self.error = ''
        self._apm = None
        self._rtc = None
        self.frames = 0
        try:
            from livekit import rtc
            self._rtc = rtc
            self._apm = rtc.AudioProcessingModule(echo_cancellation=True,
                                                  noise_suppression=bool(noise_suppression),
                                                  high_pass_filter=bool(high_pass))
            self._apm.set_stream_delay_ms(int(delay_ms))
        except Exception as exc:  # noqa: BLE001 - not installed, no native library
            self.error = f'echo cancellation unavailable ({type(exc).__name__}: {exc})'

    @property
    def available(self) -> bool:
        return self._apm is not None

    def realign(self) -> None:
        """Microphone samples were lost: align the next block by its stamp again."""
        self._next_t = None

    def _measure(self, x: np.ndarray, t: float) -> None:
        """Feed the delay estimator; every ``every_s`` measure, and move the lead if two
        measurements in a row (or one very clear one) put the echo outside
        ``good_delay_ms`` of the reference."""
        est = self.estimator
        est.push(x, t)
        self._since_estimate += x.size
        if self._since_estimate < self.every or not est.ready:
            return
        self._since_estimate = 0
        lag = est.estimate(self.reference)
        prev, self._last_lag = self._last_lag, lag
        if lag is None:
            return
        self.echo_lag_s = lag
        if not self.lags or abs(self.lags[-1][1] - lag) > 0.004:
            self.lags.append((t, lag))               # what changed, not every measurement
        if (prev is None or abs(prev - lag) > 0.004) and \
                est.last_ratio < self.sure_ratio:
            return                        # one measurement is not enough, unless very clear
        lo, hi = self.good_delay_s
        if not lo - 1e-3 <= self.lead_s + lag <= hi:
            self.lead_s = self.target_delay_s - lag
            self.auto_aligned += 1
            self._last_lag = None                    # measure afresh from here

    def _frame(self, samples: np.ndarray):
        return self._rtc.AudioFrame(samples.astype(np.int16).tobytes(), RATE, 1, FRAME)

    def process(self, samples, t: float) -> np.ndarray:
        """Cancel the echo in ``samples`` (int16, captured from time ``t``).

        Whole 10 ms frames are processed (the microphone path's 80 ms blocks are eight);
        a remainder shorter than 10 ms passes through unchanged.
        """
        x = np.asarray(samples, dtype=np.int16).reshape(-1)
        if not self.available:
            return x
        # Capture stamps are re-anchored forward by tens of ms now and then (by a hundred
        # and more on a loaded machine: a late block looks like lost samples); the audio
        # is continuous. A jump in the reference alignment makes AEC3 lose its lock for a
        # second, so follow the samples and re-align only when really off, or when the
        # microphone says it lost samples (realign()).
        # The capture timeline only moves back to correct itself (a measurement is an
        # upper bound of the capture time): those moves are followed, forward jumps are not.
        # A correction of a few ms is held while the droid plays (AEC3 loses its lock for
        # over a second when the reference moves by only 4 ms: seen in the echo room) and
        # made in the next pause, or at once when it is ``follow_s`` or more.
        if self._next_t is not None:
            step = t - self._next_t
            if abs(step) < 0.5 / RATE or 0.0 < step < self.resync_s:
                t = self._next_t             # (less than a sample: rounding, not a move)
            elif step <= -self.resync_s:
                self.resyncs += 1
            else:
                cov = self.reference.covered_until
                playing = cov is not None and cov > self._next_t - 1.0
                if playing and -step < self.follow_s:
                    t = self._next_t
                else:
                    self.moves.append((t, step))
        self._next_t = t + x.size / RATE
        if self.estimator is not None:
            self._measure(x, t)
        waited = time.monotonic()
        if not self.reference.wait_covered(self._next_t + self.lead_s, self.max_wait_s):
            self.late_reference += 1
            self.late_at.append(t)
        self.waited_s += time.monotonic() - waited
        out = x.copy()
        for i in range(0, (x.size // FRAME) * FRAME, FRAME):
            ref = self.reference.take(t + self.lead_s + i / RATE, FRAME)
            self._apm.process_reverse_stream(self._frame(np.clip(np.round(ref), -32768, 32767)))
            mframe = self._frame(x[i:i + FRAME])
            self._apm.process_stream(mframe)
            out[i:i + FRAME] = np.frombuffer(bytes(mframe.data), dtype=np.int16)
            self.frames += 1
        return out


def erle_db(mic: np.ndarray, cleaned: np.ndarray) -> float:
    """Echo return loss enhancement [dB]: mic power over cleaned power (echo-only audio)."""
    def power(v):
        return float(np.mean(np.asarray(v, dtype=np.float64) ** 2)) + 1e-9
    return 10.0 * float(np.log10(power(mic) / power(cleaned)))

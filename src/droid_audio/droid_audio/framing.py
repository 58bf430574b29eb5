"""Audio plumbing without rclpy: bounded drop-oldest queues, fixed-size framing with
timestamps, stream resampling, and a capture timeline that turns block arrival times
into smooth first-sample stamps.

Times are seconds on the node clock, passed in by the caller.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from math import gcd

import numpy as np
from droid_common.audio import FRAME_SAMPLES, MIC_RATE


class DropOldestQueue:
    """A thread-safe bounded FIFO: ``put`` never blocks; when full the oldest item is
    dropped and counted (``dropped``). ``get`` waits up to ``timeout`` seconds."""

    def __init__(self, maxlen: int):
        if maxlen < 1:
            raise ValueError('maxlen must be >= 1')
        self._items = collections.deque()
        self._maxlen = int(maxlen)
        self._cond = threading.Condition()
        self.dropped = 0
        self._closed = False

    def put(self, item) -> bool:
        """Append ``item``; returns False if an older item had to be dropped."""
        with self._cond:
            ok = True
            while len(self._items) >= self._maxlen:
                self._items.popleft()
                self.dropped += 1
                ok = False
            self._items.append(item)
            self._cond.notify()
            return ok

    def get(self, timeout: float | None = None):
        """Oldest item, or None after ``timeout`` seconds / when closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._items:
                return self._items.popleft()
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class StreamResampler:
    """Resample a stream block by block to ``rate_out`` without clicks at block edges.

    Polyphase filtering (scipy ``upfirdn``) over a carried history of input samples, so
    consecutive blocks join seamlessly. Returns float32; identity when rates match.
    """

    def __init__(self, rate_in: int, rate_out: int = MIC_RATE, taps_per_phase: int = 16):
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        g = gcd(self.rate_in, self.rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        self._identity = self.up == self.down == 1
        if not self._identity:
            from scipy.signal import firwin
            cutoff = 1.0 / max(self.up, self.down)
            n = 2 * taps_per_phase * max(self.up, self.down) + 1
            self._h = (firwin(n, cutoff * 0.95) * self.up).astype(np.float64)
            self._hist_len = (n - 1) // self.up + 1     # input samples the filter spans
            self._hist = np.zeros(self._hist_len, dtype=np.float64)
            self._phase = 0            # index (in upsampled domain) of the next output
            self._consumed = 0         # input samples before the history start

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float64).ravel()
        if self._identity:
            return x.astype(np.float32)
        if x.size == 0:
            return np.zeros(0, dtype=np.float32)
        from scipy.signal import upfirdn
        buf = np.concatenate([self._hist, x])
        y = upfirdn(self._h, buf, up=self.up, down=1)
        # Upsampled sample k of `buf` corresponds to index k; outputs are every
        # `down`-th upsampled sample. Only emit those fully covered by real input.
        full_end = len(buf) * self.up            # upsampled length with complete support
        start = self._phase
        idx = np.arange(start, full_end, self.down)
        # drop outputs whose filter support reaches beyond the buffer
        idx = idx[idx < len(y) - (len(self._h) - 1)] if len(idx) else idx
        out = y[idx + 0] if len(idx) else np.zeros(0)
        # next output index relative to the new history start
        next_idx = (idx[-1] + self.down) if len(idx) else start
        keep = min(self._hist_len, len(buf))
        shift = (len(buf) - keep) * self.up
        self._phase = next_idx - shift
        self._hist = buf[-keep:]
        return out.astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float32)), -32768, 32767).astype(np.int16)


@dataclass
class Frame:
    """One fixed-size mono int16 frame and the capture time of its first sample."""

    t: float
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / MIC_RATE

    @property
    def t_end(self) -> float:
        return self.t + self.duration


class FrameAssembler:
    """Cuts a stream of chunks (any size, any rate, 1..n channels) into 16 kHz mono
    int16 frames of ``frame_samples`` with first-sample times.

    A gap (stamp discontinuity larger than ``gap_tolerance`` seconds, a sequence jump,
    or a rate change) drops the partial frame and restarts the timeline.
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES, rate: int = MIC_RATE,
                 gap_tolerance: float = 0.05):
        self.frame_samples = int(frame_samples)
        self.rate = int(rate)
        self.gap_tolerance = gap_tolerance
        self._buf = np.zeros(0, dtype=np.int16)
        self._buf_t = 0.0          # time of _buf[0]
        self._next_in_t = None     # expected stamp of the next chunk
        self._next_seq = None
        self._rate_in = None
        self._resampler = None
        self.gaps = 0

    def reset(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)
        self._next_in_t = None
        self._next_seq = None

    def push(self, data, t: float, sample_rate: int = MIC_RATE, channels: int = 1,
             seq: int | None = None) -> list:
        """Add one chunk whose first sample was captured at ``t``; return full frames."""
        x = np.asarray(data)
        channels = max(1, int(channels))
        if channels > 1:
            x = x[: len(x) // channels * channels].reshape(-1, channels).astype(np.float32).mean(axis=1)
        n_in = len(x)
        if sample_rate != self._rate_in:
            self._rate_in = int(sample_rate)
            self._resampler = StreamResampler(self._rate_in, self.rate)
            self.reset()
        gap = False
        if self._next_in_t is not None and abs(t - self._next_in_t) > self.gap_tolerance:
            gap = True
        if seq is not None and self._next_seq is not None and seq != self._next_seq:
            gap = True
        if gap:
            self.gaps += 1
            self.reset()
            self._resampler = StreamResampler(self._rate_in, self.rate)
        if self._rate_in != self.rate:
            y = to_int16(self._resampler.process(x))
        else:
            y = x.astype(np.int16, copy=False)
        if len(self._buf) == 0:
            self._buf_t = t
        self._buf = np.concatenate([self._buf, y]) if len(self._buf) else y.copy()
        self._next_in_t = t + n_in / float(self._rate_in)
        self._next_seq = None if seq is None else seq + 1
        frames = []
        n = self.frame_samples
        while len(self._buf) >= n:
            frames.append(Frame(self._buf_t, self._buf[:n].copy()))
            self._buf = self._buf[n:]
            self._buf_t += n / float(self.rate)
        return frames


class CaptureTimeline:
    """Stamps for consecutive capture blocks, advanced by the sample count (no jitter).

    A block can arrive late (scheduling, bursts) but never before it was captured, so
    the measured time is an upper bound of the true one: the timeline follows the
    earliest consistent anchor (a measurement earlier than expected moves the anchor
    back to it) and re-anchors forward only when a measurement is later than expected
    by more than ``tolerance`` seconds (samples were lost: overflow, stall, clock jump).
    """

    def __init__(self, rate: int, tolerance: float = 0.04):
        self.rate = int(rate)
        self.tolerance = tolerance
        self._anchor_t = None
        self._samples = 0
        self._last_n = 0
        self.reanchors = 0

    def stamp(self, measured_t: float, n_samples: int) -> float:
        """Stamp of a block of ``n_samples`` whose first sample was measured at
        ``measured_t``; returns the (smoothed) first-sample time."""
        if self._anchor_t is None:
            self._anchor_t, self._samples = measured_t, 0
        expected = self._anchor_t + self._samples / self.rate
        if measured_t > expected + self.tolerance:
            self.reanchors += 1
            self._anchor_t, self._samples = measured_t, 0
            expected = measured_t
        elif measured_t < expected:
            # move back, but at most half a block per block so stamps stay increasing
            shift = min(expected - measured_t, 0.5 * self._last_n / self.rate)
            self._anchor_t -= shift
            expected -= shift
        self._samples += int(n_samples)
        self._last_n = int(n_samples)
        return expected

    def reset(self) -> None:
        self._anchor_t = None
        self._samples = 0
        self._last_n = 0

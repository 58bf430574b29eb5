"""Audio outputs driving a ``render(frames, heard_t, written_t)`` function (plain Python).

- :class:`SoundDeviceOutput`: a sounddevice ``OutputStream`` whose callback pulls from the
  renderer (nothing in it blocks); ``heard_t`` = clock + the stream's DAC latency for
  that buffer (``outputBufferDacTime - currentTime``, else the stream's latency).
- :class:`MockOutput`: no device; a thread pulls blocks when the given clock (the node
  clock: sim time makes it faster or slower than real time) reaches their start time. It
  sleeps until the next block is due, not in a polling loop, and :meth:`MockOutput.wake`
  (the speaker's ``on_audio``) hands the next block over at once when new audio is ready.

``clock`` is a callable returning seconds on the node clock.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
from droid_common.activity import on_clock


def parse_device(device: str):
    """'' -> None (default device), '3' -> 3, anything else -> the name (substring)."""
    device = (device or '').strip()
    if not device:
        return None
    return int(device) if device.isdigit() else device


class SoundDeviceOutput:
    """A PortAudio output stream kept open; ``render`` fills every callback buffer."""

    def __init__(self, render, clock, *, sample_rate: int, channels: int = 1, device: str = '',
                 blocksize: int = 0, latency='low'):
        self.render = render
        self.clock = clock
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.device = parse_device(device)
        self.blocksize = int(blocksize)
        self.latency = latency
        self.stream = None
        self.status_errors = 0
        self.underflows: deque = deque(maxlen=8)     # clock times of the last underruns
        self.callbacks = 0
        self.last_latency = 0.0

    def start(self) -> None:
        import sounddevice as sd
        self.stream = sd.OutputStream(samplerate=self.sample_rate, channels=self.channels,
                                      dtype='float32', device=self.device,
                                      blocksize=self.blocksize, latency=self.latency,
                                      callback=self._callback)
        self.stream.start()

    def _callback(self, outdata, frames, time_info, status) -> None:
        now = self.clock()
        if status:
            self.status_errors += 1
            if status.output_underflow:
                self.underflows.append(now)
        self.callbacks += 1
        lat = 0.0
        try:
            dac, cur = time_info.outputBufferDacTime, time_info.currentTime
            if dac and cur and 0.0 <= dac - cur < 2.0:
                lat = dac - cur
            else:
                lat = float(self.stream.latency) if self.stream is not None else 0.0
        except Exception:  # noqa: BLE001 - time info missing on some host APIs
            lat = 0.0
        self.last_latency = lat
        try:
            block = self.render(frames, now + lat, now)
        except Exception:  # noqa: BLE001 - never raise into PortAudio
            block = None
        if block is None:
            outdata.fill(0)
            return
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[:, None]
        outdata[:] = block if block.shape[1] == self.channels else block[:, :1]

    @property
    def output_latency(self) -> float:
        return float(self.stream.latency) if self.stream is not None else 0.0

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.stream.abort()
                self.stream.close()
            except Exception:  # noqa: BLE001, S110
                pass
            self.stream = None


class MockOutput:
    """A speaker with no device: renders ``block_s`` blocks as the clock reaches them.

    Under sim time the clock may run faster than real time; the pacer catches up block by
    block (at most ``max_catch_up`` s at once; a larger jump resynchronises). Until the
    clock is non-zero (sim time not started) nothing is rendered. ``sink`` (optional)
    receives every rendered block (the "recording" of what was said). ``activity``
    (droid_common.activity): the pacer thread is idle until its next block is due.
    """

    def __init__(self, render, clock, *, sample_rate: int, block_s: float = 0.02,
                 poll_s: float = 0.002, max_catch_up: float = 1.0, sink=None, activity=None):
        self.render = render
        self.clock = clock
        self.activity = on_clock(clock, activity)
        self.sample_rate = int(sample_rate)
        self.block = max(1, round(block_s * sample_rate))
        self.block_s = self.block / self.sample_rate
        self.poll_s = float(poll_s)
        self.max_catch_up = float(max_catch_up)
        self.sink = sink
        self.blocks = 0
        self.early = 0                     # blocks written ahead on a wake
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self._next = None

    output_latency = 0.0

    def start(self) -> None:
        self._thread = self.activity.spawn(self._run, 'mock-output')

    def step(self, now: float) -> int:
        """Render every block whose start time has been reached; returns how many."""
        if now <= 0.0:
            return 0
        if self._next is None or now - self._next > self.max_catch_up:
            self._next = now
        n = 0
        while now >= self._next:
            self._render_next(self._next)
            n += 1
        return n

    def step_ahead(self, now: float) -> bool:
        """Write the next block now (heard at its start time) if it is at most one block
        ahead of ``now``; True if written."""
        if now <= 0.0 or self._next is None or self._next - now > self.block_s:
            return False
        if now - self._next > self.max_catch_up:
            return False                   # far behind: step() resynchronises
        self._render_next(now)
        self.early += 1
        return True

    def _render_next(self, written_t: float) -> None:
        block = self.render(self.block, self._next, min(written_t, self._next))
        if self.sink is not None:
            self.sink(self._next, block)
        self._next += self.block_s
        self.blocks += 1

    def wake(self) -> None:
        """New audio is ready: hand it to the "device" now (from any thread)."""
        self._wake.set()
        self.activity.notify()

    def _run(self) -> None:
        act = self.activity
        while not self._stop.is_set():
            try:
                now = self.clock()
                self.step(now)
                if self._wake.is_set():
                    self._wake.clear()
                    self.step_ahead(now)
            except Exception:  # noqa: BLE001, S110 - the pacer must survive a bad block
                pass
            nxt = self._next
            if nxt is None:          # the clock has not started (sim time)
                act.wait(lambda: self._stop.is_set() or self.clock() > 0.0, poll=self.poll_s,
                         what='clock start')
            else:                    # idle until the next block is due, or new audio
                act.wait(lambda: self._stop.is_set() or self._wake.is_set(), until=nxt,
                         poll=self.poll_s, what='next block')

    def close(self) -> None:
        self._stop.set()
        self.activity.notify()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

"""Test and benchmark helpers of droid_voice (plain Python, no rclpy): a tone backend
and a recorder of the PulseAudio null sink's monitor (droid_common.testing.PulseAudioServer).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from droid_voice.synth import RATE, Backend

clock = time.monotonic

class ToneBackend(Backend):
    """A steady 440 Hz tone at half scale, one second per word."""

    name = 'tone'

    def stream(self, text, voice=None, cancel=None):
        n = len(text.split()) * RATE
        x = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)
        pcm = np.round(x * 32767).astype(np.int16)
        for i in range(0, n, 1600):
            yield pcm[i:i + 1600]


class RecordingGap(AssertionError):
    """The monitor recording lost samples around the asked window: measure again."""


class MonitorRecorder:
    """Records the null sink's monitor with the time each sample was captured."""

    def __init__(self):
        import sounddevice as sd
        self.parts = []
        self._lock = threading.Lock()
        self.stream = sd.InputStream(samplerate=RATE, channels=1, dtype='float32',
                                     blocksize=800, latency='high', device='pulse',
                                     callback=self._cb)
        self.overflows = 0
        self.stream.start()

    def _cb(self, indata, frames, t, status):
        now = clock()
        if status:
            self.overflows += 1
        lag = t.currentTime - t.inputBufferAdcTime if t.inputBufferAdcTime else 0.0
        with self._lock:
            self.parts.append((now - lag, indata[:, 0].copy(), bool(status)))

    def wait_flowing(self, seconds=8.0):
        deadline = clock() + seconds
        while clock() < deadline:
            with self._lock:
                n0 = sum(len(p[1]) for p in self.parts)
            time.sleep(0.3)
            with self._lock:
                n1 = sum(len(p[1]) for p in self.parts)
            if n1 - n0 >= 0.25 * RATE:
                with self._lock:
                    self.parts.clear()            # keep only the steady recording
                return
        raise AssertionError('the monitor recording does not run')

    def between(self, t0, t1, margin: float = 2.0):
        """Samples captured in [t0, t1) and the capture time of the first one.

        Time = offset + index / rate, the offset being the median over the buffers within
        ``margin`` s of the window (robust to late callbacks). Raises :class:`RecordingGap`
        if samples were lost (an overflow) in that stretch: the caller measures again.
        """
        with self._lock:
            parts = list(self.parts)
        starts = np.cumsum([0] + [len(p[1]) for p in parts])[:-1]
        stamps = np.array([p[0] for p in parts])
        near = (stamps >= t0 - margin) & (stamps < t1 + margin)
        if not near.any():
            raise RecordingGap(f'nothing recorded around {t0:.3f}..{t1:.3f}')
        if any(p[2] for p, n in zip(parts, near) if n):
            raise RecordingGap('the monitor recording overflowed around the window')
        offset = float(np.median(stamps[near] - starts[near] / RATE))
        x = np.concatenate([p[1] for p in parts])
        times = offset + np.arange(len(x)) / RATE
        m = (times >= t0) & (times < t1)
        return x[m], (times[m][0] if m.any() else t0)

    def close(self):
        self.stream.close()


"""A real sounddevice/PortAudio input stream with no sound card: a private PulseAudio
daemon whose pipe source is fed by the test (droid_common.testing.PulseAudioServer)."""

import threading
import time

import numpy as np
import pytest
from droid_audio.mic import DeviceError, MicCapture
from droid_common.testing import PulseAudioServer


def feeder(pa, signal, stop):
    """Write ``signal`` into the pipe source in 80 ms pieces at real-time pace."""
    start = time.monotonic()
    for k, i in enumerate(range(0, len(signal), 1280)):
        if stop.is_set():
            return
        pa.feed(signal[i:i + 1280])
        delay = start + (k + 1) * 0.08 - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def test_real_stream_through_pulseaudio():
    tone = (np.sin(2 * np.pi * 440 * np.arange(16000 * 3) / 16000) * 12000).astype(np.int16)
    with PulseAudioServer(pipe_source=True) as pa:
        cap = MicCapture('pulse', 16000, 1280, 1, queue_blocks=100)
        desc = cap.open()
        assert '16000 Hz' in desc and cap.block == 1280
        stop = threading.Event()
        th = threading.Thread(target=feeder, args=(pa, tone, stop), daemon=True)
        t_start = time.monotonic()
        th.start()
        blocks = []
        try:
            deadline = time.monotonic() + 10.0
            while len(blocks) < 25 and time.monotonic() < deadline:
                b = cap.read(timeout=0.5)
                if b is not None:
                    blocks.append(b)
            assert cap.failed(stall_timeout=5.0) == ''
        finally:
            stop.set()
            th.join(5.0)
            cap.close()
        assert len(blocks) >= 25
        assert all(b.samples.shape == (1280, 1) and b.samples.dtype == np.int16 for b in blocks)
        x = np.concatenate([b.samples[:, 0] for b in blocks]).astype(np.float32)
        loud = x[np.abs(x) > 0]
        assert len(loud) > 16000                          # the tone came through ...
        assert 0.6 * 12000 < np.abs(loud).max() <= 12001  # ... at its level
        spectrum = np.abs(np.fft.rfft(loud[:16000]))
        assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(440, abs=3)
        # capture-time estimates are sane: after the start, before now, increasing
        times = [b.t_capture for b in blocks]
        assert t_start - 0.5 < times[0] and times[-1] <= time.monotonic()
        assert all(b2 >= b1 - 0.05 for b1, b2 in zip(times, times[1:]))


def test_missing_device_is_a_clear_error():
    with PulseAudioServer() as _pa:
        cap = MicCapture('no-such-microphone-xyz', 16000, 1280)
        with pytest.raises(DeviceError, match="no input device 'no-such-microphone-xyz'"):
            cap.open()
        assert not cap.is_open and cap.failed(1.0) == 'not open'

"""Amplitude meter aligned to playback time; due-time queue."""

import numpy as np
import pytest
from droid_voice.amplitude import AmplitudeMeter, DueQueue, rms_norm


def test_rms_norm_full_scale_sine_is_one():
    t = np.arange(16000) / 16000
    assert rms_norm(np.sin(2 * np.pi * 200 * t)) == pytest.approx(1.0, abs=1e-3)
    assert rms_norm(0.25 * np.sin(2 * np.pi * 200 * t)) == pytest.approx(0.25, abs=1e-3)
    assert rms_norm(np.zeros(10)) == 0.0 and rms_norm(np.zeros(0)) == 0.0


def test_meter_windows_are_stamped_with_their_heard_time():
    m = AmplitudeMeter(16000, 50.0)                      # 320-sample windows
    x = np.concatenate([np.zeros(320), 0.5 * np.ones(320), np.ones(100)]).astype(np.float32)
    out = m.feed(x[:500], 10.0) + m.feed(x[500:], 10.0 + 500 / 16000)
    assert [round(t, 4) for t, _ in out] == [10.01, 10.03]
    assert out[0][1] == 0.0 and out[1][1] == pytest.approx(0.5 * np.sqrt(2), abs=1e-6)
    rest = m.flush()
    assert len(rest) == 1 and rest[0][0] == pytest.approx(10.04 + 50 / 16000)


def test_due_queue_releases_in_time_order_only_when_due():
    q = DueQueue()
    q.push(2.0, 'b')
    q.push(1.0, 'a')
    q.push(2.0, 'c')
    assert q.pop_due(0.5) == [] and q.next_due() == 1.0
    assert q.pop_due(2.0) == ['a', 'b', 'c'] and len(q) == 0

"""Ducking envelope and fade-out as pure logic."""

import numpy as np
import pytest
from droid_voice.envelope import DuckingEnvelope, FadeOut


def test_duck_ramps_down_within_ramp_time_and_back_after_delay():
    env = DuckingEnvelope(duck_level=0.2, duck_ramp=0.1, unduck_delay=0.5, unduck_ramp=0.4)
    assert env.gain(0.0) == 1.0 and not env.ramping(0.0)
    env.set_ducked(True, 10.0)
    assert env.gain(10.0) == pytest.approx(1.0)
    assert env.gain(10.05) == pytest.approx(0.6)
    assert env.gain(10.1) == pytest.approx(0.2)
    assert env.gain(11.0) == pytest.approx(0.2) and env.ducked
    assert env.ramping(10.05) and not env.ramping(10.2)
    env.set_ducked(False, 12.0)
    assert env.gain(12.4) == pytest.approx(0.2)          # still in the unduck delay
    assert env.ramping(12.4)
    assert env.gain(12.7) == pytest.approx(0.6)
    assert env.gain(12.9) == pytest.approx(1.0)
    assert not env.ramping(13.0)


def test_reduck_during_unduck_turns_around_from_current_gain():
    env = DuckingEnvelope(duck_level=0.0, duck_ramp=0.1, unduck_delay=0.0, unduck_ramp=1.0)
    env.set_ducked(True, 0.0)
    env.set_ducked(False, 1.0)
    assert env.gain(1.5) == pytest.approx(0.5)
    env.set_ducked(True, 1.5)
    assert env.gain(1.5) == pytest.approx(0.5)
    assert env.gain(1.525) == pytest.approx(0.25)        # constant slope: half ramp from 0.5
    assert env.gain(1.55) == pytest.approx(0.0)


def test_vector_gains_match_scalar():
    env = DuckingEnvelope(duck_level=0.3, duck_ramp=0.1)
    env.set_ducked(True, 1.0)
    g = env.gains(0.98, 1000, 8000)                      # 0.98 .. 1.105 s
    times = 0.98 + np.arange(1000) / 8000
    assert np.allclose(g, [env.gain(t) for t in times], atol=1e-5)
    assert g[0] == pytest.approx(1.0) and g[-1] == pytest.approx(0.3)


def test_fade_out_is_monotonic_and_ends_in_silence():
    fade = FadeOut(480)
    x = np.ones(300, dtype=np.float32)
    a = fade.apply(x)
    b = fade.apply(x)
    assert len(a) == 300 and len(b) == 180 and fade.finished
    y = np.concatenate([a, b])
    assert np.all(np.diff(y) < 0) and y[-1] == pytest.approx(0.0) and y[0] > 0.99
    assert len(fade.apply(x)) == 0

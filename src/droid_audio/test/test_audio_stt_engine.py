"""faster-whisper plumbing on a random-weight Whisper model the test builds itself
(droid_audio.tiny_whisper: real architecture, CTranslate2 format, no download, no torch).
The words are meaningless; the load path, transcribe path and guards are real."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from droid_audio.detectors import SileroVad
from droid_audio.stt_engine import (
    GuardConfig,
    SttModelError,
    UtteranceBuffers,
    WhisperEngine,
    strip_phrases,
)
from droid_audio.tiny_whisper import SHAPES, build_model, vocabulary
from droid_common.testing import speech


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp('whisper') / 'test', shape='test')


@pytest.fixture(scope='module')
def engine(model_dir):
    eng = WhisperEngine(model_dir, 'int8', 2, 'en', 1, GuardConfig(), SileroVad(),
                        strip=('hey jarvis',))
    eng.load()
    return eng


def test_built_model_is_a_whisper_model_faster_whisper_understands(model_dir):
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer
    m = WhisperModel(model_dir, device='cpu', compute_type='int8', cpu_threads=1)
    assert not m.model.is_multilingual and m.model.n_mels == 80
    tok = Tokenizer(m.hf_tokenizer, False)
    vocab = vocabulary(SHAPES['test'])
    assert tok.eot == SHAPES['test'].text_tokens
    assert tok.no_timestamps + 1 == tok.timestamp_begin == vocab.index('<|0.00|>')
    assert tok.sot == vocab.index('<|startoftranscript|>')
    assert tok.no_speech == vocab.index('<|nocaptions|>')
    assert tok.decode(tok.encode(' hello world')) == ' hello world'
    with open(f'{model_dir}/config.json') as fh:
        assert json.load(fh)['lang_ids'] == []


def test_transcribes_speech_and_publishes_nothing_for_silence(engine):
    clip = np.concatenate([np.zeros(4000, np.int16), speech('play some cantina music'),
                           np.zeros(8000, np.int16)])
    res = engine.transcribe(clip)
    assert not res.silent and res.text.strip()
    assert res.language == 'en' and 0.0 <= res.confidence <= 1.0 and res.kept >= 1
    quiet = engine.transcribe(np.zeros(32000, np.int16))
    assert quiet.silent and quiet.text == ''
    noise = engine.transcribe((np.random.default_rng(0).standard_normal(32000) * 30)
                              .astype(np.int16))
    assert noise.silent and noise.text == ''


class FakeModel:
    """Stands in for faster_whisper.WhisperModel to check what the engine asks for and
    which segments survive the guard."""

    def __init__(self, segments):
        self.segments = segments
        self.kwargs = None
        self.model = SimpleNamespace(is_multilingual=False)

    def transcribe(self, audio, **kwargs):
        self.kwargs = kwargs
        return iter(self.segments), SimpleNamespace(language='en')


def seg(text, no_speech, logprob):
    return SimpleNamespace(text=text, no_speech_prob=no_speech, avg_logprob=logprob)


def test_hallucination_guard():
    eng = WhisperEngine('/nowhere', guard=GuardConfig(no_speech_threshold=0.6,
                                                      log_prob_threshold=-1.0,
                                                      max_tokens_per_s=8.0),
                        strip=('hey jarvis', 'jarvis'))
    eng._model = FakeModel([
        seg(' Jarvis, play some', 0.1, -0.3),        # kept (wake word stripped)
        seg(' Thanks for watching!', 0.9, -1.5),     # likely silence AND unsure: dropped
        seg(' music.', 0.8, -0.2),                   # likely silence but confident: kept
        seg(' um', 0.2, -2.0),                       # unsure but speech: kept
    ])
    res = eng.transcribe(np.zeros(32000, np.int16), check_silence=False)
    assert res.text == 'play some music. um'
    assert (res.kept, res.dropped) == (3, 1)
    assert res.confidence == pytest.approx(np.mean(np.exp([-0.3, -0.2, -2.0])))
    kw = eng._model.kwargs
    assert kw['condition_on_previous_text'] is False
    assert kw['temperature'] == 0.0
    assert kw['max_new_tokens'] == int(8.0 * 2.0 + 16)
    assert kw['language'] == 'en' and kw['without_timestamps'] is True
    eng._model = FakeModel([seg(' Thank you.', 0.95, -1.2)])
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert res.text == '' and res.dropped == 1 and res.confidence == -1.0


def test_strip_phrases():
    assert strip_phrases('Hey Jarvis, play some music.', ['hey jarvis']) == 'play some music.'
    assert strip_phrases('hey, jarvis! lights', ['hey jarvis']) == 'lights'
    assert strip_phrases('Jarvisland is far', ['jarvis']) == 'Jarvisland is far'
    assert strip_phrases('play music', ['hey jarvis']) == 'play music'


def test_corrupt_or_incomplete_model_is_a_clear_error(model_dir, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(model_dir, bad)
    (bad / 'model.bin').write_bytes(b'\x00' * 64)
    with pytest.raises(SttModelError, match='cannot load Whisper model') as info:
        WhisperEngine(str(bad)).load()
    assert '\n' not in str(info.value)
    notok = tmp_path / 'notok'
    shutil.copytree(model_dir, notok)
    (notok / 'tokenizer.json').unlink()
    with pytest.raises(SttModelError, match='no tokenizer.json'):
        WhisperEngine(str(notok)).load()


def test_utterance_buffers_schedule_partials_then_final():
    b = UtteranceBuffers(partial_interval_s=0.4)
    frame = np.ones(1280, np.int16)
    b.start('c1', 1, 10.0, 10.0, np.zeros(0, np.int16))
    assert b.next_job(timeout=0) is None
    for k in range(4):                                  # 320 ms
        b.append('c1', 1, 10.0 + k * 0.08, frame)
    assert b.next_job(timeout=0) is None
    b.append('c1', 1, 10.32, frame)                     # 400 ms
    job = b.next_job(timeout=0)
    assert job.kind == 'partial' and len(job.audio) == 5 * 1280
    assert b.next_job(timeout=0) is None                # no new audio yet
    for k in range(5):
        b.append('c1', 1, 10.4 + k * 0.08, frame)
    assert b.end('c1', 1, 11.0, 10.7)
    job = b.next_job(timeout=0)                         # the final wins over a partial
    assert job.kind == 'final' and len(job.audio) == 10 * 1280
    assert job.buffer.audio_end == 10.7 and job.buffer.end_stamp == 11.0
    assert b.next_job(timeout=0) is None
    # cancelled: nothing; unknown utterances are ignored
    b.start('c1', 2, 12.0, 12.0, np.ones(16000, np.int16))
    assert b.cancel('c1', 2)
    assert b.next_job(timeout=0) is None
    assert not b.append('c1', 2, 12.1, frame) and not b.end('c1', 2, 12.2, 12.2)
    assert b.ignored == 2

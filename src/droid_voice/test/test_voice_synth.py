"""Synthesis backends: espeak-ng for real, mock durations, ElevenLabs against a local
stand-in server (HTTP stream + websocket stream-input, both redirected)."""

import threading
import time

import numpy as np
import pytest
from droid_common.secrets import env_secret
from droid_voice.fake_elevenlabs import FakeElevenLabs
from droid_voice.synth import (
    RATE,
    ElevenLabsBackend,
    EspeakBackend,
    MockBackend,
    PcmAssembler,
    ProviderError,
    VoiceSpec,
)


@pytest.fixture(scope='module')
def fake():
    with FakeElevenLabs(api_key='sk-test-0123456789', fail_words=('EXPLODE',)) as f:
        yield f


def test_espeak_synthesises_real_speech_at_16k():
    b = EspeakBackend('en-us', 175)
    x = b.synthesize('Hello, I am the droid.')
    assert x.dtype == np.int16 and 0.8 < len(x) / RATE < 4.0
    assert np.sqrt(np.mean(x.astype(float) ** 2)) > 500          # not silence
    slow = b.synthesize('Hello, I am the droid.', VoiceSpec(offline_rate_wpm=90))
    assert len(slow) > 1.4 * len(x)                                # persona rate applies


def test_mock_duration_is_proportional_to_text():
    b = MockBackend(words_per_minute=120, amplitude=0.3)
    x = b.synthesize('one two three four')
    assert len(x) == 2 * RATE
    assert len(b.synthesize('one two')) == RATE
    assert not np.any(MockBackend(120, amplitude=0.0).synthesize('one two'))
    assert 0.1 < np.abs(x).max() / 32767 <= 0.31


def test_pcm_assembler_handles_odd_byte_splits():
    pcm = np.arange(-5, 5, dtype='<i2').tobytes()
    a = PcmAssembler()
    parts = [a.feed(pcm[:3]), a.feed(pcm[3:8]), a.feed(pcm[8:])]
    assert np.array_equal(np.concatenate(parts), np.arange(-5, 5))


@pytest.mark.parametrize('websocket', [False, True])
def test_elevenlabs_streams_pcm_from_the_local_server(fake, websocket):
    b = ElevenLabsBackend('sk-test-0123456789', use_websocket=websocket, base_url=fake.base_url,
                          ws_base_url=fake.ws_base_url if websocket else '', model_id='m-test',
                          stability=0.3, similarity_boost=0.9)
    try:
        text = 'Streaming from the fake server.'
        chunks = list(b.stream(text, VoiceSpec(elevenlabs_voice_id='voice-42')))
        assert len(chunks) > 3                                    # really streamed in pieces
        assert np.array_equal(np.concatenate(chunks), fake.audio_for(text))
        req = fake.requests[-1]
        assert req['transport'] == ('ws' if websocket else 'http')
        assert req['voice_id'] == 'voice-42' and req['query']['output_format'] == 'pcm_16000'
        if websocket:
            assert req['query']['model_id'] == 'm-test'
            assert req['messages'][0]['voice_settings'] == {'stability': 0.3,
                                                            'similarity_boost': 0.9}
        else:
            assert req['body']['model_id'] == 'm-test'
            assert req['body']['voice_settings']['similarity_boost'] == 0.9
    finally:
        b.close()


def test_websocket_is_opened_ahead_so_the_handshake_is_off_the_critical_path():
    with FakeElevenLabs(api_key='k-abcdef', ws_open_delay=0.4, first_chunk_delay=0.0) as f:
        b = ElevenLabsBackend('k-abcdef', use_websocket=True, base_url=f.base_url,
                              ws_base_url=f.ws_base_url)
        try:
            t0 = time.monotonic()
            next(iter(b.stream('cold start', VoiceSpec())))
            cold = time.monotonic() - t0
            b.prepare(VoiceSpec())
            deadline = time.monotonic() + 2.0
            while f.ws_connections < 2 and time.monotonic() < deadline:
                time.sleep(0.01)                            # server thread counts it
            assert f.ws_connections == 2
            time.sleep(0.6)                                 # the sentence comes later
            t0 = time.monotonic()
            stream = iter(b.stream('warm start', VoiceSpec()))
            chunks = [next(stream)]
            warm_first = time.monotonic() - t0
            chunks += list(stream)
            assert f.ws_connections == 2                     # the prepared one was used
            assert np.array_equal(np.concatenate(chunks), f.audio_for('warm start'))
            # a handshake costs the fake server's 0.4 s: the cold start paid it, the warm
            # start's first audio came sooner than any handshake could
            assert cold >= 0.4 and warm_first < 0.4
        finally:
            b.close()


@pytest.mark.parametrize('websocket', [False, True])
def test_mid_stream_failure_raises_provider_error(fake, websocket):
    b = ElevenLabsBackend('sk-test-0123456789', use_websocket=websocket, base_url=fake.base_url,
                          ws_base_url=fake.ws_base_url)
    got = []
    with pytest.raises(ProviderError):
        for c in b.stream('This sentence will EXPLODE half way through.', VoiceSpec()):
            got.append(c)  # noqa: PERF402 - the loop raises half way
    assert sum(len(c) for c in got) == 2 * fake.chunk         # audio came, then the cut
    b.close()


@pytest.mark.parametrize('websocket', [False, True])
def test_wrong_key_is_an_error_that_never_shows_the_key(fake, websocket, monkeypatch):
    monkeypatch.setenv('ELEVENLABS_API_KEY', 'sk-wrong-secret-999')
    key = env_secret('ELEVENLABS_API_KEY')
    b = ElevenLabsBackend(key, use_websocket=websocket, base_url=fake.base_url,
                          ws_base_url=fake.ws_base_url)
    with pytest.raises(ProviderError) as err:
        list(b.stream('hello', VoiceSpec()))
    assert 'sk-wrong-secret-999' not in str(err.value)
    assert any(m in str(err.value).lower() for m in ('401', '1008', 'invalid api key'))
    b.close()


def test_cancel_stops_a_stream_early(fake):
    b = ElevenLabsBackend('sk-test-0123456789', use_websocket=False, base_url=fake.base_url)
    cancel = threading.Event()
    n = 0
    for _ in b.stream('A long sentence that would stream for quite a while indeed.',
                      VoiceSpec(), cancel):
        n += 1
        cancel.set()
    assert n == 1
    b.close()


def test_trim_lead_drops_the_silence_before_the_first_sound_only():
    from droid_voice.synth import trim_lead
    tone = (np.sin(np.arange(1600) * 0.3) * 8000).astype(np.int16)   # 100 ms of sound
    lead = np.full(800, 20, np.int16)                                 # 50 ms near-silence
    gap = np.zeros(1600, np.int16)
    # the lead spans chunk boundaries: 30 ms + 20 ms, then sound, a pause, sound again
    chunks = [lead[:480], lead[480:], tone, gap, tone]
    out = np.concatenate(list(trim_lead(iter(chunks))))
    onset = 800 + int(np.nonzero(np.abs(tone.astype(int)) >= 328)[0][0])
    assert len(out) == sum(len(c) for c in chunks) - (onset - 160)   # 10 ms kept
    assert np.abs(out[:160].astype(int)).max() < 328 and abs(int(out[160])) >= 328
    assert np.array_equal(out[-(1600 + 1600):], np.concatenate([gap, tone]))  # pause kept
    # sound from the first sample: unchanged
    assert np.array_equal(np.concatenate(list(trim_lead([tone, gap]))),
                          np.concatenate([tone, gap]))
    # silence only, or no sound in the first 300 ms: unchanged (nothing lost)
    silent = [np.zeros(1600, np.int16)] * 2
    assert sum(len(c) for c in trim_lead(silent)) == 3200
    late = [np.zeros(1600, np.int16)] * 4 + [tone]
    assert np.array_equal(np.concatenate(list(trim_lead(late))), np.concatenate(late))
    assert list(trim_lead([])) == []


def test_the_mock_voice_is_not_trimmed():
    """The mock's tone starts at once: trimming leaves its audio as it is (recorded runs
    and their expectations do not move)."""
    from droid_voice.synth import trim_lead
    chunks = list(MockBackend(160.0).stream('hello there droid'))
    assert np.array_equal(np.concatenate(list(trim_lead(iter(chunks)))),
                          np.concatenate(chunks))

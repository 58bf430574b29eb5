"""Mock microphone source and mock STT script (plain Python)."""

import numpy as np
import pytest
from droid_audio.mock_source import (
    MockAudioSource,
    Segment,
    load_bag,
    load_wav,
    make_utterance,
    strip_wake_phrase,
    synthesize,
)
from droid_audio.mock_stt import MockScript, MockUtterance, load_script, partial_text


def test_strip_wake_phrase():
    phrases = ['hey jarvis', 'jarvis']
    assert strip_wake_phrase('hey jarvis, play some cantina music', phrases) == \
        'play some cantina music'
    assert strip_wake_phrase('Hey Jarvis play music', phrases) == 'play music'
    assert strip_wake_phrase('jarvis. lights on', phrases) == 'lights on'
    assert strip_wake_phrase('what time is it', phrases) == 'what time is it'


def test_source_plays_injection_first_then_files_then_silence():
    src = MockAudioSource(chunk_samples=1000)
    src.add_file_segment(Segment(np.full(1500, 7, np.int16), 'file'))
    utt = make_utterance(np.full(800, 9, np.int16), 0.05, 'inj', 'hello')   # 800 pad each side
    assert src.inject(utt) == 0.0
    c = src.next_chunk()
    assert c.started is utt and c.speech_span == (800, 1600)
    assert (c.samples[:800] == 0).all() and (c.samples[800:] == 9).all()
    c = src.next_chunk()                       # rest of the utterance, then it stops
    assert c.started is None
    assert (c.samples[:600] == 9).all() and (c.samples[600:] == 0).all()
    c = src.next_chunk()                       # trailing padding, then filler: it plays alone
    assert c.started is None and (c.samples == 0).all()
    c = src.next_chunk()                       # the injected one ended: the file follows
    assert c.started.label == 'file' and (c.samples == 7).all()
    c = src.next_chunk()
    assert (c.samples[:500] == 7).all() and (c.samples[500:] == 0).all()
    c = src.next_chunk()
    assert c.started is None and (c.samples == 0).all() and not src.busy


def test_source_noise_filler_and_loop():
    src = MockAudioSource(chunk_samples=1280, noise_level=0.01)
    x = src.next_chunk().samples.astype(np.float32)
    assert 0.005 * 32767 < np.sqrt(np.mean(x ** 2)) < 0.02 * 32767
    src = MockAudioSource(chunk_samples=1000, loop=True)
    src.add_file_segment(Segment(np.full(600, 3, np.int16), 'f'))
    assert all((src.next_chunk().samples == 3).all() for _ in range(5))


def test_load_wav_resamples(tmp_path):
    import soundfile
    rate = 44100
    stereo = np.stack([np.sin(np.arange(rate) / 7.0)] * 2, axis=1) * 0.5
    path = tmp_path / 'x.wav'
    soundfile.write(path, stereo, rate)
    x = load_wav(str(path))
    assert x.dtype == np.int16 and abs(len(x) - 16000) <= 1
    assert 10000 < np.abs(x).max() < 17000


def test_load_bag_reads_audio_chunks(tmp_path):
    from droid_common.bagtypes import typestore
    from rosbags.rosbag2 import Writer
    store = typestore()
    AudioChunk = store.types['droid_msgs/msg/AudioChunk']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    path = tmp_path / 'bag'
    with Writer(path, version=9) as w:
        conn = w.add_connection('/audio/mic', AudioChunk.__msgtype__, typestore=store)
        for k in range(5):
            msg = AudioChunk(header=Header(stamp=Time(sec=k, nanosec=0), frame_id='mic'),
                             sample_rate=16000, channels=1, seq=k,
                             data=np.full(1280, k, dtype=np.int16))
            w.write(conn, k * 80_000_000, store.serialize_cdr(msg, AudioChunk.__msgtype__))
    x = load_bag(str(path))
    assert len(x) == 5 * 1280
    assert [int(x[k * 1280]) for k in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match='no droid_msgs/msg/AudioChunk'):
        load_bag(str(path), topic='/other')


def test_synthesize_makes_16k_speech():
    x = synthesize('hello droid')
    assert x.dtype == np.int16 and 0.3 * 16000 < len(x) < 3 * 16000
    assert np.abs(x).max() > 3000


def test_mock_script_prefers_announced_transcripts(tmp_path):
    path = tmp_path / 's.yaml'
    path.write_text('transcripts: ["what time is it", "tell me a joke"]\n')
    s = MockScript(load_script(str(path)), cycle=False, ttl_s=10.0)
    s.announce('play some cantina music', t=100.0)
    assert s.take(101.0) == 'play some cantina music'
    assert s.take(102.0) == 'what time is it'
    s.announce('too old', t=100.0)
    assert s.take(200.0) == 'tell me a joke'          # the stale announcement expired
    assert s.take(201.0) is None                      # script exhausted, no cycling
    (tmp_path / 'bad.yaml').write_text('a: 1\n')
    assert load_script(str(tmp_path / 'bad.yaml')) == []
    (tmp_path / 'bad2.yaml').write_text('- 1\n- 2\n')
    with pytest.raises(ValueError):
        load_script(str(tmp_path / 'bad2.yaml'))


def test_mock_partials_grow():
    s = MockScript(partial_interval_s=0.4, expected_words_per_s=2.5)
    u = MockUtterance('c', 1, 0.0, 'play some cantina music now please')
    u.samples = 3200
    assert s.partial_for(u) is None
    texts = []
    for _ in range(6):
        u.samples += 6400
        texts.append(s.partial_for(u))
    assert all(texts)
    assert [len(t.split()) for t in texts] == sorted(len(t.split()) for t in texts)
    assert len(texts[-1].split()) < 6                 # never the whole final text
    assert partial_text('a b c d', 0.5) == 'a b' and partial_text('', 0.5) == ''

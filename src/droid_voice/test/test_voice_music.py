"""Music logic: library, fuzzy matching, decoding WAV/FLAC/OGG/MP3 off the callback,
volume x ducking, loop and end of track, clear errors (plain Python)."""

import time

import numpy as np
import pytest
import soundfile as sf
from droid_voice.envelope import DuckingEnvelope
from droid_voice.music import (
    PAUSED,
    PLAYING,
    STOPPED,
    MusicError,
    MusicLibrary,
    MusicPlayer,
    TrackReader,
)

FORMATS = {'wav': ('WAV', 'PCM_16'), 'flac': ('FLAC', 'PCM_16'), 'ogg': ('OGG', 'VORBIS'),
           'mp3': ('MP3', 'MPEG_LAYER_III')}


def tone(freq, seconds, rate=44100, channels=2, level=0.5):
    t = np.arange(int(seconds * rate)) / rate
    x = level * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1).astype(np.float32)


@pytest.fixture(scope='module')
def library(tmp_path_factory):
    d = tmp_path_factory.mktemp('music')
    names = {'wav': 'Cantina_Band', 'flac': 'Imperial-March', 'ogg': 'binary sunset',
             'mp3': 'Jabba Flow'}
    for i, (ext, (fmt, sub)) in enumerate(FORMATS.items()):
        sf.write(d / f'{names[ext]}.{ext}', tone(220 * (i + 1), 1.0), 44100, format=fmt,
                 subtype=sub)
    (d / 'sub').mkdir()
    sf.write(d / 'sub' / 'Mono_Tone.wav', tone(330, 0.5, rate=16000, channels=1), 16000)
    (d / 'Broken Song.mp3').write_bytes(b'this is not an mp3 file at all' * 10)
    (d / 'notes.txt').write_text('not music')
    return d


def test_library_lists_audio_files_with_titles(library):
    titles = [t.title for t in MusicLibrary(str(library)).tracks()]
    assert titles == ['binary sunset', 'Broken Song', 'Cantina Band', 'Imperial March',
                      'Jabba Flow', 'Mono Tone']


@pytest.mark.parametrize('query,title', [('cantina', 'Cantina Band'),
                                         ('the imperial march', 'Imperial March'),
                                         ('binary sunset please', 'binary sunset'),
                                         ('jaba', 'Jabba Flow')])
def test_fuzzy_match(library, query, title):
    assert MusicLibrary(str(library)).match(query).title == title


def test_no_match_missing_or_empty_library_are_clear_errors(library, tmp_path):
    with pytest.raises(MusicError, match='no track matches'):
        MusicLibrary(str(library)).match('zzzz qqqq xxxx')
    with pytest.raises(MusicError, match='does not exist'):
        MusicLibrary(str(tmp_path / 'nope')).tracks()
    with pytest.raises(MusicError, match='library_dir is empty'):
        MusicLibrary('').match('x')
    with pytest.raises(MusicError, match='no audio files'):
        MusicLibrary(str(tmp_path)).match('x')


def test_next_after_wraps_around(library):
    lib = MusicLibrary(str(library))
    tracks = lib.tracks()
    assert lib.next_after(None) == tracks[0]
    assert lib.next_after(tracks[0]) == tracks[1]
    assert lib.next_after(tracks[-1]) == tracks[0]


@pytest.mark.parametrize('ext', list(FORMATS))
def test_every_format_decodes_to_the_right_tone(library, ext):
    track = next(t for t in MusicLibrary(str(library)).tracks()
                 if t.path.endswith('.' + ext) and 'Broken' not in t.title)
    freq = 220 * (list(FORMATS).index(ext) + 1)
    r = TrackReader(track.path, block_frames=2048)
    assert r.sample_rate == 44100 and r.channels == 2
    assert r.duration == pytest.approx(1.0, abs=0.06)      # MP3 frames pad a little
    got = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data, _, eof = r.read(4096)
        got.append(data)
        if eof:
            break
        time.sleep(0.001)
    r.close()
    x = np.concatenate(got)[:, 0]
    assert len(x) >= 0.95 * 44100
    spectrum = np.abs(np.fft.rfft(x[4410:4410 + 32768]))
    peak = np.fft.rfftfreq(32768, 1 / 44100)[np.argmax(spectrum)]
    assert peak == pytest.approx(freq, abs=3)


def test_unreadable_file_is_a_clear_error(library):
    with pytest.raises(MusicError, match='cannot read Broken Song.mp3: not a readable audio'):
        TrackReader(str(library / 'Broken Song.mp3'))


def test_player_volume_ducking_loop_and_end(library):
    lib = MusicLibrary(str(library))
    ended = []
    player = MusicPlayer(DuckingEnvelope(duck_level=0.2, duck_ramp=0.1, unduck_delay=0.0,
                                         unduck_ramp=0.1), volume=0.5,
                         on_end=lambda tr, err, played: ended.append((tr.title, err, played)))
    track = lib.match('mono tone')
    player.play(track, player.open(track))
    time.sleep(0.2)                                         # reader fills its queue
    level = lambda block: float(np.max(np.abs(block)))
    a = player.render(1600, 0.0)
    assert a.shape == (1600, 1) and level(a) == pytest.approx(0.25, abs=0.01)
    player.set_ducked(True, 0.1)
    b = player.render(1600, 0.2)                            # 100 ms after: fully ducked
    assert level(b) == pytest.approx(0.05, abs=0.005)
    snap = player.snapshot(0.2)
    assert snap['ducked'] and snap['effective_volume'] == pytest.approx(0.1)
    assert snap['state'] == PLAYING and snap['track_title'] == 'Mono Tone'
    assert player.pause() and player.snapshot(0.2)['state'] == PAUSED
    assert not np.any(player.render(160, 0.3))
    assert player.resume()
    while not ended:
        player.render(1600, 1.0)
    assert ended == [('Mono Tone', '', 0.5)] and player.state == STOPPED
    assert player.position() == 0.0

    player.play(track, player.open(track, loop=True), loop=True)
    time.sleep(0.2)
    for _ in range(12):                                      # 1.2 s of a 0.5 s file
        player.render(1600, 5.0)
        time.sleep(0.01)
    assert player.state == PLAYING and len(ended) == 1
    assert 0.0 < player.position() < 0.5
    player.stop()
    assert player.state == STOPPED and player.reader is None

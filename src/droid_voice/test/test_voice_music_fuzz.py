"""Fuzz: the music matcher, player volume and ducking envelope against hostile requests
(PlayMusic goals, MusicControl calls, speech events at odd times). No exception but the
documented MusicError escapes; gains and volumes stay finite and in [0, 1] (plain Python)."""

import math
import time

import numpy as np
import pytest
import soundfile as sf
from droid_common import fuzz as F
from droid_voice.envelope import DuckingEnvelope
from droid_voice.music import MAX_QUERY_CHARS, MusicError, MusicLibrary, MusicPlayer
from hypothesis import given
from hypothesis import strategies as st

TITLES = ('Cantina_Band', 'Imperial-March', 'duel of the fates', 'Binary Sunset',
          'ÜBER sönic 2', 'a', '---', '9')


@pytest.fixture(scope='module')
def library(tmp_path_factory):
    d = tmp_path_factory.mktemp('fuzz_music')
    rate = 8000
    t = np.arange(rate // 4) / rate
    for i, name in enumerate(TITLES):
        sf.write(d / f'{name}.wav', (0.5 * np.sin(2 * np.pi * 220 * (i + 1) * t)).astype(
            np.float32), rate)
    return d


@F.fuzz(400)
@given(query=st.one_of(F.texts(), st.sampled_from(['cantina', 'CANTINA BAND!!', 'sunset',
                                                   '  ', '\x00', 'über', '%s%n', '*', '..'])),
       cutoff=st.one_of(st.floats(0, 100), F.floats()))
def test_matcher_returns_a_track_or_a_clear_error(library, query, cutoff):
    lib = MusicLibrary(str(library))
    titles = {t.title for t in lib.tracks()}
    try:
        track = lib.match(query, cutoff)
    except MusicError as exc:
        assert str(exc) and len(str(exc)) < 500          # no echo of a huge query
        return
    assert track.title in titles
    assert len(query) <= MAX_QUERY_CHARS or not query.strip()      # blank: the first track


def test_a_huge_query_is_a_clear_error(library):
    with pytest.raises(MusicError, match='too long'):
        MusicLibrary(str(library)).match('cantina ' * 100_000)


times = st.one_of(st.floats(-10.0, 100.0), F.floats())
envelope_op = st.one_of(st.tuples(st.just('duck'), st.booleans(), times),
                        st.tuples(st.just('gain'), st.none(), times),
                        st.tuples(st.just('gains'), st.integers(0, 512), times))


@F.fuzz(400)
@given(st.tuples(st.floats(0, 1), F.durations(), F.durations(), F.durations()),
       st.lists(envelope_op, max_size=40))
def test_ducking_envelope_stays_in_range_whatever_the_times(params, ops):
    level, duck_ramp, unduck_delay, unduck_ramp = params
    env = DuckingEnvelope(level, duck_ramp, unduck_delay, unduck_ramp)
    for op, arg, t in ops:
        if op == 'duck':
            env.set_ducked(arg, t)
            assert env.ducked == arg
        elif op == 'gain':
            g = env.gain(t)
            assert math.isfinite(g) and 0.0 <= g <= 1.0, (g, t)
        else:
            g = env.gains(t, arg, 16000)
            assert g.shape == (arg,) and np.all(np.isfinite(g)) and np.all((g >= 0) & (g <= 1))
        env.ramping(t)
    # and it still works: a duck at a sane time reaches the duck level
    env.set_ducked(False, 0.0)
    env.set_ducked(True, 1000.0)
    assert env.gain(1000.0 + 3601.0) == pytest.approx(level)


def test_ducking_envelope_durations_are_bounded():
    env = DuckingEnvelope(0.2, float('inf'), float('nan'), -5.0)
    env.set_ducked(True, 0.0)
    assert 0.2 <= env.gain(1.0) <= 1.0 and env.gain(1e9) == pytest.approx(0.2)
    env.set_ducked(False, float('nan'))           # a time that is not a number: at once
    assert env.gain(2.0) == pytest.approx(1.0) and not env.ducked


@F.fuzz(150)
@given(st.lists(st.one_of(st.tuples(st.just('volume'), F.floats()),
                          st.tuples(st.just('duck'), st.booleans(), times),
                          st.tuples(st.just('render'), st.integers(0, 800), times),
                          st.tuples(st.just('pause'),), st.tuples(st.just('resume'),)),
                max_size=30))
def test_player_volume_and_output_stay_sane(library, ops):
    lib = MusicLibrary(str(library))
    player = MusicPlayer(DuckingEnvelope(), volume=0.6)
    track = lib.match('cantina')
    player.play(track, player.open(track, loop=True), loop=True)
    try:
        for op, *a in ops:
            if op == 'volume':
                before = player.volume
                player.set_volume(a[0])
                if not F.finite(a[0]):
                    assert player.volume == before or a[0] in (math.inf, -math.inf)
            elif op == 'duck':
                player.set_ducked(a[0], a[1])
            elif op == 'render':
                out = player.render(a[0], a[1])
                assert out.shape[0] == a[0] and np.all(np.isfinite(out))
                assert np.all(np.abs(out) <= 1.0)
            elif op == 'pause':
                player.pause()
            else:
                player.resume()
            assert math.isfinite(player.volume) and 0.0 <= player.volume <= 1.0
            for t in (0.0, 50.0):
                snap = player.snapshot(t)
                assert 0.0 <= snap['effective_volume'] <= 1.0
                assert math.isfinite(snap['position']) and snap['position'] >= 0.0
    finally:
        player.stop()
    time.sleep(0)

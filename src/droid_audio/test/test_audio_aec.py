"""Echo cancellation: the reference timeline and WebRTC AEC on espeak-ng speech."""

import numpy as np
import pytest
from droid_audio.aec import (FRAME, RATE, EchoCanceller, EchoDelayEstimator, ReferenceBuffer,
                            erle_db)
from droid_common.testing import speech


def test_reference_buffer_adds_players_on_a_timeline():
    ref = ReferenceBuffer(seconds=1.0)
    ref.add(10.0, np.full(160, 100.0))
    ref.add(10.005, np.full(160, 10.0))                 # a second player, overlapping
    got = ref.take(10.0, 400)
    assert np.all(got[:80] == 100.0) and np.all(got[80:160] == 110.0)
    assert np.all(got[160:240] == 10.0) and np.all(got[240:] == 0.0)
    assert np.all(ref.take(5.0, 10) == 0.0)             # long gone / never played
    ref.add(10.9, np.ones(RATE))                        # slides the 1 s window forward
    assert np.all(ref.take(10.0, 160) == 0.0)
    ref.add(500.0, np.ones(10))                          # a clock jump: starts afresh
    assert np.all(ref.take(500.0, 10) == 1.0)
    ref.add(float('nan'), np.ones(10))                  # ignored, no exception


@pytest.fixture(scope='module')
def voices():
    droid = speech('I am the droid and I am talking through my own speaker, can you hear '
                   'me over the music?', 'en-us+m3').astype(np.float32)
    user = speech('hey jarvis, what time is it', 'en-gb').astype(np.float32)
    return droid, user


def test_webrtc_aec_removes_the_droids_own_voice_and_keeps_the_users(voices):
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    droid, user = voices
    delay = int(0.04 * RATE)                             # speaker -> room -> mic
    n = (len(droid) // FRAME) * FRAME
    echo = np.zeros(n)
    echo[delay:] = 0.5 * droid[:n - delay]
    u0 = int(1.6 * RATE)
    mic = echo.copy()
    mic[u0:u0 + len(user)] += 0.6 * user[:n - u0]
    ref = ReferenceBuffer()
    t0 = 1000.0
    ref.add(t0, droid[:n])                               # heard from t0
    aec = EchoCanceller(ref)
    assert aec.available, aec.error
    out = np.concatenate([aec.process(np.clip(mic[i:i + 1280], -32768, 32767), t0 + i / RATE)
                          for i in range(0, n, 1280)])
    a, b = int(0.8 * RATE), u0                           # echo only, after convergence
    assert erle_db(mic[a:b], out[a:b]) > 20.0
    # the user's speech survives (within a few dB)
    seg = slice(u0 + RATE // 10, u0 + len(user) - RATE // 10)
    assert erle_db(mic[seg], out[seg]) < 8.0


def test_an_echo_stamped_ahead_of_its_reference_is_cancelled_with_the_lead(voices):
    """Stamps are a few tens of ms off: an echo may reach the microphone (by the stamps)
    before its reference is heard. AEC3 cancels only causal echoes; the reference lead
    keeps it so (and without the lead the same echo goes through)."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    droid, _ = voices
    early = int(0.025 * RATE)                            # the echo 25 ms before its stamp
    n = (len(droid) // FRAME) * FRAME
    mic = np.zeros(n)
    mic[:n - early] = 0.5 * droid[early:n]
    t0 = 1000.0

    def erle(lead_ms):
        ref = ReferenceBuffer()
        ref.add(t0, droid[:n])
        aec = EchoCanceller(ref, lead_ms=lead_ms, auto_delay=False)
        out = np.concatenate([aec.process(np.clip(mic[i:i + 1280], -32768, 32767),
                                          t0 + i / RATE) for i in range(0, n, 1280)])
        a = int(0.8 * RATE)
        return erle_db(mic[a:], out[a:])
    assert erle(60) > 20.0
    assert erle(0) < 10.0


def test_without_livekit_audio_passes_unchanged(monkeypatch):
    import builtins
    real = builtins.__import__

    def no_livekit(name, *a, **k):
        if name == 'livekit':
            raise ImportError('no livekit here')
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, '__import__', no_livekit)
    aec = EchoCanceller(ReferenceBuffer())
    assert not aec.available and 'unavailable' in aec.error
    x = np.arange(1280, dtype=np.int16)
    assert np.array_equal(aec.process(x, 0.0), x)


def test_late_reference_is_waited_for_while_a_player_is_active():
    import threading
    ref = ReferenceBuffer()
    assert ref.wait_covered(10.0, 0.01)                    # no player at all: no wait
    ref.add(9.0, np.zeros(160))                             # a player, reaching 9.01
    assert not ref.wait_covered(9.5, 0.05)                  # behind: waits, then gives up
    threading.Timer(0.05, lambda: ref.add(9.01, np.ones(8000))).start()
    assert ref.wait_covered(9.5, 2.0)                       # the late block arrives
    assert ref.wait_covered(20.0, 0.01)                     # long idle: not waited for


# -- the echo's delay, measured ------------------------------------------------------------

@pytest.fixture(scope='module')
def long_droid():
    return speech('Welcome to the cantina, friend. I am the droid on the speaker, and I will '
                  'keep talking for quite a while, about music, lights and the best songs of '
                  'the galaxy.', 'en-us+m3').astype(np.float32)


def room_run(droid, lag_ms, auto_delay, user=None, ahead_s=0.2):
    """The droid's voice played from t0, its echo in the microphone ``lag_ms`` after the
    stamps say (negative: before); the reference streams in ``ahead_s`` ahead of the
    microphone, as the players send it. Returns (microphone, cleaned, canceller)."""
    n = (len(droid) // FRAME) * FRAME
    d = int(lag_ms * RATE / 1000)
    mic = np.zeros(n)
    if d >= 0:
        mic[d:] = 0.5 * droid[:n - d]
    else:
        mic[:n + d] = 0.5 * droid[-d:n]
    if user is not None:
        u0 = int(2.0 * RATE)
        mic[u0:u0 + len(user)] += 0.6 * user[:n - u0]
    t0 = 1000.0
    ref = ReferenceBuffer()
    aec = EchoCanceller(ref, auto_delay=auto_delay, max_wait_s=0.0)
    fed, out = 0, []
    for i in range(0, n, 1280):
        while fed < min(n, i + 1280 + int(ahead_s * RATE)):
            ref.add(t0 + fed / RATE, droid[fed:fed + 640])
            fed += 640
        out.append(aec.process(np.clip(mic[i:i + 1280], -32768, 32767), t0 + i / RATE))
    return mic, np.concatenate(out), aec


def test_an_echo_far_ahead_of_its_stamps_is_measured_and_then_cancelled(long_droid):
    """A sound server that misreports its latency puts the echo 150 ms before its
    reference: beyond the lead, never cancelled. Measured, the reference moves and the
    rest of the speech is cancelled."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    late = slice(4 * RATE, None)                         # after the measurement settled
    mic, out, aec = room_run(long_droid, -150, auto_delay=False)
    assert erle_db(mic[late], out[late]) < 10.0 and aec.lead_s == pytest.approx(0.090)
    mic, out, aec = room_run(long_droid, -150, auto_delay=True)
    assert aec.auto_aligned == 1
    assert aec.echo_lag_s == pytest.approx(-0.150, abs=0.002)
    assert aec.lead_s == pytest.approx(0.210, abs=0.002)    # the echo now 60 ms after it
    assert erle_db(mic[late], out[late]) > 25.0


def test_a_speaker_half_a_second_late_is_measured_and_then_cancelled(long_droid):
    """A Bluetooth speaker: the echo 480 ms after the stamps, past what AEC3 finds."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    late = slice(4 * RATE, None)
    mic, out, aec = room_run(long_droid, 480, auto_delay=False)
    assert erle_db(mic[late], out[late]) < 15.0
    mic, out, aec = room_run(long_droid, 480, auto_delay=True)
    assert aec.auto_aligned == 1 and aec.echo_lag_s == pytest.approx(0.480, abs=0.002)
    assert erle_db(mic[late], out[late]) > 25.0


@pytest.mark.parametrize('lag_ms', [-40, 0, 40, 250])
def test_an_echo_aec3_already_cancels_is_measured_and_left_alone(long_droid, lag_ms):
    """Moving the reference costs AEC3 a second of re-convergence: within its range the
    lead stays where it is."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    mic, out, aec = room_run(long_droid, lag_ms, auto_delay=True)
    assert aec.auto_aligned == 0 and aec.lead_s == pytest.approx(0.090)
    assert aec.echo_lag_s == pytest.approx(lag_ms / 1000.0, abs=0.002)
    assert erle_db(mic[2 * RATE:], out[2 * RATE:]) > 25.0


def test_the_delay_is_found_while_the_user_talks_over_the_droid(long_droid, voices):
    est = EchoDelayEstimator()
    ref = ReferenceBuffer(seconds=30)
    t0 = 50.0
    ref.add(t0, long_droid)
    _, user = voices
    n = 3 * RATE
    d = int(0.1 * RATE)
    mic = np.zeros(n)
    mic[d:] = 0.3 * long_droid[:n - d]
    mic[:len(user)] += 0.8 * user[:n]
    est.push(mic[:RATE // 2], t0)
    assert est.estimate(ref) is None                     # half a second is not enough yet
    for i in range(RATE // 2, n, RATE // 2):
        est.push(mic[i:i + RATE // 2], t0 + i / RATE)
        assert est.estimate(ref) == pytest.approx(0.100, abs=0.001)


def test_no_echo_no_reference_or_a_gap_gives_no_delay(long_droid, voices):
    rng = np.random.default_rng(3)
    _, user = voices
    t0 = 50.0
    playing = ReferenceBuffer(seconds=30)
    playing.add(t0, long_droid)
    silent = ReferenceBuffer(seconds=30)
    n = 2 * RATE
    only_user = np.zeros(n)
    only_user[:len(user)] = 0.8 * user[:n]
    only_user += 50 * rng.standard_normal(n)
    est = EchoDelayEstimator()
    est.push(only_user, t0)
    assert est.ready and est.estimate(playing) is None   # a voice that is not the droid's
    echo = np.zeros(n)
    echo[1600:] = 0.3 * long_droid[:n - 1600]
    est.push(echo, t0)                                   # not continuous: starts again
    assert est.ready and est.estimate(silent) is None    # nothing played: nothing to find
    assert est.estimate(playing) == pytest.approx(0.100, abs=0.001)
    est.push(echo[:1280], t0 + 5.0)                      # a gap in the microphone audio
    assert not est.ready and est.estimate(playing) is None


def whole_blocks_with_echo(droid, delay_s: float = 0.04):
    """``(droid, n, mic)``: whole 80 ms blocks of the droid's voice and its echo ``delay_s``
    later at half the level."""
    n = (len(droid) // 1280) * 1280
    delay = int(delay_s * RATE)
    mic = np.zeros(n)
    mic[delay:] = 0.5 * droid[:n - delay]
    return droid, n, mic


def test_the_capture_timeline_correcting_itself_is_followed(long_droid):
    """Under load the microphone's first stamps can be late by most of a second; its
    timeline then walks back to the truth, 40 ms a block. The canceller follows those
    moves back (a forward jump it ignores: a late block, not lost audio), so the echo
    stays where AEC3 finds it."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    droid, n, mic = whole_blocks_with_echo(long_droid)
    t0 = 1000.0

    def run(walk_back):
        ref = ReferenceBuffer(seconds=30)
        ref.add(t0, droid[:n])                           # all of it known beforehand
        aec = EchoCanceller(ref, auto_delay=False, max_wait_s=0.0)
        error, out = 0.45, []                            # the first stamp 450 ms late
        for k, i in enumerate(range(0, n, 1280)):
            if walk_back:
                error = max(0.0, error - 0.04)
            if k == 60:
                error += 0.1                             # a late block: a jump forward
            out.append(aec.process(np.clip(mic[i:i + 1280], -32768, 32767),
                                   t0 + i / RATE + error))
        return erle_db(mic[3 * RATE:], np.concatenate(out)[3 * RATE:]), aec
    followed, aec = run(walk_back=True)
    assert followed > 25.0 and aec.resyncs == 0
    stuck, _ = run(walk_back=False)                      # the first stamp kept: 540 ms off
    assert stuck < 10.0


def test_a_small_correction_of_the_capture_timeline_waits_for_a_pause(long_droid):
    """Mid-sentence the microphone's timeline corrects itself by 4 ms (a block measured
    earlier than ever before). Followed at once, AEC3 loses its lock and the droid's voice
    leaks for a second (seen in the echo room); held until the droid pauses (or until the
    corrections add up to 30 ms), the echo stays cancelled."""
    pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')
    droid, n, mic = whole_blocks_with_echo(long_droid)
    t0 = 1000.0
    k_move = int(4.0 * RATE) // 1280

    def run(follow_ms):
        ref = ReferenceBuffer(seconds=30)
        ref.add(t0, droid[:n])
        aec = EchoCanceller(ref, auto_delay=False, max_wait_s=0.0, follow_ms=follow_ms)
        out = []
        for k, i in enumerate(range(0, n, 1280)):
            error = -0.004 if k >= k_move else 0.0
            out.append(aec.process(np.clip(mic[i:i + 1280], -32768, 32767),
                                   t0 + i / RATE + error))
        seg = slice(k_move * 1280, k_move * 1280 + RATE // 2)
        return erle_db(mic[seg], np.concatenate(out)[seg]), aec
    held, aec = run(30.0)
    assert held > 40.0 and list(aec.moves) == []
    followed, aec = run(0.0)
    assert len(aec.moves) == 1 and aec.moves[0][1] == pytest.approx(-0.004, abs=1e-6)
    assert followed < held - 15.0

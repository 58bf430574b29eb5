"""Echo cancellation: the reference timeline and WebRTC AEC on espeak-ng speech."""

import numpy as np
import pytest
from droid_audio.aec import FRAME, RATE, EchoCanceller, ReferenceBuffer, erle_db
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
        aec = EchoCanceller(ref, lead_ms=lead_ms)
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

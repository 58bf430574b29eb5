"""The echo reference's timeline (PlaybackTap): what the speaker plays, stamped with the
time it is heard, continuous across jittery callbacks."""

import threading

import numpy as np
from droid_voice.playback import PlaybackTap

RATE = 16000
BLOCK = 320                                              # 20 ms callbacks


def run_tap(heard_times):
    got, lock = [], threading.Lock()

    def publish(t, samples):
        with lock:
            got.append((t, len(samples)))

    tap = PlaybackTap(lambda frames, heard_t, written_t=None: np.full(frames, 0.1, np.float32),
                      publish, RATE)
    for h in heard_times:
        tap(BLOCK, h)
    tap.close()
    stamps = []                                          # each block's stamp, in order
    for t, n in got:
        stamps += [t + i * BLOCK / RATE for i in range(n // BLOCK)]
    return tap, stamps


def test_late_callbacks_do_not_move_the_reference_later():
    """A loaded machine runs some callbacks 15-45 ms late: the audio is not heard later
    for it. Following them would stamp the reference late, its echo before it, out of
    the echo canceller's reach."""
    t0 = 100.0
    heard = [t0 + i * BLOCK / RATE for i in range(50)]
    for i, late in ((10, 0.024), (20, 0.044), (30, 0.016), (31, 0.028)):
        heard[i] += late
    tap, stamps = run_tap(heard)
    assert tap.realigned == 0
    assert np.allclose(stamps, [t0 + i * BLOCK / RATE for i in range(50)], atol=1e-9)


def test_a_real_gap_in_the_output_moves_the_reference():
    """An underrun or a clock jump: the audio after it really is heard later."""
    t0 = 100.0
    heard = [t0 + i * BLOCK / RATE for i in range(20)] + \
        [t0 + 0.25 + i * BLOCK / RATE for i in range(20, 40)]
    tap, stamps = run_tap(heard)
    assert tap.realigned == 1
    assert np.allclose(stamps, heard, atol=1e-9)

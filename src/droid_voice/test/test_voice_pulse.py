"""Real audio streams with no sound card: a private PulseAudio daemon with a null sink;
its monitor is recorded while the speaker / music player play through sounddevice.
Checks that what is heard is what was synthesised, that the amplitude follows it, that a
stop is silent within 150 ms, and that ducking lowers the music."""

import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from droid_common.testing import PulseAudioServer
from droid_voice.amplitude import rms_norm
from droid_voice.envelope import DuckingEnvelope
from droid_voice.music import MusicLibrary, MusicPlayer
from droid_voice.output import SoundDeviceOutput
from droid_voice.speaker import COMPLETED, INTERRUPTED, Speaker, Utterance
from droid_voice.synth import RATE, EspeakBackend
from droid_voice.testing import MonitorRecorder as Recorder, ToneBackend

clock = time.monotonic






def wait_flowing(out, seconds=6.0):
    """Until the output's callbacks run in real time (the idle null sink wakes up late)."""
    deadline = clock() + seconds
    while clock() < deadline:
        n0 = out.callbacks
        time.sleep(0.1)
        if out.callbacks - n0 >= 5:
            return
    raise AssertionError('audio output does not run')


@pytest.fixture(scope='module')
def pulse():
    with PulseAudioServer() as pa:
        os.environ['PULSE_SOURCE'] = PulseAudioServer.SINK + '.monitor'
        import sounddevice as sd
        sd._terminate()                   # re-scan devices with this PulseAudio server
        sd._initialize()
        rec = Recorder()
        rec.wait_flowing()
        try:
            yield pa, rec
        finally:
            rec.close()
            os.environ.pop('PULSE_SOURCE', None)


@pytest.fixture
def speaker_rig(pulse):
    rigs = []

    def make(backend, **kw):
        sp = Speaker(backend, clock=clock, **kw)
        out = SoundDeviceOutput(sp.render, clock, sample_rate=RATE, device='pulse',
                                blocksize=160, latency=0.06)
        out.start()
        wait_flowing(out)
        events = []
        stop = threading.Event()

        def pump():
            while not stop.is_set():
                events.extend(sp.pop_due(clock()))
                time.sleep(0.003)

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        rigs.append((sp, out, stop, th))
        return sp, out, events

    yield make
    for sp, out, stop, th in rigs:
        stop.set()
        th.join()
        out.close()
        sp.close()


def test_what_is_heard_is_what_was_synthesised_and_amplitude_follows(pulse, speaker_rig):
    _, rec = pulse
    sp, _out, events = speaker_rig(EspeakBackend('en-us', 160), amplitude_hz=50)
    text = 'The droid speaks through a real audio stream.'
    reference = EspeakBackend('en-us', 160).synthesize(text).astype(np.float32) / 32768.0
    u = Utterance(text, conversation_id='pulse')
    sp.submit(u)
    assert u.done.wait(20.0) and u.status == COMPLETED
    time.sleep(0.3)
    heard, t_first = rec.between(u.started_at - 0.3, u.ended_at + 0.3)
    # Align by cross-correlation: the whole sentence is there, with the same waveform.
    corr = np.correlate(heard, reference, mode='valid')
    lag = int(np.argmax(corr))
    onset = t_first + lag / RATE
    assert abs(onset - u.started_at) < 0.04           # STARTED is stamped when it is heard
    # Every 100 ms piece of the sentence is heard with the same waveform (aligned locally,
    # so that a scheduling hiccup of this loaded test machine does not hide the rest).
    seg_n, search = RATE // 10, RATE // 4
    scores = []
    for i in range(0, len(reference) - seg_n, seg_n):
        ref = reference[i:i + seg_n]
        if np.sqrt(np.mean(ref ** 2)) < 0.02:
            continue
        lo = max(0, lag + i - search)
        win = heard[lo:lag + i + seg_n + search]
        c = np.correlate(win, ref, mode='valid')
        energy = np.convolve(win ** 2, np.ones(seg_n), mode='valid')
        j = int(np.argmax(c / np.sqrt(energy + 1e-9)))        # normalised: best match
        got = win[j:j + seg_n]
        scores.append(float(np.dot(got, ref) / (np.linalg.norm(got) * np.linalg.norm(ref))))
    assert len(scores) >= 10 and np.mean(np.array(scores) > 0.95) >= 0.9, scores
    whole = heard[lag:lag + len(reference)]
    assert np.linalg.norm(whole) / np.linalg.norm(reference) == pytest.approx(1.0, abs=0.1)
    # Amplitude: >= 30 Hz, follows the recorded loudness at the stamped times.
    amps = [e for e in events if e.kind == 'amplitude' and e.t <= u.ended_at - 0.02]
    assert len(amps) / (u.ended_at - u.started_at) >= 30.0
    # Correlate with the recorded loudness at the stamped times; allow a few ms of
    # shift for a scheduling hiccup of this shared test machine, not more.
    best = (-1.0, 0.0)
    for shift in np.arange(-0.03, 0.0301, 0.005):
        rec_env = [rms_norm(rec.between(e.t + shift - 0.01, e.t + shift + 0.01)[0])
                   for e in amps]
        r = float(np.corrcoef([e.amplitude for e in amps], rec_env)[0, 1])
        best = max(best, (r, float(shift)))
    assert best[0] > 0.9, best
    assert [e for e in events if e.kind == 'amplitude'][-1].amplitude == 0.0


def test_stop_is_silent_within_150_ms(pulse, speaker_rig):
    _, rec = pulse
    sp, _out, _events = speaker_rig(ToneBackend(), fade_s=0.03)
    latencies = []
    for i in range(3):
        u = Utterance('a b c d e', conversation_id=f'stop{i}')
        sp.submit(u)
        deadline = clock() + 10
        while (u.started_at is None or clock() < u.started_at + 0.4) and clock() < deadline:
            time.sleep(0.005)
        t_stop = clock()
        assert sp.stop(u, 'barge-in')
        assert u.done.wait(2.0) and u.status == INTERRUPTED
        time.sleep(0.4)
        x, t0 = rec.between(t_stop - 0.2, t_stop + 0.4)
        loud = np.nonzero(np.abs(x) > 0.01)[0]
        assert len(loud) and loud[0] / RATE < 0.1              # it was playing before the stop
        latencies.append(t0 + loud[-1] / RATE - t_stop)
        assert u.ended_at - t_stop < 0.15                      # the INTERRUPTED stamp agrees
    assert max(latencies) <= 0.15, latencies


def test_music_ducks_on_a_real_stream(pulse, tmp_path):
    _, rec = pulse
    t = np.arange(4 * RATE) / RATE
    sf.write(tmp_path / 'steady.wav', 0.8 * np.sin(2 * np.pi * 330 * t), RATE)
    track = MusicLibrary(str(tmp_path)).match('steady')
    player = MusicPlayer(DuckingEnvelope(duck_level=0.25, duck_ramp=0.1, unduck_delay=0.2,
                                         unduck_ramp=0.2), volume=1.0)
    player.play(track, player.open(track))
    out = SoundDeviceOutput(player.render, clock, sample_rate=RATE, device='pulse',
                            blocksize=160)
    out.start()
    try:
        wait_flowing(out)
        time.sleep(0.5)
        t_duck = clock()
        player.set_ducked(True, t_duck)
        time.sleep(0.8)
        t_unduck = clock()
        player.set_ducked(False, t_unduck)
        time.sleep(0.8)
    finally:
        out.close()
        player.stop()
    before, _ = rec.between(t_duck - 0.3, t_duck)
    ducked, _ = rec.between(t_duck + 0.15, t_unduck)
    after, _ = rec.between(t_unduck + 0.5, t_unduck + 0.75)
    assert rms_norm(before) == pytest.approx(0.8, abs=0.05)
    assert rms_norm(ducked) == pytest.approx(0.2, abs=0.03)    # 0.8 x duck level 0.25
    assert rms_norm(after) == pytest.approx(0.8, abs=0.05)

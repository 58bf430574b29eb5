"""Real audio streams with no sound card: a private PulseAudio daemon with a null sink;
its monitor is recorded while the speaker / music player play through sounddevice.
Checks that what is heard is what was synthesised, that STARTED is stamped when the
speech is heard, that the amplitude follows it, that a stop is silent within 150 ms, and
that ducking lowers the music.

A loaded machine starves the null sink now and then (it has no hardware clock): a take in
which the device reported an underrun or the recording lost samples is measured again,
and timings are judged on the median of several takes, so one starved take does not
decide, while a stamp that is wrong every time (e.g. the write time instead of the time
it is heard, ~the device latency later) still fails."""

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
from droid_voice.testing import MonitorRecorder as Recorder
from droid_voice.testing import RecordingGap, ToneBackend

clock = time.monotonic


class Disturbed(Exception):
    """This take was disturbed (underrun reported, samples lost): take it again."""


def takes(n, measure, attempts=None):
    """``n`` undisturbed results of ``measure()`` (each may raise Disturbed/RecordingGap)."""
    attempts = attempts or 3 * n
    out, why = [], []
    for _ in range(attempts):
        try:
            out.append(measure())
        except (Disturbed, RecordingGap) as exc:
            why.append(str(exc) or type(exc).__name__)
        if len(out) == n:
            return out
    raise AssertionError(f'only {len(out)} of {n} undisturbed takes in {attempts}: {why}')


def best_of(n, attempt):
    """Pass when one of ``n`` takes of ``attempt()`` passes (a starved null sink spoils a
    take now and then; a wrong product fails every take)."""
    failures = []
    for _ in range(n):
        try:
            return attempt()
        except (AssertionError, Disturbed, RecordingGap) as exc:
            failures.append(f'{type(exc).__name__}: {exc}'.splitlines()[0][:300])
    raise AssertionError(f'all {n} takes failed:\n  ' + '\n  '.join(failures))


def device_latency(out, seconds=0.1):
    """The output latency the device reports (median over its buffers for ``seconds``)."""
    lats, end = [], clock() + seconds
    while clock() < end:
        lats.append(out.last_latency)
        time.sleep(0.004)
    return float(np.median(lats))


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
    sp, out, events = speaker_rig(EspeakBackend('en-us', 160), amplitude_hz=50)
    text = 'The droid speaks through a real audio stream.'
    reference = EspeakBackend('en-us', 160).synthesize(text).astype(np.float32) / 32768.0

    def take():
        underruns = out.status_errors
        n_events = len(events)
        u = Utterance(text, conversation_id='pulse')
        sp.submit(u)
        assert u.done.wait(20.0) and u.status == COMPLETED
        time.sleep(0.3)
        if out.status_errors != underruns:
            raise Disturbed('output underrun')
        heard, t_first = rec.between(u.started_at - 0.3, u.ended_at + 0.3)
        check_heard(u, heard, t_first, events[n_events:])

    def check_heard(u, heard, t_first, evs):
        # Align by cross-correlation: the whole sentence is there, with the same waveform.
        corr = np.correlate(heard, reference, mode='valid')
        lag = int(np.argmax(corr))
        # Every 100 ms piece of the sentence is heard with the same waveform (aligned
        # locally, so that a scheduling hiccup does not hide the rest).
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
            scores.append(float(np.dot(got, ref) /
                                (np.linalg.norm(got) * np.linalg.norm(ref))))
        assert len(scores) >= 10 and np.mean(np.array(scores) > 0.95) >= 0.9, scores
        whole = heard[lag:lag + len(reference)]
        assert np.linalg.norm(whole) / np.linalg.norm(reference) == \
            pytest.approx(1.0, abs=0.1)
        # Amplitude: >= 30 Hz, follows the recorded loudness at the stamped times (relative
        # to where the sentence was found in the recording: when it starts is the next
        # test's), within a few ms.
        onset = t_first + lag / RATE
        amps = [e for e in evs if e.kind == 'amplitude' and e.t <= u.ended_at - 0.02]
        assert len(amps) / (u.ended_at - u.started_at) >= 30.0
        best = (-1.0, 0.0)
        for shift in np.arange(-0.03, 0.0301, 0.005):
            at = onset - u.started_at + shift - t_first
            rec_env = [rms_norm(heard[max(0, int((e.t + at - 0.01) * RATE)):
                                      max(0, int((e.t + at + 0.01) * RATE))]) for e in amps]
            r = float(np.corrcoef([e.amplitude for e in amps], rec_env)[0, 1])
            best = max(best, (r, float(shift)))
        assert best[0] > 0.9, best
        assert [e for e in evs if e.kind == 'amplitude'][-1].amplitude == 0.0

    best_of(3, take)


def test_started_is_stamped_when_it_is_heard(pulse, speaker_rig):
    """STARTED = when the first sample is heard (the device's reported latency after the
    write), within 40 ms; judged on the median of five one-second tones."""
    _, rec = pulse
    sp, out, _events = speaker_rig(ToneBackend())
    written = []

    def measure():
        time.sleep(0.5)                       # silence before the tone
        underruns = out.status_errors
        u = Utterance('a', conversation_id='onset')
        sp.submit(u)
        assert u.done.wait(10.0) and u.status == COMPLETED
        time.sleep(0.3)
        if out.status_errors != underruns:
            raise Disturbed('output underrun')
        x, t0 = rec.between(u.started_at - 0.3, u.started_at + 0.3)
        loud = np.nonzero(np.abs(x) > 0.05)[0]
        if not len(loud):
            raise Disturbed('the tone was not heard')
        written.append(u.started_at - u.written_at)
        return t0 + loud[0] / RATE - u.started_at

    errors = takes(5, measure)
    assert abs(float(np.median(errors))) < 0.04, errors
    # STARTED is not the write time: the device latency lies between the two.
    assert float(np.median(written)) > 0.02, written


def test_stop_is_silent_after_the_fade_and_the_device_latency(pulse, speaker_rig):
    """A stop fades out at the next block: silence is heard within the fade, a block and
    some scheduling (50 ms) plus the latency the device reports, when the INTERRUPTED stamp
    says. (The end-to-end 150 ms target is measured by benchmark/bench_voice.py.)"""
    _, rec = pulse
    sp, out, _events = speaker_rig(ToneBackend(), fade_s=0.03)

    def measure():
        underruns = out.status_errors
        u = Utterance('a b c d e', conversation_id='stop')
        sp.submit(u)
        deadline = clock() + 10
        while (u.started_at is None or clock() < u.started_at + 0.4) and clock() < deadline:
            time.sleep(0.005)
        t_stop = clock()
        assert sp.stop(u, 'barge-in')
        latency = device_latency(out)
        assert u.done.wait(2.0) and u.status == INTERRUPTED
        time.sleep(0.4)
        if out.status_errors != underruns:
            raise Disturbed('output underrun')
        x, t0 = rec.between(t_stop - 0.2, t_stop + 0.5)
        loud = np.nonzero(np.abs(x) > 0.01)[0]
        if not (len(loud) and loud[0] / RATE < 0.1):           # it was playing before the stop
            raise Disturbed(f'not heard playing before the stop ({len(loud)} loud samples)')
        silent = t0 + loud[-1] / RATE
        return silent - t_stop - latency, silent - u.ended_at

    results = takes(5, measure)
    after_latency = [r[0] for r in results]
    stamp_error = [r[1] for r in results]
    assert float(np.median(after_latency)) <= 0.03 + 0.05, results
    assert abs(float(np.median(stamp_error))) < 0.04, results   # the INTERRUPTED stamp agrees


def test_music_ducks_on_a_real_stream(pulse, tmp_path):
    _, rec = pulse
    t = np.arange(4 * RATE) / RATE
    sf.write(tmp_path / 'steady.wav', 0.8 * np.sin(2 * np.pi * 330 * t), RATE)
    track = MusicLibrary(str(tmp_path)).match('steady')

    def take():
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
            lat = device_latency(out)
            time.sleep(0.7)
            t_unduck = clock()
            player.set_ducked(False, t_unduck)
            lat = max(lat, device_latency(out))
            time.sleep(1.0)
        finally:
            out.close()
            player.stop()
        # windows start when the change is heard: after the latency the device reports
        before, _ = rec.between(t_duck - 0.3, t_duck)
        ducked, _ = rec.between(t_duck + lat + 0.15, t_unduck + lat)
        after, _ = rec.between(t_unduck + lat + 0.45, t_unduck + lat + 0.8)
        assert rms_norm(before) == pytest.approx(0.8, abs=0.05)
        assert rms_norm(ducked) == pytest.approx(0.2, abs=0.03)    # 0.8 x duck level 0.25
        assert rms_norm(after) == pytest.approx(0.8, abs=0.05)

    best_of(3, take)

"""The speaker core driven by the mock output on a controlled clock: order, synthesis
ahead of playback, lifecycle times, amplitude alignment, fade-out stop, provider
fallback, mock pacing."""

import threading
import time

import numpy as np
import pytest
from droid_voice.amplitude import rms_norm
from droid_voice.fake_elevenlabs import FakeElevenLabs
from droid_voice.output import MockOutput
from droid_voice.speaker import COMPLETED, INTERRUPTED, Speaker, Utterance
from droid_voice.testing import ToneBackend
from droid_voice.synth import (
    RATE,
    ElevenLabsBackend,
    EspeakBackend,
    MockBackend,
)




class Rig:
    """Speaker + mock output on a manual clock; records events and rendered audio."""

    def __init__(self, backend, fallback=None, **kw):
        # sample-exact checks on synthetic signals (a ramp starts below any threshold):
        # the silence trim is tested in test_voice_synth and below
        kw.setdefault('trim_lead', False)
        self.t = 100.0
        self.warnings = []
        self.speaker = Speaker(backend, fallback, clock=lambda: self.t,
                               on_warning=lambda m, u: self.warnings.append(m), **kw)
        self.blocks = []
        self.out = MockOutput(self.speaker.render, lambda: self.t, sample_rate=RATE,
                              block_s=0.02, sink=lambda t, b: self.blocks.append((t, b.copy())))
        self.events = []

    def run(self, seconds, until=None, wall_timeout=20.0):
        """Advance the clock in 20 ms steps (giving the worker wall time to synthesise)."""
        end = self.t + seconds
        deadline = time.monotonic() + wall_timeout
        while self.t < end and time.monotonic() < deadline:
            self.t += 0.02
            self.out.step(self.t)
            self.events += self.speaker.pop_due(self.t)
            if until is not None and until():
                return
            time.sleep(0.001)

    def wait_synth(self, *utts, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not all(u.synth_done for u in utts) and time.monotonic() < deadline:
            time.sleep(0.01)

    def kinds(self):
        return [(e.kind, e.utt.index) for e in self.events if e.kind not in ('amplitude',
                                                                              'written')]

    def audio(self):
        return np.concatenate([b for _, b in self.blocks])

    def close(self):
        self.speaker.close()


def test_sentences_play_in_order_back_to_back_with_exact_times():
    rig = Rig(MockBackend(words_per_minute=120))
    u = [Utterance(text, conversation_id='c', index=i)
         for i, text in enumerate(['one two', 'three four five six', 'seven'])]
    for x in u:
        rig.speaker.submit(x)
    rig.wait_synth(*u)
    rig.run(5.0, until=lambda: u[2].done.is_set())
    assert rig.kinds() == [('started', 0), ('ended', 0), ('started', 1), ('ended', 1),
                           ('started', 2), ('ended', 2)]
    assert [x.status for x in u] == [COMPLETED] * 3
    assert u[0].ended_at - u[0].started_at == pytest.approx(1.0, abs=1e-6)
    assert u[1].started_at == pytest.approx(u[0].ended_at)        # no gap: synthesised ahead
    assert u[1].played_s == pytest.approx(2.0) and u[2].played_s == pytest.approx(0.5)
    rig.close()


def test_next_sentence_is_synthesised_while_the_current_one_plays():
    rig = Rig(EspeakBackend())
    a = Utterance('This is the first sentence, spoken slowly.', index=0)
    b = Utterance('And here is the second one.', index=1)
    rig.speaker.submit(a)
    rig.speaker.submit(b)
    rig.run(30.0, until=lambda: a.started_at is not None and b.synth_done)
    assert a.state == 'playing' and b.synth_done and b.state == 'queued'
    rig.run(30.0, until=lambda: b.done.is_set())
    assert b.started_at == pytest.approx(a.ended_at, abs=0.021)
    rig.close()


def test_amplitude_is_the_rms_of_what_is_heard_at_its_stamp():
    rig = Rig(MockBackend(words_per_minute=120, amplitude=0.5), amplitude_hz=40)
    u = Utterance('one two three four', conversation_id='cid7')
    rig.speaker.submit(u)
    rig.wait_synth(u)
    rig.run(4.0, until=lambda: u.done.is_set())
    rig.run(0.1)
    amps = [e for e in rig.events if e.kind == 'amplitude']
    assert all(e.conversation_id == 'cid7' for e in amps)
    assert amps[-1].amplitude == 0.0 and amps[-1].t == pytest.approx(u.ended_at)
    speech = amps[:-1]
    rate = len(speech) / (u.ended_at - u.started_at)
    assert rate >= 30.0
    assert np.all(np.diff([e.t for e in amps]) > 0)
    # Each value equals the RMS of the rendered samples around its stamp.
    t0 = rig.blocks[0][0]
    audio = rig.audio()
    for e in speech[5:-5]:
        i = round((e.t - t0) * RATE)
        half = RATE // 80
        assert e.amplitude == pytest.approx(rms_norm(audio[i - half:i + half]), abs=0.02)
    assert max(e.amplitude for e in speech) > 0.4
    rig.close()


def test_stop_fades_out_quickly_and_drops_the_rest_of_the_turn():
    rig = Rig(ToneBackend(), fade_s=0.03)
    a = Utterance('one two three', conversation_id='c', index=0)
    b = Utterance('four five', conversation_id='c', index=1)
    other = Utterance('goal text', goal=True)
    for x in (a, b, other):
        rig.speaker.submit(x)
    rig.wait_synth(a, b, other)
    rig.run(1.0)
    assert rig.speaker.current() is a
    t_stop = rig.t
    heard = rig.speaker.stop_turn(('c', 0), 'barge-in')
    assert heard == [a] and b.status == INTERRUPTED and b.started_at is None
    rig.run(0.5, until=lambda: a.done.is_set())
    assert a.status == INTERRUPTED
    assert a.ended_at - t_stop <= 0.03 + 0.02 + 1e-6            # fade + one block
    assert a.played_s <= (t_stop - a.started_at) + 0.03 + 0.02 + 1e-6
    # The last 30 ms of what was heard of `a` is its audio under a linear fade to 0.
    audio = rig.audio()
    i0 = round((a.started_at - rig.blocks[0][0]) * RATE)
    heard = audio[i0:i0 + a.played]
    tone = ToneBackend().synthesize(a.text)[:a.played].astype(np.float32) / 32768.0
    gains = 1.0 - (np.arange(480) + 1.0) / 480
    assert np.allclose(heard[-480:], tone[-480:] * gains, atol=1e-4)
    assert np.allclose(heard[:-480], tone[:-480], atol=1e-4)
    kinds = [k for k in rig.kinds() if k[0] != 'started']
    assert ('interrupted', 0) in kinds and ('dropped', 1) in kinds
    rig.run(3.0, until=lambda: other.done.is_set())              # other turns go on
    assert other.status == COMPLETED
    rig.close()


def test_provider_failure_mid_stream_falls_back_to_espeak_for_that_sentence():
    with FakeElevenLabs(api_key='k', fail_words=('broken',)) as fake:
        el = ElevenLabsBackend('k', use_websocket=True, base_url=fake.base_url,
                               ws_base_url=fake.ws_base_url)
        rig = Rig(el, EspeakBackend())
        a = Utterance('A fine sentence.', index=0)
        b = Utterance('This one is broken on the provider side.', index=1)
        c = Utterance('And this one is fine again.', index=2)
        for x in (a, b, c):
            rig.speaker.submit(x)
        rig.wait_synth(a, b, c)
        assert (a.backend, b.backend, c.backend) == ('elevenlabs', 'espeak', 'elevenlabs')
        assert len(rig.warnings) == 1 and 'elevenlabs failed' in rig.warnings[0]
        assert 'espeak' in rig.warnings[0]
        espeak_len = len(EspeakBackend().synthesize(b.text))
        assert b.synthesized == espeak_len                       # provider audio dropped
        rig.run(30.0, until=lambda: c.done.is_set())
        assert [x.status for x in (a, b, c)] == [COMPLETED] * 3
        assert a.played == len(fake.audio_for(a.text))
        rig.close()


def test_mock_pacing_follows_the_clock_not_the_wall():
    """A 3 s sentence under a clock running 20x faster than real time."""
    t = {'now': 0.0}
    speaker = Speaker(MockBackend(words_per_minute=60), clock=lambda: t['now'])
    out = MockOutput(speaker.render, lambda: t['now'], sample_rate=RATE, block_s=0.02)
    u = Utterance('one two three')
    speaker.submit(u)
    stop = threading.Event()
    events = []

    def sim_clock():                                  # like /clock at 20x real time
        start = time.monotonic()
        while not stop.is_set():
            t['now'] = 10.0 + 20.0 * (time.monotonic() - start)
            events.extend(speaker.pop_due(t['now']))
            time.sleep(0.001)

    th = threading.Thread(target=sim_clock)
    th.start()
    out.start()
    wall0 = time.monotonic()
    assert u.done.wait(5.0)
    wall = time.monotonic() - wall0
    stop.set()
    th.join()
    out.close()
    speaker.close()
    assert u.ended_at - u.started_at == pytest.approx(3.0, abs=1e-6)
    assert wall < 1.0                                 # 3 s of speech in ~0.15 s of wall time
    assert [e.kind for e in events if e.kind in ('started', 'ended')] == ['started', 'ended']


class RampBackend(MockBackend):
    """Audio whose every sample says where it is: sample i has value (i % 20000) + 1."""

    def stream(self, text, voice=None, cancel=None):
        n = round(self.duration(text) * RATE)
        pcm = (np.arange(n) % 20000 + 1).astype(np.int16)
        for i in range(0, n, 1600):
            yield pcm[i:i + 1600]


def test_pause_fades_holds_and_resume_goes_on_from_where_the_fade_began():
    rig = Rig(RampBackend(words_per_minute=60), fade_s=0.03)
    u = Utterance('one two three', conversation_id='c')          # 3.0 s
    nxt = Utterance('four', conversation_id='c', index=1)
    rig.speaker.submit(u)
    rig.speaker.submit(nxt)
    rig.wait_synth(u, nxt)
    rig.run(1.0)
    played_at_pause = u.played
    assert rig.speaker.pause(u) and rig.speaker.current() is u      # fading: still audible
    rig.run(0.2)
    assert u.state == 'paused' and rig.speaker.paused() is u and rig.speaker.current() is None
    assert u.played == played_at_pause                               # the fade is replayed
    silent_from = len(rig.blocks)
    rig.run(1.0)
    assert not np.any(np.concatenate([b for _, b in rig.blocks[silent_from:]]))
    assert nxt.state == 'queued'                                      # nothing jumps the pause
    assert rig.speaker.resume(u)
    rig.run(5.0, until=lambda: nxt.done.is_set())
    assert [k for k in rig.kinds()] == [('started', 0), ('paused', 0), ('resumed', 0),
                                        ('ended', 0), ('started', 1), ('ended', 1)]
    assert u.status == COMPLETED and u.played_s == pytest.approx(3.0)
    # Every sample of the sentence was heard at full level, in order, exactly once after
    # the resume point (the fade-in touches only the first 30 ms after the resume).
    audio = np.round(rig.audio() * 32768.0).astype(np.int64)
    resumed = next(e.t for e in rig.events if e.kind == 'resumed')
    start = round((resumed - rig.blocks[0][0]) * RATE)
    after = audio[start:start + RATE]
    fade = round(0.03 * RATE)
    first_full = played_at_pause % 20000 + fade + 1
    (idx,) = np.flatnonzero(after == first_full)[:1]
    assert idx <= fade + 2 * 320                   # the fade-in, after a block or two
    expected = (played_at_pause + fade + np.arange(4000)) % 20000 + 1
    assert np.array_equal(after[idx:idx + 4000], expected)
    rig.close()


def test_stop_while_paused_ends_it_interrupted_at_once():
    rig = Rig(ToneBackend(), fade_s=0.03)
    u = Utterance('one two three', conversation_id='c')
    rig.speaker.submit(u)
    rig.wait_synth(u)
    rig.run(0.5)
    rig.speaker.pause(u)
    rig.run(0.2)
    assert rig.speaker.stop(u, 'barge-in')
    rig.run(0.1)
    assert u.status == INTERRUPTED and u.done.is_set()
    assert [k for k, _ in rig.kinds()] == ['started', 'paused', 'interrupted']
    assert not rig.speaker.resume(u)
    rig.close()


def test_the_speaker_drops_the_silence_before_a_sentence():
    """A voice with 50 ms of silence before its first sound is heard 40 ms sooner."""
    class LateBackend(MockBackend):
        name = 'late'

        def stream(self, text, voice=None, cancel=None):
            yield np.zeros(800, np.int16)
            yield from super().stream(text)

    plain = np.concatenate(list(MockBackend(160.0).stream('hello there')))
    onset = 800 + int(np.nonzero(np.abs(plain.astype(int)) >= 328)[0][0])
    for trim, expected in ((True, len(plain) + 800 - (onset - 160)),   # 10 ms kept
                           (False, len(plain) + 800)):
        rig = Rig(LateBackend(160.0), trim_lead=trim)
        u = Utterance('hello there')
        rig.speaker.submit(u)
        rig.wait_synth(u)
        assert u.synthesized == expected, trim
        rig.close()

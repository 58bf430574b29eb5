"""Pure-logic tests of the listener's decisions (no models, no ROS): synthetic frames,
a fake timeline of 80 ms frames, fixed conversation ids."""

import itertools

import numpy as np
import pytest
from droid_audio.endpointer import (
    MODE,
    SPEECH,
    STAGE,
    UTT,
    ListenerConfig,
    ListenerCore,
    NoiseFloor,
    TraceMark,
    UtteranceEvent,
    VoiceActivityEvent,
    WakeEvent,
    parse_mode,
)
from hypothesis import given, settings
from hypothesis import strategies as st

F = 0.08  # frame length [s]


class Driver:
    """Feeds frames at t = i * 80 ms; each frame's samples hold its index."""

    def __init__(self, mode='INTERACTIVE', **cfg):
        ids = (f'conv{i}' for i in itertools.count(1))
        self.core = ListenerCore(ListenerConfig(**cfg), initial_mode=MODE[mode],
                                 id_factory=lambda: next(ids))
        self.i = 0
        self.events = []

    @property
    def t(self):
        return self.i * F

    def feed(self, n=1, prob=0.0, wake=0.0, amp=None):
        out = []
        for _ in range(n):
            samples = np.full(1280, self.i % 30000 if amp is None else amp, dtype=np.int16)
            out += self.core.process(self.t, samples, {'hey_jarvis': wake}, prob)
            self.i += 1
        self.events += out
        return out

    def speech_event(self, event, cid='', last=False):
        self.core.on_speech_event(SPEECH[event], self.t, cid, last)

    def of(self, kind, events=None):
        return [e for e in (self.events if events is None else events) if isinstance(e, kind)]

    def utt(self, state=None, events=None):
        return [e for e in self.of(UtteranceEvent, events)
                if state is None or e.state == UTT[state]]

    def stages(self, stage):
        return [e for e in self.of(TraceMark) if e.stage == STAGE[stage]]


def test_wake_word_is_cut_out_of_the_audio_and_silence_ends_it():
    d = Driver(mode='IDLE', preroll_ms=400, silence_ms=600, min_speech_ms=160)
    d.feed(10, prob=0.0, amp=20)               # background
    d.feed(3, prob=0.9, amp=5000)              # "hey jarvis"
    ev = d.feed(1, prob=0.9, wake=0.95, amp=5000)   # wake fires at frame 13
    wakes = d.of(WakeEvent, ev)
    assert len(wakes) == 1 and wakes[0].conversation_id == 'conv1'
    assert wakes[0].model == 'hey_jarvis' and wakes[0].score == pytest.approx(0.95)
    assert not d.utt(events=ev)                # held until the cut is known
    assert not d.utt(events=d.feed(1, prob=0.3, amp=30))   # frame 14: the pause
    ev = d.feed(1, prob=0.9, amp=4000)         # frame 15: the command starts
    started = d.utt('STARTED', ev)
    assert len(started) == 1
    s = started[0]
    assert s.trigger == UTT['TRIGGER_WAKE_WORD'] and s.utterance_id == 1
    # cut inside the pause (frame 14), at the last quiet 30 ms window's centre
    cut = 14 * 1280 + 800 + 240
    assert s.audio_start == pytest.approx(cut / 16000) and s.t == s.audio_start
    assert len(s.audio) == 16 * 1280 - cut
    assert set(s.audio[:1280 - 1040].tolist()) == {30} and s.audio[-1] == 4000
    assert 5000 not in s.audio                 # nothing of the wake phrase
    assert s.audio_end == pytest.approx(16 * F)   # voiced so far: up to frame 15's end
    assert d.core.stats['wake_cut_ms'] == round((cut / 16000 - 13 * F) * 1000)
    d.feed(8, prob=0.9)                        # the command
    assert len(d.stages('STAGE_SPEECH_START')) == 1
    ev = d.feed(7, prob=0.0)                   # 560 ms: not yet
    assert not d.utt('ENDED', ev)
    assert all(a.audio_end == pytest.approx(24 * F) for a in d.utt('AUDIO', ev))
    ev = d.feed(1, prob=0.0)                   # 640 ms >= 600 ms
    ended = d.utt('ENDED', ev)
    assert len(ended) == 1
    e = ended[0]
    assert e.end_reason == UTT['END_SILENCE'] and e.conversation_id == 'conv1'
    assert e.audio_end == pytest.approx(24 * F)       # end of the last voiced frame
    assert len(d.stages('STAGE_SPEECH_END')) == 1
    assert [x.state for x in d.utt()] == [UTT['STARTED']] + [UTT['AUDIO']] * 16 + [UTT['ENDED']]
    assert len(d.stages('STAGE_WAKE')) == 1


def test_wake_cut_lands_before_the_command_when_there_is_no_pause():
    d = Driver(mode='IDLE')
    d.feed(5, prob=0.0, amp=0)
    d.feed(3, prob=0.9, amp=5000)
    d.feed(1, prob=0.9, wake=0.9, amp=5000)
    ev = d.feed(2, prob=0.9, amp=3000)         # no pause: cut where the wake frame starts
    s = d.utt('STARTED', ev)[0]
    assert s.audio_start == pytest.approx(8 * F) and len(s.audio) == 3 * 1280
    assert s.audio[0] == 5000 and s.audio[1280] == 3000


def test_wake_with_no_speech_after_it_ends_after_timeout():
    d = Driver(mode='IDLE', wake_timeout_s=2.0)
    d.feed(5)
    d.feed(1, prob=0.9, wake=0.9)
    d.feed(1, prob=0.9)                        # tail of "jarvis": not enough speech
    ev = d.feed(22)                            # until 2.0 s after the wake frame's start
    assert not d.utt('ENDED', ev)
    ev = d.feed(1)
    ended = d.utt('ENDED', ev)
    assert ended and ended[0].end_reason == UTT['END_SILENCE']


def test_max_length_ends_utterance():
    d = Driver(mode='IDLE', max_utterance_s=2.0)
    d.feed(1, prob=0.9, wake=0.9)
    ev = d.feed(30, prob=0.9)
    ended = d.utt('ENDED', ev)
    assert len(ended) == 1 and ended[0].end_reason == UTT['END_MAX_LENGTH']
    # 25 frames = 2.0 s including the wake frame; the first three go out as STARTED
    assert len(d.utt('AUDIO')) == 22 and len(d.utt('STARTED')) == 1


def test_refractory_and_new_conversation_per_wake():
    d = Driver(mode='IDLE', refractory_s=2.0)
    d.feed(1, prob=0.9, wake=0.9)
    d.feed(5, prob=0.9, wake=0.9)              # the same phrase keeps scoring high
    assert len(d.of(WakeEvent)) == 1
    assert d.core.stats['wake_refractory'] == 5
    d.feed(20, prob=0.9)
    ev = d.feed(1, prob=0.9, wake=0.9)         # 2.08 s later: a new wake
    assert [w.conversation_id for w in d.of(WakeEvent)] == ['conv1', 'conv2']
    # the open utterance of conv1 is cancelled, conv2 starts at utterance 1
    cancelled = d.utt('CANCELLED', ev)
    assert len(cancelled) == 1 and cancelled[0].conversation_id == 'conv1'
    assert cancelled[0].end_reason == UTT['END_CANCELLED']
    started = d.utt('STARTED', d.feed(2, prob=0.9))   # once the wake phrase is cut off
    assert started[0].conversation_id == 'conv2' and started[0].utterance_id == 1


def test_below_threshold_never_wakes():
    d = Driver(mode='IDLE', threshold=0.5)
    d.feed(50, prob=0.9, wake=0.49)
    assert not d.of(WakeEvent) and not d.utt()


def test_follow_up_window_after_reply():
    d = Driver(mode='INTERACTIVE', follow_up_s=3.0, onset_ms=160, echo_tail_ms=0)
    d.feed(1, prob=0.9, wake=0.9)
    d.feed(5, prob=0.9)
    d.feed(10)                                 # ends (silence)
    assert len(d.utt('ENDED')) == 1
    # the droid answers, then finishes its reply
    d.speech_event('STARTED', 'conv1')
    d.feed(10)
    d.speech_event('ENDED', 'conv1', last=True)
    d.feed(5)
    ev = d.feed(2, prob=0.9)                   # voice onset: 2 frames = 160 ms
    started = d.utt('STARTED', ev)
    assert len(started) == 1
    s = started[0]
    assert s.trigger == UTT['TRIGGER_FOLLOW_UP']
    assert s.conversation_id == 'conv1' and s.utterance_id == 2
    assert len(d.of(WakeEvent)) == 1           # no wake word needed
    assert len(s.audio) > 2 * 1280             # pre-roll included


def wake_phrase_in_follow_up(hold_ms, fires=True, command=True):
    """"hey jarvis, <command>" said in the follow-up window (no turn model: 240 ms of
    silence ends a turn): a follow-up starts on the wake phrase's voice, and the wake word
    fires 400 ms into the pause after it, as openwakeword does."""
    d = Driver(mode='INTERACTIVE', follow_up_s=5.0, echo_tail_ms=0, silence_ms=240,
               wake_hold_ms=hold_ms)
    d.speech_event('ENDED', 'conv0', last=True)
    d.feed(3)
    d.feed(4, prob=0.9, amp=5000)                     # "hey jarvis"
    d.feed(4, prob=0.1, wake=0.3, amp=30)             # the pause; the wake score rises
    d.feed(1, prob=0.1, wake=0.8 if fires else 0.0, amp=30)
    if command:
        d.feed(5, prob=0.9, amp=4000)                 # the command
    d.feed(12)
    return d


def states(d, cid):
    return [e.state for e in d.utt() if e.conversation_id == cid and e.state != UTT['AUDIO']]


def test_a_follow_up_does_not_end_at_the_pause_after_the_wake_phrase():
    d = wake_phrase_in_follow_up(600)
    assert states(d, 'conv0') == [UTT['STARTED'], UTT['CANCELLED']]
    assert len(d.of(WakeEvent)) == 1
    assert states(d, 'conv1') == [UTT['STARTED'], UTT['ENDED']]   # the command
    assert d.core.stats['endpoints_held_for_wake'] >= 1
    # without the hold (the old behaviour) the wake phrase was a turn of its own
    d = wake_phrase_in_follow_up(0)
    assert states(d, 'conv0') == [UTT['STARTED'], UTT['ENDED']]


def test_a_wake_score_that_never_fires_holds_a_follow_up_only_briefly():
    d = wake_phrase_in_follow_up(600, fires=False, command=False)
    ends = [e for e in d.utt('ENDED') if e.conversation_id == 'conv0']
    assert not d.of(WakeEvent) and len(ends) == 1
    # the score was >= 0.1 in frames 7..10 (t = 0.56 .. 0.80 s): the turn ends at the
    # first frame after the hold, 600 ms after the last of them
    assert 0.8 + 0.6 <= ends[0].t <= 0.8 + 0.6 + 2 * F + 1e-6


def test_follow_up_window_expires_and_needs_interactive_mode():
    d = Driver(mode='INTERACTIVE', follow_up_s=1.0, echo_tail_ms=0)
    d.speech_event('ENDED', 'convX', last=True)
    d.feed(15)                                 # 1.2 s > window
    d.feed(5, prob=0.9)
    assert not d.utt()

    d = Driver(mode='IDLE', follow_up_s=5.0, echo_tail_ms=0)
    d.speech_event('ENDED', 'convX', last=True)
    d.feed(5, prob=0.9)
    assert not d.utt()                         # IDLE: wake word only

    d = Driver(mode='INTERACTIVE', follow_up_s=5.0, echo_tail_ms=0)
    d.speech_event('ENDED', 'convX', last=False)   # not the end of the reply
    d.feed(5, prob=0.9)
    assert not d.utt()


def test_self_hearing_guard_blocks_own_voice_and_wake_word():
    d = Driver(mode='INTERACTIVE', barge_in_threshold=0.95, barge_in_ms=240,
               echo_tail_ms=300)
    d.speech_event('STARTED', 'conv7')
    # the droid's own voice: clearly speech, but below the barge-in threshold
    d.feed(30, prob=0.9)
    # ... and it even says the wake phrase
    d.feed(3, prob=0.9, wake=0.99)
    assert not d.utt() and not d.of(WakeEvent)
    assert d.core.stats['wake_guarded'] == 3
    vas = d.of(VoiceActivityEvent)
    assert vas and all(not v.speaking and v.during_droid_speech for v in vas)
    d.speech_event('ENDED', 'conv7', last=False)
    # echo tail: still guarded for 300 ms
    d.feed(2, prob=0.9, wake=0.99)
    assert not d.of(WakeEvent)
    d.feed(3, prob=0.0)
    d.feed(1, prob=0.9, wake=0.99)             # after the tail: the wake word works again
    assert len(d.of(WakeEvent)) == 1


def test_barge_in_raises_voice_activity_and_starts_utterance_in_same_conversation():
    d = Driver(mode='INTERACTIVE', barge_in_threshold=0.95, barge_in_ms=240)
    d.speech_event('STARTED', 'conv7')
    d.feed(10, prob=0.9)                       # own voice
    ev = d.feed(2, prob=0.99)
    assert not d.utt(events=ev)                # 160 ms < 240 ms
    ev = d.feed(1, prob=0.99)
    va = d.of(VoiceActivityEvent, ev)
    assert va and va[-1].speaking and va[-1].during_droid_speech
    started = d.utt('STARTED', ev)
    assert len(started) == 1
    assert started[0].trigger == UTT['TRIGGER_BARGE_IN']
    assert started[0].conversation_id == 'conv7'
    assert [t.detail for t in d.stages('STAGE_SPEECH_START')] == ['barge_in']
    # the voice node interrupts the droid; the user goes on, then stops
    d.speech_event('INTERRUPTED', 'conv7')
    d.feed(5, prob=0.9)
    ev = d.feed(10, prob=0.0)
    assert d.utt('ENDED', ev)[0].conversation_id == 'conv7'


def test_barge_in_needs_interactive_mode_but_voice_activity_still_reported():
    d = Driver(mode='AMBIENT', barge_in_threshold=0.95, barge_in_ms=160)
    d.speech_event('STARTED', '')
    d.feed(5, prob=0.99)
    assert not d.utt()
    assert any(v.speaking for v in d.of(VoiceActivityEvent))


def test_sleep_ignores_audio_and_cancels_open_utterance():
    d = Driver(mode='IDLE')
    d.feed(1, prob=0.9, wake=0.9)
    d.feed(3, prob=0.9)
    ev = d.core.set_mode(MODE['SLEEP'], d.t)
    assert [e.state for e in d.utt(events=ev)] == [UTT['CANCELLED']]
    n = len(d.events)
    d.feed(30, prob=0.9, wake=0.99)
    assert len(d.events) == n                  # nothing at all while asleep
    assert d.core.stats['frames_sleep'] == 30
    d.core.set_mode(MODE['IDLE'], d.t)
    d.feed(1, prob=0.9, wake=0.99)
    assert len(d.of(WakeEvent)) == 2           # awake again: the wake word works


def test_voice_activity_on_change_and_steady_rate():
    d = Driver(mode='IDLE', onset_ms=160, hangover_ms=240, vad_period_s=1.0)
    d.feed(30)
    steady = d.of(VoiceActivityEvent)
    assert len(steady) == 3                    # t = 0, 1.04, 2.08 (every >= 1 s)
    ev = d.feed(2, prob=0.8)
    assert [v.speaking for v in d.of(VoiceActivityEvent, ev)] == [True]
    ev = d.feed(3, prob=0.1)
    assert [v.speaking for v in d.of(VoiceActivityEvent, ev)] == [False]


def test_parse_mode():
    assert parse_mode('interactive') == MODE['INTERACTIVE']
    assert parse_mode(0) == MODE['SLEEP']
    assert parse_mode('2') == MODE['AMBIENT']
    with pytest.raises(ValueError):
        parse_mode('party')


frame_kinds = st.tuples(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.0, 0.0, 0.97]))
control = st.sampled_from([None, None, None, None, 'STARTED', 'ENDED', 'INTERRUPTED',
                           'SLEEP', 'IDLE', 'INTERACTIVE'])


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.tuples(frame_kinds, control), min_size=1, max_size=300))
def test_utterance_streams_are_well_formed(steps):
    """Whatever happens, each (conversation, utterance) is STARTED, AUDIO*, then exactly
    one ENDED/CANCELLED; ids grow within a conversation; audio only on STARTED/AUDIO."""
    d = Driver(mode='INTERACTIVE', refractory_s=0.5, max_utterance_s=3.0)
    for (prob, wake), ctl in steps:
        if ctl in ('STARTED', 'ENDED', 'INTERRUPTED'):
            d.speech_event(ctl, d.core.conversation_id, last=True)
        elif ctl is not None:
            d.events += d.core.set_mode(MODE[ctl], d.t)
        d.feed(1, prob=prob, wake=wake)
    open_key = None
    seen = set()
    last_uid = {}
    for e in d.utt():
        key = (e.conversation_id, e.utterance_id)
        if e.state == UTT['STARTED']:
            assert open_key is None, 'two utterances open at once'
            assert key not in seen
            assert e.utterance_id == last_uid.get(e.conversation_id, 0) + 1
            last_uid[e.conversation_id] = e.utterance_id
            seen.add(key)
            open_key = key
            assert len(e.audio) >= 1280
        else:
            assert key == open_key
            if e.state == UTT['AUDIO']:
                assert len(e.audio) == 1280
            else:
                assert len(e.audio) == 0
                open_key = None
    times = [e.t for e in d.utt() if e.state == UTT['AUDIO']]
    assert times == sorted(times)


class FakeTurn:
    """A turn model that answers from a script and records what it was asked."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.asked = []

    def __call__(self, samples):
        self.asked.append(len(samples))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def turn_driver(model, **cfg):
    d = Driver(mode='IDLE', min_speech_ms=160, **cfg)
    d.core.turn_model = model
    d.feed(3, prob=0.0, amp=10)
    d.feed(1, prob=0.9, wake=0.9, amp=5000)
    d.feed(2, prob=0.0, amp=10)                # the pause after the wake phrase
    return d


def test_a_complete_turn_ends_on_the_short_silence():
    model = FakeTurn(0.9)
    d = turn_driver(model, turn_silence_ms=200, incomplete_silence_ms=1500)
    d.feed(10, prob=0.9, amp=3000)             # the command: 800 ms
    assert model.asked == []
    ev = d.feed(2, prob=0.0, amp=10)           # 160 ms: asked (one frame before 200 ms)
    assert len(model.asked) == 1 and not d.utt('ENDED', ev)
    # it saw the utterance from the cut on: the pause's end, the command, the silence
    assert 12 * 1280 <= model.asked[0] <= 14 * 1280
    ev = d.feed(1, prob=0.0, amp=10)           # 240 ms >= 200 ms: complete -> ends
    ended = d.utt('ENDED', ev)
    assert len(ended) == 1 and ended[0].end_reason == UTT['END_SILENCE']
    assert d.stages('STAGE_SPEECH_END')[0].detail == 'turn'
    assert d.core.stats['turn_complete'] == 1 and d.core.last_turn_prob == 0.9


def test_an_incomplete_turn_waits_for_the_long_silence_asking_again_as_it_grows():
    model = FakeTurn(0.1)
    d = turn_driver(model, turn_silence_ms=200, incomplete_silence_ms=1000)
    d.feed(5, prob=0.9, amp=3000)
    ev = d.feed(12, prob=0.0, amp=10)          # 960 ms of silence: still open
    assert not d.utt('ENDED', ev)
    # asked at 160, 400, 640, 880 ms of silence (every further 200 ms or more)
    assert len(model.asked) == 4
    ev = d.feed(1, prob=0.0, amp=10)           # 1040 ms >= 1000 ms
    assert d.utt('ENDED', ev) and d.stages('STAGE_SPEECH_END')[0].detail == 'silence'
    assert d.core.stats['turn_incomplete'] == 1

    # speech after a pause the model found incomplete keeps the utterance going
    model = FakeTurn(0.1, 0.1, 0.8)
    d = turn_driver(model, turn_silence_ms=200, incomplete_silence_ms=1000)
    d.feed(5, prob=0.9, amp=3000)
    d.feed(6, prob=0.0, amp=10)                # "um ..." 480 ms
    d.feed(5, prob=0.9, amp=3000)              # "... cantina song"
    ev = d.feed(3, prob=0.0, amp=10)
    assert len(d.utt('ENDED', ev)) == 1 and len(d.utt('STARTED')) == 1
    assert d.stages('STAGE_SPEECH_END')[0].detail == 'turn'


def test_a_later_answer_can_end_the_turn_and_a_failing_model_falls_back_to_silence():
    model = FakeTurn(0.2, 0.7)                 # surer with more trailing silence
    d = turn_driver(model, turn_silence_ms=200, incomplete_silence_ms=2000)
    d.feed(5, prob=0.9, amp=3000)
    d.feed(3, prob=0.0, amp=10)                # 240 ms: asked once, incomplete
    ev = d.feed(3, prob=0.0, amp=10)           # 480 ms: asked again at 400 ms, complete
    assert len(model.asked) == 2 and d.utt('ENDED', ev)

    d = turn_driver(FakeTurn(RuntimeError('boom')), turn_silence_ms=200,
                    incomplete_silence_ms=800)
    d.feed(5, prob=0.9, amp=3000)
    assert not d.utt('ENDED', d.feed(9, prob=0.0, amp=10))     # 720 ms: not yet
    assert d.utt('ENDED', d.feed(1, prob=0.0, amp=10))          # 800 ms
    assert d.core.stats['turn_errors'] >= 1


def test_end_of_speech_is_known_to_the_vad_window():
    d = Driver(mode='IDLE', silence_ms=200, min_speech_ms=160)
    d.feed(1, prob=0.9, wake=0.9)
    d.feed(4, prob=0.9)
    t = d.t
    # the last voiced 32 ms window of this frame ends 512 samples in (of 1280)
    out = d.core.process(t, np.zeros(1280, np.int16), {'hey_jarvis': 0.0}, 0.9,
                         [(0.9, 512), (0.2, 1024)])
    d.i += 1
    audio = d.utt('AUDIO', out)
    assert audio[0].audio_end == pytest.approx(t + 512 / 16000)
    ev = d.feed(2, prob=0.0)                   # 48 + 160 = 208 ms >= 200 ms of silence
    ended = d.utt('ENDED', ev)
    assert ended and ended[0].audio_end == pytest.approx(t + 512 / 16000)


def windows_frame(d, prob, amp, wake=0.0):
    """One frame whose two VAD windows (ending 512 and 1024 samples in) say ``prob``,
    its samples at level ``amp``."""
    out = d.core.process(d.t, np.full(1280, amp, np.int16), {'hey_jarvis': wake},
                         prob, [(prob, 512), (prob, 1024)])
    d.i += 1
    d.events += out
    return out


@pytest.mark.parametrize('gate_db', [6.0, 0.0])
def test_over_noise_the_vads_slow_decay_does_not_hold_the_end_of_speech(gate_db):
    """Over background noise Silero's probability stays 0.5-0.9 for a few hundred ms
    after the last word, at the noise's level: unsure windows at the noise floor are not
    speech (noise_gate_db), sure ones still are. gate_db 0: the old behaviour."""
    d = Driver(mode='IDLE', silence_ms=200, min_speech_ms=160, noise_gate_db=gate_db)
    for _ in range(6):
        windows_frame(d, 0.1, 300)                       # the room: 12 windows at 49.5 dB
    assert d.core.noise.level == pytest.approx(10 * np.log10(300.0 ** 2 + 1e-3))
    windows_frame(d, 0.99, 3000, wake=0.9)
    for _ in range(3):
        windows_frame(d, 0.99, 3000)                     # the command, 20 dB above
    windows_frame(d, 0.97, 300)                          # sure, though as quiet as the room
    speech_end = d.t - F + 1024 / 16000
    for _ in range(4):
        windows_frame(d, 0.7, 300)                       # the decay: unsure, at the floor
    decay_end = d.t - F + 1024 / 16000
    for _ in range(4):
        windows_frame(d, 0.1, 300)
    ended = d.utt('ENDED')
    assert len(ended) == 1
    if gate_db:
        assert ended[0].audio_end == pytest.approx(speech_end)
        assert d.core.stats['windows_noise_gated'] == 8
    else:
        assert ended[0].audio_end == pytest.approx(decay_end)
        assert d.core.stats['windows_noise_gated'] == 0


def test_the_noise_floor_is_the_median_of_what_the_vad_calls_non_speech():
    floor = NoiseFloor(history=5, min_windows=3)
    floor.add(0.1, 40.0)
    floor.add(0.9, 80.0)                                 # speech: not the floor
    floor.add(0.2, 42.0)
    assert floor.level is None                           # two windows are not enough
    floor.add(0.3, 90.0)                                 # a bang: the median ignores it
    assert floor.level == 42.0
    for _ in range(5):
        floor.add(0.0, 50.0)                             # the room got louder
    assert floor.level == 50.0
    floor.add(0.1, float('nan'))
    assert floor.level == 50.0


def test_reads_complete():
    from droid_audio.endpointer import reads_complete
    for text in ('What is your name?', 'Stop the music.', 'Open the door, please.',
                 'Go to sleep now!', ' Turn your eyes red. ', 'What time is it?"'):
        assert reads_complete(text), text
    for text in ('', 'set a timer for', 'Please, um,', 'turn the light to... uh...',
                 'Play the.', 'Play some, um.', 'I want to.', 'Tell me a story and',
                 'What is the weather like today', 'Wait\u2026', '...'):
        assert not reads_complete(text), text


def words_driver(turn=0.02, **cfg):
    """A confirmed utterance that just stopped being voiced; the turn model is unsure."""
    d = turn_driver(FakeTurn(turn), turn_silence_ms=160, incomplete_silence_ms=1500,
                    words_silence_ms=240, **cfg)
    d.feed(10, prob=0.9, amp=3000)
    voiced_end = d.t
    u = d.core._utt
    return d, u.cid, u.uid, voiced_end


def test_words_that_read_complete_end_an_unsure_turn():
    d, cid, uid, end = words_driver()
    assert not d.utt('ENDED', d.feed(2, prob=0.0, amp=10))         # 160 ms: model unsure
    # the partial covering all the speech reads complete; 160 ms < 240 ms: not yet
    assert d.core.on_transcript(cid, uid, 'What is your name?', end + 0.1) == []
    ev = d.feed(1, prob=0.0, amp=10)                                # 240 ms: ends
    ended = d.utt('ENDED', ev)
    assert len(ended) == 1 and ended[0].audio_end == pytest.approx(end)
    assert d.stages('STAGE_SPEECH_END')[0].detail == 'words'
    assert d.core.stats['turn_words'] == 1

    # the partial arrives after words_silence_ms already passed: it ends the turn at once
    d, cid, uid, end = words_driver()
    d.feed(4, prob=0.0, amp=10)                                     # 320 ms
    ev = d.core.on_transcript(cid, uid, 'What is your name?', end + 0.05)
    ended = [e for e in ev if isinstance(e, UtteranceEvent) and e.state == UTT['ENDED']]
    assert len(ended) == 1 and ended[0].t == pytest.approx(d.t)
    assert d.core.on_transcript(cid, uid, 'What is your name?', end + 0.05) == []


def test_words_that_do_not_cover_the_speech_or_read_unfinished_change_nothing():
    cases = [
        lambda cid, uid, end: ('Set a timer for', cid, uid, end + 0.05),    # unfinished
        lambda cid, uid, end: ('What is your name?', cid, uid, end - 0.2),  # older audio
        lambda cid, uid, end: ('What is your name?', 'other', uid, end),    # other turn
        lambda cid, uid, end: ('What is your name?', cid, uid + 1, end),
    ]
    for case in cases:
        d, cid, uid, end = words_driver()
        text, c, u, audio_end = case(cid, uid, end)
        d.feed(4, prob=0.0, amp=10)
        assert d.core.on_transcript(c, u, text, audio_end) == []
        assert not d.utt('ENDED', d.feed(8, prob=0.0, amp=10))     # 960 ms: still open
    # words of the speech before a pause do not end it once the user speaks again
    d, cid, uid, end = words_driver()
    d.feed(2, prob=0.0, amp=10)
    d.core.on_transcript(cid, uid, 'Turn the lights off.', end + 0.1)
    d.feed(3, prob=0.9, amp=3000)                                   # "... and on again"
    assert not d.utt('ENDED', d.feed(8, prob=0.0, amp=10))
    # off: the words are ignored
    d = turn_driver(FakeTurn(0.02), turn_silence_ms=160, incomplete_silence_ms=1500,
                    words_silence_ms=0)
    d.feed(10, prob=0.9, amp=3000)
    u = d.core._utt
    end = d.t
    d.feed(4, prob=0.0, amp=10)
    assert d.core.on_transcript(u.cid, u.uid, 'What is your name?', end + 0.1) == []
    assert not d.utt('ENDED', d.feed(8, prob=0.0, amp=10))


def test_the_audio_goes_out_before_the_turn_model_runs():
    order = []
    d = turn_driver(lambda samples: order.append('turn model') or 0.9,
                    turn_silence_ms=160, incomplete_silence_ms=1500)
    d.core.emit_early = lambda events: order.extend(
        f'audio {e.t:.2f}' for e in events if isinstance(e, UtteranceEvent))
    d.feed(10, prob=0.9, amp=3000)
    order.clear()
    t = d.t
    ev = d.feed(1, prob=0.0, amp=10)                    # 80 ms: the model is asked
    assert order == [f'audio {t:.2f}', 'turn model']
    assert not d.utt('AUDIO', ev)                        # handed over, not returned twice

"""The barge-in arbiter: pause on voice, stop for real words, resume after a false alarm."""

from droid_voice.barge_in import PAUSE, RESUME, STOP, BargeInArbiter, BargeInConfig


def arbiter(**kw):
    return BargeInArbiter(BargeInConfig(**kw))


def test_cough_pauses_then_resumes():
    a = arbiter(resume_s=0.6)
    assert a.voice(True, 10.0, droid_speaking=True) == PAUSE
    assert a.voice(True, 10.1, droid_speaking=False) is None        # already paused
    assert a.voice(False, 10.2, droid_speaking=False) is None
    assert a.tick(10.5) is None                                     # not yet 600 ms
    assert a.transcription('uh-huh', 10.55) is None                 # a backchannel
    assert a.tick(10.61) == RESUME and not a.paused
    assert a.stats == {'paused': 1, 'resumed': 1, 'confirmed': 0}


def test_real_words_confirm_while_paused_or_soon_after_the_resume():
    a = arbiter()
    a.voice(True, 1.0, True)
    assert a.transcription('what time is it', 1.3) == STOP
    a = arbiter(resume_s=0.6, late_s=1.5)
    a.voice(True, 1.0, True)
    a.voice(False, 1.2, False)
    assert a.tick(1.7) == RESUME
    assert a.transcription('stop', 2.5) == STOP                      # late, still stops
    assert a.transcription('stop please', 9.0) is None               # long after: no


def test_no_resume_while_the_voice_goes_on_and_long_speech_confirms():
    a = arbiter(resume_s=0.6, confirm_speech_s=1.2)
    a.voice(True, 0.0, True)
    assert a.tick(0.9) is None                                      # voice still on
    assert a.tick(1.21) == STOP


def test_voice_while_the_droid_is_silent_does_nothing_and_immediate_mode_stops():
    assert arbiter().voice(True, 0.0, droid_speaking=False) is None
    assert arbiter(mode='immediate').voice(True, 0.0, droid_speaking=True) == STOP


def test_ticks_matter_only_while_paused():
    """A node ticks the arbiter only while ``needs_tick``: at any other time a tick must
    decide nothing and change nothing, whatever came before."""
    import random
    rng = random.Random(7)
    for mode in ('confirm', 'immediate'):
        a = arbiter(mode=mode, resume_s=0.3, confirm_speech_s=0.5)
        t, seen_paused = 0.0, False
        for _ in range(3000):
            t += rng.choice((0.01, 0.05, 0.2))
            kind = rng.random()
            if kind < 0.4:
                a.voice(rng.random() < 0.5, t, droid_speaking=rng.random() < 0.7)
            elif kind < 0.55:
                a.transcription(rng.choice(('uh-huh', 'stop', 'what time is it')), t)
            elif kind < 0.6:
                a.reset()
            assert a.needs_tick == a.paused
            seen_paused |= a.paused
            if not a.needs_tick:
                before = dict(vars(a), stats=dict(a.stats))
                assert a.tick(t) is None
                assert dict(vars(a), stats=dict(a.stats)) == before
            else:
                a.tick(t)
        assert seen_paused == (mode == 'confirm')

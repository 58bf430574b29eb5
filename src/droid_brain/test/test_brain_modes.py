"""Mode state machine (plain Python; the ROS service/topic are tested in test_brain_ros.py)."""

from droid_brain.modes import MODES, ModeMachine

IDLE, AMBIENT, INTER, SLEEP = (MODES[k] for k in ('idle', 'ambient', 'interactive', 'sleep'))


def test_wake_word_goes_interactive_then_returns_after_timeout():
    m = ModeMachine(AMBIENT, timeout=10.0, now=0.0)
    assert m.last_change.reason == 'startup'
    c = m.wake(1.0)
    assert (c.mode, c.previous, c.reason) == (INTER, AMBIENT, 'wake word')
    m.activity(5.0)                        # a transcription
    assert m.tick(14.0) is None            # 9 s since activity
    c = m.tick(15.5)
    assert (c.mode, c.previous, c.reason) == (AMBIENT, INTER, 'interactive timeout')


def test_speaking_holds_interactive():
    m = ModeMachine(IDLE, timeout=2.0, now=0.0)
    m.wake(0.0)
    m.speech(True, 1.0)
    assert m.tick(10.0) is None
    m.speech(False, 10.0)
    assert m.tick(12.5).mode == IDLE


def test_service_modes_and_invalid():
    m = ModeMachine(IDLE, timeout=2.0, now=0.0)
    change, err = m.set(99, 'service', 1.0)
    assert change is None and 'invalid mode 99' in err
    change, err = m.set(INTER, 'service', 1.0)
    assert err == '' and change.mode == INTER
    assert m.tick(100.0) is None           # explicit interactive has no timeout
    assert m.set(INTER, 'service', 2.0) == (None, '')


def test_sleep_ignores_wake_and_service_cancels_return():
    m = ModeMachine(SLEEP, timeout=1.0, now=0.0)
    assert m.wake(1.0) is None and m.mode == SLEEP
    m.set(AMBIENT, 's', 2.0)
    m.wake(3.0)
    m.set(SLEEP, 'tool set_mode', 3.5)
    assert m.tick(10.0) is None and m.mode == SLEEP


def test_zero_timeout_never_returns():
    m = ModeMachine(AMBIENT, timeout=0.0, now=0.0)
    m.wake(0.0)
    assert m.tick(1e6) is None

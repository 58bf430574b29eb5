"""Event-driven hand-offs in the voice path: nothing waits for a polling tick.

The clocks here are frozen or manual, so a hand-off that still depended on time passing
(a poll, a block boundary) would never happen and the test would fail on its (generous)
timeout; none of these tests measures time.
"""

import threading

from droid_voice.amplitude import DueQueue
from droid_voice.output import MockOutput
from droid_voice.speaker import Speaker, Utterance
from droid_voice.synth import RATE, MockBackend

GENEROUS = 20.0


def test_due_queue_wait_is_woken_by_a_push_from_another_thread():
    q = DueQueue()
    q.pop_due(0.0)
    threading.Timer(0.05, lambda: q.push(5.0, 'e')).start()
    assert q.wait(GENEROUS) is True
    assert q.pop_due(5.0) == ['e']


def test_a_push_between_pop_and_wait_is_not_missed():
    q = DueQueue()
    q.pop_due(0.0)
    q.push(1.0, 'early')          # lands before the consumer goes to sleep
    assert q.wait(GENEROUS) is True
    q.pop_due(0.0)                # consumed the news: the next wait sleeps
    assert q.wait(0.0) is False


def test_speaker_wait_due_returns_when_an_event_is_pushed():
    t = {'now': 50.0}
    sp = Speaker(MockBackend(words_per_minute=600), clock=lambda: t['now'])
    try:
        sp.pop_due(t['now'])
        done = threading.Event()

        def waiter():
            sp.wait_due(t['now'], GENEROUS)
            done.set()
        th = threading.Thread(target=waiter)
        th.start()
        sp.submit(Utterance('hello'))
        u = Utterance('x')
        sp.submit(u)
        sp.stop(u)                # a 'dropped' event is pushed now
        assert done.wait(GENEROUS)
        th.join()
        assert any(e.kind == 'dropped' for e in sp.pop_due(t['now']))
    finally:
        sp.close()


def test_speaker_calls_on_audio_when_the_head_utterance_gets_audio():
    woke = threading.Event()
    sp = Speaker(MockBackend(words_per_minute=600), clock=lambda: 1.0, on_audio=woke.set)
    try:
        u = Utterance('one two three')
        sp.submit(u)
        assert woke.wait(GENEROUS)
    finally:
        sp.close()


def test_mock_output_hands_new_audio_over_without_waiting_for_the_clock():
    """The clock is frozen just after a block boundary: without the wake-up the next block
    (start 100.02) would never be rendered."""
    now = 100.0
    sp = Speaker(MockBackend(words_per_minute=600), clock=lambda: now)
    blocks = []
    out = MockOutput(sp.render, lambda: now, sample_rate=RATE, block_s=0.02, poll_s=0.05,
                     sink=lambda t, b: blocks.append((t, b.any())))
    sp.on_audio = out.wake
    assert out.step(now) == 1                      # the (silent) block starting now
    out.start()
    try:
        u = Utterance('one two three')
        sp.submit(u)
        deadline = threading.Event()
        for _ in range(int(GENEROUS / 0.01)):
            if u.written_at is not None:
                break
            deadline.wait(0.01)
        assert u.written_at == now                 # handed over at once ...
        assert u.started_at == now + 0.02          # ... heard from the next block's start
        assert out.early == 1
        assert blocks[0] == (now, False) and blocks[1] == (now + 0.02, True)
    finally:
        out.close()
        sp.close()


def test_mock_output_writes_at_most_one_block_ahead_of_the_clock():
    now = 10.0
    rendered = []
    out = MockOutput(lambda n, th, tw: rendered.append((th, tw)) or None, lambda: now,
                     sample_rate=RATE, block_s=0.02)
    assert out.step(now) == 1                     # the block starting now
    assert out.step_ahead(now) is True            # the next one, written early
    assert out.step_ahead(now) is False           # not two ahead
    assert rendered == [(10.0, 10.0), (10.02, 10.0)]
    assert out.step(10.02) == 0 and out.step(10.04) == 1


def test_the_events_publisher_is_woken_by_an_event_due_before_the_others():
    """The tts events thread sleeps until the first event is due (no polling); audio that
    starts playing pushes an earlier event, which must wake it at once."""
    from droid_common.activity import Activity
    t = {'now': 50.0}
    act = Activity(clock=lambda: t['now'])
    woke = threading.Event()
    sp = Speaker(MockBackend(words_per_minute=600), clock=lambda: t['now'], activity=act,
                 on_audio=woke.set)
    try:
        sp.submit(Utterance('one two three'))
        assert woke.wait(GENEROUS)                 # audio ready to play
        sp.pop_due(t['now'])
        first = sp.next_due()                      # nothing due yet
        threading.Timer(0.05, lambda: sp.render(320, t['now'] + 0.01)).start()
        # waits as the events thread does, with a poll far away: only a wake-up ends it
        # before GENEROUS (the predicate is checked once more when the poll runs out)
        import time
        start = time.monotonic()
        assert act.wait(lambda: sp.next_due() != first, poll=GENEROUS, wall_timeout=GENEROUS)
        assert time.monotonic() - start < GENEROUS / 2
        assert sp.next_due() == 50.01
    finally:
        sp.close()


def test_a_wait_with_a_deadline_on_the_wall_clock_ends_at_the_deadline_not_the_poll():
    import time

    from droid_common.activity import Activity
    act = Activity(clock=time.monotonic)
    start = time.monotonic()
    assert act.wait(lambda: False, until=start + 0.05, poll=GENEROUS) is False
    assert time.monotonic() - start < GENEROUS / 2

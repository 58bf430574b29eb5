"""The body's view of the mind (plain Python): waiting -> up -> lost -> up, from pings."""

import pytest

from droid_brain.mind_link import LOST, UP, WAITING, FallbackGate, MindLink

NODES = ['stt', 'brain', 'tool_executor']


def run(link, t0, t1, answer, dt=0.05):
    """Step the clock from t0 to t1; ``answer(node, t)`` says whether a ping is answered
    (immediately, 2 ms later). Returns the state changes with their times."""
    changes = []
    t = t0
    while t < t1 - 1e-9:
        for node in link.due(t):
            if answer(node, t):
                link.answered(node, t, t + 0.002)
        change = link.tick(t + 0.002)
        if change:
            changes.append((round(t, 3), change))
        t += dt
    return changes


def test_waits_for_every_node_then_is_up():
    link = MindLink(NODES, 0.25, 1.25, now=0.0)
    assert link.state == WAITING and not link.reachable
    # only the brain answers at first
    assert run(link, 0.0, 2.0, lambda n, t: n == 'brain') == []
    assert link.state == WAITING
    assert 'stt' in link.describe(2.0) and 'tool_executor' in link.describe(2.0)
    assert 'brain' not in link.describe(2.0).split(':')[1]
    changes = run(link, 2.0, 3.0, lambda n, t: True)
    assert [c.state for _, c in changes] == [UP]
    assert link.reachable and link.describe(3.0).startswith('mind reachable')
    assert link.rtt_ms()['brain'] == pytest.approx(2.0)


def test_lost_within_the_deadline_and_back_with_the_outage_length():
    link = MindLink(NODES, 0.25, 1.25, now=0.0)
    run(link, 0.0, 1.0, lambda n, t: True)
    assert link.state == UP
    down_at, up_at = 5.0, 15.0
    changes = run(link, 1.0, 20.0, lambda n, t: not down_at <= t < up_at)
    assert [c.state for _, c in changes] == [LOST, UP]
    (t_lost, lost), (t_back, back) = changes
    # detected after lost_after, and well within 2 s of the last answer
    assert down_at + 1.0 <= t_lost <= down_at + 1.6
    assert lost.missing == NODES and lost.previous == UP
    # back on the first answer after the link returns
    assert up_at <= t_back <= up_at + 0.3
    assert back.previous == LOST and back.outage_s == pytest.approx(t_back - t_lost, abs=0.01)
    assert link.outages == [back.outage_s]


def test_one_silent_node_is_enough_to_be_lost_and_is_named():
    link = MindLink(NODES, 0.25, 1.25, now=0.0)
    run(link, 0.0, 1.0, lambda n, t: True)
    changes = run(link, 1.0, 4.0, lambda n, t: n != 'stt')
    assert [c.state for _, c in changes] == [LOST]
    assert changes[0][1].missing == ['stt']
    assert link.describe(4.0) == 'mind unreachable: stt not answering'
    assert link.silent_for(4.0) == pytest.approx(4.0 - 0.752)   # last answer: ping at 0.75


def test_late_answers_to_old_pings_still_count():
    link = MindLink(['brain'], 0.25, 1.25, now=0.0)
    assert link.due(0.0) == ['brain']
    assert link.due(0.1) == []            # one ping per period
    assert link.due(0.25) == ['brain']
    link.answered('brain', 0.0, 0.9)      # the first ping, answered late
    assert link.tick(0.9).state == UP
    assert link.rtt_ms()['brain'] == pytest.approx(900.0)
    link.answered('ghost', 0.0, 1.0)      # unknown nodes are ignored
    assert link.tick(2.1) is None         # 1.2 s since the answer: still up
    assert link.tick(2.2).state == LOST
    assert link.tick(2.3) is None


@pytest.mark.parametrize('kwargs,needle', [
    ({'nodes': []}, 'at least one'),
    ({'period': 0.0}, 'period'),
    ({'lost_after': 0.2}, 'longer than the ping period'),
])
def test_bad_settings_are_clear_errors(kwargs, needle):
    args = {'nodes': NODES, 'period': 0.25, 'lost_after': 1.25, 'now': 0.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        MindLink(**args)


def test_fallback_line_once_per_utterance_and_per_cooldown():
    gate = FallbackGate(cooldown=5.0)
    assert gate.should_speak(('c1', 1), 10.0)
    assert not gate.should_speak(('c1', 1), 10.5)     # the same utterance again (stt + chat)
    assert not gate.should_speak(('c1', 2), 12.0)     # within the cooldown
    assert gate.should_speak(('c1', 3), 15.5)
    assert not gate.should_speak(('c1', 3), 30.0)

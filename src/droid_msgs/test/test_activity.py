"""droid_common.activity: when a node counts as idle (plain Python, no ROS)."""

import threading
import time

from droid_common import activity as A
from droid_common import contract


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.002)
    return False


def test_roles_are_the_report_constants():
    roles = contract.constants_with_prefix('ActivityReport', 'ROLE_')
    assert roles == {'publisher': A.PUBLISHER, 'subscriber': A.SUBSCRIBER,
                     'sender': A.SENDER, 'receiver': A.RECEIVER}


def test_a_callback_is_busy_while_it_runs_and_counts_when_it_returns():
    act = A.Activity(FakeClock())
    ch = act.channel(A.SUBSCRIBER, '/x')
    seen = {}

    def cb(msg):
        seen['state'] = act.state()
        return msg * 2

    assert act.callback(cb, ch)(21) == 42
    assert not seen['state'].idle and seen['state'].channels[0][2] == 0
    st = act.state()
    assert st.idle and st.channels == [(A.SUBSCRIBER, '/x', 1, -1, False)]


def test_a_worker_is_busy_except_while_it_waits_for_what_has_not_happened():
    clock = FakeClock()
    act = A.Activity(clock, poll_s=0.002)
    items, done = [], []
    go = threading.Event()

    def work():
        while True:
            act.wait(lambda: bool(items), what='items')
            item = items.pop()
            if item is None:
                return
            go.wait(5)               # "processing": busy
            done.append(item)

    act.spawn(work, 'worker')
    assert wait_for(lambda: act.state().idle)
    items.append(1)
    # the predicate is true: busy before the worker even woke up
    assert not act.state().idle
    assert wait_for(lambda: not items)
    assert not act.state().idle          # processing
    go.set()
    assert wait_for(lambda: done == [1] and act.state().idle)
    items.append(None)
    assert wait_for(lambda: not act._workers)
    assert act.state().idle


def test_a_spawned_thread_is_busy_from_the_start():
    act = A.Activity(FakeClock())
    release = threading.Event()
    act.spawn(lambda: release.wait(5), 'slow-start')
    st = act.state()
    assert not st.idle and any('slow-start' in b for b in st.busy)
    release.set()
    assert wait_for(lambda: act.state().idle)


def test_sleeping_on_the_node_clock_is_idle_until_the_time_comes():
    clock = FakeClock(10.0)
    act = A.Activity(clock, poll_s=0.002)
    woke = []

    def sleeper():
        woke.append(act.sleep_until(10.5))

    act.spawn(sleeper, 'sleeper')
    assert wait_for(lambda: act.state().idle)
    assert act.state().next_due == 10.5
    clock.t = 10.4
    act.notify()
    time.sleep(0.02)
    assert act.state().idle and not woke
    clock.t = 10.5
    # due: busy at once, whether or not the thread has run yet
    assert not act.state().idle
    act.notify()
    assert wait_for(lambda: woke == [True] and act.state().idle)


def test_a_cancelled_sleep_returns_false():
    act = A.Activity(FakeClock(), poll_s=0.002)
    cancel = threading.Event()
    out = []
    t = threading.Thread(target=lambda: out.append(act.sleep_until(1e9, cancel)))
    t.start()
    cancel.set()
    t.join(5)
    assert out == [False]


def test_a_wait_inside_a_callback_makes_the_callback_idle():
    clock = FakeClock()
    act = A.Activity(clock, poll_s=0.002)
    flag = threading.Event()
    result = []
    act.set_tasks(lambda: 1)           # the executor has this callback's task

    def cb():
        result.append(act.wait(flag.is_set, timeout=2.0))

    t = threading.Thread(target=act.callback(cb))
    t.start()
    assert wait_for(lambda: act._cb_waits)
    assert act.state().idle and act.state().next_due == clock.t + 2.0
    flag.set()
    assert not act.state().idle
    t.join(5)
    act.set_tasks(lambda: 0)
    assert result == [True] and act.state().idle


def test_a_wait_times_out_on_the_node_clock_not_the_wall():
    clock = FakeClock(5.0)
    act = A.Activity(clock, poll_s=0.002)
    out = []
    t = threading.Thread(target=lambda: out.append(act.wait(lambda: False, timeout=1.0)))
    t.start()
    time.sleep(0.05)
    assert not out
    clock.t = 6.0
    act.notify()
    t.join(5)
    assert out == [False]


def test_wall_timeout_returns_false_with_a_frozen_clock():
    act = A.Activity(FakeClock(), poll_s=0.002)
    t0 = time.monotonic()
    assert act.wait(lambda: False, wall_timeout=0.05) is False
    assert 0.04 <= time.monotonic() - t0 < 2.0


def test_a_source_can_make_the_node_busy_and_give_the_next_due_time():
    act = A.Activity(FakeClock(1.0))
    state = {'reason': 'timer due', 'due': 1.25}
    act.add_source(lambda now: (state['reason'], state['due']))
    st = act.state()
    assert not st.idle and st.busy == ['timer due'] and st.next_due == 1.25
    state['reason'] = ''
    assert act.state().idle


def test_counting_and_matched_peers():
    act = A.Activity(FakeClock())
    pub = act.channel(A.PUBLISHER, '/mode', latched=True, matched=lambda: 3)
    pub.add()
    pub.add(2)
    assert act.state().channels == [(A.PUBLISHER, '/mode', 3, 3, True)]


def test_async_callbacks_stay_coroutines():
    import asyncio
    act = A.Activity(FakeClock())
    ch = act.channel(A.RECEIVER, '/srv#request')

    async def cb(x):
        return x + 1

    wrapped = act.callback(cb, ch)
    assert asyncio.run(wrapped(1)) == 2
    assert ch.count == 1


def test_untracked_activity_still_waits_and_sleeps():
    t0 = time.monotonic()
    assert A.REALTIME.sleep_until(time.monotonic() + 0.03)
    assert time.monotonic() - t0 >= 0.029
    assert A.on_clock(time.monotonic) is A.REALTIME
    clock = FakeClock(3.0)
    act = A.on_clock(clock)
    assert act.now() == 3.0 and A.on_clock(clock, act) is act


def test_a_wait_until_an_absolute_time():
    clock = FakeClock(5.0)
    act = A.Activity(clock, poll_s=0.002)
    out = []
    t = threading.Thread(target=lambda: out.append(act.wait(lambda: False, until=5.25)))
    t.start()
    assert wait_for(lambda: act._workers)
    assert act.state().next_due == 5.25
    clock.t = 5.25
    act.notify()
    t.join(5)
    assert out == [False]


def test_deferred_outputs_wait_for_the_end_of_the_tick_under_a_replay():
    act = A.Activity(FakeClock())
    out = []
    act.defer('state', lambda: out.append('now'))      # not replayed: at once
    assert out == ['now']
    act.deferring = True
    act.defer('state', lambda: out.append('first'))
    act.defer('b', lambda: out.append('b'))
    act.defer('state', lambda: out.append('latest'))   # latest per key wins
    assert out == ['now']
    act.flush()
    assert out == ['now', 'b', 'latest']                 # in key order
    act.flush()
    assert out == ['now', 'b', 'latest']


def test_ordered_inputs_of_a_tick_are_handled_in_a_fixed_order_under_a_replay():
    act = A.Activity(FakeClock())
    out = []
    act.ordered('barge', 1, lambda: out.append('words'))   # not replayed: at once
    assert out == ['words']

    def tick(arrivals):
        got = []
        for order, name in arrivals:
            act.ordered('barge', order, lambda n=name: got.append(n))
        assert got == []                                   # nothing before the tick's end
        act.flush()
        return got
    act.deferring = True
    # the executor took them in different orders: the same handling
    a = tick([(1, 'stop'), (0, 'voice on'), (2, 'timer'), (0, 'voice still on')])
    b = tick([(2, 'timer'), (0, 'voice on'), (0, 'voice still on'), (1, 'stop')])
    assert a == b == ['voice on', 'voice still on', 'stop', 'timer']
    act.flush()
    assert tick([]) == []

"""Has this node finished the work it was given? (plain Python; the rclpy glue that wraps
a node's callbacks and answers the replay is :mod:`droid_common.ros_activity`).

Deterministic replay (``ros2 run droid_bringup replay``) drives ``/clock`` itself and moves to
the next tick only when every node has finished everything the previous tick caused. Only
a node knows that, so every droid node keeps an :class:`Activity`:

- **callbacks** (subscriptions, timers, services, action callbacks) are wrapped by the glue:
  the node is busy while one runs or while its executor has one queued;
- **messages** are counted per channel (:class:`Channel`: a topic published or handled, a
  service or action request sent or handled); the replay adds the counts up across the
  graph, so a message still on its way between two nodes is work not yet done;
- **worker threads** (started with :meth:`Activity.spawn`) are busy except while they wait
  in :meth:`Activity.wait` / :meth:`Activity.sleep_until` for something that has not
  happened yet: a condition (a queue is no longer empty, an event is set) or a time on the
  node clock;
- **timers** due on the node clock (the glue asks rclpy).

Waits are the one thing a node's own code does differently: instead of ``event.wait(0.1)``
or ``time.sleep`` a thread says what it is waiting *for*, so the tracker knows it is idle
exactly while that has not happened, and since timeouts are on the node clock they happen
at the same sim time on every replay. A thread not started with :meth:`Activity.spawn`
is seen only while it waits here (start workers with ``spawn`` so that the time between
their waits counts as busy). An :class:`Activity` nobody reports (tests, benchmarks, plain
logic built without a node) is the same API with nothing listening.
"""

from __future__ import annotations

import inspect
import threading
import time
from dataclasses import dataclass, field

# Channel roles (= droid_msgs/ActivityReport ROLE_* constants; a test checks they agree).
PUBLISHER, SUBSCRIBER, SENDER, RECEIVER = 0, 1, 2, 3
ROLE_NAMES = {PUBLISHER: 'publisher', SUBSCRIBER: 'subscriber', SENDER: 'sender',
              RECEIVER: 'receiver'}


@dataclass
class Channel:
    """One counted endpoint. PUBLISHER/SUBSCRIBER: a topic, every subscriber gets every
    message. SENDER/RECEIVER: point to point (a service or action request, an action
    result): the graph's receivers together get what its senders sent."""

    role: int
    name: str
    count: int = 0
    latched: bool = False            # transient local: a late subscriber gets the last one
    matched: object = None           # callable -> matched peers (topics), None = unknown
    owner: object = field(default=None, repr=False)

    def add(self, n: int = 1) -> None:
        if self.owner is not None:
            self.owner._count(self, n)
        else:
            self.count += n

    def matched_count(self) -> int:
        try:
            return int(self.matched()) if self.matched is not None else -1
        except Exception:  # noqa: BLE001 - an entity being destroyed
            return -1


@dataclass
class State:
    """A consistent snapshot of a node's activity."""

    idle: bool
    busy: list                     # why not idle, for humans
    now: float                     # node clock when taken
    next_due: float | None         # earliest node-clock time with work due (None = nothing)
    channels: list                 # [(role, name, count, matched, latched)]
    gen: int


class _Wait:
    __slots__ = ('predicate', 'deadline', 'what')

    def __init__(self, predicate, deadline, what):
        self.predicate = predicate
        self.deadline = deadline
        self.what = what

    def due(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            return True
        if self.predicate is None:
            return False
        try:
            return bool(self.predicate())
        except Exception:  # noqa: BLE001 - a predicate that fails wakes its thread
            return True


class _Worker:
    __slots__ = ('thread', 'wait')

    def __init__(self, thread):
        self.thread = thread
        self.wait = None


class Activity:
    """The activity of one node (thread-safe). ``clock`` returns the node clock in seconds.

    ``poll_s`` is how often (wall time) a waiting thread re-checks its condition when
    nothing it can see has changed; tracked changes (callbacks ending, counts, waits,
    :meth:`notify`, the clock moving) wake it at once.
    """

    def __init__(self, clock=time.monotonic, poll_s: float = 0.01):
        self.clock = clock
        self.poll_s = float(poll_s)
        self._cond = threading.Condition(threading.Lock())
        self._gen = 0
        self._local = threading.local()
        self._callbacks = 0            # wrapped callbacks running (waiting ones included)
        self._cb_waits: list = []      # waits inside callbacks
        self._workers: dict = {}       # Thread -> _Worker
        self._channels: list = []
        self.deferring = False         # a replay drives the clock: defer() waits for the tick's end
        self._deferred: dict = {}      # key -> fn, the latest per key
        self._inboxes: dict = {}       # group -> [(order, arrival, fn)] (ordered())
        self._tasks_fn = None          # -> executor tasks queued or running (glue)
        self.before_callback = None    # called before every wrapped callback (glue: the clock)
        self._sources: list = []       # fn(now) -> (busy reason or '', next due or None)

    # -- time and changes -------------------------------------------------------------------
    def now(self) -> float:
        return float(self.clock())

    def notify(self) -> None:
        """Something a waiting thread may be waiting for has changed (e.g. the clock moved)."""
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    @property
    def gen(self) -> int:
        return self._gen

    def wait_changed(self, gen: int, timeout: float) -> int:
        """Block until the generation differs from ``gen`` (or ``timeout`` wall seconds)."""
        with self._cond:
            if self._gen == gen:
                self._cond.wait(timeout)
            return self._gen

    # -- channels ---------------------------------------------------------------------------
    def channel(self, role: int, name: str, latched: bool = False, matched=None) -> Channel:
        ch = Channel(role, name, latched=latched, matched=matched, owner=self)
        with self._cond:
            self._channels.append(ch)
        return ch

    def _count(self, ch: Channel, n: int) -> None:
        with self._cond:
            ch.count += n
            self._gen += 1
            self._cond.notify_all()

    # -- callbacks --------------------------------------------------------------------------
    def callback(self, fn, channel: Channel | None = None):
        """``fn`` wrapped: busy while it runs; ``channel`` counts one when it returns."""
        if inspect.iscoroutinefunction(fn):
            async def wrapped_async(*args, **kwargs):
                self._enter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self._leave(channel)
            return wrapped_async

        def wrapped(*args, **kwargs):
            self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._leave(channel)
        return wrapped

    def _enter(self) -> None:
        if self.before_callback is not None:
            self.before_callback()
        self._local.depth = getattr(self._local, 'depth', 0) + 1
        with self._cond:
            self._callbacks += 1
            self._gen += 1

    def _leave(self, channel: Channel | None) -> None:
        self._local.depth -= 1
        with self._cond:
            self._callbacks -= 1
            if channel is not None:
                channel.count += 1
            self._gen += 1
            self._cond.notify_all()

    def in_callback(self) -> bool:
        return getattr(self._local, 'depth', 0) > 0

    # -- outputs of the instant ----------------------------------------------------------------
    def defer(self, key, fn) -> None:
        """Publish a state now, or, under a replay, once at the end of the tick (the latest
        ``fn`` per ``key``): several inputs of one sim instant handled in either order then
        give the same output, the state they lead to."""
        with self._cond:
            if self.deferring:
                self._deferred[key] = fn
                return
        fn()

    def ordered(self, group, order: int, fn) -> None:
        """Handle an input now, or, under a replay, at the end of the tick together with
        the other inputs of ``group``, sorted by ``order`` (the kind of input) and then by
        arrival (one publisher's messages keep their order): inputs of one sim instant that
        the executor happened to take in either order then lead to the same state."""
        with self._cond:
            if self.deferring:
                inbox = self._inboxes.setdefault(group, [])
                inbox.append((int(order), len(inbox), fn))
                self._deferred[('ordered', str(group))] = lambda g=group: self._drain(g)
                return
        fn()

    def _drain(self, group) -> None:
        with self._cond:
            inbox = self._inboxes.pop(group, [])
        for _order, _arrival, fn in sorted(inbox, key=lambda item: item[:2]):
            fn()

    def flush(self) -> None:
        """Run the deferred outputs (the glue does at the end of each replay tick)."""
        with self._cond:
            items = sorted(self._deferred.items(), key=lambda kv: str(kv[0]))
            self._deferred.clear()
        for _key, fn in items:
            fn()

    # -- worker threads ---------------------------------------------------------------------
    def spawn(self, target, name: str, args=(), daemon: bool = True) -> threading.Thread:
        """Start a worker thread: busy from now on except while it waits here."""
        def run():
            try:
                target(*args)
            finally:
                with self._cond:
                    self._workers.pop(threading.current_thread(), None)
                    self._gen += 1
                    self._cond.notify_all()

        t = threading.Thread(target=run, name=name, daemon=daemon)
        with self._cond:
            self._workers[t] = _Worker(t)
            self._gen += 1
        t.start()
        return t

    def adopt(self) -> None:
        """Count the calling thread as a worker (busy unless waiting here) until :meth:`leave`."""
        t = threading.current_thread()
        with self._cond:
            self._workers.setdefault(t, _Worker(t))
            self._gen += 1

    def leave(self) -> None:
        with self._cond:
            self._workers.pop(threading.current_thread(), None)
            self._gen += 1
            self._cond.notify_all()

    # -- waits ------------------------------------------------------------------------------
    def wait(self, predicate=None, timeout: float | None = None, poll: float | None = None,
             wall_timeout: float | None = None, what: str = '',
             until: float | None = None) -> bool:
        """Idle until ``predicate()`` is true (returns True), or ``timeout`` seconds pass on
        the node clock (or it reaches ``until``) or ``wall_timeout`` seconds of wall time
        pass (returns False).

        ``predicate`` must be cheap, thread-safe and without side effects: the replay's
        reporter calls it too, to tell whether this thread is about to wake up.
        """
        deadline = None if timeout is None else self.now() + max(0.0, float(timeout))
        if until is not None:
            deadline = float(until) if deadline is None else min(deadline, float(until))
        return self._wait(predicate, deadline, poll, wall_timeout, what)

    def sleep_until(self, t: float, cancel: threading.Event | None = None,
                    poll: float | None = None) -> bool:
        """Idle until the node clock reaches ``t``; False if ``cancel`` was set first."""
        self._wait(cancel.is_set if cancel is not None else None, float(t), poll, None,
                   'sleep')
        return cancel is None or not cancel.is_set()

    def _wait(self, predicate, deadline, poll, wall_timeout, what) -> bool:
        poll = self.poll_s if poll is None else max(0.0005, float(poll))
        w = _Wait(predicate, deadline, what or getattr(predicate, '__name__', 'wait'))
        me = threading.current_thread()
        in_cb = self.in_callback()
        temporary = False
        with self._cond:
            if in_cb:
                self._cb_waits.append(w)
            else:
                rec = self._workers.get(me)
                if rec is None:
                    # A thread not started with spawn(): seen while it waits only.
                    rec = self._workers[me] = _Worker(me)
                    temporary = True
                rec.wait = w
            self._gen += 1
        wall_end = None if wall_timeout is None else time.monotonic() + wall_timeout
        try:
            while True:
                gen = self._gen
                if predicate is not None and predicate():
                    return True
                if deadline is not None and self.now() >= deadline:
                    return False
                step = poll
                if deadline is not None:
                    # no later than the deadline (on a wall clock nothing else would wake
                    # this thread then; a simulated clock wakes it whenever it moves)
                    step = min(step, max(0.0005, deadline - self.now()))
                if wall_end is not None:
                    left = wall_end - time.monotonic()
                    if left <= 0:
                        return False
                    step = min(step, left)
                with self._cond:
                    if self._gen == gen:
                        self._cond.wait(step)
        finally:
            with self._cond:
                if in_cb:
                    self._cb_waits.remove(w)
                elif temporary:
                    self._workers.pop(me, None)
                else:
                    rec = self._workers.get(me)
                    if rec is not None:
                        rec.wait = None
                self._gen += 1
                self._cond.notify_all()

    # -- what the glue adds -----------------------------------------------------------------
    def set_tasks(self, fn) -> None:
        """``fn()`` -> how many executor tasks are queued or running (glue)."""
        self._tasks_fn = fn

    def add_source(self, fn) -> None:
        """``fn(now)`` -> (busy reason or '', next due node-clock time or None) (glue)."""
        self._sources.append(fn)

    # -- the state --------------------------------------------------------------------------
    def state(self, tries: int = 20) -> State:
        """A snapshot nothing tracked changed during (else it is taken again)."""
        for _ in range(max(1, tries)):
            gen = self._gen
            st = self._snapshot()
            if self._gen == gen:
                st.gen = gen
                return st
        st.idle = False
        st.busy.append('changing')
        return st

    def _snapshot(self) -> State:
        busy, dues = [], []
        now = self.now()
        # Executor work first: a callback that finishes while the threads are looked at
        # is seen through the generation change.
        tasks = 0
        if self._tasks_fn is not None:
            try:
                tasks = int(self._tasks_fn())
            except Exception:  # noqa: BLE001 - an executor shutting down
                tasks = 0
        for src in list(self._sources):
            try:
                reason, due = src(now)
            except Exception as exc:  # noqa: BLE001
                reason, due = f'source failed: {exc}', None
            if reason:
                busy.append(reason)
            if due is not None:
                dues.append(due)
        with self._cond:
            callbacks = self._callbacks
            cb_waits = list(self._cb_waits)
            workers = list(self._workers.values())
            channels = [(c.role, c.name, c.count, c, c.latched) for c in self._channels]
        idle_waits = 0
        for w in cb_waits:
            if w.due(now):
                busy.append(f'callback woken ({w.what})')
            else:
                idle_waits += 1
                if w.deadline is not None:
                    dues.append(w.deadline)
        running = max(tasks, callbacks) - idle_waits
        if running > 0:
            busy.append(f'{running} callback(s) queued or running')
        for rec in workers:
            t = rec.thread
            if t.ident is not None and not t.is_alive():
                with self._cond:
                    self._workers.pop(t, None)
                continue
            w = rec.wait
            if w is None:
                busy.append(f'thread {t.name} running')
            elif w.due(now):
                busy.append(f'thread {t.name} woken ({w.what})')
            elif w.deadline is not None:
                dues.append(w.deadline)
        chans = [(role, name, count, ch.matched_count(), latched)
                 for role, name, count, ch, latched in channels]
        return State(idle=not busy, busy=busy, now=now,
                     next_due=min(dues) if dues else None, channels=chans, gen=0)


REALTIME = Activity()
"""Waits on the monotonic clock with nothing reporting (plain logic without a node)."""


def on_clock(clock, activity: Activity | None = None) -> Activity:
    """``activity`` if given, else an untracked one on ``clock`` (for plain logic)."""
    if activity is not None:
        return activity
    if clock is None or clock is time.monotonic:
        return REALTIME
    return Activity(clock=clock)

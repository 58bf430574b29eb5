"""rclpy glue of :mod:`droid_common.activity`: a node tells the replay when it is done.

Every droid node calls :func:`track_activity` once (``self.activity = track_activity(self)``)
and uses the returned :class:`~droid_common.activity.Activity` for its worker threads and
waits. The glue then, with no further code in the node:

- wraps every publisher (count), subscription, timer, service and action callback (busy
  while it runs, count when it returns), service clients and action clients (count the
  requests; busy while a goal, cancel or service request waits for its response) and action
  servers (count requests handled, feedback and results);
- asks rclpy about due timers and the executor's queued tasks;
- under a replay, holds the outputs a node hands to ``activity.defer`` until the tick's end
  (the next PREPARE probe), so they show the state the tick led to, whatever the order its
  inputs were handled in;
- answers each ``droid_msgs/ActivityProbe`` on ``activity/probe`` with a
  ``droid_msgs/ActivityReport`` on ``activity/report``: a PREPARE probe at once, keeping its
  time to apply before the next callback of any kind (and on the SETTLE probe), so that no
  node handles a message of the new tick at the old time; a SETTLE probe once the node clock
  has reached the probe's stamp and the node is idle (or, while it is not, every
  ``busy_report_s`` with what keeps it busy).

Nothing is published unless someone probes, so a droid that is not being replayed pays
only for the counting. The action client wrapping also closes an rclpy 7 race (a goal,
cancel or result response handled before ``send_goal_async`` had recorded its request is
dropped, and the goal never answers) that a loaded machine hits. Entities created after
:func:`track_activity` are picked up at the next probe. The wrapping uses rclpy 7 (Jazzy)
internals: ``Executor._tasks``, ``Client._pending_requests``,
``ActionClient._pending_*_requests``, ``ActionServer.execute`` and ``_execute_callback``,
``Node._time_source``.
"""

from __future__ import annotations

import threading
import time

from droid_common import names
from droid_common.activity import PUBLISHER, RECEIVER, SENDER, SUBSCRIBER, Activity

_TRACKED = '_droid_activity_tracked'


def track_activity(node, busy_report_s: float = 2.0) -> Activity:
    """The node's :class:`Activity` (created and reported on the first call)."""
    act = getattr(node, '_droid_activity', None)
    if act is None:
        act = Activity(clock=lambda: node.get_clock().now().nanoseconds * 1e-9)
        node._droid_activity = act
        node._droid_activity_tracker = _Tracker(node, act, busy_report_s)
    return act


def _latched(qos) -> bool:
    from rclpy.qos import DurabilityPolicy
    try:
        return qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
    except AttributeError:
        return False


class _Tracker:
    def __init__(self, node, act: Activity, busy_report_s: float):
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from droid_msgs.msg import ActivityProbe, ActivityReport
        self.node = node
        self.act = act
        self.busy_report_s = float(busy_report_s)
        self._Report = ActivityReport
        self._lock = threading.Lock()
        self._probe = None            # (seq, stamp_ns, wall time received, step)
        self._pending_ns = None       # a PREPAREd time not applied yet
        self._clock_lock = threading.Lock()
        self._answered = None         # seq answered (idle)
        self._last_busy = 0.0
        self._clients: list = []
        self._action_clients: list = []
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.report_pub = node.create_publisher(ActivityReport, names.ACTIVITY_REPORT, qos)
        self.probe_sub = node.create_subscription(
            ActivityProbe, names.ACTIVITY_PROBE, self._on_probe, qos,
            callback_group=MutuallyExclusiveCallbackGroup())
        setattr(self.report_pub, _TRACKED, True)
        setattr(self.probe_sub, _TRACKED, True)
        act.set_tasks(self._tasks)
        act.before_callback = self.apply_pending
        act.add_source(self._timers)
        act.add_source(self._pending)
        self._instrument_lock = threading.RLock()
        self.instrument()
        self._hook_creation()
        self._closed = threading.Event()
        self._probed = threading.Event()      # a probe to answer (the thread sleeps otherwise)
        self._thread = threading.Thread(target=self._run, name='activity-report', daemon=True)
        self._thread.start()

    # -- probes and reports --------------------------------------------------------------
    def _on_probe(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.act.deferring = True       # replayed: defer() outputs wait for the tick's end
        if msg.step == msg.STEP_PREPARE:
            try:
                self.act.flush()        # the end of the tick: its outputs, at its time
            except Exception as exc:  # noqa: BLE001 - a bad output must not stop the replay
                self.node.get_logger().error(f'deferred output failed: {exc!r}')
            with self._clock_lock:
                if self._pending_ns is None or stamp > self._pending_ns:
                    self._pending_ns = stamp
        else:
            self.apply_pending()
        with self._lock:
            self._probe = (int(msg.seq), stamp, time.monotonic(), int(msg.step))
        self._probed.set()
        self.act.notify()

    def apply_pending(self) -> None:
        """Move the node clock to the PREPAREd time (if it is still behind)."""
        if self._pending_ns is None:
            return
        with self._clock_lock:
            pending, self._pending_ns = self._pending_ns, None
            if pending is None:
                return
            ts = getattr(self.node, '_time_source', None)
            if ts is None or not ts.ros_time_is_active or self._now_ns() >= pending:
                return
            from rosgraph_msgs.msg import Clock
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(pending, 1_000_000_000)
            ts.clock_callback(msg)
        self.act.notify()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001, S110 - the context went away: nothing to report to
            pass

    def _loop(self) -> None:
        act = self.act
        scanned = False
        while not self._closed.is_set():
            context = getattr(self.node, 'context', None)
            if context is not None and not context.ok():
                return
            if not scanned and getattr(self.node, 'executor', None) is not None:
                self.instrument()
                scanned = True
            gen = act.gen
            with self._lock:
                probe = self._probe
                if probe is None or probe[0] == self._answered:
                    self._probed.clear()
            if probe is None or probe[0] == self._answered:
                self._probed.wait(1.0 if scanned else 0.02)
                continue
            self.instrument()
            seq, stamp_ns, received, step = probe
            if step == 1:                # PREPARE: kept (in _on_probe); say so at once
                st = act.state()
                st.idle, st.busy = True, []
                self._publish(seq, st, self._now_ns())
                self._answered = seq
                continue
            st = act.state()
            now_ns = self._now_ns()
            if st.idle and now_ns >= stamp_ns:
                # Confirm: still idle, nothing tracked changed, after a moment.
                act.wait_changed(st.gen, 0.001)
                st2 = act.state()
                if st2.idle and st2.gen == st.gen and st2.channels == st.channels:
                    self._publish(seq, st2, self._now_ns())
                    self._answered = seq
                    continue
                st = st2
            wall = time.monotonic()
            if wall - max(received, self._last_busy) >= self.busy_report_s:
                if now_ns < stamp_ns:
                    st.busy.append(f'node clock {now_ns} ns has not reached {stamp_ns} ns')
                self._publish(seq, st, now_ns, idle=False)
                self._last_busy = wall
            act.wait_changed(act.gen if st.idle else gen, 0.002)

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def _publish(self, seq: int, st, now_ns: int, idle: bool | None = None) -> None:
        R = self._Report
        m = R()
        m.header.stamp.sec, m.header.stamp.nanosec = divmod(int(now_ns), 1_000_000_000)
        m.node = self.node.get_fully_qualified_name()
        m.probe = int(seq) & 0xFFFFFFFF
        m.idle = bool(st.idle if idle is None else idle)
        m.busy = '; '.join(st.busy)[:2000]
        if st.next_due is not None:
            ns = max(0, int(round(st.next_due * 1e9)))
            m.next_due.sec, m.next_due.nanosec = divmod(ns, 1_000_000_000)
        m.channel_roles = [int(c[0]) for c in st.channels]
        m.channel_names = [str(c[1]) for c in st.channels]
        m.channel_counts = [int(c[2]) for c in st.channels]
        m.channel_matched = [int(c[3]) for c in st.channels]
        m.channel_latched = [bool(c[4]) for c in st.channels]
        self.report_pub.publish(m)

    def close(self) -> None:
        self._closed.set()
        self._probed.set()
        self.act.notify()

    # -- what rclpy knows ----------------------------------------------------------------
    def _tasks(self) -> int:
        ex = getattr(self.node, 'executor', None)
        if ex is None:
            return 0
        with ex._tasks_lock:
            tasks = list(ex._tasks)
        return sum(1 for task, _entity, n in tasks
                   if not task.done() and (n is None or n is self.node))

    def _timers(self, now: float):
        due, nxt = '', None
        for tmr in list(self.node.timers):
            try:
                if tmr.is_canceled():
                    continue
                if tmr.is_ready():
                    due = 'timer due'
                left = tmr.time_until_next_call()
            except Exception:  # noqa: BLE001 - a timer being destroyed
                continue
            if left is not None:
                t = now + left * 1e-9
                nxt = t if nxt is None else min(nxt, t)
        return due, nxt

    def _pending(self, now: float):
        for cli in self._clients:
            if cli._pending_requests:
                return f'service call {cli.srv_name} pending', None
        for ac in self._action_clients:
            if ac._pending_goal_requests:
                return f'action goal {ac._action_name} pending', None
            if ac._pending_cancel_requests:
                return f'action cancel {ac._action_name} pending', None
        return '', None

    # -- wrapping ------------------------------------------------------------------------
    _CREATORS = ('create_publisher', 'create_subscription', 'create_timer', 'create_service',
                 'create_client', 'add_waitable')

    def _hook_creation(self) -> None:
        """Wrap an entity the moment the node creates it: a timer or subscription created
        after :func:`track_activity` may fire before the report thread looks again."""
        for name in self._CREATORS:
            original = getattr(self.node, name, None)
            if original is None:
                continue

            def create(*args, _create=original, **kwargs):
                out = _create(*args, **kwargs)
                self.instrument()
                return out
            setattr(self.node, name, create)

    def instrument(self) -> None:
        """Wrap every entity of the node not wrapped yet."""
        with self._instrument_lock:
            self._instrument()

    def _instrument(self) -> None:
        node, act = self.node, self.act
        for pub in list(node.publishers):
            if not getattr(pub, _TRACKED, False):
                setattr(pub, _TRACKED, True)
                self._wrap_publisher(pub)
        for sub in list(node.subscriptions):
            if not getattr(sub, _TRACKED, False):
                setattr(sub, _TRACKED, True)
                self._wrap_subscription(sub)
        for tmr in list(node.timers):
            if not getattr(tmr, _TRACKED, False):
                setattr(tmr, _TRACKED, True)
                tmr.callback = act.callback(tmr.callback)
        for srv in list(node.services):
            if not getattr(srv, _TRACKED, False):
                setattr(srv, _TRACKED, True)
                ch = act.channel(RECEIVER, self._service_name(srv) + '#request')
                srv.callback = act.callback(srv.callback, ch)
        for cli in list(node.clients):
            if not getattr(cli, _TRACKED, False):
                setattr(cli, _TRACKED, True)
                self._wrap_client(cli)
        from rclpy.action import ActionClient, ActionServer
        for w in list(node.waitables):
            if getattr(w, _TRACKED, False):
                continue
            if isinstance(w, ActionClient):
                setattr(w, _TRACKED, True)
                self._wrap_action_client(w)
            elif isinstance(w, ActionServer):
                name = self._action_server_name(w)
                if name:                  # else: not in the graph yet, next time
                    setattr(w, _TRACKED, True)
                    self._wrap_action_server(w, name)

    def _service_name(self, entity) -> str:
        try:
            return entity.service_name
        except Exception:  # noqa: BLE001
            return self._resolve(entity.srv_name)

    def _resolve(self, name: str) -> str:
        try:
            return self.node.resolve_topic_name(name)
        except Exception:  # noqa: BLE001
            ns = self.node.get_namespace().rstrip('/')
            return name if name.startswith('/') else f'{ns}/{name}'

    def _wrap_publisher(self, pub) -> None:
        ch = self.act.channel(PUBLISHER, pub.topic_name, latched=_latched(pub.qos_profile),
                              matched=pub.get_subscription_count)
        original = pub.publish

        def publish(msg, _publish=original, _ch=ch):
            _publish(msg)
            _ch.add()
        pub.publish = publish

    def _wrap_subscription(self, sub) -> None:
        from rclpy.subscription import Subscription
        act = self.act
        topic = sub.topic_name
        if topic == '/clock':
            original = sub.callback

            def on_clock(msg, _cb=original):
                t = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec
                with self._clock_lock:
                    if self._now_ns() > t:
                        return           # never backwards (a PREPAREd time was applied)
                    _cb(msg)
                    if self._pending_ns is not None and self._pending_ns <= t:
                        self._pending_ns = None
                act.notify()
            sub.callback = on_clock
            return
        ch = act.channel(SUBSCRIBER, topic, latched=_latched(sub.qos_profile),
                         matched=sub.get_publisher_count)
        wrapped = act.callback(sub.callback, ch)
        if sub._callback_type == Subscription.CallbackType.WithMessageInfo:
            sub.callback = lambda msg, info, _w=wrapped: _w(msg, info)
        else:
            sub.callback = lambda msg, _w=wrapped: _w(msg)

    def _wrap_client(self, cli) -> None:
        ch = self.act.channel(SENDER, self._service_name(cli) + '#request')
        original = cli.call_async

        def call_async(request, _call=original, _ch=ch):
            future = _call(request)
            _ch.add()
            return future
        cli.call_async = call_async
        self._clients.append(cli)

    def _wrap_action_client(self, ac) -> None:
        act = self.act
        name = self._resolve(ac._action_name)
        goal = act.channel(SENDER, name + '#goal')
        cancel = act.channel(SENDER, name + '#cancel')
        get_result = act.channel(SENDER, name + '#get_result')
        result = act.channel(RECEIVER, name + '#result')
        feedback = act.channel(SUBSCRIBER, name + '/_action/feedback')

        # rclpy 7 stores a request's sequence number only after sending it: a response
        # handled by another thread in between is dropped ("Ignoring unexpected goal
        # response") and the goal never answers. A response waits for its request's
        # bookkeeping here.
        sending = threading.RLock()

        def counted(fn, ch):
            def call(*args, **kwargs):
                with sending:
                    out = fn(*args, **kwargs)
                ch.add()
                return out
            return call
        ac.send_goal_async = counted(ac.send_goal_async, goal)
        ac._cancel_goal_async = counted(ac._cancel_goal_async, cancel)
        ac._get_result_async = counted(ac._get_result_async, get_result)
        original = ac.execute

        async def execute(taken_data, _execute=original):
            with sending:
                pass
            act._enter()
            try:
                await _execute(taken_data)
            finally:
                act._leave(None)
                if 'feedback' in taken_data:
                    feedback.add()
                if 'result' in taken_data:
                    result.add()
        ac.execute = execute
        self._action_clients.append(ac)

    def _wrap_action_server(self, srv, name: str) -> None:
        act = self.act
        goal = act.channel(RECEIVER, name + '#goal')
        cancel = act.channel(RECEIVER, name + '#cancel')
        get_result = act.channel(RECEIVER, name + '#get_result')
        result = act.channel(SENDER, name + '#result')
        feedback = act.channel(PUBLISHER, name + '/_action/feedback')
        original = srv.execute

        async def execute(taken_data, _execute=original):
            act._enter()
            try:
                await _execute(taken_data)
            finally:
                act._leave(None)
                if 'goal' in taken_data:
                    goal.add()
                if 'cancel' in taken_data:
                    cancel.add()
                if 'result' in taken_data:
                    get_result.add()
        srv.execute = execute
        user = srv._execute_callback
        if user is None:
            return
        inner = act.callback(user)

        def execute_callback(goal_handle, _inner=inner):
            publish_feedback = goal_handle.publish_feedback

            def counted_feedback(msg, _pf=publish_feedback):
                _pf(msg)
                feedback.add()
            goal_handle.publish_feedback = counted_feedback
            try:
                return _inner(goal_handle)
            finally:
                result.add()
        srv._execute_callback = execute_callback

    def _action_server_name(self, srv) -> str:
        """rclpy keeps no action name in Python: find it in the graph by its type."""
        from rclpy.action.graph import get_action_server_names_and_types_by_node
        cls = srv._action_type
        typename = f"{cls.__module__.split('.')[0]}/action/{cls.__name__}"
        try:
            found = get_action_server_names_and_types_by_node(
                self.node, self.node.get_name(), self.node.get_namespace())
        except Exception:  # noqa: BLE001
            return ''
        matches = [n for n, types in found if typename in types]
        return matches[0] if len(matches) == 1 else ''

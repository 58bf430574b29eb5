"""droid_common.ros_activity under ROS 2: nodes answer the replay's probes (own domain).

Two tracked nodes on sim time — a talker whose timer publishes, a listener whose worker
thread takes a while over each message — and a probe node playing the replay: PREPARE
keeps the next time and applies it before any callback; SETTLE is answered only once the
node has nothing left to do at that time, with its message counts."""

import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_common.activity import PUBLISHER, SUBSCRIBER  # noqa: E402
from droid_common.ros import RELIABLE_QOS  # noqa: E402
from droid_common.ros_activity import track_activity  # noqa: E402
from droid_common.testing import free_domain  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from droid_msgs.msg import ActivityProbe, ActivityReport  # noqa: E402

DOMAIN = free_domain()
SIM = [Parameter('use_sim_time', value=True)]


class Talker(Node):
    def __init__(self, context):
        super().__init__('talker', context=context, parameter_overrides=SIM)
        self.pub = self.create_publisher(String, 'chat', RELIABLE_QOS)
        self.create_timer(0.5, lambda: self.pub.publish(String(data='tick')))
        self.activity = track_activity(self)


class Listener(Node):
    def __init__(self, context, work_s=0.3):
        super().__init__('listener', context=context, parameter_overrides=SIM)
        self.activity = track_activity(self)
        self.heard = []                     # (text, node clock when handled)
        self.done = []
        self.queue = []
        self.work_s = work_s
        self.create_subscription(String, 'chat', self._on_chat, RELIABLE_QOS)
        self.activity.spawn(self._work, 'slow-worker')

    def _on_chat(self, msg):
        self.heard.append((msg.data, self.get_clock().now().nanoseconds))
        self.queue.append(msg.data)

    def _work(self):
        while True:
            self.activity.wait(lambda: bool(self.queue), poll=0.01)
            item = self.queue.pop(0)
            time.sleep(self.work_s)         # busy, not waiting: the node is not idle
            self.done.append(item)


@pytest.fixture
def graph():
    context = rclpy.context.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    nodes = [Talker(context), Listener(context)]
    probe = Node('probe', context=context)
    reports = []
    probe.create_subscription(ActivityReport, 'activity/report', reports.append, 100)
    probe_pub = probe.create_publisher(ActivityProbe, 'activity/probe', 100)
    clock_pub = probe.create_publisher(Clock, '/clock', 10)
    chat_pub = probe.create_publisher(String, 'chat', RELIABLE_QOS)
    executors, threads = [], []
    for n in nodes + [probe]:
        ex = SingleThreadedExecutor(context=context)
        ex.add_node(n)
        th = threading.Thread(target=ex.spin, daemon=True)
        th.start()
        executors.append(ex)
        threads.append(th)
    g = type('G', (), {})()
    g.talker, g.listener, g.probe = nodes[0], nodes[1], probe
    g.reports, g.probe_pub, g.clock_pub, g.chat_pub = reports, probe_pub, clock_pub, chat_pub
    g.seq = 0
    yield g
    for ex in executors:
        ex.shutdown(timeout_sec=2.0)
    for n in nodes + [probe]:
        n.destroy_node()
    rclpy.shutdown(context=context)


def wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def stamp(ns):
    return divmod(ns, 1_000_000_000)


def probe(g, t_ns, step=ActivityProbe.STEP_SETTLE, timeout=20.0):
    """Send a probe; the answers of both nodes (or fail)."""
    g.seq += 1
    m = ActivityProbe(seq=g.seq, step=step)
    m.header.stamp.sec, m.header.stamp.nanosec = stamp(t_ns)
    g.probe_pub.publish(m)
    assert wait_for(lambda: {r.node for r in g.reports if r.probe == g.seq and r.idle} >=
                    {'/talker', '/listener'}, timeout), [(r.node, r.probe, r.busy)
                                                          for r in g.reports[-6:]]
    return {r.node: r for r in g.reports if r.probe == g.seq and r.idle}


def settle(g, t_ns, timeout=20.0):
    """Probe until the talker's /chat messages are all handled, as the replay does: a node
    can only answer for what reached it, so a message still in flight shows as published
    but not yet handled, and the replay probes again. The answers of the last probe."""
    end = time.monotonic() + timeout
    while True:
        answers = probe(g, t_ns, timeout=max(end - time.monotonic(), 0.1))
        sent = channel(answers['/talker'], PUBLISHER, '/chat')
        handled = channel(answers['/listener'], SUBSCRIBER, '/chat')
        assert handled <= sent, (handled, sent)          # never more handled than sent
        if handled == sent or time.monotonic() > end:
            return answers
        time.sleep(0.01)


def channel(report, role, name):
    for r, n, c in zip(report.channel_roles, report.channel_names, report.channel_counts):
        if r == role and n == name:
            return c
    raise AssertionError(f'{report.node} has no {role} {name}')


def clock(g, t_ns):
    m = Clock()
    m.clock.sec, m.clock.nanosec = stamp(t_ns)
    g.clock_pub.publish(m)


def test_settle_is_answered_only_when_the_work_is_done_with_the_counts(graph):
    g = graph
    assert wait_for(lambda: g.probe_pub.get_subscription_count() >= 2 and
                    g.clock_pub.get_subscription_count() >= 2 and
                    g.talker.pub.get_subscription_count() >= 1)
    clock(g, 10_000_000_000)                 # the timer fires once on the jump from 0
    first = settle(g, 10_000_000_000)
    assert first['/talker'].header.stamp.sec == 10
    sent = channel(first['/talker'], PUBLISHER, '/chat')
    assert channel(first['/listener'], SUBSCRIBER, '/chat') == sent
    n = len(g.listener.done)
    assert n == len(g.listener.heard)
    # 10.5 s: the talker's timer is due; the listener works 0.3 s (wall) on the message
    probe(g, 10_500_000_000, ActivityProbe.STEP_PREPARE)
    clock(g, 10_500_000_000)
    t0 = time.monotonic()
    answers = settle(g, 10_500_000_000)
    assert time.monotonic() - t0 >= 0.25                  # waited for the slow worker
    assert len(g.listener.done) == n + 1
    assert channel(answers['/talker'], PUBLISHER, '/chat') == sent + 1
    assert channel(answers['/listener'], SUBSCRIBER, '/chat') == sent + 1
    assert g.listener.heard[-1] == ('tick', 10_500_000_000)
    assert answers['/listener'].busy == '' and answers['/talker'].next_due.sec == 11


def test_prepare_applies_the_new_time_before_a_message_is_handled(graph):
    g = graph
    assert wait_for(lambda: g.probe_pub.get_subscription_count() >= 2 and
                    g.chat_pub.get_subscription_count() >= 1)
    clock(g, 20_000_000_000)
    probe(g, 20_000_000_000)
    # The listener keeps 20.02 s; a message arriving before /clock 20.02 does is handled
    # at 20.02 s, not at the old time.
    probe(g, 20_020_000_000, ActivityProbe.STEP_PREPARE)
    g.chat_pub.publish(String(data='early'))
    assert wait_for(lambda: g.listener.heard[-1][0] == 'early')
    assert g.listener.heard[-1] == ('early', 20_020_000_000)
    probe(g, 20_020_000_000)                               # and it settles at 20.02 s

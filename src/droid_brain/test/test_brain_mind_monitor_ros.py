"""mind_monitor under ROS 2, in one process on a private namespace: a stand-in "mind" node
comes and goes; the monitor says so on /diagnostics, shows and clears the no-brain eye look,
and says the persona's fallback line when the user talks while the mind is away.
(The same across real network namespaces: droid_bringup/test/test_bringup_multihost.py.)
"""

import threading
import time
import uuid

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from droid_brain.mind_monitor_node import MindMonitorNode  # noqa: E402
from droid_brain.personas import default_persona_dir  # noqa: E402
from droid_common import names  # noqa: E402
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS  # noqa: E402
from rclpy.action import ActionServer  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from droid_msgs.action import Speak  # noqa: E402
from droid_msgs.msg import EyeCommand, Persona, Utterance  # noqa: E402


def wait_until(predicate, timeout=10.0, period=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return predicate()


class Body(Node):
    """What the monitor talks to on the body: eyes (commands), tts (Speak), the listener."""

    def __init__(self, ns):
        super().__init__('body_harness', namespace=ns)
        self.lock = threading.Lock()
        self.eyes, self.spoken, self.diags = [], [], []
        self.create_subscription(EyeCommand, names.EYE_COMMAND, self._keep(self.eyes),
                                 RELIABLE_QOS)
        self.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 50)
        self.utterance_pub = self.create_publisher(Utterance, names.UTTERANCE, RELIABLE_QOS)
        self.persona_pub = self.create_publisher(Persona, names.PERSONA, LATCHED_QOS)
        self.speak = ActionServer(self, Speak, names.SPEAK, self._speak)
        self.ns = ns.strip('/')

    def _keep(self, bucket):
        def cb(msg):
            with self.lock:
                bucket.append((time.monotonic(), msg))
        return cb

    def _on_diag(self, msg):
        for s in msg.status:
            if s.name == f'{self.ns}/mind_monitor: mind':
                with self.lock:
                    self.diags.append((time.monotonic(), s.level[0], s.message))

    def _speak(self, goal_handle):
        with self.lock:
            self.spoken.append(goal_handle.request)
        goal_handle.succeed()
        return Speak.Result(status=Speak.Result.COMPLETED)

    def level_since(self, t):
        with self.lock:
            later = [d for d in self.diags if d[0] >= t]
        return later[-1] if later else None

    def user_speaks(self, cid, uid):
        self.utterance_pub.publish(Utterance(conversation_id=cid, utterance_id=uid,
                                             state=Utterance.ENDED))


@pytest.fixture
def graph():
    ns = '/mm_' + uuid.uuid4().hex[:8]
    rclpy.init()
    monitor = MindMonitorNode(namespace=ns, parameter_overrides=[
        Parameter('mind_nodes', value=['fake_mind']),
        Parameter('ping_period_s', value=0.1),
        Parameter('lost_after_s', value=0.6),
        Parameter('fallback_cooldown_s', value=0.0)])
    body = Body(ns)
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(monitor)
    executor.add_node(body)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield ns, monitor, body, executor
    executor.shutdown(timeout_sec=5)
    monitor.destroy_node()
    body.destroy_node()
    rclpy.try_shutdown()
    thread.join(5)


def fallback(name):
    return yaml.safe_load((default_persona_dir() / f'{name}.yaml').read_text())['fallback_line']


def test_the_mind_comes_goes_and_comes_back(graph):
    ns, monitor, body, executor = graph
    # No mind yet: waiting, WARN, and the eyes show the look.
    assert wait_until(lambda: (d := body.level_since(0)) and d[1] == 1
                      and 'waiting for the mind: fake_mind' in d[2], 10), body.diags
    assert wait_until(lambda: body.eyes, 10)
    look = body.eyes[-1][1]
    assert look.pattern == EyeCommand.PATTERN_SPIN and look.color.r == 1.0
    assert look.duration.sec + look.duration.nanosec * 1e-9 >= 1.0   # renewed, expires alone

    mind = Node('fake_mind', namespace=ns)
    executor.add_node(mind)
    t_up = time.monotonic()
    assert wait_until(lambda: (d := body.level_since(t_up)) and d[1] == 0
                      and d[2] == 'mind reachable (fake_mind)', 15), body.diags
    # the look is cleared at once: a command that ends immediately
    assert wait_until(lambda: [m for t, m in body.eyes if t >= t_up
                               and m.duration.sec == 0 and 0 < m.duration.nanosec < 1e7], 5)
    # talking while the mind is there: the mind answers, not the monitor
    body.user_speaks('c1', 1)
    time.sleep(0.5)
    assert body.spoken == []

    # The mind goes away (its node is gone: no answers).
    executor.remove_node(mind)
    mind.destroy_node()
    t_down = time.monotonic()
    lost = wait_until(lambda: (d := body.level_since(t_down)) and d[1] == 1
                      and 'mind unreachable: fake_mind not answering' in d[2] and d, 10)
    assert lost, body.diags
    n_eyes = len(body.eyes)
    assert wait_until(lambda: len(body.eyes) > n_eyes + 1, 5)   # the look, renewed
    # The user talks: the active persona's fallback line, once per utterance.
    body.persona_pub.publish(Persona(name='tars'))
    time.sleep(0.3)
    body.user_speaks('c2', 1)
    body.user_speaks('c2', 1)
    assert wait_until(lambda: body.spoken, 10)
    time.sleep(0.5)
    assert [g.text for g in body.spoken] == [fallback('tars')]
    assert body.spoken[0].conversation_id == 'c2' and body.spoken[0].utterance_id == 1

    # Back again.
    mind = Node('fake_mind', namespace=ns)
    executor.add_node(mind)
    t_back = time.monotonic()
    assert wait_until(lambda: (d := body.level_since(t_back)) and d[1] == 0, 15), body.diags
    assert monitor.link.outages and monitor.link.outages[-1] > 0.0
    executor.remove_node(mind)
    mind.destroy_node()


def test_bad_look_settings_are_clear_errors():
    rclpy.init()
    try:
        with pytest.raises(ValueError, match='look_pattern'):
            MindMonitorNode(parameter_overrides=[Parameter('look_pattern', value='wink')])
        with pytest.raises(ValueError, match='look_color'):
            MindMonitorNode(parameter_overrides=[Parameter('look_color', value=[2.0, 0.0, 0.0])])
        with pytest.raises(ValueError, match='longer than the ping period'):
            MindMonitorNode(parameter_overrides=[Parameter('ping_period_s', value=1.0),
                                                 Parameter('lost_after_s', value=0.5)])
    finally:
        rclpy.try_shutdown()

"""The installed executables through brain.launch.py, and `ros2 param set` on the brain.

Plain pytest: the launch runs as a subprocess on a private namespace and is stopped with
SIGINT, then SIGKILL after a timeout. The REAL profile is launched without OPENAI_API_KEY,
so the brain must fall back to the mock backend (loudly) instead of dying.
"""

import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

rclpy = pytest.importorskip('rclpy')

import yaml
from droid_common import names
from droid_common.ros import LATCHED_SUB_QOS, RELIABLE_QOS
from rclpy.executors import SingleThreadedExecutor

from droid_msgs.msg import Persona, ReplySentence, SystemMode, Transcription


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)      # launch forwards it to the nodes (once)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def launched(tmp_path):
    ns = 'bl_' + uuid.uuid4().hex[:8]
    state = tmp_path / 'state.yaml'
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**/brain': {'ros__parameters': {
        'state_file': str(state), 'mock_time_to_first_token_s': 0.05,
        'mock_token_rate': 200.0}}}))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / 'xdg'), PYTHONUNBUFFERED='1')
    env.pop('OPENAI_API_KEY', None)
    log = open(tmp_path / 'launch.log', 'w+')
    proc = subprocess.Popen(['ros2', 'launch', 'droid_brain', 'brain.launch.py',
                             'profile:=real', f'namespace:={ns}', f'params_file:={params}'],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield ns, state, proc, log, env
    finally:
        stop(proc)
        log.close()


def test_launch_profile_and_param_set(launched):
    ns, state, proc, log, env = launched
    rclpy.init()
    node = rclpy.create_node('brain_launch_probe', namespace='/' + ns)
    got = {'persona': [], 'mode': [], 'reply': []}
    node.create_subscription(Persona, names.PERSONA, got['persona'].append, LATCHED_SUB_QOS)
    node.create_subscription(SystemMode, names.MODE, got['mode'].append, LATCHED_SUB_QOS)
    node.create_subscription(ReplySentence, names.REPLY, got['reply'].append, RELIABLE_QOS)
    pub = node.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        def output():
            log.flush()
            log.seek(0)
            return log.read()

        # Latched state is there for a late subscriber.
        assert wait_until(lambda: got['persona'] and got['mode'], 30), output()
        assert got['persona'][-1].name == 'rex'
        assert got['mode'][-1].mode == SystemMode.AMBIENT          # the real profile's choice
        # No key + official URL: the mock backend, loudly.
        assert wait_until(lambda: 'falling back to the MOCK brain' in output(), 10), output()
        assert wait_until(lambda: pub.get_subscription_count() >= 2, 10)
        msg = Transcription(conversation_id='L1', utterance_id=1, text='hello there',
                            is_final=True)
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        assert wait_until(lambda: any(r.is_final for r in got['reply']), 15), output()
        assert got['reply'][0].text == 'Hey there, friend!'
        # `ros2 param set` switches the persona live; unknown names are refused.
        cmd = ['ros2', 'param', 'set', '--no-daemon', '--spin-time', '3',
               f'/{ns}/brain', 'persona']
        bad = subprocess.run(cmd + ['Case'], env=env, capture_output=True, text=True,
                             timeout=60)
        assert "unknown persona 'Case'" in bad.stdout + bad.stderr
        ok = subprocess.run(cmd + ['tars'], env=env, capture_output=True, text=True,
                            timeout=60)
        assert 'Set parameter successful' in ok.stdout, ok.stdout + ok.stderr
        assert wait_until(lambda: got['persona'][-1].name == 'tars', 10)
        assert yaml.safe_load(state.read_text()) == {'active_persona': 'tars'}
        assert proc.poll() is None, output()
    finally:
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        rclpy.try_shutdown()
    stop(proc)
    assert proc.returncode is not None
    text = log.name and open(log.name).read()
    assert 'Traceback' not in text, text

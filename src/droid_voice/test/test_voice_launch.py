"""voice.launch.py with the mock profile, as a real launch in a subprocess: both nodes
come up under the namespace with their fixed names, the Speak action answers with the
mock voice and the music state is latched. Stopped with SIGINT, kill fallback."""

import os
import signal
import subprocess
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from ament_index_python.packages import get_package_share_directory
from droid_common import names
from droid_common.testing import free_domain
from droid_common.ros import LATCHED_SUB_QOS
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from droid_msgs.action import Speak
from droid_msgs.msg import MusicState

DOMAIN = free_domain()
NS = 'voicelaunch'


def test_launch_file_mock_profile(tmp_path):
    share = get_package_share_directory('droid_voice')
    params = os.path.join(share, 'config', 'voice_mock.yaml')
    assert os.path.isfile(params)
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONUNBUFFERED='1')
    log = open(tmp_path / 'launch.log', 'wb')  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(['ros2', 'launch', 'droid_voice', 'voice.launch.py',
                             f'params_file:={params}', f'namespace:={NS}',
                             f'library_dir:={tmp_path}'],
                            env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN)
    node = Node('voice_launch_probe', context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    try:
        states = []
        node.create_subscription(MusicState, f'/{NS}/{names.MUSIC_STATE}', states.append,
                                 LATCHED_SUB_QOS)
        deadline = time.monotonic() + 60
        want = {('tts', f'/{NS}'), ('music', f'/{NS}')}
        while time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
            if want <= set(node.get_node_names_and_namespaces()) and states:
                break
        log.flush()
        text = (tmp_path / 'launch.log').read_text(errors='replace')
        assert want <= set(node.get_node_names_and_namespaces()), text
        assert states and states[-1].state == MusicState.STOPPED
        client = ActionClient(node, Speak, f'/{NS}/{names.SPEAK}')
        assert client.wait_for_server(timeout_sec=20)
        fut = client.send_goal_async(Speak.Goal(text='launched and talking'))
        while not fut.done() and time.monotonic() < deadline + 30:
            ex.spin_once(timeout_sec=0.05)
        res = fut.result().get_result_async()
        while not res.done() and time.monotonic() < deadline + 60:
            ex.spin_once(timeout_sec=0.05)
        r = res.result().result
        assert r.status == Speak.Result.COMPLETED and r.backend == 'mock' and r.played > 0.5
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            if proc.poll() is not None:
                break
            os.killpg(proc.pid, sig)          # the group this test started
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        log.close()

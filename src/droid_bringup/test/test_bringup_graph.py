"""The whole mock droid on a real ROS 2 graph, started the way a user starts it."""

import os
import subprocess
import sys
import time

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from droid_bringup.profiles import parts_of  # noqa: E402
from droid_common.testing import Process, ros_test_env  # noqa: E402

from rcl_interfaces.srv import ListParameters  # noqa: E402

ALL_NODES = set(parts_of('all'))


def launch_args():
    return ['ros2', 'launch', 'droid_bringup', 'droid.launch.py']


def test_show_args_describes_every_argument():
    out = subprocess.run(launch_args() + ['--show-args'], capture_output=True, text=True,
                         timeout=60, env=ros_test_env(), check=True).stdout
    for arg in ('profile', 'use_sim_time', 'params_file', 'role', 'namespace', 'stt', 'llm',
                'tts', 'eyes_port', 'disable', 'log_level'):
        assert f"'{arg}':" in out, arg
    assert 'real | mock' in out
    assert 'all | body | mind' in out


@pytest.fixture(scope='module')
def mock_droid():
    with Process(launch_args() + ['profile:=mock'], env=ros_test_env()) as launch:
        rclpy.init()
        node = rclpy.create_node('graph_probe')
        try:
            deadline = time.monotonic() + 90
            names = set()
            while time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.2)
                names = set(node.get_node_names())
                if ALL_NODES <= names:
                    break
            assert ALL_NODES <= names, f'missing {ALL_NODES - names}\n{launch.output()[-4000:]}'
            yield launch, node
        finally:
            node.destroy_node()
            rclpy.try_shutdown()


def test_every_profile_parameter_is_a_declared_parameter(mock_droid):
    _, node = mock_droid
    config = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), '..', 'config',
                                              'mock.yaml')))
    for name, block in config.items():
        wanted = set((block or {}).get('ros__parameters') or {})
        if not wanted or name not in ALL_NODES:     # mind_monitor: role:=body only
            continue
        client = node.create_client(ListParameters, f'/{name}/list_parameters')
        assert client.wait_for_service(timeout_sec=20), name
        future = client.call_async(ListParameters.Request(depth=0))
        rclpy.spin_until_future_complete(node, future, timeout_sec=20)
        declared = set(future.result().result.names)
        top = {k.split('.')[0] for k in declared}
        assert wanted <= declared | top, f'{name}: {wanted - declared - top} not declared'


def test_a_typed_line_gets_a_reply_a_mood_eyes_and_tool_calls(mock_droid):
    launch, _ = mock_droid
    chat = subprocess.run(
        ['ros2', 'run', 'droid_bringup', 'chat', '--say',
         'play the cantina song and make your eyes red', '--wait', '20'],
        capture_output=True, text=True, timeout=90, env=ros_test_env())
    out = chat.stdout
    sys.stdout.write(out)
    assert 'you: play the cantina song' in out
    assert 'tool call: play_music' in out and 'tool call: set_eyes' in out
    assert 'mood:' in out
    assert 'speaking (mock):' in out
    assert 'eyes:' in out and 'end of reply' in out

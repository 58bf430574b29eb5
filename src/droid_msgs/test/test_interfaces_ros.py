"""The generated ROS 2 types match the interface files (needs a built workspace)."""

import importlib
import subprocess

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_common import contract  # noqa: E402

MODULES = {'msg': 'droid_msgs.msg', 'srv': 'droid_msgs.srv', 'action': 'droid_msgs.action'}
PARTS = {'srv': ('Request', 'Response'), 'action': ('Goal', 'Result', 'Feedback')}


def _generated(kind, name):
    cls = getattr(importlib.import_module(MODULES[kind]), name)
    if kind == 'msg':
        return [cls]
    return [getattr(cls, part) for part in PARTS[kind]]


@pytest.mark.parametrize('kind,name', [(k, n) for k in MODULES for n in contract.interface_names(k)])
def test_generated_types_match_the_files(kind, name):
    for i, cls in enumerate(_generated(kind, name)):
        assert list(cls.get_fields_and_field_types()) == contract.field_names(name, i)
        for const, value in contract.constants(name, i).items():
            assert getattr(cls, const) == value, f'{name}.{const}'


def test_a_message_survives_serialisation():
    from rclpy.serialization import deserialize_message, serialize_message
    from droid_msgs.msg import AudioChunk, Transcription
    chunk = AudioChunk(sample_rate=16000, channels=1, seq=7, data=list(range(-640, 640)))
    back = deserialize_message(serialize_message(chunk), AudioChunk)
    assert list(back.data) == list(range(-640, 640)) and back.seq == 7
    t = Transcription(text='hey', is_final=True, conversation_id='c', utterance_id=2)
    assert deserialize_message(serialize_message(t), Transcription) == t


def test_ros2_interface_show_prints_the_comments():
    out = subprocess.run(['ros2', 'interface', 'show', 'droid_msgs/msg/Transcription'],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'hri_msgs/LiveSpeech' in out and 'string conversation_id' in out
    listed = subprocess.run(['ros2', 'interface', 'package', 'droid_msgs'], capture_output=True,
                            text=True, timeout=60, check=True).stdout.split()
    expected = {f'droid_msgs/{k}/{n}' for k in MODULES for n in contract.interface_names(k)}
    assert expected == set(listed)

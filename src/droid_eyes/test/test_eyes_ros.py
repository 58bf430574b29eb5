"""Under ROS: the `eyes` node against the virtual pty device (frames in order, eye state,
trace, diagnostics across unplug/replug) and mock_eyes' contract = eyes' contract."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

rclpy = pytest.importorskip('rclpy')

from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray
from droid_common import names
from droid_common.ros import LATCHED_QOS, LATCHED_SUB_QOS, RELIABLE_QOS, SENSOR_QOS
from droid_eyes.expression import PATTERNS
from droid_eyes.virtual_device import VirtualEyesDevice
from rclpy.executors import SingleThreadedExecutor

from droid_eyes import protocol as P
from droid_msgs.msg import (
    EyeState,
    Sentiment,
    SpeechAmplitude,
    SpeechEvent,
    SystemMode,
    TraceEvent,
    Transcription,
    WakeWord,
)


def start_node(module, ns, params, log_path):
    args = [sys.executable, '-m', module, '--ros-args', '-r', f'__ns:={ns}']
    for k, v in params.items():
        args += ['-p', f'{k}:={v}']
    log = open(log_path, 'wb')
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_file = log
    return proc


def stop_node(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    proc.log_file.close()


@pytest.fixture
def ros():
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f'eyes_test_{uuid.uuid4().hex[:6]}', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        executor.spin_once(timeout_sec=0.02)
    return pred()


def stamp(node):
    return node.get_clock().now().to_msg()


def test_eyes_node_streams_frames_in_order_and_survives_unplug(ros, tmp_path):
    node, ex = ros
    ns = f'/eyes_test_{uuid.uuid4().hex[:8]}'
    dev = VirtualEyesDevice(str(tmp_path / 'ttyEYES'), heartbeat_period=0.2).plug()
    proc = start_node('droid_eyes.eyes_node', ns,
                      {'port': str(tmp_path / 'tty*'), 'ack_timeout': 0.05,
                       'reconnect_period': 0.1, 'link_timeout': 1.0,
                       'initial_mode': 'interactive', 'amplitude_max_rate': 100.0},
                      tmp_path / 'eyes.log')
    try:
        states, traces, diags = [], [], []
        node.create_subscription(EyeState, f'{ns}/{names.EYE_STATE}', states.append,
                                 LATCHED_SUB_QOS)
        node.create_subscription(TraceEvent, f'{ns}/{names.TRACE}', traces.append, RELIABLE_QOS)
        node.create_subscription(
            DiagnosticArray, names.DIAGNOSTICS,
            lambda m: diags.extend(s for s in m.status if s.name.startswith(ns.lstrip('/'))),
            10)
        pubs = {
            'mode': node.create_publisher(SystemMode, f'{ns}/{names.MODE}', LATCHED_QOS),
            'wake': node.create_publisher(WakeWord, f'{ns}/{names.WAKE_WORD}', RELIABLE_QOS),
            'stt': node.create_publisher(Transcription, f'{ns}/{names.TRANSCRIPTION}',
                                         RELIABLE_QOS),
            'sent': node.create_publisher(Sentiment, f'{ns}/{names.SENTIMENT}', RELIABLE_QOS),
            'speech': node.create_publisher(SpeechEvent, f'{ns}/{names.SPEECH_EVENT}',
                                            RELIABLE_QOS),
            'amp': node.create_publisher(SpeechAmplitude, f'{ns}/{names.AMPLITUDE}', SENSOR_QOS),
        }
        assert spin_until(ex, lambda: all(p.get_subscription_count() for p in pubs.values())
                          and states and states[-1].device_connected, 20), \
            (tmp_path / 'eyes.log').read_text()
        assert dev.wait_until(lambda d: d.frames_of(P.FULL_STATE), 2)
        dev.clear()

        def pause(s=0.15):
            spin_until(ex, lambda: False, s)

        cid = 'c0ffee'
        wake = WakeWord(conversation_id=cid, model_name='hey_jarvis', score=0.9, threshold=0.5)
        wake.header.stamp = stamp(node)
        pubs['wake'].publish(wake)
        pause()
        msg = Transcription(conversation_id=cid, utterance_id=1, text='hi', is_final=True)
        msg.header.stamp = stamp(node)
        pubs['stt'].publish(msg)
        pause()
        sentiment = Sentiment(conversation_id=cid, utterance_id=1, label=Sentiment.POSITIVE,
                              score=0.9)
        sentiment.header.stamp = stamp(node)
        pubs['sent'].publish(sentiment)
        pause()
        msg = SpeechEvent(conversation_id=cid, utterance_id=1, sentence_index=0,
                          event=SpeechEvent.STARTED, text='Hello there!')
        msg.header.stamp = stamp(node)
        pubs['speech'].publish(msg)
        pause()
        for a in (0.2, 0.5, 0.8):
            amp = SpeechAmplitude(conversation_id=cid, amplitude=a)
            amp.header.stamp = stamp(node)
            pubs['amp'].publish(amp)
            pause(0.05)
        old = SpeechAmplitude(conversation_id='stale', amplitude=0.1)   # an old conversation
        old.header.stamp = TimeMsg(sec=1)
        pubs['amp'].publish(old)
        pause(0.05)
        msg = SpeechEvent(conversation_id=cid, utterance_id=1, sentence_index=0,
                          event=SpeechEvent.ENDED, last_in_reply=True)
        msg.header.stamp = stamp(node)
        pubs['speech'].publish(msg)
        assert dev.wait_until(lambda d: len([a for a in d.applied if a[0] == 'state']) >= 5, 3)
        seen = []
        for kind, value, _ in dev.applied:
            item = value.pattern if kind == 'state' else ('amp', value)
            if not seen or seen[-1] != item:
                seen.append(item)
        assert seen == [PATTERNS['listening'], PATTERNS['thinking'], PATTERNS['happy'],
                        PATTERNS['speaking'], ('amp', 51), ('amp', 128), ('amp', 204),
                        PATTERNS['happy']], seen
        # Eye state follows; the first change caused by the turn's reply (the sentiment) is
        # traced with the sentiment's stamp as input stamp.
        assert spin_until(ex, lambda: states[-1].pattern == PATTERNS['happy'], 10)
        assert states[-1].conversation_id == cid and states[-1].device_connected
        assert spin_until(ex, lambda: traces, 10)
        assert len(traces) == 1 and traces[0].stage == TraceEvent.STAGE_EYES_REACTED
        assert traces[0].conversation_id == cid and traces[0].utterance_id == 1
        assert traces[0].input_stamp == sentiment.header.stamp
        assert traces[0].detail == 'sentiment:happy'
        assert traces[0].node == f'{ns}/eyes'
        assert spin_until(ex, lambda: diags and diags[-1].level == b'\x00', 10)

        # Unplug: ERROR on /diagnostics, the node keeps running; replug: resync < 2 s.
        dev.unplug()
        assert spin_until(ex, lambda: diags[-1].level == b'\x02', 10)
        assert spin_until(ex, lambda: not states[-1].device_connected, 10)
        assert proc.poll() is None
        dev.clear()
        t0 = time.monotonic()
        dev.plug()
        assert dev.wait_until(lambda d: d.state.pattern == PATTERNS['happy'] and
                              d.frames_of(P.FULL_STATE), 2.0)
        assert time.monotonic() - t0 < 2.0
        assert spin_until(ex, lambda: diags[-1].level == b'\x00' and states[-1].device_connected,
                          3)
        # Garbage from the device does not crash the node.
        dev.inject(bytes(range(256)) * 4)
        pause(0.3)
        assert proc.poll() is None and dev.plugged
    finally:
        stop_node(proc)
        dev.close()
    assert proc.returncode in (0, -signal.SIGINT), (tmp_path / 'eyes.log').read_text()


def _contract(node, name, ns):
    def strip(items):
        return sorted((t[len(ns) + 1:] if t.startswith(ns + '/') else t, tuple(types))
                      for t, types in items)
    return (strip(node.get_publisher_names_and_types_by_node(name, ns)),
            strip(node.get_subscriber_names_and_types_by_node(name, ns)))


def test_mock_eyes_has_the_same_contract_as_eyes(ros, tmp_path):
    node, ex = ros
    tag = uuid.uuid4().hex[:8]
    ns_real, ns_mock = f'/real_{tag}', f'/mock_{tag}'
    real = start_node('droid_eyes.eyes_node', ns_real, {'port': str(tmp_path / 'no_device*')},
                      tmp_path / 'real.log')
    mock = start_node('droid_eyes.mock_eyes_node', ns_mock,
                      {'render': 'png', 'render_path': str(tmp_path / 'eyes.png')},
                      tmp_path / 'mock.log')
    try:
        def both_up():
            found = node.get_node_names_and_namespaces()
            return ('eyes', ns_real) in found and ('eyes', ns_mock) in found

        assert spin_until(ex, both_up, 20)
        # Wait until discovery has every endpoint of both nodes.
        expected_subs = {names.SENTIMENT, names.SPEECH_EVENT, names.AMPLITUDE, names.MODE,
                         names.EYE_COMMAND, names.PERSONA, names.WAKE_WORD}
        expected_pubs = {names.EYE_STATE, names.TRACE, names.DIAGNOSTICS}

        def complete(ns):
            pubs, subs = _contract(node, 'eyes', ns)
            return expected_pubs <= {t for t, _ in pubs} and \
                expected_subs <= {t for t, _ in subs}

        assert spin_until(ex, lambda: complete(ns_real) and complete(ns_mock), 20)
        spin_until(ex, lambda: False, 0.5)
        real_c, mock_c = _contract(node, 'eyes', ns_real), _contract(node, 'eyes', ns_mock)
        assert real_c == mock_c
        assert ('voice/amplitude', ('droid_msgs/msg/SpeechAmplitude',)) in real_c[1]
        # The mock rendered the current look as a PNG.
        assert spin_until(ex, lambda: os.path.exists(tmp_path / 'eyes.png'), 5)
        assert (tmp_path / 'eyes.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        assert real.poll() is None and mock.poll() is None
    finally:
        stop_node(real)
        stop_node(mock)


def test_launch_file_describes_the_eyes_node():
    import importlib.util
    from pathlib import Path

    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node as LaunchNode
    path = Path(__file__).resolve().parent.parent / 'launch' / 'eyes.launch.py'
    spec = importlib.util.spec_from_file_location('eyes_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    desc = module.generate_launch_description()
    args = {e.name for e in desc.entities if isinstance(e, DeclareLaunchArgument)}
    assert {'mock', 'port', 'params_file', 'render', 'namespace'} <= args
    nodes = [e for e in desc.entities if isinstance(e, LaunchNode)]
    assert sorted(n.node_executable for n in nodes) == ['eyes', 'mock_eyes']
    assert all(n.node_package == 'droid_eyes' for n in nodes)

"""Conversation across nodes, in one process on a private domain: the real brain (OpenAI
backend against a local stand-in server) and the real tts (mock voice, mock output).

After a barge-in the brain remembers only what the user heard: the next request the
stand-in receives carries the reply up to the last word played, marked [interrupted].
"""

import os
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_brain.brain_node import BrainNode
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_common import names
from droid_common.ros import RELIABLE_QOS, SENSOR_QOS
from droid_voice.tts_node import TtsNode
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from droid_msgs.msg import ReplySentence, SpeechEvent, Transcription, VoiceActivity

DOMAIN = 170 + os.getpid() % 25
REPLY = ('This first sentence is heard. The second sentence goes on and on about the '
         'cantina band and its many extraordinary songs tonight.')


def wait_until(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.01)
    return pred()


@pytest.fixture
def rig(tmp_path):
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN)
    srv = FakeOpenAI().start()
    brain = BrainNode(context=ctx, parameter_overrides=[
        Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
        Parameter('model', value='local'), Parameter('state_file', value=str(tmp_path / 's')),
        Parameter('filler_after_s', value=0.0)])
    tts = TtsNode(context=ctx, parameter_overrides=[
        Parameter('backend', value='mock'), Parameter('output', value='mock'),
        Parameter('words_per_minute', value=150.0)])
    probe = Node('conv_probe', context=ctx)
    ex = MultiThreadedExecutor(num_threads=6, context=ctx)
    for n in (brain, tts, probe):
        ex.add_node(n)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    box = type('Rig', (), {})()
    box.srv, box.brain, box.tts, box.probe = srv, brain, tts, probe
    box.events, box.replies = [], []
    probe.create_subscription(SpeechEvent, names.SPEECH_EVENT, box.events.append, RELIABLE_QOS)
    probe.create_subscription(ReplySentence, names.REPLY, box.replies.append, RELIABLE_QOS)
    box.said = probe.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
    box.voice = probe.create_publisher(VoiceActivity, names.VOICE_ACTIVITY, SENSOR_QOS)
    assert wait_until(lambda: box.said.get_subscription_count() >= 1
                      and box.voice.get_subscription_count() >= 1)
    yield box
    ex.shutdown(timeout_sec=2.0)
    th.join(5)
    for n in (brain, tts):
        n.close()
        n.destroy_node()
    probe.destroy_node()
    srv.stop()
    rclpy.try_shutdown(context=ctx)


def test_memory_after_barge_in_holds_only_what_was_heard(rig):
    rig.srv.push(Reply.text(REPLY), Reply.text('Sure, anything else?'))
    rig.said.publish(Transcription(conversation_id='m1', utterance_id=1,
                                   text='tell me about the band', is_final=True))
    # let the second sentence play for a while, then the user speaks over it
    started = wait_until(lambda: [e for e in rig.events if e.sentence_index == 1
                                  and e.event == SpeechEvent.STARTED])
    assert started
    time.sleep(1.2)
    vad = VoiceActivity(conversation_id='m1', speaking=True)
    vad.header.stamp = rig.tts.get_clock().now().to_msg()
    rig.voice.publish(vad)
    stop = wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.INTERRUPTED])
    assert stop and stop[0].sentence_index == 1
    heard = stop[0].heard
    second = REPLY.split('. ', 1)[1]
    assert heard and second.startswith(heard) and len(heard) < len(second)
    assert stop[0].played > 0.5
    # the next turn's request shows the model only what was heard
    rig.said.publish(Transcription(conversation_id='m1', utterance_id=2, text='and then?',
                                   is_final=True))
    assert wait_until(lambda: len(rig.srv.requests) == 2)
    assistant = [m for m in rig.srv.requests[1]['messages'] if m['role'] == 'assistant']
    assert assistant == [{'role': 'assistant',
                          'content': f'This first sentence is heard. {heard} [interrupted]'}]


def voice(rig, speaking):
    vad = VoiceActivity(conversation_id='b1', speaking=speaking)
    vad.header.stamp = rig.tts.get_clock().now().to_msg()
    rig.voice.publish(vad)


def test_a_cough_pauses_and_resumes_real_words_stop_the_reply(rig):
    long_reply = 'One two three four five six seven eight nine ten eleven twelve.'
    rig.srv.push(Reply.text(long_reply))
    rig.said.publish(Transcription(conversation_id='b1', utterance_id=1, text='count',
                                   is_final=True))
    assert wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.STARTED])
    time.sleep(0.8)
    # A cough: voice on, off, and a backchannel transcript -> paused, then resumed.
    voice(rig, True)
    assert wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.PAUSED], 5)
    voice(rig, False)
    rig.said.publish(Transcription(conversation_id='b1', utterance_id=2, text='Uh-huh.',
                                   is_final=True))
    assert wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.RESUMED], 5)
    # ... and the reply goes on to its end, not interrupted, with no new turn.
    end = wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.ENDED
                              and e.last_in_reply], 20)
    assert end and end[0].heard == long_reply and end[0].played > 3.0
    assert not [e for e in rig.events if e.event == SpeechEvent.INTERRUPTED]
    assert len(rig.srv.requests) == 1
    # Real words over the droid: paused, then stopped, and heard as the next turn.
    rig.srv.push(Reply.text(long_reply))
    rig.said.publish(Transcription(conversation_id='b1', utterance_id=3, text='again',
                                   is_final=True))
    assert wait_until(lambda: len([e for e in rig.events
                                   if e.event == SpeechEvent.STARTED]) >= 2, 10)
    time.sleep(0.5)
    voice(rig, True)
    rig.said.publish(Transcription(conversation_id='b1', utterance_id=4,
                                   text='what time is it', is_final=True))
    stop = wait_until(lambda: [e for e in rig.events if e.event == SpeechEvent.INTERRUPTED],
                      5)
    assert stop and stop[0].utterance_id == 3
    assert wait_until(lambda: len(rig.srv.requests) == 3)
    assert rig.srv.requests[2]['messages'][-1] == {'role': 'user', 'content': 'what time is it'}

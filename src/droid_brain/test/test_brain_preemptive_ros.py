"""Preemptive generation through the brain node, on real ROS 2: the utterance's end starts
the LLM request from the latest partial (a local OpenAI stand-in records it), nothing is
published before the final transcription, a matching final releases the reply at once, a
different one restarts from the final, a pause starts it before the end of the turn and
voice after the pause drops it, and the parameter turns it all off.
"""

import threading
import time
import uuid

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_brain.brain_node import BrainNode
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_common import names
from droid_common.ros import RELIABLE_QOS
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter

from droid_msgs.msg import ReplySentence, TraceEvent, Transcription, Utterance

WAIT = 20.0


def wait_until(predicate, timeout=WAIT, period=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return predicate()


class Graph:
    def __init__(self, tmp_path, srv, preemptive=True):
        self.ns = '/pre_' + uuid.uuid4().hex[:8]
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.brain = BrainNode(namespace=self.ns, context=self.context, parameter_overrides=[
            Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
            Parameter('model', value='local'), Parameter('tool_server_timeout_s', value=0.2),
            Parameter('preemptive_generation', value=preemptive),
            Parameter('state_file', value=str(tmp_path / 'state.yaml'))])
        self.probe = rclpy.create_node('probe', namespace=self.ns, context=self.context)
        self.lock = threading.Lock()
        self.replies, self.traces = [], []
        self.probe.create_subscription(ReplySentence, names.REPLY, self._add(self.replies),
                                       RELIABLE_QOS)
        self.probe.create_subscription(TraceEvent, names.TRACE, self._add(self.traces),
                                       RELIABLE_QOS)
        self.tpub = self.probe.create_publisher(Transcription, names.TRANSCRIPTION,
                                                RELIABLE_QOS)
        self.upub = self.probe.create_publisher(Utterance, names.UTTERANCE, RELIABLE_QOS)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.brain)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.tpub.get_subscription_count() >= 1 and
                          (not preemptive or self.upub.get_subscription_count() >= 1))
        assert wait_until(lambda: self.probe.count_publishers(names.REPLY) >= 1)

    def _add(self, box):
        def cb(msg):
            with self.lock:
                box.append(msg)
        return cb

    def transcript(self, cid, text, final, audio_end=0.0):
        m = Transcription(conversation_id=cid, utterance_id=1, text=text, is_final=final,
                          confidence=0.9, language='en', source='test')
        m.header.stamp = self.probe.get_clock().now().to_msg()
        m.audio_end.sec, m.audio_end.nanosec = int(audio_end), round(audio_end % 1 * 1e9)
        self.tpub.publish(m)

    def utterance_audio(self, cid, voiced_end):
        """The listener's AUDIO message: the voiced audio so far ends at ``voiced_end``."""
        m = Utterance(conversation_id=cid, utterance_id=1, state=Utterance.AUDIO)
        m.header.stamp = self.probe.get_clock().now().to_msg()
        m.audio_end.sec, m.audio_end.nanosec = int(voiced_end), round(voiced_end % 1 * 1e9)
        self.upub.publish(m)

    def utterance_ended(self, cid):
        m = Utterance(conversation_id=cid, utterance_id=1, state=Utterance.ENDED,
                      end_reason=Utterance.END_SILENCE)
        m.header.stamp = self.probe.get_clock().now().to_msg()
        self.upub.publish(m)

    def sentences(self, cid):
        with self.lock:
            return [r.text for r in self.replies if r.conversation_id == cid and not r.is_final]

    def ended(self, cid):
        with self.lock:
            return [r for r in self.replies if r.conversation_id == cid and r.is_final]

    def requests(self, cid):
        with self.lock:
            return [t.detail for t in self.traces if t.conversation_id == cid
                    and t.stage == TraceEvent.STAGE_LLM_REQUEST]

    def close(self):
        self.executor.shutdown(timeout_sec=5)
        self.brain.close()
        self.brain.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(5)


def user_text(request):
    return [m['content'] for m in request['messages'] if m['role'] == 'user'][-1]


def test_end_of_turn_starts_the_reply_and_a_matching_final_releases_it(tmp_path):
    with FakeOpenAI() as srv:
        reply = Reply.text('Sure thing. It is noon.', piece=3)
        srv.push(reply)
        g = Graph(tmp_path, srv)
        try:
            g.transcript('k1', 'what time', final=False)
            g.transcript('k1', 'what time is it', final=False)
            assert wait_until(lambda: g.brain.preemptor.latest == (('k1', 1), 'what time is it'))
            g.utterance_ended('k1')
            assert wait_until(lambda: srv.sent_events >= len(reply.events))
            assert user_text(srv.requests[0]) == 'what time is it'
            assert g.sentences('k1') == [] and g.ended('k1') == []   # held: no final yet
            g.transcript('k1', 'What time is it?', final=True)
            assert wait_until(lambda: g.ended('k1'))
            assert g.sentences('k1') == ['Sure thing.', 'It is noon.']
            assert not g.ended('k1')[0].interrupted
            assert len(srv.requests) == 1
            assert wait_until(lambda: g.requests('k1'))
            assert ['preemptive' in d for d in g.requests('k1')] == [True]
            assert g.brain.preemptor.stats.kept == 1
        finally:
            g.close()


def test_a_different_final_restarts_from_the_final(tmp_path):
    with FakeOpenAI() as srv:
        srv.push(Reply.text('Wrong song. Sorry.'), Reply.text('Playing the cantina song.'))
        g = Graph(tmp_path, srv)
        try:
            g.transcript('k2', 'play the cantina', final=False)
            assert wait_until(lambda: g.brain.preemptor.latest)
            g.utterance_ended('k2')
            assert wait_until(lambda: srv.requests)
            g.transcript('k2', 'play the cantina song', final=True)
            assert wait_until(lambda: g.ended('k2'))
            assert g.sentences('k2') == ['Playing the cantina song.']
            assert len(g.ended('k2')) == 1
            assert [user_text(r) for r in srv.requests] == ['play the cantina',
                                                             'play the cantina song']
            assert g.brain.preemptor.stats.restarted == 1
        finally:
            g.close()


def test_a_pause_starts_the_reply_before_the_end_of_the_turn(tmp_path):
    with FakeOpenAI() as srv:
        srv.push(Reply.text('A timer for what?'), Reply.text('Five minutes, starting now.'))
        g = Graph(tmp_path, srv)
        try:
            g.utterance_audio('k4', 100.40)
            assert wait_until(lambda: g.brain.preemptor._voiced)
            g.transcript('k4', 'set a timer for', final=False, audio_end=100.50)  # a pause
            assert wait_until(lambda: srv.requests)           # no ENDED: started at the pause
            assert user_text(srv.requests[0]) == 'set a timer for'
            g.utterance_audio('k4', 101.30)                   # "... five minutes"
            assert wait_until(lambda: g.brain.preemptor.stats.resumed == 1)
            g.transcript('k4', 'set a timer for five minutes', final=False, audio_end=101.40)
            assert wait_until(lambda: len(srv.requests) == 2)
            g.utterance_ended('k4')
            g.transcript('k4', 'Set a timer for five minutes.', final=True)
            assert wait_until(lambda: g.ended('k4'))
            # nothing of the reply to the half sentence ever went out
            assert g.sentences('k4') == ['Five minutes, starting now.']
            assert [user_text(r) for r in srv.requests] == ['set a timer for',
                                                             'set a timer for five minutes']
            st = g.brain.preemptor.stats
            assert (st.on_pause, st.kept, st.stale) == (2, 1, 1)
        finally:
            g.close()


def test_the_parameter_turns_preemptive_generation_off(tmp_path):
    with FakeOpenAI() as srv:
        srv.push(Reply.text('Only from the final.'))
        g = Graph(tmp_path, srv, preemptive=False)
        try:
            g.transcript('k3', 'play the cantina', final=False)
            g.utterance_ended('k3')
            g.transcript('k3', 'play the cantina song', final=True)
            assert wait_until(lambda: g.ended('k3'))
            assert g.sentences('k3') == ['Only from the final.']
            # One request, from the final: a preemptive one would have been a second.
            assert [user_text(r) for r in srv.requests] == ['play the cantina song']
            assert wait_until(lambda: g.requests('k3'))
            assert not any('preemptive' in d for d in g.requests('k3'))
        finally:
            g.close()

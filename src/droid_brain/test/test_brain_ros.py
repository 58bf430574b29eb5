"""droid_brain under ROS 2: brain (mock backend), the real tool_executor and mode_manager,
with a fake music action/service server and an eyes subscriber, all in one process on a
private namespace (nothing leaks to or from other tests on the machine).
"""

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip('rclpy')

from action_msgs.msg import GoalStatus, GoalStatusArray
from diagnostic_msgs.msg import DiagnosticArray
from droid_brain.brain_node import BrainNode
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_brain.mode_manager_node import ModeManagerNode
from droid_brain.tool_executor_node import ToolExecutorNode
from droid_common import names
from droid_common.ros import LATCHED_SUB_QOS, RELIABLE_QOS, to_time_msg
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from droid_msgs.action import PlayMusic, ToolCall
from droid_msgs.msg import (
    EyeCommand,
    MusicState,
    Persona,
    ReplySentence,
    Sentiment,
    SpeechEvent,
    SystemMode,
    TraceEvent,
    Transcription,
    WakeWord,
)
from droid_msgs.srv import MusicControl, SetMode

TRACE_NAMES = {v: k for k, v in vars(TraceEvent).items() if k.startswith('STAGE_')}


def wait_until(predicate, timeout=10.0, period=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period)
    return predicate()


class Harness(Node):
    """Test node: fake music player, eyes listener, recorders of every brain output."""

    def __init__(self, ns):
        super().__init__('brain_test_harness', namespace=ns)
        cb = ReentrantCallbackGroup()
        self.lock = threading.Lock()
        self.closing = False
        self._latched: dict = {}           # topic -> messages of its kept subscription
        self.replies, self.sentiments, self.eyes, self.traces = [], [], [], []
        self.music_goals, self.music_control, self.statuses, self.diags = [], [], {}, []
        self.transcription_pub = self.create_publisher(Transcription, names.TRANSCRIPTION,
                                                       RELIABLE_QOS)
        self.speech_pub = self.create_publisher(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        self.wake_pub = self.create_publisher(WakeWord, names.WAKE_WORD, RELIABLE_QOS)
        self.create_subscription(ReplySentence, names.REPLY, self._add(self.replies),
                                 RELIABLE_QOS, callback_group=cb)
        self.create_subscription(Sentiment, names.SENTIMENT, self._add(self.sentiments),
                                 RELIABLE_QOS, callback_group=cb)
        self.create_subscription(EyeCommand, names.EYE_COMMAND, self._add(self.eyes),
                                 RELIABLE_QOS, callback_group=cb)
        self.create_subscription(TraceEvent, names.TRACE, self._add(self.traces), RELIABLE_QOS,
                                 callback_group=cb)
        self.create_subscription(GoalStatusArray, names.TOOL_CALL + '/_action/status',
                                 self._on_status, 10, callback_group=cb)
        self.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._add(self.diags), 50,
                                 callback_group=cb)
        self.music = ActionServer(self, PlayMusic, names.MUSIC_PLAY, self._play,
                                  goal_callback=lambda g: GoalResponse.ACCEPT,
                                  cancel_callback=lambda g: CancelResponse.ACCEPT,
                                  callback_group=cb)
        self.create_service(MusicControl, names.MUSIC_CONTROL, self._control, callback_group=cb)
        self.tool_client = ActionClient(self, ToolCall, names.TOOL_CALL, callback_group=cb)
        self.params = self.create_client(SetParameters, 'brain/set_parameters',
                                         callback_group=cb)
        self.set_mode = self.create_client(SetMode, names.SET_MODE, callback_group=cb)

    def _add(self, bucket):
        def cb(msg):
            with self.lock:
                bucket.append(msg)
        return cb

    def _on_status(self, msg):
        with self.lock:
            for s in msg.status_list:
                self.statuses[bytes(s.goal_info.goal_id.uuid)] = s.status

    def _play(self, goal_handle):
        q = goal_handle.request.query
        with self.lock:
            self.music_goals.append(goal_handle.request)
        if q == 'missing':
            goal_handle.abort()
            return PlayMusic.Result(success=False, error=f'no track matches "{q}"')
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self.closing:
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                return PlayMusic.Result(success=True, track_title='Cantina Band', played=0.1)
            if q != 'silent':
                goal_handle.publish_feedback(PlayMusic.Feedback(
                    track_title='Cantina Band', position=0.0, duration=165.0))
            time.sleep(0.05)
        goal_handle.succeed()
        return PlayMusic.Result(success=True, track_title='Cantina Band', played=5.0)

    def _control(self, req, res):
        with self.lock:
            self.music_control.append((req.command, req.volume))
        res.success = True
        res.message = 'ok'
        res.state = MusicState(volume=req.volume)
        return res

    def say(self, cid, uid, text, final=True, stamp=None):
        msg = Transcription(conversation_id=cid, utterance_id=uid, text=text, is_final=final,
                            confidence=0.9, language='en', source='test')
        msg.header.stamp = stamp or self.get_clock().now().to_msg()
        self.transcription_pub.publish(msg)
        return msg

    def reply(self, cid, uid=None):
        with self.lock:
            return [r for r in self.replies if r.conversation_id == cid and
                    (uid is None or r.utterance_id == uid)]

    def done_traces(self, cid):
        with self.lock:
            return [t for t in self.traces if t.conversation_id == cid
                    and TRACE_NAMES[t.stage] == 'STAGE_REPLY_DONE']

    def ended(self, cid, uid=None):
        return [r for r in self.reply(cid, uid) if r.is_final]

    def latched(self, msg_type, topic, timeout=5.0):
        """The topic's current message: the latest one of a subscription made on the first
        call and kept (a transient-local one gets the latched message first). Not made and
        destroyed per call: destroying a subscription while the executor builds its wait
        set can kill the executor's thread (rclpy 7 enters the subscription's QoS event
        handler after its destruction began: InvalidHandle), and every later test starves."""
        with self.lock:
            got = self._latched.get(topic)
            if got is None:
                got = self._latched[topic] = []
                self.create_subscription(msg_type, topic, got.append, LATCHED_SUB_QOS)
        wait_until(lambda: got, timeout)
        return got[-1] if got else None

    def call(self, client, request, timeout=10.0):
        assert client.wait_for_service(timeout_sec=timeout)
        future = client.call_async(request)
        assert wait_until(future.done, timeout)
        return future.result()

    def tool(self, name, args, cid='tooltest', cancel_after=None, timeout=10.0):
        assert self.tool_client.wait_for_server(timeout_sec=timeout)
        fut = self.tool_client.send_goal_async(ToolCall.Goal(
            tool_name=name, arguments_json=args, call_id='t1', conversation_id=cid))
        assert wait_until(fut.done, timeout)
        handle = fut.result()
        assert handle.accepted
        if cancel_after is not None:
            time.sleep(cancel_after)
            handle.cancel_goal_async()
        rf = handle.get_result_async()
        assert wait_until(rf.done, timeout)
        return rf.result()


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    ns = '/bt_' + uuid.uuid4().hex[:8]
    state = tmp_path_factory.mktemp('brain_state') / 'state.yaml'
    rclpy.init()
    brain = BrainNode(namespace=ns, parameter_overrides=[
        Parameter('backend', value='mock'),
        Parameter('mock_time_to_first_token_s', value=0.05),
        Parameter('mock_token_rate', value=40.0),
        Parameter('state_file', value=str(state)),
        Parameter('tool_server_timeout_s', value=5.0)])
    tools = ToolExecutorNode(namespace=ns, parameter_overrides=[
        Parameter('service_timeout_s', value=2.0),
        Parameter('music_start_timeout_s', value=1.0)])
    modes = ModeManagerNode(namespace=ns, parameter_overrides=[
        Parameter('initial_mode', value='ambient'),
        Parameter('interactive_timeout_s', value=1.0)])
    harness = Harness(ns)
    executor = MultiThreadedExecutor(num_threads=8)
    for n in (brain, tools, modes, harness):
        executor.add_node(n)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    assert harness.tool_client.wait_for_server(timeout_sec=10)
    # Discovery: the brain must see the harness publisher before the first message.
    assert wait_until(lambda: harness.transcription_pub.get_subscription_count() >= 2, 10)
    yield type('G', (), dict(ns=ns, brain=brain, tools=tools, modes=modes, h=harness,
                             state=state, executor=executor))
    harness.closing = True
    time.sleep(0.1)
    executor.shutdown(timeout_sec=5)
    for n in (brain, tools, modes):
        n.close() if hasattr(n, 'close') else None
        n.destroy_node()
    harness.destroy_node()
    rclpy.try_shutdown()
    thread.join(5)


def test_final_transcription_gives_sentences_sentiment_and_tool_goals(graph):
    h = graph.h
    h.say('conv1', 1, 'play the cantina', final=False)          # partials are ignored
    heard = h.say('conv1', 1, 'play the cantina song and make your eyes red')
    assert wait_until(lambda: h.ended('conv1', 1), 15), 'no end-of-reply marker'
    rep = h.reply('conv1', 1)
    sentences = [r for r in rep if not r.is_final]
    assert [r.text for r in sentences] == [
        'The cantina band is playing and my eyes are glowing red.',
        "Let's get this party started!"]
    assert [r.index for r in rep] == [0, 1, 2]
    assert rep[-1].is_final and not rep[-1].interrupted and rep[-1].text == ''
    assert all(r.persona == 'rex' for r in rep)
    # Sentiment of the reply, same conversation and utterance.
    sent = wait_until(lambda: [s for s in h.sentiments if s.conversation_id == 'conv1'], 5)
    assert sent[0].utterance_id == 1 and sent[0].label == Sentiment.POSITIVE
    assert 0.05 <= sent[0].score <= 1.0
    # The tools acted through the droid's own interfaces.
    goal = wait_until(lambda: h.music_goals, 5)[0]
    assert goal.query == 'cantina' and goal.conversation_id == 'conv1'
    eye = wait_until(lambda: [e for e in h.eyes if e.conversation_id == 'conv1'], 5)[0]
    assert eye.pattern == EyeCommand.PATTERN_SOLID
    assert (eye.color.r, eye.color.g, eye.color.b) == (1.0, 0.0, 0.0)
    # Two ToolCall goals went through the action and succeeded.
    assert wait_until(lambda: list(h.statuses.values()).count(GoalStatus.STATUS_SUCCEEDED) >= 2, 5)
    # Trace points, stamped with the triggering transcription (REPLY_DONE follows the marker).
    assert wait_until(lambda: h.done_traces('conv1'), 5)
    tr = [t for t in h.traces if t.conversation_id == 'conv1']
    stages = [TRACE_NAMES[t.stage] for t in tr]
    for stage in ('STAGE_LLM_REQUEST', 'STAGE_FIRST_TOKEN', 'STAGE_FIRST_SENTENCE',
                  'STAGE_REPLY_DONE'):
        assert stages.count(stage) >= 1, stage
    assert stages.count('STAGE_TOOL_GOAL') == 2 and stages.count('STAGE_TOOL_RESULT') == 2
    assert stages.index('STAGE_TOOL_RESULT') < stages.index('STAGE_FIRST_SENTENCE')
    assert all(t.input_stamp == heard.header.stamp for t in tr)
    assert all(t.node == f'{graph.ns}/brain' for t in tr)
    tool_details = sorted(t.detail for t in tr if TRACE_NAMES[t.stage] == 'STAGE_TOOL_GOAL')
    assert tool_details == ['play_music', 'set_eyes']


def test_failing_tool_error_goes_back_and_droid_apologises(graph):
    h = graph.h
    h.say('conv2', 1, 'set the volume to 5')
    assert wait_until(lambda: h.ended('conv2', 1), 15)
    texts = [r.text for r in h.reply('conv2', 1) if not r.is_final]
    assert texts[0] == "Sorry, I can't turn it up that far."
    results = [t.detail for t in h.traces
               if t.conversation_id == 'conv2' and TRACE_NAMES[t.stage] == 'STAGE_TOOL_RESULT']
    assert len(results) == 1 and 'less than or equal to 1' in results[0]
    assert not [c for c in h.music_control if c[1] == 5.0]    # never reached the player


def test_persona_switch_live_through_parameter_and_latched_topic(graph):
    h = graph.h
    assert h.latched(Persona, names.PERSONA).name == 'rex'

    def set_persona(name):
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=name)
        return h.call(h.params, SetParameters.Request(
            parameters=[ParameterMsg(name='persona', value=value)])).results[0]

    bad = set_persona('Case')
    assert not bad.successful and "unknown persona 'Case'" in bad.reason
    assert 'rex' in bad.reason and 'tars' in bad.reason
    ok = set_persona('tars')
    assert ok.successful
    p = wait_until(lambda: (m := h.latched(Persona, names.PERSONA, 2)) and m.name == 'tars' and m)
    assert p.display_name == 'TARS' and p.offline_voice == 'en-us+m7'
    assert p.offline_rate_wpm == 165.0 and p.eye_theme == 'tars'
    assert graph.brain.get_parameter('persona').value == 'tars'
    assert 'active_persona: tars' in graph.state.read_text()           # persisted
    # The next reply speaks as the new persona (and its system prompt is in use).
    h.say('conv3', 1, 'hello')
    assert wait_until(lambda: h.ended('conv3', 1), 15)
    assert {r.persona for r in h.reply('conv3', 1)} == {'tars'}
    assert graph.brain.memory.messages()[0]['content'].startswith('You are TARS')
    # The set_persona tool goes through the same parameter service.
    h.say('conv4', 1, 'please be chopper now')
    assert wait_until(lambda: h.ended('conv4', 1), 15)
    assert wait_until(lambda: (m := h.latched(Persona, names.PERSONA, 2)) and m.name == 'chopper')
    assert graph.brain.get_parameter('persona').value == 'chopper'


def test_barge_in_cancels_the_reply(graph):
    h = graph.h
    h.say('conv5', 1, 'tell me a story')
    assert wait_until(lambda: [r for r in h.reply('conv5', 1) if not r.is_final], 15)
    ev = SpeechEvent(conversation_id='conv5', utterance_id=1, sentence_index=0,
                     event=SpeechEvent.INTERRUPTED, text='')
    h.speech_pub.publish(ev)
    assert wait_until(lambda: h.ended('conv5', 1), 15)
    end = h.ended('conv5', 1)[0]
    assert end.interrupted
    assert end.index < 4                             # the story has 4 sentences
    done = wait_until(lambda: h.done_traces('conv5'), 5)
    assert [t.detail for t in done] == ['interrupted: barge-in']


def test_newer_conversation_cancels_the_old_one(graph):
    h = graph.h
    h.say('conv6', 1, 'tell me a story')
    assert wait_until(lambda: [r for r in h.reply('conv6', 1) if not r.is_final], 15)
    h.say('conv7', 1, 'hello')
    assert wait_until(lambda: h.ended('conv7', 1), 15)
    old = h.ended('conv6', 1)
    assert old and old[0].interrupted
    assert not h.ended('conv7', 1)[0].interrupted
    # Nothing of the old conversation is published after its marker.
    rep6 = h.reply('conv6', 1)
    assert rep6[-1].is_final


def test_barge_in_cancels_running_tool_goals(graph):
    h = graph.h
    n = len(h.music_goals)
    h.say('conv12', 1, 'play silent')        # the fake player never reports a start
    assert wait_until(lambda: len(h.music_goals) > n, 10)
    before = list(h.statuses.values()).count(GoalStatus.STATUS_CANCELED)
    h.speech_pub.publish(SpeechEvent(conversation_id='conv12', utterance_id=1,
                                     event=SpeechEvent.INTERRUPTED))
    assert wait_until(lambda: h.ended('conv12', 1), 15)
    assert h.ended('conv12', 1)[0].interrupted
    # play_music must finish: its ToolCall goal is not cancelled (the music keeps starting).
    time.sleep(1.0)
    assert list(h.statuses.values()).count(GoalStatus.STATUS_CANCELED) == before


def test_barge_in_cancels_tools_in_flight_except_those_that_must_finish(graph, tmp_path):
    """A fake tool executor holds every goal: after the barge-in get_time is cancelled,
    set_eyes (must_finish) is left to complete."""
    ns = graph.ns + '/slow'
    node = rclpy.create_node('slow_tools', namespace=ns)
    goals, cancels = {}, []
    cb = ReentrantCallbackGroup()

    def execute(handle):
        name = handle.request.tool_name
        goals[name] = handle
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            if handle.is_cancel_requested:
                cancels.append(name)
                handle.canceled()
                return ToolCall.Result(success=False, error='cancelled')
            time.sleep(0.02)
        handle.succeed()
        return ToolCall.Result(success=True, result_json='{}')

    server = ActionServer(node, ToolCall, names.TOOL_CALL, execute,
                          goal_callback=lambda g: GoalResponse.ACCEPT,
                          cancel_callback=lambda g: CancelResponse.ACCEPT, callback_group=cb)
    with FakeOpenAI() as srv:
        srv.push(Reply.tools([('a', 'get_time', '{}'),
                              ('b', 'set_eyes', '{"pattern": "solid", "colour": "red"}')]))
        brain = BrainNode('brain_slow', namespace=ns, parameter_overrides=[
            Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
            Parameter('model', value='local'), Parameter('filler_after_s', value=0.0),
            Parameter('state_file', value=str(tmp_path / 's.yaml'))])
        tpub = node.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        spub = node.create_publisher(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        graph.executor.add_node(brain)
        graph.executor.add_node(node)
        try:
            assert wait_until(lambda: tpub.get_subscription_count() >= 1, 10)
            tpub.publish(Transcription(conversation_id='s1', utterance_id=1,
                                       text='time and red eyes', is_final=True))
            assert wait_until(lambda: len(goals) == 2, 10)
            spub.publish(SpeechEvent(conversation_id='s1', utterance_id=1,
                                     event=SpeechEvent.INTERRUPTED))
            assert wait_until(lambda: cancels == ['get_time'], 5)
            time.sleep(0.5)
            assert cancels == ['get_time'] and not goals['set_eyes'].is_cancel_requested
        finally:
            graph.executor.remove_node(brain)
            graph.executor.remove_node(node)
            brain.close()
            brain.destroy_node()
            server.destroy()
            node.destroy_node()


def test_wake_word_of_a_new_conversation_cancels_the_reply(graph):
    h = graph.h
    h.say('conv13', 1, 'tell me a story')
    assert wait_until(lambda: [r for r in h.reply('conv13', 1) if not r.is_final], 15)
    h.wake_pub.publish(WakeWord(conversation_id='conv14', model_name='hey_jarvis', score=0.9,
                                threshold=0.5))
    assert wait_until(lambda: h.ended('conv13', 1), 15)
    assert h.ended('conv13', 1)[0].interrupted
    done = wait_until(lambda: h.done_traces('conv13'), 5)
    assert done[0].detail == 'interrupted: new conversation (wake word)'


def test_mode_manager_service_and_latched_topic(graph):
    h = graph.h
    # A late subscriber gets the latched mode (earlier tests' wake words may have made
    # it INTERACTIVE for a moment; the 1 s timeout brings it back to AMBIENT).
    m = wait_until(lambda: (x := h.latched(SystemMode, names.MODE, 2)) and
                   x.mode == SystemMode.AMBIENT and x, 8)
    assert m and m.reason in ('startup', 'interactive timeout')
    bad = h.call(h.set_mode, SetMode.Request(mode=42, reason='test'))
    assert not bad.success and 'invalid mode 42' in bad.message
    assert bad.mode == SystemMode.AMBIENT
    ok = h.call(h.set_mode, SetMode.Request(mode=SystemMode.IDLE, reason='test'))
    assert ok.success and (ok.previous_mode, ok.mode) == (SystemMode.AMBIENT, SystemMode.IDLE)
    m = wait_until(lambda: (x := h.latched(SystemMode, names.MODE, 2)) and x.mode == SystemMode.IDLE and x)
    assert m.reason == 'test' and m.previous_mode == SystemMode.AMBIENT
    # Wake word -> INTERACTIVE; 1 s without activity -> back to IDLE.
    h.wake_pub.publish(WakeWord(conversation_id='conv8', model_name='hey_jarvis', score=0.9,
                                threshold=0.5))
    m = wait_until(lambda: (x := h.latched(SystemMode, names.MODE, 1)) and
                   x.mode == SystemMode.INTERACTIVE and x, 5)
    assert m.reason == 'wake word' and m.previous_mode == SystemMode.IDLE
    m = wait_until(lambda: (x := h.latched(SystemMode, names.MODE, 1)) and
                   x.mode == SystemMode.IDLE and x, 6)
    assert m.reason == 'interactive timeout'
    # The set_mode tool, through the LLM (mock rule "go to sleep").
    h.say('conv9', 1, 'go to sleep')
    assert wait_until(lambda: h.ended('conv9', 1), 15)
    m = wait_until(lambda: (x := h.latched(SystemMode, names.MODE, 1)) and
                   x.mode == SystemMode.SLEEP and x, 5)
    assert m.reason == 'tool set_mode'
    h.call(h.set_mode, SetMode.Request(mode=SystemMode.AMBIENT, reason='test'))


def test_tool_executor_errors_feedback_and_cancel(graph):
    h = graph.h
    r = h.tool('fly', '{}')
    assert r.status == GoalStatus.STATUS_ABORTED and not r.result.success
    assert "unknown tool 'fly'" in r.result.error
    r = h.tool('set_volume', '{"level": ')
    assert not r.result.success and 'not valid JSON' in r.result.error
    r = h.tool('set_persona', '{"name": "nobody"}')
    assert not r.result.success and "unknown persona 'nobody'" in r.result.error
    r = h.tool('play_music', '{"query": "missing"}')
    assert not r.result.success and 'no track matches' in r.result.error
    r = h.tool('get_time', '')
    assert r.result.success and 'iso' in json.loads(r.result.result_json)
    r = h.tool('set_volume', '{"level": 0.3}')
    assert r.result.success and json.loads(r.result.result_json)['volume'] == pytest.approx(0.3)
    r = h.tool('stop_music', '{}')
    assert r.result.success and (MusicControl.Request.STOP, 0.0) in h.music_control
    # A long tool honours cancel (the player never reports the track started): CANCELED,
    # not the success it reports when music_start_timeout_s (1 s) runs out.
    n = len(h.music_goals)
    r = h.tool('play_music', '{"query": "silent"}', cancel_after=0.3)
    assert r.status == GoalStatus.STATUS_CANCELED and 'cancelled' in r.result.error
    assert len(h.music_goals) == n + 1


def test_tool_executor_without_servers_fails_cleanly(graph):
    lonely = ToolExecutorNode(namespace=graph.ns + '/lonely', parameter_overrides=[
        Parameter('service_timeout_s', value=0.3)])
    probe = rclpy.create_node('lonely_probe', namespace=graph.ns + '/lonely')
    client = ActionClient(probe, ToolCall, names.TOOL_CALL)
    graph.executor.add_node(lonely)
    graph.executor.add_node(probe)
    try:
        assert client.wait_for_server(timeout_sec=10)
        for name, args, needle in [
                ('set_volume', '{"level": 0.5}', 'service music/control is not available'),
                ('set_mode', '{"mode": "idle"}', 'service set_mode is not available'),
                ('play_music', '{"query": "x"}', 'the music player is not available'),
                ('set_persona', '{"name": "tars"}', 'brain/set_parameters is not available')]:
            fut = client.send_goal_async(ToolCall.Goal(tool_name=name, arguments_json=args))
            assert wait_until(fut.done, 5)
            rf = fut.result().get_result_async()
            assert wait_until(rf.done, 5)
            res = rf.result().result
            assert not res.success and needle in res.error, (name, res.error)
        # set_eyes only publishes: it works without an eyes node.
        fut = client.send_goal_async(ToolCall.Goal(
            tool_name='set_eyes', arguments_json='{"pattern": "blink", "colour": "blue"}'))
        assert wait_until(fut.done, 5)
        rf = fut.result().get_result_async()
        assert wait_until(rf.done, 5) and rf.result().result.success
    finally:
        graph.executor.remove_node(lonely)
        graph.executor.remove_node(probe)
        lonely.destroy_node()
        probe.destroy_node()


def test_profile_files_only_set_declared_parameters(graph):
    config = Path(__file__).resolve().parent.parent / 'config'
    nodes = {'/**/brain': graph.brain, '/**/tool_executor': graph.tools,
             '/**/mode_manager': graph.modes}
    for profile in ('brain_mock.yaml', 'brain_real.yaml'):
        data = yaml.safe_load((config / profile).read_text())
        assert set(data) == set(nodes), profile
        for key, node in nodes.items():
            for name in data[key]['ros__parameters']:
                assert node.has_parameter(name), (profile, key, name)


def test_openai_backend_faults_fall_back_and_warn(graph, tmp_path):
    """A brain on a local OpenAI-compatible server that keeps failing: fallback line + WARN."""
    h = graph.h
    with FakeOpenAI() as srv:
        srv.push(Reply.error(503), Reply.error(503))
        brain = BrainNode('brain_llm', namespace=graph.ns + '/llm', parameter_overrides=[
            Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
            Parameter('model', value='local'), Parameter('max_retries', value=1),
            Parameter('retry_base_delay_s', value=0.05),
            Parameter('tool_server_timeout_s', value=0.3),
            Parameter('state_file', value=str(tmp_path / 's.yaml'))])
        replies = []
        node = rclpy.create_node('llm_probe', namespace=graph.ns + '/llm')
        node.create_subscription(ReplySentence, names.REPLY, replies.append, RELIABLE_QOS)
        tpub = node.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        graph.executor.add_node(brain)
        graph.executor.add_node(node)
        try:
            assert wait_until(lambda: tpub.get_subscription_count() >= 1, 10)
            msg = Transcription(conversation_id='c10', utterance_id=1, text='hi', is_final=True)
            msg.header.stamp = to_time_msg(1.0)
            tpub.publish(msg)
            assert wait_until(lambda: [r for r in replies if r.is_final], 15)
            # The persona's fallback line, as one ReplySentence.
            assert [r.text for r in replies if not r.is_final] == [
                'Whoa, my signal to the galaxy just dropped out. Give me a sec and ask me again!']
            assert len(srv.requests) == 2
            warn = wait_until(lambda: [s for d in h.diags for s in d.status
                                       if s.name == f'{graph.ns[1:]}/llm/brain_llm: llm'
                                       and s.level == b'\x01'], 5)
            assert 'HTTP 503' in warn[-1].message
            # No tool executor in this namespace: the calls fail back to the model.
            srv.push(Reply.tools([('k1', 'get_time', '{}')]), Reply.text('No clock, sorry.'))
            msg = Transcription(conversation_id='c11', utterance_id=1, text='time?',
                                is_final=True)
            tpub.publish(msg)
            assert wait_until(lambda: [r for r in replies if r.is_final and
                                       r.conversation_id == 'c11'], 15)
            tool_msg = srv.requests[-1]['messages'][-1]
            assert tool_msg['role'] == 'tool' and tool_msg['tool_call_id'] == 'k1'
            assert 'tool executor not available' in tool_msg['content']
            assert [r.text for r in replies if r.conversation_id == 'c11'][0] == 'No clock, sorry.'
        finally:
            graph.executor.remove_node(brain)
            graph.executor.remove_node(node)
            brain.close()
            brain.destroy_node()
            node.destroy_node()


def test_cut_stream_is_not_a_reply_and_tool_rounds_survive_a_server_without_tool_streams(
        graph, tmp_path):
    """Point 5 of the conversation issue, through the node: a stream cut mid-answer ends the
    turn interrupted with only the whole sentences published and a WARN on /diagnostics; a
    llama.cpp-like server (empty stream when tools are offered) still runs tools."""
    h = graph.h

    def server(body):
        if body.get('stream') and body.get('tools') and body['messages'][-1]['content'] == 'x':
            return Reply(events=[])                       # cannot stream tool calls
        if not body.get('stream'):
            if body['messages'][-1]['role'] == 'tool':
                return Reply.whole('It is late.')
            return Reply.whole(None, [('t1', 'get_time', '{}')])
        return Reply.cut('I began a sentence. Then the line went', piece=5)

    with FakeOpenAI(responder=server) as srv:
        brain = BrainNode('brain_cut', namespace=graph.ns + '/cut', parameter_overrides=[
            Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
            Parameter('model', value='local'), Parameter('max_retries', value=1),
            Parameter('retry_base_delay_s', value=0.05),
            Parameter('tool_server_timeout_s', value=0.3),
            Parameter('state_file', value=str(tmp_path / 's.yaml'))])
        replies = []
        node = rclpy.create_node('cut_probe', namespace=graph.ns + '/cut')
        node.create_subscription(ReplySentence, names.REPLY, replies.append, RELIABLE_QOS)
        tpub = node.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        graph.executor.add_node(brain)
        graph.executor.add_node(node)
        try:
            assert wait_until(lambda: tpub.get_subscription_count() >= 1, 10)
            tpub.publish(Transcription(conversation_id='k1', utterance_id=1, text='talk',
                                       is_final=True))
            end = wait_until(lambda: [r for r in replies if r.is_final], 15)
            assert end[0].interrupted
            assert [r.text for r in replies if not r.is_final] == ['I began a sentence.']
            assert len(srv.requests) == 1                 # something was said: no retry
            warn = wait_until(lambda: [s for d in h.diags for s in d.status
                                       if s.name == f'{graph.ns[1:]}/cut/brain_cut: llm'
                                       and s.level == b'\x01'
                                       and 'truncated' in s.message], 5)
            assert warn
            # The next request carries only what was said, marked interrupted.
            tpub.publish(Transcription(conversation_id='k1', utterance_id=2, text='x',
                                       is_final=True))
            assert wait_until(lambda: [r for r in replies if r.is_final
                                       and r.utterance_id == 2], 15)
            first = srv.requests[1]['messages']
            assert {'role': 'assistant',
                    'content': 'I began a sentence. [interrupted]'} in first
            assert [bool(r.get('stream')) for r in srv.requests[1:]] == [True, False, False]
            tool_msg = srv.requests[-1]['messages'][-1]
            assert tool_msg['role'] == 'tool' and tool_msg['tool_call_id'] == 't1'
            assert [r.text for r in replies if r.utterance_id == 2 and not r.is_final] == [
                'It is late.']
        finally:
            graph.executor.remove_node(brain)
            graph.executor.remove_node(node)
            brain.close()
            brain.destroy_node()
            node.destroy_node()


@pytest.mark.parametrize('filler_after_s, fillers', [(0.2, 1), (10.0, 0)])
def test_slow_tool_gets_the_persona_filler_line(graph, tmp_path, filler_after_s, fillers):
    """No tool executor in this namespace: the ToolCall waits tool_server_timeout_s (1 s)
    for a server; past filler_after_s the persona's filler line is said, once."""
    with FakeOpenAI() as srv:
        srv.push(Reply.tools([('f1', 'get_time', '{}')]), Reply.text('No clock here.'))
        ns = graph.ns + f'/fill{fillers}'
        brain = BrainNode('brain_fill', namespace=ns, parameter_overrides=[
            Parameter('backend', value='openai'), Parameter('base_url', value=srv.base_url),
            Parameter('model', value='local'), Parameter('persona', value='rex'),
            Parameter('filler_after_s', value=filler_after_s),
            Parameter('tool_server_timeout_s', value=1.0),
            Parameter('state_file', value=str(tmp_path / 's.yaml'))])
        replies, traces = [], []
        node = rclpy.create_node('fill_probe', namespace=ns)
        node.create_subscription(ReplySentence, names.REPLY, replies.append, RELIABLE_QOS)
        node.create_subscription(TraceEvent, names.TRACE, traces.append, RELIABLE_QOS)
        tpub = node.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        graph.executor.add_node(brain)
        graph.executor.add_node(node)
        try:
            assert wait_until(lambda: tpub.get_subscription_count() >= 1, 10)
            tpub.publish(Transcription(conversation_id='f1', utterance_id=1, text='time?',
                                       is_final=True))
            assert wait_until(lambda: [r for r in replies if r.is_final], 15)
            said = [r.text for r in replies if not r.is_final]
            filler = brain.personas.active.filler_line
            assert filler == 'Hang on, spinning that up for you!'
            assert said == [filler] * fillers + ['No clock here.']
            stages = [t.stage for t in traces]
            assert stages.count(TraceEvent.STAGE_FILLER) == fillers
        finally:
            graph.executor.remove_node(brain)
            graph.executor.remove_node(node)
            brain.close()
            brain.destroy_node()
            node.destroy_node()


def test_no_key_with_official_url_falls_back_to_mock(graph, tmp_path, monkeypatch):
    monkeypatch.delenv('OPENAI_API_KEY', raising=False)
    brain = BrainNode('brain_nokey', namespace=graph.ns + '/nokey', parameter_overrides=[
        Parameter('backend', value='openai'),
        Parameter('mock_time_to_first_token_s', value=0.0),
        Parameter('state_file', value=str(tmp_path / 's.yaml'))])
    graph.executor.add_node(brain)
    try:
        assert brain.backend.name == 'mock'
        assert wait_until(lambda: [s for d in graph.h.diags for s in d.status
                                   if s.name.endswith('nokey/brain_nokey: llm')
                                   and s.level == b'\x01'
                                   and 'OPENAI_API_KEY not set' in s.message], 5)
    finally:
        graph.executor.remove_node(brain)
        brain.close()
        brain.destroy_node()

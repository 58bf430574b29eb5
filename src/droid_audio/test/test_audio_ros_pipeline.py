"""Under ROS: mock microphone + listener + STT (mock, then faster-whisper with the real
Whisper tiny.en) as separate processes; an utterance injected through the mock
microphone's service comes out as partial transcription(s) and one final, all with the
conversation id of the wake word. Also: follow-up without the wake word after the
droid's reply, and SLEEP mode ignoring the microphone."""

import pytest

rclpy = pytest.importorskip('rclpy')

import time

from droid_audio.testing import Harness, NodeProcess, pick_domain
from droid_audio.realspeech import has_wake_trace, tiny_en_model, words
from droid_common import names
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS

from droid_msgs.msg import (
    SpeechEvent,
    SystemMode,
    TraceEvent,
    Transcription,
    Utterance,
    WakeWord,
)
from droid_msgs.srv import InjectUtterance

LISTENER = {'silence_ms': 560.0, 'initial_mode': 'IDLE', 'follow_up_s': 10.0,
            'echo_tail_ms': 0.0}


@pytest.fixture(scope='module')
def domain():
    return pick_domain()


def start(module, domain, tmp_path, params=None, **kw):
    return NodeProcess(module, domain, params, log_path=str(tmp_path / f'{module}.log'), **kw)


def stop_all(procs):
    logs = {}
    for p in procs:
        p.stop()
        logs[p.args[2]] = p.log()
    return logs


class Pipeline:
    def __init__(self, domain, tmp_path, stt_module, stt_params):
        self.procs = [start('mock_microphone_node', domain, tmp_path),
                      start('listener_node', domain, tmp_path, LISTENER),
                      start(stt_module, domain, tmp_path, stt_params)]
        self.h = Harness(domain)
        for topic, typ, qos in ((names.TRANSCRIPTION, Transcription, RELIABLE_QOS),
                                (names.TRACE, TraceEvent, RELIABLE_QOS),
                                (names.UTTERANCE, Utterance, RELIABLE_QOS),
                                (names.WAKE_WORD, WakeWord, RELIABLE_QOS)):
            self.h.collect(typ, topic, qos)
        self.mode_pub = self.h.node.create_publisher(SystemMode, names.MODE, LATCHED_QOS)
        self.speech_pub = self.h.node.create_publisher(SpeechEvent, names.SPEECH_EVENT,
                                                       RELIABLE_QOS)
        # ready when the listener and STT subscribe to what they need
        ok = self.h.wait_for(lambda: self.h.node.count_subscribers(names.UTTERANCE) >= 2 and
                             self.h.node.count_subscribers(names.AUDIO) >= 1 and
                             self.h.node.count_publishers(names.AUDIO) >= 1, 60.0)
        if not ok:
            logs = self.logs()
            self.close()
            pytest.fail('nodes did not come up:\n' + logs)

    def logs(self):
        return '\n'.join(f'--- {p.args[2]}\n{p.log()}' for p in self.procs)

    def inject(self, text, transcript=''):
        req = InjectUtterance.Request(text=text, transcript=transcript, padding=0.4)
        res = self.h.call(InjectUtterance, names.INJECT_UTTERANCE, req)
        assert res.success, res.message
        assert res.duration > 1.0
        return res

    def finals(self):
        return [m for m in self.h.got(names.TRANSCRIPTION) if m.is_final]

    def wait_final(self, n, timeout=40.0):
        assert self.h.wait_for(lambda: len(self.finals()) >= n, timeout), self.logs()
        time.sleep(1.0)        # nothing more may follow
        return self.finals()

    def close(self):
        self.h.close()
        return stop_all(self.procs)


def check_turn(p, final, source, min_partials=1):
    cid = final.conversation_id
    msgs = [m for m in p.h.got(names.TRANSCRIPTION)
            if (m.conversation_id, m.utterance_id) == (cid, final.utterance_id)]
    partials = [m for m in msgs if not m.is_final]
    assert len(partials) >= min_partials
    assert msgs[-1].is_final and sum(m.is_final for m in msgs) == 1   # partials, then 1 final
    assert all(m.source == source for m in msgs), [(m.source, m.text, m.is_final) for m in msgs]
    assert final.text.strip()
    start = final.audio_start.sec + final.audio_start.nanosec * 1e-9
    end = final.audio_end.sec + final.audio_end.nanosec * 1e-9
    assert 0.5 < end - start < 10.0
    stages = {t.stage for t in p.h.got(names.TRACE)
              if (t.conversation_id, t.utterance_id) == (cid, final.utterance_id)}
    assert {TraceEvent.STAGE_SPEECH_START, TraceEvent.STAGE_SPEECH_END,
            TraceEvent.STAGE_PARTIAL, TraceEvent.STAGE_FINAL_TRANSCRIPT} <= stages
    states = [u.state for u in p.h.got(names.UTTERANCE)
              if (u.conversation_id, u.utterance_id) == (cid, final.utterance_id)]
    assert states[0] == Utterance.STARTED and states[-1] == Utterance.ENDED
    assert set(states[1:-1]) == {Utterance.AUDIO}
    return cid


def test_mock_pipeline_wake_follow_up_and_sleep(domain, tmp_path):
    p = Pipeline(domain, tmp_path, 'mock_stt_node', {'delay_s': 0.2})
    try:
        p.inject('hey jarvis, play some cantina music')
        finals = p.wait_final(1)
        assert len(finals) == 1
        final = finals[0]
        assert final.text == 'play some cantina music' and final.utterance_id == 1
        wakes = p.h.got(names.WAKE_WORD)
        assert len(wakes) == 1 and wakes[0].model_name == 'hey_jarvis'
        cid = check_turn(p, final, 'mock')
        assert cid == wakes[0].conversation_id
        assert TraceEvent.STAGE_WAKE in {t.stage for t in p.h.got(names.TRACE)
                                         if t.conversation_id == cid}

        # The droid answers in INTERACTIVE mode; after its reply a follow-up needs no wake word.
        p.mode_pub.publish(SystemMode(mode=SystemMode.INTERACTIVE,
                                      previous_mode=SystemMode.IDLE, reason='test'))
        now = p.h.node.get_clock().now().to_msg()
        for event in (SpeechEvent.STARTED, SpeechEvent.ENDED):
            ev = SpeechEvent(conversation_id=cid, utterance_id=1, event=event,
                             text='Playing cantina music.', last_in_reply=True,
                             backend='mock')
            ev.header.stamp = now
            p.speech_pub.publish(ev)
        time.sleep(1.0)        # the listener has the mode/speech events (loaded machine)
        p.inject('what time is it')
        finals = p.wait_final(2)
        assert len(finals) == 2
        follow = finals[1]
        assert follow.conversation_id == cid and follow.utterance_id == 2
        assert follow.text == 'what time is it'
        check_turn(p, follow, 'mock')
        started = [u for u in p.h.got(names.UTTERANCE)
                   if u.utterance_id == 2 and u.state == Utterance.STARTED]
        assert started[0].trigger == Utterance.TRIGGER_FOLLOW_UP
        assert len(p.h.got(names.WAKE_WORD)) == 1

        # SLEEP: the microphone is ignored, even the wake word.
        p.mode_pub.publish(SystemMode(mode=SystemMode.SLEEP,
                                      previous_mode=SystemMode.INTERACTIVE, reason='test'))
        time.sleep(1.0)        # the listener has the mode/speech events (loaded machine)
        res = p.inject('hey jarvis, tell me a joke')
        time.sleep(res.duration + 1.5)
        assert len(p.h.got(names.WAKE_WORD)) == 1 and len(p.finals()) == 2
    finally:
        logs = p.close()
    for name, log in logs.items():
        assert 'Traceback' not in log, f'{name}:\n{log}'


def test_pipeline_with_faster_whisper_on_real_tiny_en(domain, tmp_path):
    p = Pipeline(domain, tmp_path, 'stt_node',
                 {'model': tiny_en_model(), 'cpu_threads': 1, 'partial_interval_ms': 400})
    try:
        assert p.h.wait_for(lambda: 'model loaded and warmed up' in p.procs[2].log()
                            or 'loaded and warmed' in p.procs[2].log(), 60.0), p.logs()
        p.inject('hey jarvis, play some cantina music')
        finals = p.wait_final(1, timeout=60.0)
        assert len(finals) == 1
        cid = check_turn(p, finals[0], 'whisper')
        assert cid == p.h.got(names.WAKE_WORD)[0].conversation_id
        assert finals[0].language == 'en' and 0.0 <= finals[0].confidence <= 1.0
        heard = words(finals[0].text)
        assert 'play' in heard and 'music' in heard and not has_wake_trace(finals[0].text)
    finally:
        logs = p.close()
    for name, log in logs.items():
        assert 'Traceback' not in log, f'{name}:\n{log}'

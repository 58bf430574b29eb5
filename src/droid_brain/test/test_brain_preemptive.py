"""Preemptive generation (plain Python): when a tentative reply starts, when the final keeps
or restarts it, and that nothing of a discarded reply ever goes out (sentences, end marker,
tools, memory). The engine talks to a real HTTP stand-in for the OpenAI API on 127.0.0.1.
"""

import json
import threading
from types import SimpleNamespace

import pytest
from droid_brain import tools
from droid_brain.engine import Engine, RecordingSink, Turn, TurnWorker
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_brain.llm_openai import OpenAIBackend
from droid_brain.memory import SessionMemory
from droid_brain.preemptive import KEEP, RESTART, Preemptor, ReplyGate, normalise
from droid_brain.stream import ToolResult

PERSONA = SimpleNamespace(name='rex', fallback_line='Oops.', filler_line='One moment.')
WAIT = 20.0


# -- the decisions ------------------------------------------------------------------------
def test_normalise_ignores_case_punctuation_and_spaces():
    assert normalise('  What time is it? ') == normalise('what time, is it') == \
        'what time is it'
    assert normalise("Don't stop!") == "don't stop"
    assert normalise('play the cantina song') != normalise('play the cantina')


def test_end_of_turn_starts_from_the_latest_partial_and_the_matching_final_keeps_it():
    p = Preemptor()
    key = ('c1', 1)
    assert p.end_of_turn(key, 1.0) is None                 # no partial yet
    p.partial(key, 'what time', 1.0)
    p.partial(key, 'What time is it', 1.5)
    assert p.end_of_turn(key, 2.0) == (key, 'What time is it')
    assert p.end_of_turn(key, 2.1) is None                 # started once only
    assert p.final(key, 'What time is it?', 2.4) == KEEP
    assert p.stats.kept == 1 and p.stats.saved_s == [pytest.approx(0.4)]
    assert p.stats.hit_rate == 1.0


def test_a_different_final_restarts():
    p = Preemptor()
    key = ('c1', 2)
    p.partial(key, 'play the cantina', 0.0)
    assert p.end_of_turn(key, 0.5) is not None
    assert p.final(key, 'play the cantina song', 0.9) == RESTART
    assert p.stats.as_dict()['restarted'] == 1 and p.stats.hit_rate == 0.0


def test_a_final_without_a_tentative_reply_is_not_a_verdict():
    p = Preemptor()
    p.partial(('c', 1), 'hello', 0.0)
    assert p.final(('c', 1), 'hello', 1.0) is None
    assert p.final(('c', 9), 'other', 1.0) is None
    assert p.stats.started == 0


def test_a_stable_partial_becomes_due_and_a_newer_different_one_makes_it_stale():
    p = Preemptor(stable_s=0.3)
    key = ('c', 1)
    p.partial(key, 'tell me a joke', 10.0)
    assert p.next_due() == pytest.approx(10.3)
    assert p.due(10.2) is None
    assert p.partial(key, 'Tell me a joke.', 10.25) is False   # same words: still stable
    assert p.due(10.31) == (key, 'tell me a joke')
    assert p.next_due() is None
    assert p.partial(key, 'tell me a joke about droids', 10.5) is True   # stale
    assert p.stats.stale == 1
    assert p.due(10.7) is None and p.due(10.81) is not None


def test_stable_start_is_off_by_default_and_everything_is_off_when_disabled():
    p = Preemptor()
    p.partial(('c', 1), 'hello there', 0.0)
    assert p.next_due() is None and p.due(100.0) is None
    off = Preemptor(stable_s=0.1, enabled=False)
    off.partial(('c', 1), 'hello there', 0.0)
    assert off.end_of_turn(('c', 1), 1.0) is None and off.due(5.0) is None


def test_gate_holds_in_order_then_passes_through_and_a_discarded_gate_drops_all():
    out = []
    g = ReplyGate()
    g.run(lambda: out.append(1))
    g.run(lambda: out.append(2))
    assert out == [] and g.pending
    assert g.open() is True and out == [1, 2]
    g.run(lambda: out.append(3))
    assert out == [1, 2, 3] and g.discard() is False
    d = ReplyGate()
    d.run(lambda: out.append('x'))
    assert d.discard() is True and d.open() is False
    d.run(lambda: out.append('y'))
    assert out == [1, 2, 3] and d.wait_decided(0.0) is False


# -- the engine ---------------------------------------------------------------------------
@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


def make(server, runner=None):
    backend = OpenAIBackend(server.base_url, 'fake-model', 'sk-test-1234567', 0.2, 100, 5.0)
    sink = RecordingSink()
    memory = SessionMemory('You are Rex.')
    calls = []

    def record_runner(turn, reqs):
        calls.append([r.name for r in reqs])
        return [ToolResult(True, json.dumps({'ok': True})) for _ in reqs]

    eng = Engine(backend, memory, sink, runner or record_runner, tools.openai_tools(),
                 persona=PERSONA, filler_after_s=0.0)
    return eng, sink, memory, calls


def streamed_all(server, n_events):
    """Wait until the stand-in has sent every event of its reply."""
    deadline = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if server.sent_events >= n_events:
            return True
        deadline.wait(0.01)
    return False


def test_a_tentative_reply_is_held_until_confirmed_then_goes_out_in_order(server):
    reply = Reply.text('Hello there. How are you today?', piece=3)
    server.push(reply)
    eng, sink, memory, _ = make(server)
    worker = TurnWorker(eng)
    try:
        turn = Turn('c', 1, 'hello droid', gate=ReplyGate())
        worker.submit(turn)
        assert streamed_all(server, len(reply.events))
        assert turn.gate.waiting.wait(WAIT)               # the whole reply is in, held
        assert sink.of('sentence') == [] and sink.of('end') == []
        assert sink.of('trace') == []                     # even the traces wait
        assert memory.messages() == [{'role': 'system', 'content': 'You are Rex.'}]
        t_confirm = eng.clock.now()
        assert worker.confirm(('c', 1)) is True
        assert sink.wait_for(lambda s: s.of('end'), WAIT)
        assert [e[4] for e in sink.of('sentence')] == ['Hello there.', 'How are you today?']
        stages = [e[3] for e in sink.of('trace')]
        assert stages[:3] == ['LLM_REQUEST', 'FIRST_TOKEN', 'FIRST_SENTENCE']
        request = sink.of('trace')[0]
        assert request[0] < t_confirm                     # stamped when it really went out
        assert 'preemptive' in request[4]
        assert [m['role'] for m in memory.messages()] == ['system', 'user', 'assistant']
        assert len(server.requests) == 1
    finally:
        worker.close()


def test_a_discarded_tentative_reply_never_goes_out_and_the_real_turn_follows(server):
    server.push(Reply.text('Wrong answer. Totally wrong.'), Reply.text('Right answer.'))
    eng, sink, memory, _ = make(server)
    dropped = []
    worker = TurnWorker(eng, on_dropped=dropped.append)
    try:
        worker.submit(Turn('c', 1, 'play the cantina', gate=ReplyGate()))
        assert streamed_all(server, 1)
        assert worker.cancel_tentative('the final differs') is True
        worker.submit(Turn('c', 1, 'play the cantina song'))
        assert sink.wait_for(lambda s: s.of('end'), WAIT)
        assert worker.wait_idle(WAIT)
        assert [e[4] for e in sink.of('sentence')] == ['Right answer.']
        assert len(sink.of('end')) == 1 and dropped == []
        assert not any('preemptive' in e[4] for e in sink.of('trace'))
        user = [m['content'] for m in memory.messages() if m['role'] == 'user']
        assert user == ['play the cantina song']
        assert len(server.requests) == 2
    finally:
        worker.close()


def test_a_tentative_reply_runs_no_tool_before_it_is_confirmed(server):
    server.push(Reply.tools([('call_1', 'play_music', '{"query": "cantina"}')]))
    eng, sink, memory, calls = make(server)
    worker = TurnWorker(eng)
    try:
        turn = Turn('c', 1, 'play the cantina song', gate=ReplyGate())
        worker.submit(turn)
        assert turn.gate.waiting.wait(WAIT)               # the engine waits for the verdict
        assert calls == [] and len(server.requests) == 1
        worker.cancel_tentative('the final differs')
        assert worker.wait_idle(WAIT)
        assert calls == [] and sink.of('end') == [] and len(server.requests) == 1
        # The same reply confirmed: the tool runs, then the answer is said.
        server.push(Reply.tools([('call_2', 'play_music', '{"query": "cantina"}')]),
                    Reply.text('Playing it now.'))
        worker.submit(Turn('c', 2, 'play the cantina song', gate=ReplyGate()))
        assert worker.confirm(('c', 2)) is True
        assert sink.wait_for(lambda s: s.of('end'), WAIT)
        assert calls == [['play_music']]
        assert [e[4] for e in sink.of('sentence')] == ['Playing it now.']
    finally:
        worker.close()


def test_a_partial_that_does_not_cover_the_speech_starts_nothing():
    p = Preemptor()
    key = ('c', 1)
    p.partial(key, 'what', 0.5, audio_end=10.4)           # decoded before the speech ended
    assert p.end_of_turn(key, 1.0, speech_end=11.2) is None
    assert p.stats.uncovered == 1 and p.stats.started == 0
    p.partial(key, 'what time is it', 1.1, audio_end=11.6)
    assert p.end_of_turn(key, 1.2, speech_end=11.2) == (key, 'what time is it')
    q = Preemptor()                                       # coverage unknown: start
    q.partial(key, 'hello', 0.0)
    assert q.end_of_turn(key, 0.1, speech_end=11.2) is not None


def test_a_partial_delivered_after_the_end_of_its_turn_still_starts_if_it_covers():
    p = Preemptor()
    key = ('c', 1)
    p.partial(key, 'what', 0.1, audio_end=10.4)
    assert p.end_of_turn(key, 1.0, speech_end=11.0) is None      # not covered yet
    assert p.due(1.0) is None
    p.partial(key, 'what time is it', 1.05, audio_end=11.2)        # the late one
    assert p.due(1.06) == (key, 'what time is it')
    assert p.final(key, 'what time is it', 1.3) == KEEP
    p.partial(('c', 2), 'next', 2.0)                               # another turn: no end yet
    assert p.due(2.1) is None


def test_a_partial_decoded_at_a_pause_starts_before_the_end_of_the_turn():
    p = Preemptor(on_pause=True)
    key = ('c', 1)
    p.voiced(key, 10.80)                                  # voiced so far, speech going on
    p.partial(key, 'what time', 0.9, audio_end=10.80)     # cadence: no silence after it
    assert p.pause_due(0.9) is None
    p.voiced(key, 11.20)
    p.partial(key, 'what time is it', 1.5, audio_end=11.26)   # decoded at the pause
    assert p.pause_due(1.5) == (key, 'what time is it')
    assert p.pause_due(1.6) is None and p.end_of_turn(key, 1.7, speech_end=11.2) is None
    p.voiced(key, 11.20)                                  # more silence: still on
    assert p.final(key, 'What time is it?', 1.8) == KEEP
    assert p.stats.on_pause == 1 and p.stats.kept == 1
    assert p.stats.saved_s == [pytest.approx(0.3)]
    off = Preemptor()                                     # on_pause off (the default)
    off.voiced(key, 11.20)
    off.partial(key, 'what time is it', 1.5, audio_end=11.26)
    assert off.pause_due(1.5) is None


def test_voice_after_the_pause_makes_the_reply_started_there_stale():
    p = Preemptor(on_pause=True)
    key = ('c', 1)
    p.voiced(key, 10.0)
    p.partial(key, 'set a timer for', 0.5, audio_end=10.2)
    assert p.pause_due(0.5) == (key, 'set a timer for')
    assert p.voiced(key, 10.1) is False                   # an older mark changes nothing
    assert p.voiced(key, 10.9) is True                    # "... five minutes"
    assert p.stats.resumed == 1 and p.stats.stale == 1
    assert p.voiced(key, 11.0) is False                   # already dropped
    # the same words at the next pause may start again; the final decides
    p.partial(key, 'set a timer for five minutes', 1.4, audio_end=11.3)
    assert p.pause_due(1.4) == (key, 'set a timer for five minutes')
    p.end_of_turn(key, 1.5, speech_end=11.0)
    assert p.voiced(key, 11.5) is False                   # after the end: no more stale
    assert p.final(key, 'set a timer for five minutes', 1.6) == KEEP
    assert p.stats.as_dict()['on_pause'] == 2

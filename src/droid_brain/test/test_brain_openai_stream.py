"""The brain engine with the real openai SDK against a local OpenAI-compatible server.

Real HTTP on 127.0.0.1, server-sent events with content and tool-call deltas split
mid-argument (droid_brain.fake_openai): sentence streaming order, tool round trip, cancel
mid-stream, 5xx / timeout / 429 (bounded retries, then the persona's fallback line).
"""

import json
import threading
import time
from types import SimpleNamespace

import pytest
from droid_brain.engine import Engine, RecordingSink, Turn, TurnWorker
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_brain.llm_openai import OpenAIBackend, is_official_openai
from droid_brain.memory import SessionMemory
from droid_brain.retry import RetryPolicy
from droid_brain.stream import ToolResult

from droid_brain import tools

PERSONA = SimpleNamespace(name='rex', fallback_line='Whoa, my signal dropped out. Ask me again!')


@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


def make(server, retries=2, timeout=5.0, runner=None, base_delay=0.05, key='sk-test-1234567'):
    backend = OpenAIBackend(server.base_url, 'fake-model', key, temperature=0.2,
                            max_tokens=123, request_timeout_s=timeout)
    sink = RecordingSink()
    memory = SessionMemory('You are Rex.')
    calls = []

    def record_runner(turn, reqs):
        calls.append(reqs)
        return [ToolResult(True, json.dumps({'ran': r.name})) for r in reqs]

    eng = Engine(backend, memory, sink, runner or record_runner, tools.openai_tools(),
                 retry=RetryPolicy(retries, base_delay, 2.0, 2.0), persona=PERSONA)
    return eng, sink, memory, calls


def statuses(sink, level):
    return [e[3] for e in sink.of('status') if e[2] == level]


def test_sentences_are_published_while_the_stream_is_still_open(server):
    gate = threading.Event()
    server.push(Reply.gated('Hello there, I am Rex. It is 3.5 degrees', gate,
                            ' on Dr. Who\'s planet. Nice!', piece=3))
    eng, sink, memory, _ = make(server)
    turn = Turn('conv1', 1, 'hi', input_stamp=12.5)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=eng.run_turn(turn)))
    t.start()
    # The first sentence arrives while the server still holds the rest of the reply.
    assert sink.wait_for(lambda s: len(s.of('sentence')) == 1, 10)
    time.sleep(0.2)
    assert [e[4] for e in sink.of('sentence')] == ['Hello there, I am Rex.']
    assert not sink.of('end')
    gate.set()
    t.join(10)
    out = result['out']
    assert out.sentences == ['Hello there, I am Rex.', "It is 3.5 degrees on Dr. Who's planet.",
                             'Nice!']
    assert [e[3] for e in sink.of('sentence')] == [0, 1, 2]            # indices in order
    (end,) = sink.of('end')
    assert end[3] == 3 and end[4] is False                            # marker: next index
    stages = [e[3] for e in sink.of('trace')]
    assert stages == ['LLM_REQUEST', 'FIRST_TOKEN', 'FIRST_SENTENCE', 'REPLY_DONE']
    req = server.requests[0]
    assert req['stream'] is True and req['model'] == 'fake-model' and req['max_tokens'] == 123
    assert req['messages'][0] == {'role': 'system', 'content': 'You are Rex.'}
    assert req['messages'][-1] == {'role': 'user', 'content': 'hi'}
    assert server.headers[0]['authorization'] == 'Bearer sk-test-1234567'
    assert memory.messages()[-1]['content'].startswith('Hello there, I am Rex. It is 3.5')


def test_tool_round_trip(server):
    server.push(
        Reply.tools([('call_a', 'play_music', '{"query": "cantina band"}'),
                     ('call_b', 'set_eyes', '{"pattern": "solid", "colour": "red"}')],
                    piece=3, content='On it! '),
        Reply.text('The band is playing. Eyes are red!'))
    eng, sink, memory, calls = make(server)
    out = eng.run_turn(Turn('c', 2, 'play the cantina song and make your eyes red'))
    # Tool calls assembled from pieces split mid-argument, several per turn.
    (batch,) = calls
    assert [(c.id, c.name, json.loads(c.arguments)) for c in batch] == [
        ('call_a', 'play_music', {'query': 'cantina band'}),
        ('call_b', 'set_eyes', {'pattern': 'solid', 'colour': 'red'})]
    # The schemas from the registry were offered.
    offered = {t['function']['name'] for t in server.requests[0]['tools']}
    assert {'play_music', 'set_eyes', 'set_volume'} <= offered
    # The results went back to the model as tool messages, after the assistant's calls.
    msgs = server.requests[1]['messages']
    assert msgs[-3]['role'] == 'assistant'
    assert [c['id'] for c in msgs[-3]['tool_calls']] == ['call_a', 'call_b']
    assert msgs[-2] == {'role': 'tool', 'tool_call_id': 'call_a',
                        'content': '{"ran": "play_music"}'}
    assert msgs[-1]['tool_call_id'] == 'call_b'
    assert out.sentences == ['On it!', 'The band is playing.', 'Eyes are red!']
    stages = [e[3] for e in sink.of('trace')]
    assert stages.count('TOOL_GOAL') == 2 and stages.count('TOOL_RESULT') == 2
    assert stages.count('LLM_REQUEST') == 2
    # Memory keeps the whole exchange with the calls next to their results.
    roles = [m['role'] for m in memory.messages()]
    assert roles == ['system', 'user', 'assistant', 'tool', 'tool', 'assistant']


def test_tool_rounds_are_bounded(server):
    looping = Reply.tools([('x', 'get_time', '{}')])
    server.push(looping, Reply.tools([('y', 'get_time', '{}')]), Reply.text('It is noon.'))
    eng, sink, memory, calls = make(server)
    eng.max_tool_rounds = 2
    out = eng.run_turn(Turn('c', 1, 'time?'))
    assert len(calls) == 2 and out.sentences == ['It is noon.']
    assert 'tools' in server.requests[1] and 'tools' not in server.requests[2]


def test_cancel_mid_stream(server):
    gate = threading.Event()
    server.push(Reply.gated('First sentence here. Second', gate, ' sentence never heard.'))
    eng, sink, memory, _ = make(server)
    turn = Turn('c', 1, 'talk')
    result = {}
    t = threading.Thread(target=lambda: result.update(out=eng.run_turn(turn)))
    t.start()
    assert sink.wait_for(lambda s: s.of('sentence'), 10)
    turn.request_cancel('barge-in')
    eng.backend.abort()
    t.join(20)
    assert not t.is_alive()                           # never waits for the network:
    gate.set()                                        # the rest is only sent now
    out = result['out']
    assert out.interrupted and out.sentences == ['First sentence here.']
    (end,) = sink.of('end')
    assert end[4] is True                              # interrupted marker
    assert sink.of('trace')[-1][3:] == ('REPLY_DONE', 'interrupted: barge-in')
    assert memory.messages()[-1] == {'role': 'assistant',
                                     'content': 'First sentence here. [interrupted]'}


@pytest.mark.parametrize('status', [500, 503])
def test_5xx_bounded_retries_then_fallback(server, status):
    server.push(*[Reply.error(status)] * 3)
    eng, sink, memory, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 3                  # 1 + 2 retries, no more
    assert out.fallback and out.sentences == [PERSONA.fallback_line]
    assert not out.interrupted
    assert any(f'HTTP {status}' in m for m in statuses(sink, 'warn'))
    stages = [e[3] for e in sink.of('trace')]
    assert stages.count('LLM_REQUEST') == 3
    assert [e[4] for e in sink.of('sentence')] == [PERSONA.fallback_line]


def test_5xx_then_success(server):
    server.push(Reply.error(502), Reply.error(500), Reply.text('Back online.'))
    eng, sink, _, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert out.sentences == ['Back online.'] and not out.fallback
    assert len(server.requests) == 3
    assert statuses(sink, 'ok')                         # health back to OK


def test_429_honours_retry_after(server):
    server.push(Reply.error(429, 'slow down', retry_after=0.4), Reply.text('Okay.'))
    eng, sink, _, _ = make(server, retries=1, base_delay=0.01)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert out.sentences == ['Okay.']
    gap = server.request_times[1] - server.request_times[0]
    assert 0.35 <= gap < 2.0
    assert any('429' in m for m in statuses(sink, 'warn'))


def test_429_exhausted_gives_fallback(server):
    server.push(*[Reply.error(429, retry_after=0)] * 2)
    eng, sink, _, _ = make(server, retries=1)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 2 and out.fallback


def test_timeout_bounded_retries_then_fallback(server):
    server.push(*[Reply.hang(5.0)] * 2)
    eng, sink, _, _ = make(server, retries=1, timeout=0.4)
    t0 = time.monotonic()
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert time.monotonic() - t0 < 4.5                # less than one 5 s hang: timed out
    assert len(server.requests) == 2 and out.fallback
    assert any('timed out' in m for m in statuses(sink, 'warn'))


def test_client_error_is_not_retried(server):
    server.push(Reply.error(401, 'bad key'))
    eng, sink, _, _ = make(server, retries=3)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 1 and out.fallback


def test_malformed_stream_never_kills_the_worker(server):
    junk = Reply(events=['{this is not json'])
    server.push(junk, junk, Reply.text('Recovered.'))
    eng, sink, _, _ = make(server, retries=1)
    worker = TurnWorker(eng)
    try:
        worker.submit(Turn('c', 1, 'one'))
        assert sink.wait_for(lambda s: len(s.of('end')) == 1, 10)
        assert sink.of('sentence')[0][4] == PERSONA.fallback_line
        assert any('malformed' in m for m in statuses(sink, 'warn'))
        worker.submit(Turn('c', 2, 'two'))
        assert sink.wait_for(lambda s: len(s.of('end')) == 2, 10)
        assert sink.of('sentence')[-1][4] == 'Recovered.'
    finally:
        worker.close()


def test_failure_after_speaking_ends_interrupted_without_retry(server):
    events = Reply.text('I started talking. And then', piece=4).events[:-1] + ['{garbage']
    server.push(Reply(events=events))
    eng, sink, _, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 1                  # a retry would repeat what was said
    assert out.sentences == ['I started talking.'] and out.interrupted and not out.fallback


def test_newer_conversation_and_barge_in_cancel_the_worker_turn(server):
    gate = threading.Event()
    server.push(Reply.gated('Old reply starts. More', gate, ' old words.'),
                Reply.text('New reply.'))
    eng, sink, _, _ = make(server)
    worker = TurnWorker(eng)
    try:
        worker.submit(Turn('old', 1, 'first'))
        assert sink.wait_for(lambda s: s.of('sentence'), 10)
        worker.submit(Turn('new', 1, 'second'))
        assert sink.wait_for(lambda s: len(s.of('end')) == 2, 10)
        ends = {e[2]: e[4] for e in sink.of('end')}
        assert ends == {'old': True, 'new': False}
        assert [e[4] for e in sink.of('sentence') if e[2] == 'new'] == ['New reply.']
        done = [e for e in sink.of('trace') if e[3] == 'REPLY_DONE' and e[2] == 'old']
        assert done[0][4] == 'interrupted: newer conversation'
        # Barge-in: a SpeechEvent INTERRUPTED for the running turn cancels it.
        gate2 = threading.Event()
        server.push(Reply.gated('Talking again. And', gate2, ' on.'))
        worker.submit(Turn('new', 2, 'third'))
        assert sink.wait_for(lambda s: len(s.of('sentence')) == 3, 10)
        assert not worker.cancel('new', 1)            # an older utterance: not this turn
        assert not worker.cancel('other', 2)
        assert worker.cancel('new', 2, 'barge-in')
        assert sink.wait_for(lambda s: len(s.of('end')) == 3, 5)
        assert sink.of('end')[-1][4] is True
        gate.set()
        gate2.set()
    finally:
        worker.close()


def test_key_never_appears_in_errors(server, monkeypatch):
    from droid_common.secrets import env_secret
    key = 'sk-secret-abcdef123456'
    monkeypatch.setenv('OPENAI_API_KEY', key)
    assert env_secret('OPENAI_API_KEY') == key
    server.push(Reply.error(500, f'invalid key {key}'), Reply.error(500, f'invalid key {key}'))
    eng, sink, _, _ = make(server, retries=1, key=key)
    eng.run_turn(Turn('c', 1, 'hello'))
    text = json.dumps(sink.events)
    assert 'invalid key' in text and key not in text


def test_official_url_detection():
    assert is_official_openai('https://api.openai.com/v1')
    assert is_official_openai('')
    assert not is_official_openai('http://127.0.0.1:11434/v1')


# -- a stream the brain can trust ------------------------------------------------------

def test_cut_stream_before_any_sentence_is_retried_not_spoken(server):
    server.push(Reply.cut('Hello, the answer is', piece=3), Reply.text('Recovered fine.'))
    eng, sink, memory, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 2
    assert out.sentences == ['Recovered fine.'] and not out.interrupted and not out.fallback
    assert any('truncated' in m for m in statuses(sink, 'warn'))
    assert memory.exchanges[-1][-1] == {'role': 'assistant', 'content': 'Recovered fine.'}


def test_cut_stream_after_a_sentence_keeps_only_what_was_said(server):
    server.push(Reply.cut('I started talking. And then the', piece=4), Reply.text('Sure.'))
    eng, sink, memory, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 1                  # a retry would repeat what was said
    assert out.sentences == ['I started talking.'] and out.interrupted and not out.fallback
    assert [e[3] for e in sink.of('end')] == [True]   # the end marker says interrupted
    assert any('truncated' in m for m in statuses(sink, 'warn'))
    # The next request shows the model only what was said, marked as interrupted.
    eng.run_turn(Turn('c', 2, 'go on'))
    sent = server.requests[-1]['messages']
    assert sent[-2] == {'role': 'assistant', 'content': 'I started talking. [interrupted]'}
    assert 'And then' not in json.dumps(sent)


def test_cut_streams_until_retries_run_out_give_the_fallback_line(server):
    server.push(*[Reply.cut('Half a sen', piece=2)] * 3)
    eng, sink, _, _ = make(server, retries=2)
    out = eng.run_turn(Turn('c', 1, 'hello'))
    assert len(server.requests) == 3
    assert out.fallback and out.sentences == [PERSONA.fallback_line]


def test_server_that_cannot_stream_tool_calls_is_asked_without_streaming(server):
    """llama-cpp-python's server answers stream + tools + tool_choice=auto with nothing."""
    def llama_cpp(body):
        if body.get('stream') and body.get('tools'):
            return Reply(events=[])                                   # the empty stream
        if not body.get('stream'):
            if body['messages'][-1]['role'] == 'tool':
                return Reply.whole('The music is on.')
            return Reply.whole(None, [('call_7', 'play_music', '{"query": "cantina"}')])
        return Reply.text('Streamed without tools.')

    server.responder = llama_cpp
    eng, sink, memory, calls = make(server)
    out = eng.run_turn(Turn('c', 1, 'play the cantina song'))
    assert [[c.name for c in r] for r in calls] == [['play_music']]
    assert json.loads(calls[0][0].arguments) == {'query': 'cantina'}
    assert out.sentences == ['The music is on.'] and not out.interrupted
    # round 1: stream (empty) then the same round without streaming; round 2 goes
    # straight to the non-streaming request.
    assert [bool(r.get('stream')) for r in server.requests] == [True, False, False]
    assert any('not streamed' in m for m in statuses(sink, 'ok'))
    out = eng.run_turn(Turn('c', 2, 'thanks'))
    assert [bool(r.get('stream')) for r in server.requests][3:] == [False, False]


# -- no dead air while a tool runs -------------------------------------------------------

FILLER_PERSONA = SimpleNamespace(name='rex', fallback_line='Signal lost.',
                                 filler_line='Hang on, spinning that up!')


def slow_runner(seconds):
    def run(turn, reqs):
        time.sleep(seconds)
        return [ToolResult(True, json.dumps({'ran': r.name})) for r in reqs]
    return run


@pytest.mark.parametrize('tool_s, fillers', [(0.6, 1), (0.0, 0)])
def test_slow_tool_gets_one_filler_line_fast_tool_none(server, tool_s, fillers):
    server.push(Reply.tools([('c1', 'play_music', '{"query": "cantina"}')]),
                Reply.text('Here it is.'))
    eng, sink, memory, _ = make(server, runner=slow_runner(tool_s))
    eng.persona, eng.filler_after_s = FILLER_PERSONA, 0.2
    out = eng.run_turn(Turn('c', 1, 'play the cantina song'))
    assert out.sentences == ['Hang on, spinning that up!'] * fillers + ['Here it is.']
    filler_traces = [e for e in sink.of('trace') if e[3] == 'FILLER']
    assert len(filler_traces) == fillers
    if fillers:   # said while the tool ran: before its result, after its goal
        stages = [e[3] for e in sink.of('trace')]
        assert stages.index('TOOL_GOAL') < stages.index('FILLER') < stages.index('TOOL_RESULT')


def test_filler_does_not_hide_a_failed_model_behind_it(server):
    server.push(Reply.tools([('c1', 'get_time', '{}')]), Reply.error(401))
    eng, sink, memory, _ = make(server, runner=slow_runner(0.5))
    eng.persona, eng.filler_after_s = FILLER_PERSONA, 0.1
    out = eng.run_turn(Turn('c', 1, 'time?'))
    assert out.sentences == ['Hang on, spinning that up!', 'Signal lost.'] and out.fallback

"""Mock LLM backend: scripted rules, tool calls streamed in pieces, pacing on the clock."""

import json
import threading
from pathlib import Path

import pytest
from droid_brain.engine import Engine, RecordingSink, Turn
from droid_brain.memory import SessionMemory
from droid_brain.mock_llm import MockBackend, MockScript, MockScriptError, tokens
from droid_brain.stream import ToolCallAccumulator, ToolResult

from droid_brain import tools

SCRIPT = Path(__file__).resolve().parent.parent / 'config' / 'mock_script.yaml'
TOOLS = tools.openai_tools()


class StepClock:
    """Simulated clock: sleeping jumps straight to the wake-up time."""

    def __init__(self):
        self.t = 100.0

    def now(self):
        return self.t

    def sleep_until(self, t, cancel=None):
        if cancel is not None and cancel.is_set():
            return False
        self.t = max(self.t, t)
        return True


def collect(backend, messages, tools_=TOOLS):
    out = []
    for d in backend.stream(messages, tools_, threading.Event()):
        out.append((backend.clock.now(), d))
    return out


def user(text):
    return [{'role': 'system', 'content': 's'}, {'role': 'user', 'content': text}]


def test_pacing_time_to_first_token_and_rate():
    clock = StepClock()
    b = MockBackend(MockScript.load(SCRIPT), clock, time_to_first_token=0.5, token_rate=10)
    out = collect(b, user('hello there'))
    stamps = [t - 100.0 for t, d in out if d.content]
    assert stamps[0] == pytest.approx(0.5)
    assert stamps[1:] == pytest.approx([0.5 + 0.1 * n for n in range(1, len(stamps))])
    text = ''.join(d.content for _, d in out if d.content)
    assert text.startswith('Hey there, friend!')
    assert out[-1][1].finish_reason == 'stop'


def test_cantina_rule_gives_two_tool_calls_split_in_pieces():
    b = MockBackend(MockScript.load(SCRIPT), StepClock(), 0.0, 0.0)
    out = collect(b, user('play the cantina song and make your eyes red'))
    pieces = [tc for _, d in out for tc in d.tool_calls]
    assert len(pieces) > 4                                   # arguments arrive in pieces
    acc = ToolCallAccumulator()
    for p in pieces:
        acc.add(p)
    calls = acc.calls()
    assert [c.name for c in calls] == ['play_music', 'set_eyes']
    assert json.loads(calls[0].arguments) == {'query': 'cantina'}
    assert json.loads(calls[1].arguments) == {'pattern': 'solid', 'colour': 'red'}
    assert out[-1][1].finish_reason == 'tool_calls'
    for c in calls:
        tools.validate(c.name, c.arguments)                   # valid against the registry


def test_set_eyes_only_when_asked():
    b = MockBackend(MockScript.load(SCRIPT), StepClock(), 0.0, 0.0)
    out = collect(b, user('play the cantina song'))
    names = {tc.name for _, d in out for tc in d.tool_calls if tc.name}
    assert names == {'play_music'}


def run_engine(text, runner):
    b = MockBackend(MockScript.load(SCRIPT), StepClock(), 0.0, 0.0)
    sink = RecordingSink()
    eng = Engine(b, SessionMemory('sys'), sink, runner, TOOLS, clock=StepClock(),
                 filler_after_s=0)   # the step clock makes every wait instant
    return eng.run_turn(Turn('c', 1, text)), b


def validating_runner(turn, calls):
    out = []
    for c in calls:
        try:
            tools.validate(c.name, c.arguments)
            out.append(ToolResult(True, json.dumps({'track': 'Cantina Band'})))
        except tools.ToolError as exc:
            out.append(ToolResult(False, error=str(exc)))
    return out


def test_failing_tool_gets_an_apology():
    outcome, backend = run_engine('set the volume to 5', validating_runner)
    (call, result), = outcome.tool_calls
    assert call.name == 'set_volume' and not result.success
    assert 'less than or equal to 1' in result.error
    # The error went back to the model as a tool message ...
    tool_msg = backend.requests[-1][-1]
    assert tool_msg['role'] == 'tool' and 'less than or equal to 1' in tool_msg['content']
    # ... and the mock apologised.
    assert outcome.sentences[0].startswith('Sorry')


def test_greeting_default_and_tool_result_values():
    assert run_engine('Hello!', validating_runner)[0].sentences[0] == 'Hey there, friend!'
    assert 'not sure' in run_engine('purple monkey dishwasher', validating_runner)[0].reply_text
    out, _ = run_engine('play some jazz', validating_runner)
    assert out.tool_calls[0][0].arguments == '{"query": "jazz"}'
    assert out.reply_text == 'Now playing Cantina Band. Enjoy!'


def test_no_tools_offered_means_no_tool_calls():
    b = MockBackend(MockScript.load(SCRIPT), StepClock(), 0.0, 0.0)
    out = collect(b, user('play the cantina song'), tools_=[])
    assert not any(d.tool_calls for _, d in out)


def test_cancel_stops_the_stream():
    b = MockBackend(MockScript.load(SCRIPT), StepClock(), 0.0, 5.0)
    cancel = threading.Event()
    seen = []
    for d in b.stream(user('tell me a story'), TOOLS, cancel):
        seen.append(d)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3


def test_bad_script_is_a_clear_error(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('rules:\n  - match: "(unclosed"\n')
    with pytest.raises(MockScriptError, match='bad regex'):
        MockScript.load(bad)
    with pytest.raises(MockScriptError, match='cannot read'):
        MockScript.load(tmp_path / 'missing.yaml')


def test_tokens_keep_all_text():
    text = '  Hello there,  friend!\n'
    assert ''.join(tokens(text)) == text


def test_the_mock_keeps_only_the_latest_requests():
    """A droid runs for days: recording every request would grow without bound."""
    llm = MockBackend(MockScript.from_dict({}), time_to_first_token=0.0, token_rate=0.0)
    for i in range(100):
        list(llm.stream([{'role': 'user', 'content': f'hello {i}'}], [], threading.Event()))
    assert len(llm.requests) == 32
    assert llm.requests[-1][0]['content'] == 'hello 99'

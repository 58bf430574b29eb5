"""Session memory: system prompt kept, budget enforced by whole exchanges, tool pairs kept."""

import math

from droid_brain.memory import (
    CHARS_PER_TOKEN,
    PER_MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    SessionMemory,
    TokenCounter,
    complete_tool_results,
)


def counter():
    c = TokenCounter()
    assert c.method == 'estimate'   # tiktoken is not installed / has no data offline
    return c


def exchange(n, size=200, tools=False):
    msgs = [{'role': 'user', 'content': f'question {n} ' + 'x' * size}]
    if tools:
        msgs.append({'role': 'assistant', 'content': None, 'tool_calls': [
            {'id': f'c{n}', 'type': 'function',
             'function': {'name': 'set_eyes', 'arguments': '{"pattern": "solid"}'}}]})
        msgs.append({'role': 'tool', 'tool_call_id': f'c{n}', 'content': '{"ok": true}'})
    msgs.append({'role': 'assistant', 'content': f'answer {n} ' + 'y' * size})
    return msgs


def test_estimate_is_the_documented_formula():
    c = counter()
    msg = {'role': 'user', 'content': 'a' * 41}
    assert c.message(msg) == math.ceil(41 / CHARS_PER_TOKEN) + PER_MESSAGE_OVERHEAD
    assert c.messages([msg, msg]) == 2 * c.message(msg) + REPLY_PRIMING
    call = {'role': 'assistant', 'content': None, 'tool_calls': [
        {'id': 'x', 'function': {'name': 'abcd', 'arguments': '1234'}}]}
    assert c.message(call) == 2 + PER_MESSAGE_OVERHEAD


def test_tiktoken_fallback_is_logged_once():
    lines = []

    class Log:
        def info(self, m):
            lines.append(m)

    TokenCounter(logger=Log())
    assert len(lines) == 1 and 'estimate' in lines[0]


def test_system_prompt_first_and_never_dropped():
    mem = SessionMemory('You are Rex. ' * 50, token_budget=300, counter=counter())
    for n in range(5):
        mem.add_exchange(exchange(n))
    msgs = mem.messages()
    assert msgs[0] == {'role': 'system', 'content': 'You are Rex. ' * 50}
    # The system prompt alone is ~165 tokens; every exchange ~110: at most one fits.
    assert mem.tokens() <= 300
    assert [m['content'].split()[1] for m in msgs[1:]] == ['4', '4']


def test_budget_drops_oldest_whole_exchanges():
    c = counter()
    mem = SessionMemory('sys', token_budget=400, counter=c)
    dropped = []
    for n in range(6):
        dropped += mem.add_exchange(exchange(n, size=100, tools=(n % 2 == 0)))
        assert mem.tokens() <= 400
    kept = mem.exchanges
    assert kept and dropped
    # Oldest first: what is kept is a suffix of what was added, in order.
    firsts = [ex[0]['content'].split()[1] for ex in dropped + kept]
    assert firsts == [str(n) for n in range(6)]
    for ex in kept:                      # whole exchanges only
        assert ex[0]['role'] == 'user' and ex[-1]['role'] == 'assistant'


def test_tool_call_never_separated_from_result():
    mem = SessionMemory('sys', token_budget=250, counter=counter())
    for n in range(8):
        mem.add_exchange(exchange(n, size=60, tools=True))
    msgs = mem.messages()
    for i, m in enumerate(msgs):
        if m.get('tool_calls'):
            assert msgs[i + 1]['role'] == 'tool'
            assert msgs[i + 1]['tool_call_id'] == m['tool_calls'][0]['id']
        if m['role'] == 'tool':
            assert msgs[i - 1].get('tool_calls')
    assert msgs[1]['role'] == 'user'


def test_budget_holds_even_when_the_last_exchange_is_huge():
    mem = SessionMemory('sys', token_budget=100, counter=counter())
    mem.add_exchange(exchange(0, size=10))
    mem.add_exchange(exchange(1, size=2000))
    assert mem.tokens() <= 100
    assert mem.messages()[0]['role'] == 'system'


def test_unanswered_tool_calls_are_completed():
    msgs = [{'role': 'user', 'content': 'hi'},
            {'role': 'assistant', 'content': None, 'tool_calls': [
                {'id': 'a', 'function': {'name': 'x', 'arguments': '{}'}},
                {'id': 'b', 'function': {'name': 'y', 'arguments': '{}'}}]},
            {'role': 'tool', 'tool_call_id': 'b', 'content': '1'},
            {'role': 'tool', 'tool_call_id': 'zzz', 'content': 'orphan'}]
    out = complete_tool_results(msgs)
    assert [m.get('tool_call_id') for m in out[2:]] == ['a', 'b']
    assert out[2]['content'] == '{"error": "cancelled"}' and out[3]['content'] == '1'


def test_pending_messages_follow_history_and_set_system_prompt():
    mem = SessionMemory('old', counter=counter())
    mem.add_exchange(exchange(0, size=5))
    mem.set_system_prompt('new')
    msgs = mem.messages([{'role': 'user', 'content': 'now'}])
    assert msgs[0]['content'] == 'new' and msgs[-1]['content'] == 'now'
    assert len(msgs) == 4


def test_heard_amends_the_stored_reply_whenever_it_arrives():
    from droid_brain.memory import SessionMemory
    tool_round = [{'role': 'user', 'content': 'play it'},
                  {'role': 'assistant', 'content': 'Sure.', 'tool_calls': [
                      {'id': 't', 'type': 'function',
                       'function': {'name': 'play_music', 'arguments': '{}'}}]},
                  {'role': 'tool', 'tool_call_id': 't', 'content': '{"ok": true}'},
                  {'role': 'assistant', 'content': 'Now playing. It is a classic song.'}]
    mem = SessionMemory('sys')
    mem.add_exchange(tool_round, key=('c', 1))
    assert mem.set_heard(('c', 1), 'Sure. Now playing. It is')        # after: applied now
    (ex,) = mem.exchanges
    assert ex[1]['content'] is None and ex[1]['tool_calls']           # the call happened
    assert ex[2]['role'] == 'tool'
    assert ex[-1] == {'role': 'assistant', 'content': 'Sure. Now playing. It is [interrupted]'}
    # before the turn is stored (its worker still finishing): kept, applied on store
    assert not mem.set_heard(('c', 2), 'Hello')
    mem.add_exchange([{'role': 'user', 'content': 'hi'},
                      {'role': 'assistant', 'content': 'Hello there friend.'}], key=('c', 2))
    assert mem.exchanges[-1][-1] == {'role': 'assistant', 'content': 'Hello [interrupted]'}
    mem.add_exchange([{'role': 'user', 'content': 'x'},
                      {'role': 'assistant', 'content': 'Y.'}], key=('c', 3))
    assert mem.exchanges[-1][-1]['content'] == 'Y.'                   # others untouched


def test_the_context_sent_is_a_copy_nothing_done_to_it_changes_the_memory():
    mem = SessionMemory('sys', token_budget=4000)
    call = {'id': 'c1', 'type': 'function', 'function': {'name': 'lights', 'arguments': '{}'}}
    mem.add_exchange([{'role': 'user', 'content': 'lights on'},
                      {'role': 'assistant', 'content': None, 'tool_calls': [call]},
                      {'role': 'tool', 'tool_call_id': 'c1', 'content': 'ok'},
                      {'role': 'assistant', 'content': 'Done.'}])
    pending = [{'role': 'user', 'content': 'and now?'}]
    sent = mem.messages(pending)
    assert sent == [{'role': 'system', 'content': 'sys'}] + mem.exchanges[0] + pending
    sent[2]['tool_calls'][0]['function']['name'] = 'changed'
    sent[1]['content'] = 'changed'
    sent[-1]['content'] = 'changed'
    again = mem.messages()
    assert again[2]['tool_calls'][0]['function']['name'] == 'lights'
    assert again[1]['content'] == 'lights on' and pending[0]['content'] == 'and now?'

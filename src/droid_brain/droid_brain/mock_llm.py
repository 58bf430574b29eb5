"""Mock LLM backend: deterministic scripted replies, tool calls included (plain Python).

The reply is a pure function of the messages, chosen by keyword rules from a YAML script;
it is streamed as :class:`~droid_brain.stream.Delta` s paced on the given clock: the first
token ``time_to_first_token`` seconds after the request, then ``token_rate`` tokens per
second (0 = as fast as possible). A token is one word with its leading whitespace; a tool
call is streamed as one piece with its id and name, then its JSON arguments in pieces of
``ARG_PIECE`` characters (one token each), like a real server splits them.

Script (YAML)::

    rules:                        # tried in order on the latest user message
      - name: cantina             # for logs
        match: 'play .*cantina'   # regex, case-insensitive search; named groups feed {..}
        preamble: ''              # optional text streamed before the tool calls
        tool_calls:               # optional
          - name: play_music
            arguments: {query: cantina}   # string values are formatted with the groups
          - name: set_eyes
            when: 'eyes? .*red'           # optional extra regex on the user message
            arguments: {pattern: solid, colour: red}
        reply: The band is playing.       # after the tool results (or without tools)
        reply_on_error: 'Sorry: {error}'  # after tool results where one failed
    default:
      reply: I'm not sure what you mean.

In replies, ``{error}`` is the first tool error, ``{user}`` the user's text, and the keys
of successful tool results (JSON objects) are available by name, e.g. ``{track}``.
"""

from __future__ import annotations

import json
import re
import string
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from droid_brain.clock import MonotonicClock
from droid_brain.stream import Delta, ToolDelta

ARG_PIECE = 8
_TOKEN_RE = re.compile(r'\s*\S+')


class MockScriptError(Exception):
    pass


@dataclass
class MockToolCall:
    name: str
    arguments: dict
    when: re.Pattern | None = None


@dataclass
class MockRule:
    name: str
    match: re.Pattern | None
    reply: str = ''
    reply_on_error: str = ''
    preamble: str = ''
    tool_calls: list = field(default_factory=list)


@dataclass
class MockPlan:
    """What the mock answers: text to stream, then tool calls (maybe none)."""

    rule: str
    text: str
    tool_calls: list   # of (id, name, arguments_json)


class _Safe(dict):
    def __missing__(self, key):
        return '{' + key + '}'


def _fmt(template: str, values: dict) -> str:
    try:
        return string.Formatter().vformat(template, (), _Safe(values))
    except (ValueError, IndexError, KeyError):
        return template


def _regex(value, where: str):
    if value in (None, ''):
        return None
    try:
        return re.compile(str(value), re.IGNORECASE)
    except re.error as exc:
        raise MockScriptError(f'{where}: bad regex {value!r}: {exc}') from None


class MockScript:
    """Keyword rules -> :class:`MockPlan`."""

    def __init__(self, rules: list, default: MockRule):
        self.rules = rules
        self.default = default

    @classmethod
    def from_dict(cls, data: dict, where: str = 'mock script') -> MockScript:
        if not isinstance(data, dict):
            raise MockScriptError(f'{where}: expected a mapping with rules/default')
        rules = []
        for n, r in enumerate(data.get('rules') or []):
            if not isinstance(r, dict):
                raise MockScriptError(f'{where}: rule {n} is not a mapping')
            calls = []
            for c in r.get('tool_calls') or []:
                if not isinstance(c, dict) or 'name' not in c:
                    raise MockScriptError(f'{where}: rule {n}: tool call needs a name')
                args = c.get('arguments') or {}
                if not isinstance(args, dict):
                    raise MockScriptError(f'{where}: rule {n}: arguments must be a mapping')
                calls.append(MockToolCall(str(c['name']), args,
                                          _regex(c.get('when'), f'{where}: rule {n}')))
            rules.append(MockRule(name=str(r.get('name', f'rule{n}')),
                                  match=_regex(r.get('match'), f'{where}: rule {n}'),
                                  reply=str(r.get('reply', '')),
                                  reply_on_error=str(r.get('reply_on_error', '')),
                                  preamble=str(r.get('preamble', '')),
                                  tool_calls=calls))
        d = data.get('default') or {}
        default = MockRule(name='default', match=None,
                           reply=str(d.get('reply', "I'm not sure what you mean.")))
        return cls(rules, default)

    @classmethod
    def load(cls, path) -> MockScript:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding='utf-8'))
        except (OSError, yaml.YAMLError) as exc:
            raise MockScriptError(f'mock script {path}: cannot read: {exc}') from None
        return cls.from_dict(data, f'mock script {path}')

    def plan(self, messages: list, tool_names) -> MockPlan:
        user_idx = max((i for i, m in enumerate(messages) if m.get('role') == 'user'),
                       default=-1)
        user = str(messages[user_idx].get('content') or '') if user_idx >= 0 else ''
        after = messages[user_idx + 1:] if user_idx >= 0 else []
        rule, groups = self.default, {}
        for r in self.rules:
            m = r.match.search(user) if r.match else None
            if m:
                rule, groups = r, {k: (v or '').strip() for k, v in m.groupdict().items()}
                break
        values = dict(groups, user=user)
        # After tool results: the spoken answer.
        if after and after[-1].get('role') == 'tool':
            errors = []
            for msg in after:
                if msg.get('role') != 'tool':
                    continue
                try:
                    content = json.loads(msg.get('content') or 'null')
                except json.JSONDecodeError:
                    content = msg.get('content')
                if isinstance(content, dict) and 'error' in content:
                    errors.append(str(content['error']))
                elif isinstance(content, dict):
                    values.update({str(k): v for k, v in content.items()})
            if errors:
                values['error'] = errors[0]
                text = rule.reply_on_error or "Sorry, that didn't work: {error}"
            else:
                text = rule.reply or 'Done.'
            return MockPlan(rule.name, _fmt(text, values), [])
        calls = []
        offered = set(tool_names or ())
        for n, c in enumerate(rule.tool_calls):
            if c.name not in offered:
                continue
            if c.when is not None and not c.when.search(user):
                continue
            args = {k: _fmt(v, values) if isinstance(v, str) else v
                    for k, v in c.arguments.items()}
            calls.append((f'call_mock_{n}', c.name, json.dumps(args)))
        if calls:
            return MockPlan(rule.name, _fmt(rule.preamble, values), calls)
        return MockPlan(rule.name, _fmt(rule.reply or self.default.reply, values), [])


def tokens(text: str) -> list:
    """Split text into mock tokens: words with their leading whitespace."""
    out = _TOKEN_RE.findall(text)
    tail = text[sum(len(t) for t in out):]
    if tail and out:
        out[-1] += tail
    return out


class MockBackend:
    """Streams a :class:`MockScript` plan with a configurable pace on ``clock``."""

    name = 'mock'

    def __init__(self, script: MockScript, clock=None, time_to_first_token: float = 0.3,
                 token_rate: float = 30.0):
        self.script = script
        self.clock = clock or MonotonicClock()
        self.time_to_first_token = max(0.0, float(time_to_first_token))
        self.token_rate = max(0.0, float(token_rate))
        # the latest requests' messages (for tests/diagnostics); bounded: the node runs for days
        self.requests: deque = deque(maxlen=32)

    def abort(self) -> None:
        pass  # the stream checks the cancel event between tokens

    def close(self) -> None:
        pass

    def _pieces(self, plan: MockPlan):
        for tok in tokens(plan.text):
            yield Delta(content=tok)
        for idx, (cid, name, args) in enumerate(plan.tool_calls):
            yield Delta(tool_calls=[ToolDelta(index=idx, id=cid, name=name, arguments='')])
            for k in range(0, len(args), ARG_PIECE):
                yield Delta(tool_calls=[ToolDelta(index=idx, arguments=args[k:k + ARG_PIECE])])

    def stream(self, messages: list, tools: list, cancel: threading.Event):
        self.requests.append(messages)
        names = [t['function']['name'] for t in tools or []]
        plan = self.script.plan(messages, names)
        self._seq = getattr(self, '_seq', 0) + 1
        plan.tool_calls = [(f'{cid}_{self._seq}', name, args)
                           for cid, name, args in plan.tool_calls]
        start = self.clock.now()
        t = start + self.time_to_first_token
        period = 1.0 / self.token_rate if self.token_rate > 0 else 0.0
        for n, delta in enumerate(self._pieces(plan)):
            if period or n == 0:
                if not self.clock.sleep_until(t + n * period, cancel):
                    return
            elif cancel.is_set():
                return
            yield delta
        yield Delta(finish_reason='tool_calls' if plan.tool_calls else 'stop')

"""Session memory of the brain (plain Python).

The conversation is kept as OpenAI chat messages:

* the system prompt (from the active persona) is always first and is never dropped;
* after it, whole *exchanges*: one user message and everything the turn added (assistant
  messages with ``tool_calls``, the matching ``tool`` results, the final assistant text).
  An exchange is the unit of trimming, so a tool call is never separated from its result.

:meth:`SessionMemory.trim` (called after each turn) drops the oldest exchanges until the
estimated token count of the whole context is within ``token_budget``. The budget holds
after trimming; only the system prompt may exceed it on its own.

Token counting: when the optional ``tiktoken`` package is installed *and* its encoding
data loads within a short time (it downloads the data on first use, and these machines
have no network), it is used. Otherwise the documented estimate is used, and a single
log line says so::

    tokens(message) = ceil(chars / 4) + 4        # 4 = per-message overhead (role, separators)
    chars           = len(content) + len(name) + sum(len(tool name) + len(arguments))
    tokens(context) = sum(tokens(message)) + 3   # 3 = reply priming

(four characters per token is OpenAI's rule of thumb for English text.)
"""

from __future__ import annotations

import copy
import logging
import math
import threading

INTERRUPTED_MARK = '[interrupted]'
PER_MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
CHARS_PER_TOKEN = 4

_log = logging.getLogger('droid_brain.memory')


class TokenCounter:
    """Counts tokens with tiktoken when usable, else with the documented estimate."""

    def __init__(self, encoding: str = 'o200k_base', load_timeout: float = 2.0,
                 logger=None, use_tiktoken: bool = True):
        self._encoding = None
        self._logger = logger or _log
        self.method = 'estimate'
        reason = 'disabled'
        if use_tiktoken:
            self._encoding, reason = self._load_tiktoken(encoding, load_timeout)
        if self._encoding is not None:
            self.method = 'tiktoken'
        else:
            self._logger.info(
                f'token counting: tiktoken unavailable ({reason}); using the estimate '
                f'ceil(chars/{CHARS_PER_TOKEN}) + {PER_MESSAGE_OVERHEAD} per message')

    @staticmethod
    def _load_tiktoken(encoding: str, timeout: float):
        """Load the tiktoken encoding in a daemon thread so a network wait cannot hang us."""
        try:
            import tiktoken  # noqa: F401 - optional
        except Exception as exc:  # noqa: BLE001
            return None, f'not installed: {type(exc).__name__}'
        box: dict = {}

        def load():
            try:
                import tiktoken
                box['enc'] = tiktoken.get_encoding(encoding)
            except Exception as exc:  # noqa: BLE001 - no data, no network, ...
                box['err'] = f'{type(exc).__name__}'

        t = threading.Thread(target=load, daemon=True, name='tiktoken-load')
        t.start()
        t.join(timeout)
        if 'enc' in box:
            return box['enc'], ''
        return None, box.get('err', f'encoding data did not load within {timeout:.0f} s')

    def text(self, text: str) -> int:
        if not text:
            return 0
        if self._encoding is not None:
            return len(self._encoding.encode(text, disallowed_special=()))
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def message(self, msg: dict) -> int:
        parts = [msg.get('content') or '', msg.get('name') or '']
        for call in msg.get('tool_calls') or []:
            fn = call.get('function', {})
            parts.append(fn.get('name', ''))
            parts.append(fn.get('arguments', ''))
        if self._encoding is not None:
            return sum(self.text(p) for p in parts) + PER_MESSAGE_OVERHEAD
        return math.ceil(sum(len(p) for p in parts) / CHARS_PER_TOKEN) + PER_MESSAGE_OVERHEAD

    def messages(self, msgs) -> int:
        return sum(self.message(m) for m in msgs) + REPLY_PRIMING


def _copy(value):
    """A deep copy of JSON-like messages (dicts, lists, strings, numbers): what
    ``copy.deepcopy`` gives, about 5 times faster (the context is copied for every
    request, on the way from the final transcript to the LLM)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else \
        copy.deepcopy(value)


class SessionMemory:
    """System prompt + whole exchanges, trimmed to a token budget. Thread-safe."""

    def __init__(self, system_prompt: str = '', token_budget: int = 4000,
                 counter: TokenCounter | None = None):
        if token_budget <= 0:
            raise ValueError('token_budget must be > 0')
        self.token_budget = int(token_budget)
        self.counter = counter or TokenCounter()
        self._system = system_prompt
        self._exchanges: list = []
        self._keys: list = []             # the turn key of each exchange (or None)
        self._heard: dict = {}            # turn key -> heard text, for a turn not stored yet
        self._lock = threading.Lock()

    # -- state ----------------------------------------------------------------------
    @property
    def system_prompt(self) -> str:
        return self._system

    def set_system_prompt(self, prompt: str) -> None:
        with self._lock:
            self._system = prompt

    def clear(self) -> None:
        with self._lock:
            self._exchanges.clear()
            self._keys.clear()
            self._heard.clear()

    @property
    def exchanges(self) -> list:
        with self._lock:
            return copy.deepcopy(self._exchanges)

    def messages(self, pending=()) -> list:
        """The context to send: system prompt, stored exchanges, then ``pending`` messages."""
        with self._lock:
            out = [{'role': 'system', 'content': self._system}]
            for ex in self._exchanges:
                out.extend(_copy(ex))
        out.extend(_copy(list(pending)))
        return out

    def tokens(self) -> int:
        return self.counter.messages(self.messages())

    # -- updates --------------------------------------------------------------------
    def add_exchange(self, messages, key=None) -> list:
        """Store one finished turn (starting with its user message), then trim.

        Unanswered tool calls are completed with a "cancelled" tool result so the stored
        history is always valid for the API. ``key`` (e.g. ``(conversation_id,
        utterance_id)``) lets :meth:`set_heard` amend the turn later. Returns the exchanges
        dropped by trimming.
        """
        messages = [dict(m) for m in messages]
        if not messages or messages[0].get('role') != 'user':
            raise ValueError('an exchange starts with a user message')
        messages = complete_tool_results(messages)
        with self._lock:
            heard = self._heard.pop(key, None) if key is not None else None
            if heard is not None:
                messages = only_heard(messages, heard)
            self._exchanges.append(messages)
            self._keys.append(key)
        return self.trim()

    def set_heard(self, key, heard: str) -> bool:
        """The user heard only ``heard`` of the reply of turn ``key`` (a barge-in): the
        stored reply becomes that text, marked interrupted. If the turn is not stored yet
        (its worker is still finishing), the amendment waits for it. True if applied now."""
        with self._lock:
            for i in range(len(self._keys) - 1, -1, -1):
                if self._keys[i] == key:
                    self._exchanges[i] = only_heard(self._exchanges[i], heard)
                    return True
            self._heard[key] = heard
            while len(self._heard) > 16:
                self._heard.pop(next(iter(self._heard)))
            return False

    def trim(self) -> list:
        """Drop the oldest whole exchanges until the context fits the budget."""
        dropped = []
        with self._lock:
            while self._exchanges:
                msgs = [{'role': 'system', 'content': self._system}]
                for ex in self._exchanges:
                    msgs.extend(ex)
                if self.counter.messages(msgs) <= self.token_budget:
                    break
                dropped.append(self._exchanges.pop(0))
                self._keys.pop(0)
        return dropped


def interrupted_reply(spoken: str) -> str:
    """The assistant text stored for a reply that did not finish.

    Only what was said is kept, followed by :data:`INTERRUPTED_MARK` so the model sees the
    reply stopped there and does not assume the rest was said.
    """
    spoken = (spoken or '').strip()
    return f'{spoken} {INTERRUPTED_MARK}' if spoken else INTERRUPTED_MARK


def only_heard(messages: list, heard: str) -> list:
    """An exchange whose assistant text is replaced by what the user heard (+ the mark).

    Tool calls and their results stay (they happened); their assistant messages lose their
    text; the text replies are dropped and one assistant message with
    :func:`interrupted_reply` of ``heard`` ends the exchange.
    """
    out = []
    for m in messages:
        if m.get('role') == 'assistant':
            if m.get('tool_calls'):
                out.append(dict(m, content=None))
            continue
        out.append(m)
    out.append({'role': 'assistant', 'content': interrupted_reply(heard)})
    return out


def complete_tool_results(messages: list) -> list:
    """Return ``messages`` where every assistant tool call has a tool result after it.

    Missing results are inserted (``{"error": "cancelled"}``) right after the existing
    results of that assistant message; tool results whose call is unknown are dropped.
    """
    out: list = []
    i = 0
    while i < len(messages):
        msg = messages[i]
        i += 1
        if msg.get('role') == 'tool':
            continue  # orphan (its assistant message was handled below)
        out.append(msg)
        calls = msg.get('tool_calls') or []
        if msg.get('role') != 'assistant' or not calls:
            continue
        wanted = [c['id'] for c in calls]
        seen = {}
        while i < len(messages) and messages[i].get('role') == 'tool':
            tid = messages[i].get('tool_call_id')
            if tid in wanted and tid not in seen:
                seen[tid] = messages[i]
            i += 1
        for cid in wanted:
            out.append(seen.get(cid) or {'role': 'tool', 'tool_call_id': cid,
                                         'content': '{"error": "cancelled"}'})
    return out

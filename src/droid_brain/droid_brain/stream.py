"""Streamed LLM output, backend-neutral (plain Python).

Every backend turns its stream into :class:`Delta` objects; :class:`ToolCallAccumulator`
assembles tool calls whose pieces arrive over many deltas (several calls per turn, their
arguments split anywhere, OpenAI-style ``index`` keys, or no index at all as some local
servers send).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class ToolDelta:
    index: int | None = None
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass
class Delta:
    content: str | None = None
    tool_calls: list = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class ToolCallRequest:
    id: str
    name: str
    arguments: str

    def as_message_entry(self) -> dict:
        return {'id': self.id, 'type': 'function',
                'function': {'name': self.name, 'arguments': self.arguments}}


@dataclass
class ToolResult:
    success: bool
    result_json: str = 'null'
    error: str = ''

    def as_content(self) -> str:
        """What the model gets back in the ``tool`` message."""
        if self.success:
            return self.result_json or 'null'
        return json.dumps({'error': self.error or 'failed'})


class ToolCallAccumulator:
    """Collects streamed tool-call pieces into complete :class:`ToolCallRequest` s."""

    def __init__(self):
        self._calls: dict = {}      # key -> {'id', 'name', 'arguments'}
        self._order: list = []
        self._last_key = None

    def __bool__(self) -> bool:
        return bool(self._order)

    def add(self, piece: ToolDelta) -> None:
        if piece.index is not None:
            key = ('i', int(piece.index))
        elif piece.id and (self._last_key is None or
                           (self._calls[self._last_key]['id'] not in ('', piece.id))):
            key = ('id', piece.id)      # no index: a new id starts a new call
        elif self._last_key is not None:
            key = self._last_key
        else:
            key = ('i', 0)
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = {'id': '', 'name': '', 'arguments': ''}
            self._order.append(key)
        if piece.id and not call['id']:
            call['id'] = piece.id
        if piece.name:
            # Names come whole in practice; some servers repeat them on every piece.
            if not call['name']:
                call['name'] = piece.name
            elif not call['name'].endswith(piece.name):
                call['name'] += piece.name
        if piece.arguments:
            call['arguments'] += piece.arguments
        self._last_key = key

    def calls(self) -> list:
        out = []
        for n, key in enumerate(self._order):
            c = self._calls[key]
            out.append(ToolCallRequest(id=c['id'] or f'call_{n}', name=c['name'],
                                       arguments=c['arguments'] or '{}'))
        return out

"""A tiny OpenAI-compatible chat-completions server for tests and benchmarks.

Real HTTP on 127.0.0.1 (``http.server`` in a thread), server-sent events exactly as the
OpenAI API streams them, so the real openai SDK talks to it. Each request is answered by
the next scripted :class:`Reply` (or by ``responder(request_json)``), e.g.::

    with FakeOpenAI() as srv:
        srv.push(Reply.text('Hello there. How are you?', piece=3))
        srv.push(Reply.error(503), Reply.tools([('call_1', 'play_music', '{"query": "x"}')]))
        client = OpenAI(base_url=srv.base_url, api_key='test')

Every request body is recorded in :attr:`FakeOpenAI.requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {'id': 'chatcmpl-fake', 'object': 'chat.completion.chunk', 'created': 0,
            'model': 'fake', 'choices': [{'index': 0, 'delta': delta,
                                          'finish_reason': finish}]}


@dataclass
class Reply:
    """One scripted response: an HTTP error, or a stream of SSE events."""

    status: int = 200
    headers: dict = field(default_factory=dict)
    body: str = ''
    events: list = field(default_factory=list)   # dicts (JSON), raw str lines, or
    #                                              threading.Event gates (wait until set)
    delay: float = 0.0          # seconds between events
    first_delay: float = 0.0    # seconds before the first event (time to first token)
    stall: float = 0.0          # after all events, wait this long before ending (hang)
    done: bool = True           # send "data: [DONE]"

    @classmethod
    def error(cls, status: int, message: str = 'fake error', retry_after=None) -> Reply:
        headers = {'Retry-After': str(retry_after)} if retry_after is not None else {}
        body = json.dumps({'error': {'message': message, 'type': 'server_error',
                                     'code': None, 'param': None}})
        return cls(status=status, headers=headers, body=body)

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Accept the request and send nothing for ``seconds`` (a client timeout)."""
        return cls(first_delay=seconds, events=[], done=False)

    @classmethod
    def text(cls, text: str, piece: int = 4, **kw) -> Reply:
        events = [_chunk({'role': 'assistant', 'content': ''})]
        events += [_chunk({'content': text[i:i + piece]}) for i in range(0, len(text), piece)]
        events.append(_chunk({}, 'stop'))
        return cls(events=events, **kw)

    @classmethod
    def whole(cls, content: str | None = None, calls=()) -> Reply:
        """A non-streamed answer (the JSON body of ``stream=false``)."""
        return cls(body=json.dumps(completion(content, calls)))

    @classmethod
    def cut(cls, text: str, piece: int = 4, **kw) -> Reply:
        """Stream ``text`` then close the connection: no finish reason, no ``[DONE]``."""
        return cls(events=cls.text(text, piece).events[:-1], done=False, **kw)

    @classmethod
    def gated(cls, before: str, gate: threading.Event, after: str = '', piece: int = 4,
              **kw) -> Reply:
        """Stream ``before``, hold until ``gate`` is set, then stream ``after``."""
        first = cls.text(before, piece).events[:-1]
        rest = cls.text(after, piece).events[1:] if after else [_chunk({}, 'stop')]
        return cls(events=first + [gate] + rest, **kw)

    @classmethod
    def tools(cls, calls, piece: int = 5, content: str = '', **kw) -> Reply:
        """``calls``: (id, name, arguments_json); arguments streamed in ``piece`` chars."""
        events = [_chunk({'role': 'assistant', 'content': None})]
        if content:
            events += [_chunk({'content': content[i:i + 4]}) for i in range(0, len(content), 4)]
        for idx, (cid, name, args) in enumerate(calls):
            events.append(_chunk({'tool_calls': [{'index': idx, 'id': cid, 'type': 'function',
                                                  'function': {'name': name,
                                                               'arguments': ''}}]}))
            for i in range(0, len(args), piece):
                events.append(_chunk({'tool_calls': [{'index': idx, 'function': {
                    'arguments': args[i:i + piece]}}]}))
        events.append(_chunk({}, 'tool_calls'))
        return cls(events=events, **kw)


def completion(content: str | None = None, calls=()) -> dict:
    """A whole (non-streamed) chat completion; ``calls``: (id, name, arguments_json)."""
    msg = {'role': 'assistant', 'content': content}
    if calls:
        msg['tool_calls'] = [{'id': cid, 'type': 'function',
                              'function': {'name': name, 'arguments': args}}
                             for cid, name, args in calls]
    return {'id': 'chatcmpl-fake', 'object': 'chat.completion', 'created': 0,
            'model': 'fake', 'choices': [{'index': 0, 'message': msg,
                                          'finish_reason': 'tool_calls' if calls else 'stop'}]}


class _Handler(BaseHTTPRequestHandler):
    server_version = 'FakeOpenAI/1.0'

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        fake: FakeOpenAI = self.server.fake
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        try:
            body = json.loads(raw or b'{}')
        except json.JSONDecodeError:
            body = {'_raw': raw.decode(errors='replace')}
        fake._record(self.path, body, {k.lower(): v for k, v in self.headers.items()})
        if not self.path.rstrip('/').endswith('/chat/completions'):
            self._plain(404, json.dumps({'error': {'message': 'not found'}}))
            return
        reply = fake._next(body)
        if reply.status != 200 or (reply.body and not reply.events):
            self._plain(reply.status, reply.body, reply.headers)
            return
        self.send_response(200)
        self.send_header('Content-Type', 'text/event-stream')
        self.send_header('Cache-Control', 'no-cache')
        self.end_headers()
        try:
            if reply.first_delay and fake._stop.wait(reply.first_delay):
                return
            for n, ev in enumerate(reply.events):
                if isinstance(ev, threading.Event):     # a gate: hold the stream here
                    while not ev.wait(0.02):
                        if fake._stop.is_set():
                            return
                    continue
                if n and reply.delay and fake._stop.wait(reply.delay):
                    return
                line = ev if isinstance(ev, str) else json.dumps(ev)
                self.wfile.write(f'data: {line}\n\n'.encode())
                fake._sent(ev)
            if reply.stall and fake._stop.wait(reply.stall):
                return
            if reply.done:
                self.wfile.write(b'data: [DONE]\n\n')
        except (BrokenPipeError, ConnectionResetError):
            fake.client_disconnects += 1

    def _plain(self, status: int, body: str, headers: dict | None = None):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI:
    """The server; use as a context manager. Unscripted requests get ``default``."""

    def __init__(self, responder=None, default: Reply | None = None, port: int = 0):
        self.responder = responder
        self.default = default or Reply.text('OK.')
        self.requests: list = []          # request bodies (JSON)
        self.headers: list = []           # request headers (dict, lower-case names)
        self.request_times: list = []     # time.monotonic() of each request
        self.sent_events = 0
        self.client_disconnects = 0
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(('127.0.0.1', port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self
        self._thread = None

    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self._httpd.server_address[1]}/v1'

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def _next(self, body: dict) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    def _record(self, path, body, headers):
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.request_times.append(time.monotonic())

    def _sent(self, ev):
        with self._lock:
            self.sent_events += 1

    def start(self) -> FakeOpenAI:
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.05},
                                        name='fake-openai', daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

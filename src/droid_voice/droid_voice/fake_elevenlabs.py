"""A local stand-in for the ElevenLabs TTS API, on 127.0.0.1 (tests, benchmarks, demos).

Serves the two endpoints the tts node uses, with 16 kHz PCM (``output_format=pcm_16000``):

- HTTP ``POST /v1/text-to-speech/{voice_id}/stream`` (chunked transfer);
- websocket ``/v1/text-to-speech/{voice_id}/stream-input`` (init message ``" "``, text
  messages, ``flush``, close with ``""``; replies ``{"audio": base64}`` then
  ``{"isFinal": true}``).

The "voice" is a tone (``tone_hz``) of ``seconds_per_char`` per character, so tests can
tell it from espeak. ``fail_words``: a text containing one of them fails *mid-stream*
(two audio chunks, then the connection is cut). The ``xi-api-key`` header is checked.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

RATE = 16000


class FakeElevenLabs:
    def __init__(self, api_key: str = 'test-key', *, tone_hz: float = 300.0,
                 seconds_per_char: float = 0.05, chunk_s: float = 0.05,
                 first_chunk_delay: float = 0.03, chunk_delay: float = 0.0,
                 ws_open_delay: float = 0.0, fail_words: tuple = ()):
        self.api_key = api_key
        self.tone_hz = tone_hz
        self.seconds_per_char = seconds_per_char
        self.chunk = int(chunk_s * RATE)
        self.first_chunk_delay = first_chunk_delay
        self.chunk_delay = chunk_delay
        self.ws_open_delay = ws_open_delay
        self.fail_words = tuple(fail_words)
        self.requests: list = []
        self.ws_connections = 0
        self._http = None
        self._ws = None
        self._threads: list = []

    # -- the audio --------------------------------------------------------------------
    def audio_for(self, text: str) -> np.ndarray:
        n = max(int(0.2 * RATE), int(len(text.strip()) * self.seconds_per_char * RATE))
        t = np.arange(n) / RATE
        ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
        return np.round(0.5 * 32767 * ramp * np.sin(2 * np.pi * self.tone_hz * t)).astype('<i2')

    def _chunks(self, text: str):
        pcm = self.audio_for(text).tobytes()
        step = self.chunk * 2
        fail = any(w in text for w in self.fail_words)
        time.sleep(self.first_chunk_delay)
        for i, off in enumerate(range(0, len(pcm), step)):
            if fail and i == 2:
                raise ConnectionAbortedError('injected mid-stream failure')
            if i and self.chunk_delay:
                time.sleep(self.chunk_delay)
            yield pcm[off:off + step]

    # -- servers ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f'http://127.0.0.1:{self._http.server_address[1]}'

    @property
    def ws_base_url(self) -> str:
        return f'ws://127.0.0.1:{self._ws.socket.getsockname()[1]}'

    def start(self) -> FakeElevenLabs:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                url = urllib.parse.urlparse(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get('content-length', 0)))
                                  or b'{}')
                parts = url.path.strip('/').split('/')
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.requests.append({'transport': 'http', 'path': url.path, 'query': query,
                                      'text': body.get('text', ''), 'body': body,
                                      'voice_id': parts[2] if len(parts) > 2 else ''})
                if self.headers.get('xi-api-key') != fake.api_key:
                    return self._json(401, {'detail': {'status': 'invalid_api_key',
                                                       'message': 'Invalid API key'}})
                if parts[:2] != ['v1', 'text-to-speech'] or parts[-1] != 'stream':
                    return self._json(404, {'detail': 'not found'})
                if query.get('output_format') != 'pcm_16000':
                    return self._json(422, {'detail': 'this fake only speaks pcm_16000'})
                self.send_response(200)
                self.send_header('Content-Type', 'audio/pcm')
                self.send_header('Transfer-Encoding', 'chunked')
                self.end_headers()
                try:
                    for data in fake._chunks(body.get('text', '')):
                        self.wfile.write(b'%x\r\n%s\r\n' % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b'0\r\n\r\n')
                except ConnectionAbortedError:
                    self.close_connection = True
                    self.connection.shutdown(2)   # cut without the final chunk
                except (ConnectionResetError, BrokenPipeError):
                    self.close_connection = True  # the client hung up first: nothing to send

            def _json(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self._http.daemon_threads = True
        from websockets.sync.server import serve
        self._ws = serve(self._ws_handler, '127.0.0.1', 0)
        for target in (self._http.serve_forever, self._ws.serve_forever):
            th = threading.Thread(target=target, daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def _ws_handler(self, conn) -> None:
        self.ws_connections += 1
        if self.ws_open_delay:
            time.sleep(self.ws_open_delay)
        url = urllib.parse.urlparse(conn.request.path)
        parts = url.path.strip('/').split('/')
        query = dict(urllib.parse.parse_qsl(url.query))
        record = {'transport': 'ws', 'path': url.path, 'query': query, 'text': '',
                  'voice_id': parts[2] if len(parts) > 2 else '', 'messages': []}
        if conn.request.headers.get('xi-api-key') != self.api_key:
            self.requests.append(record)
            conn.send(json.dumps({'message': 'Invalid API key', 'error': 'auth_error'}))
            conn.close(1008, 'invalid api key')
            return
        if parts[-1] != 'stream-input' or query.get('output_format') != 'pcm_16000':
            conn.close(1008, 'unsupported')
            return
        buffer = ''
        try:
            for raw in conn:
                msg = json.loads(raw)
                record['messages'].append(msg)
                text = msg.get('text', '')
                if text == ' ' and not record['text'] and not buffer:
                    continue                                      # init message
                if text:
                    buffer += text
                    record['text'] += text
                if (msg.get('flush') or text == '') and buffer.strip():
                    if record not in self.requests:
                        self.requests.append(record)
                    try:
                        for data in self._chunks(buffer):
                            conn.send(json.dumps({'audio': base64.b64encode(data).decode(),
                                                  'isFinal': None}))
                    except ConnectionAbortedError:
                        conn.close(1011, 'internal error')
                        return
                    buffer = ''
                if text == '':
                    conn.send(json.dumps({'isFinal': True}))
                    conn.close()
                    return
        except Exception:  # noqa: BLE001 - client went away
            return

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._ws is not None:
            self._ws.shutdown()
        for th in self._threads:
            th.join(timeout=2.0)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

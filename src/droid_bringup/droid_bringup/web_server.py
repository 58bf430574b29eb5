"""The dashboard's websocket + HTTP server (plain Python on ``websockets``; no rclpy).

One port serves both: the static page (``GET /``, ``/app.js``, ... and ``/config.json``)
through ``websockets``' ``process_request`` hook, and the rosbridge websocket on any
path. The asyncio loop runs in its own thread; ROS threads hand it messages through each
connection's :class:`~droid_bringup.web_protocol.Outbox` and :meth:`Connection.notify`.

Access (checked on every HTTP request and websocket handshake):

- a peer from outside the machine needs the server bound to a non-loopback address,
  which needs a token (:func:`~droid_bringup.web_protocol.bind_plan`);
- with a token, every request must carry it (``?token=``, ``Authorization: Bearer`` or
  the cookie the page sets);
- a browser may open the websocket only from the dashboard's own origin (or one listed).
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import mimetypes
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from droid_bringup import web_protocol as wp

CONTENT_TYPES = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
                 '.css': 'text/css; charset=utf-8', '.json': 'application/json',
                 '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon'}
SECURITY_HEADERS = {
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',        # the token may be in the URL
    'X-Frame-Options': 'DENY',
    'Cache-Control': 'no-store',
    'Content-Security-Policy': "default-src 'self'; connect-src 'self' ws: wss:; "
                               "img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'",
}
LOGIN_PAGE = """<!doctype html><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>droid dashboard: token</title>
<form method="get" action="/" style="font:16px sans-serif;margin:2em">
<p>This droid's dashboard needs its access token.</p>
<input name="token" type="password" autofocus placeholder="token">
<button>Open</button></form>
"""


class Connection:
    """One websocket client: its outbox and a way to wake its sender from any thread."""

    def __init__(self, server: 'WebServer', ws, default_queue: int, control_limit: int):
        self.server = server
        self.ws = ws
        self.peer = ws.remote_address[0] if ws.remote_address else ''
        self.outbox = wp.Outbox(default_queue, control_limit)
        self.state = None           # the handler's per-client data
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def notify(self) -> None:
        """Something was queued (call from any thread)."""
        if not self.closed:
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:        # loop closed during shutdown
                pass

    def send_control(self, text: str) -> None:
        """Queue a reply that must not be dropped (any thread)."""
        try:
            self.outbox.push_control(text)
        except wp.Overflow as exc:
            self.server.log.warning(f'client {self.peer} stopped reading ({exc}): closing')
            self.close(1008, 'too many unread replies')
            return
        self.notify()

    def close(self, code: int = 1000, reason: str = '') -> None:
        if not self.closed:
            self._loop.call_soon_threadsafe(
                lambda: asyncio.ensure_future(self.ws.close(code, reason)))

    async def sender(self) -> None:
        try:
            while True:
                item, wait = self.outbox.pop(time.monotonic())
                if item is None:
                    self._event.clear()
                    try:
                        await asyncio.wait_for(self._event.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                    continue
                try:
                    text = item if isinstance(item, str) else item()
                except Exception as exc:     # noqa: BLE001 - one bad message, not the client
                    self.server.log.error(f'cannot encode a message: {exc}')
                    continue
                if text is not None:
                    await self.ws.send(text)
        except ConnectionClosed:
            pass


class WebServer:
    """Serve ``static_dir`` and the rosbridge websocket on ``host``:``port``.

    ``handler`` has ``on_open(conn)``, ``on_message(conn, text)`` (called on the server
    thread: must not block) and ``on_close(conn)``; ``config()`` returns the dict served as
    ``/config.json``.
    """

    def __init__(self, host: str, port: int, handler, static_dir, config=dict,
                 token: str | None = None, allowed_origins=(), default_queue: int = 100,
                 control_limit: int = 1000, max_message_bytes: int = 1 << 20, logger=None):
        self.host = host
        self.port = port
        self.handler = handler
        self.static_dir = Path(static_dir).resolve()
        self.config = config
        self.token = token or None
        self.allowed_origins = tuple(allowed_origins)
        self.default_queue = default_queue
        self.control_limit = control_limit
        self.max_message_bytes = max_message_bytes
        self.log = logger or logging.getLogger('web_bridge')
        self.connections: set = set()
        self.refused = 0
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._error = None
        self._stopping = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> 'WebServer':
        self._thread = threading.Thread(target=self._run, name='web-server', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError('web server did not start')
        if self._error is not None:
            raise self._error
        return self

    @property
    def bound_port(self) -> int:
        return self._server.sockets[0].getsockname()[1] if self._server else 0

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception as exc:        # noqa: BLE001 - reported to start() or logged
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                self.log.error(f'web server stopped: {exc}')
        finally:
            self._loop.close()

    async def _main(self) -> None:
        ws_log = logging.getLogger('websockets.server')
        ws_log.setLevel(logging.CRITICAL)     # refused handshakes are ours to report
        self._stopping = asyncio.Event()
        self._server = await serve(
            self._client, self.host, self.port, process_request=self._process_request,
            max_size=self.max_message_bytes, compression=None, logger=ws_log,
            ping_interval=10, ping_timeout=20)
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        await self._server.wait_closed()

    def stop(self, timeout: float = 5.0) -> None:
        """Close every client (1001 going away) and the listening socket."""
        if self._thread is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass
        self._thread.join(timeout)
        self._thread = None

    # ---- HTTP and the handshake -------------------------------------------------------
    def _refuse(self, conn, request, status: http.HTTPStatus, why: str):
        self.refused += 1
        self.log.warning(f'refused {conn.remote_address[0] if conn.remote_address else "?"} '
                         f'{urlsplit(request.path).path}: {why}')
        if status == http.HTTPStatus.UNAUTHORIZED and not self._is_websocket(request):
            return self._response(status, LOGIN_PAGE.encode(), 'text/html; charset=utf-8')
        return self._response(status, f'{why}\n'.encode(), 'text/plain; charset=utf-8')

    @staticmethod
    def _is_websocket(request) -> bool:
        return 'websocket' in (request.headers.get('Upgrade') or '').lower()

    @staticmethod
    def _response(status: http.HTTPStatus, body: bytes, content_type: str, extra=None):
        headers = Headers()
        headers['Content-Type'] = content_type
        headers['Content-Length'] = str(len(body))
        headers['Connection'] = 'close'
        for k, v in SECURITY_HEADERS.items():
            headers[k] = v
        for k, v in (extra or {}).items():
            headers[k] = v
        return Response(status.value, status.phrase, headers, body)

    def _process_request(self, conn, request):
        peer = conn.remote_address[0] if conn.remote_address else ''
        if not wp.is_loopback(peer) and not self.token:
            return self._refuse(conn, request, http.HTTPStatus.FORBIDDEN,
                                'connections from outside this machine need a token')
        given = wp.request_token(request.path, request.headers)
        if not wp.token_ok(given, self.token):
            return self._refuse(conn, request, http.HTTPStatus.UNAUTHORIZED,
                                'wrong or missing access token')
        if self._is_websocket(request):
            if not wp.origin_ok(request.headers.get('Origin'), request.headers.get('Host'),
                                self.allowed_origins):
                return self._refuse(conn, request, http.HTTPStatus.FORBIDDEN,
                                    f"origin {request.headers.get('Origin')} not allowed")
            return None                                  # go on with the handshake
        return self._static(urlsplit(request.path).path, bool(self.token and given))

    def _static(self, path: str, set_cookie: bool):
        extra = {}
        if set_cookie:
            extra['Set-Cookie'] = (f'{wp.TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; '
                                   'SameSite=Strict')
        if path == '/config.json':
            body = json.dumps(self.config()).encode()
            return self._response(http.HTTPStatus.OK, body, 'application/json', extra)
        rel = 'index.html' if path in ('', '/') else path.lstrip('/')
        target = (self.static_dir / rel).resolve()
        if self.static_dir not in target.parents or not target.is_file():
            return self._response(http.HTTPStatus.NOT_FOUND, b'not found\n',
                                  'text/plain; charset=utf-8')
        ctype = CONTENT_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or \
            'application/octet-stream'
        return self._response(http.HTTPStatus.OK, target.read_bytes(), ctype, extra)

    # ---- websocket clients ----------------------------------------------------------------
    async def _client(self, ws) -> None:
        conn = Connection(self, ws, self.default_queue, self.control_limit)
        self.connections.add(conn)
        sender = asyncio.ensure_future(conn.sender())
        try:
            self.handler.on_open(conn)
            async for text in ws:
                self.handler.on_message(conn, text)
                if sender.done():
                    break
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            sender.cancel()
            self.connections.discard(conn)
            try:
                self.handler.on_close(conn)
            except Exception as exc:     # noqa: BLE001 - never kill the loop
                self.log.error(f'closing a client failed: {exc}')

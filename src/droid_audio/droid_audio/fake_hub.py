"""A stand-in for the Hugging Face hub on 127.0.0.1, for tests and demos of model downloads.

It implements the few endpoints ``huggingface_hub.snapshot_download`` (huggingface_hub 2.4)
uses, with the headers it checks:

* ``GET /api/models/{repo}[/revision/{rev}]`` -> ``{"id", "sha", "siblings": [{"rfilename",
  "size", "blobId"}]}`` (repo_info, and model_info with ``blobs=True``);
* ``GET /api/models/{repo}/tree/{rev}`` -> ``[{"type": "file", "path", "size", "oid"}]``;
* ``HEAD|GET /{repo}/resolve/{rev}/{file}`` -> the file with ``X-Repo-Commit``, ``ETag``
  (sha256 of the content, quoted), ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=a-``
  -> 206 with ``Content-Range``. Unknown repo / file: 404 with ``X-Error-Code``
  ``RepoNotFound`` / ``EntryNotFound``.

Bodies can be slowed (``rate`` bytes/s) and faults scripted per file for the next GETs:
``drop_after`` (send that many bytes, then cut the connection), ``stall_after`` (send that
many bytes, set :attr:`FakeHub.stalled`, wait for :meth:`FakeHub.release`, then cut the
connection) or ``status`` (an HTTP error).
Every request is recorded in :attr:`FakeHub.requests`. Point the client at it with
``HF_ENDPOINT=hub.url``::

    with FakeHub({'Systran/faster-whisper-tiny.en': '/path/to/model_dir'}, rate=2e6) as hub:
        ...

Also a script: ``python -m droid_audio.fake_hub --shape tiny --rate 2e6`` serves a
random-weight Whisper (droid_audio.tiny_whisper) as tiny.en and prints its HF_ENDPOINT.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

PIECE = 16384


@dataclass
class Request:
    method: str
    path: str                 # without the query string
    range: str = ''

    @property
    def file(self) -> str:
        """The repo file of a /resolve/ request ('' otherwise)."""
        parts = self.path.split('/resolve/', 1)
        return parts[1].split('/', 1)[1] if len(parts) == 2 and '/' in parts[1] else ''


@dataclass
class _File:
    data: bytes
    sha256: str = field(init=False)
    sha1: str = field(init=False)

    def __post_init__(self):
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.sha1 = hashlib.sha1(b'blob %d\0' % len(self.data) + self.data).hexdigest()


class FakeHub:
    """``repos``: {repo_id: model directory, or {filename: bytes}}."""

    def __init__(self, repos: dict, rate: float = 0.0, commit: str | None = None):
        self.repos = {}
        for repo, content in repos.items():
            if not isinstance(content, dict):
                root = Path(content)
                content = {str(p.relative_to(root)): p.read_bytes()
                           for p in sorted(root.rglob('*')) if p.is_file()}
            self.repos[repo] = {name: _File(bytes(data)) for name, data in content.items()}
        self.commit = commit or hashlib.sha1(
            json.dumps({r: {n: f.sha256 for n, f in fs.items()} for r, fs in self.repos.items()},
                       sort_keys=True).encode()).hexdigest()
        self.rate = float(rate)
        self.requests: list = []
        self._faults: dict = {}
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # ---- control -------------------------------------------------------------------------

    def fail(self, filename: str, drop_after: int | None = None, status: int | None = None,
             stall_after: int | None = None, times: int = 1) -> None:
        """Script the next ``times`` GETs of ``filename`` (any repo) to fail."""
        if drop_after is not None:
            action = ('drop', int(drop_after))
        elif stall_after is not None:
            action = ('stall', int(stall_after))
        else:
            action = ('status', int(status))
        with self._lock:
            self._faults.setdefault(filename, []).extend([action] * times)

    def release(self) -> None:
        """Let stalled responses end (their connection is then cut)."""
        self._release.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _next_fault(self, filename: str):
        with self._lock:
            queue = self._faults.get(filename)
            return queue.pop(0) if queue else None

    def file_gets(self) -> list:
        """Repo files fetched with GET so far (one entry per request)."""
        with self._lock:
            return [r.file for r in self.requests if r.method == 'GET' and r.file]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def file(self, repo: str, name: str) -> bytes:
        return self.repos[repo][name].data

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f'http://{host}:{port}'

    def start(self, port: int = 0) -> 'FakeHub':
        hub = self

        class Handler(_Handler):
            pass
        Handler.hub = hub
        self._server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name='fake-hub')
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5.0)
            self._server = None

    def __enter__(self) -> 'FakeHub':
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub = None
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args) -> None:       # quiet
        pass

    # ---- helpers ----------------------------------------------------------------------------

    def _send(self, code: int, body: bytes = b'', headers: dict | None = None,
              head: bool = False) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)

    def _json(self, obj) -> None:
        self._send(200, json.dumps(obj).encode(), {'Content-Type': 'application/json'})

    def _error(self, code: int, error_code: str, message: str) -> None:
        headers = {'Content-Type': 'application/json', 'X-Error-Code': error_code,
                   'X-Error-Message': message}
        if error_code == 'EntryNotFound':
            headers['X-Repo-Commit'] = self.hub.commit
        self._send(code, json.dumps({'error': message}).encode(), headers,
                   head=self.command == 'HEAD')

    def _record(self) -> tuple:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        with self.hub._lock:
            self.hub.requests.append(Request(self.command, path, self.headers.get('Range', '')))
        return path, parts.query

    def _repo(self, rest: str):
        """(repo_id, remainder) for the longest known repo id at the start of ``rest``."""
        for repo in sorted(self.hub.repos, key=len, reverse=True):
            if rest == repo or rest.startswith(repo + '/'):
                return repo, rest[len(repo):].lstrip('/')
        return None, rest

    # ---- endpoints --------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        path, _ = self._record()
        try:
            if path.startswith('/api/models/'):
                return self._api(path[len('/api/models/'):])
            return self._resolve(path.lstrip('/'))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _revision_ok(self, rev: str) -> bool:
        return rev in ('main', self.hub.commit)

    def _api(self, rest: str) -> None:
        repo, tail = self._repo(rest)
        if repo is None:
            return self._error(404, 'RepoNotFound', f'Repository {rest} not found')
        files = self.hub.repos[repo]
        if tail == '' or tail.startswith('revision/'):
            rev = tail[len('revision/'):] if tail else 'main'
            if not self._revision_ok(rev):
                return self._error(404, 'RevisionNotFound', f'Invalid rev id: {rev}')
            return self._json({
                'id': repo, 'modelId': repo, 'sha': self.hub.commit, 'private': False,
                'siblings': [{'rfilename': n, 'size': len(f.data), 'blobId': f.sha1}
                             for n, f in files.items()]})
        if tail.startswith('tree/'):
            rev = tail[len('tree/'):].split('/', 1)[0]
            if not self._revision_ok(rev):
                return self._error(404, 'RevisionNotFound', f'Invalid rev id: {rev}')
            return self._json([{'type': 'file', 'path': n, 'size': len(f.data), 'oid': f.sha1}
                               for n, f in files.items()])
        return self._error(404, 'EntryNotFound', f'no API endpoint {tail}')

    def _resolve(self, rest: str) -> None:
        repo, tail = self._repo(rest)
        if repo is None:
            return self._error(404, 'RepoNotFound', f'Repository {rest} not found')
        if not tail.startswith('resolve/') or tail.count('/') < 2:
            return self._error(404, 'EntryNotFound', f'{tail} not found')
        rev, name = tail[len('resolve/'):].split('/', 1)
        if not self._revision_ok(rev):
            return self._error(404, 'RevisionNotFound', f'Invalid rev id: {rev}')
        f = self.hub.repos[repo].get(name)
        if f is None:
            return self._error(404, 'EntryNotFound', f'{name} not found in {repo}')
        headers = {'X-Repo-Commit': self.hub.commit, 'ETag': f'"{f.sha256}"',
                   'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream'}
        if self.command == 'HEAD':
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header('Content-Length', str(len(f.data)))
            self.end_headers()
            return
        fault = self.hub._next_fault(name)
        if fault and fault[0] == 'status':
            return self._error(fault[1], 'ServerError', 'scripted failure')
        start, end = 0, len(f.data) - 1
        code = 200
        rng = self.headers.get('Range', '')
        if rng.startswith('bytes='):
            a, _, b = rng[len('bytes='):].partition('-')
            start = int(a) if a else 0
            end = min(int(b), end) if b else end
            if start > end:
                return self._send(416, b'', {'Content-Range': f'bytes */{len(f.data)}'})
            code = 206
            headers['Content-Range'] = f'bytes {start}-{end}/{len(f.data)}'
        body = f.data[start:end + 1]
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        limit = fault[1] if fault and fault[0] in ('drop', 'stall') else None
        sent = 0
        t0 = time.monotonic()
        while sent < len(body):
            n = min(PIECE, len(body) - sent)
            if limit is not None:
                n = min(n, limit - sent)
                if n <= 0:
                    break
            self.wfile.write(body[sent:sent + n])
            sent += n
            if self.hub.rate > 0:
                ahead = sent / self.hub.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        if limit is not None and sent < len(body):
            self.wfile.flush()
            if fault[0] == 'stall':
                self.hub.stalled.set()
                self.hub._release.wait(120.0)
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main(argv=None) -> None:  # pragma: no cover - manual use and demos
    import argparse
    import signal
    import tempfile

    from droid_audio.tiny_whisper import SHAPES, build_model
    p = argparse.ArgumentParser(description='Serve a Whisper model as a stand-in hub')
    p.add_argument('--model-dir', help='model directory to serve (default: build one)')
    p.add_argument('--shape', default='tiny', choices=sorted(SHAPES),
                   help='random-weight Whisper shape to build when no --model-dir')
    p.add_argument('--repo', default='Systran/faster-whisper-tiny.en')
    p.add_argument('--rate', type=float, default=0.0, help='bytes/s (0 = unlimited)')
    p.add_argument('--port', type=int, default=0)
    a = p.parse_args(argv)
    model_dir = a.model_dir or build_model(Path(tempfile.gettempdir()) /
                                           f'droid_fake_hub_{a.shape}', shape=a.shape)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    hub = FakeHub({a.repo: model_dir}, rate=a.rate).start(a.port)
    print(f'HF_ENDPOINT={hub.url}', flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == '__main__':  # pragma: no cover
    main()

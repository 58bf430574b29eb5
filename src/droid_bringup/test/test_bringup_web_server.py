"""The dashboard's websocket + HTTP server (plain Python): static page, token, origin,
queues, and who may connect at all (a peer in another network namespace)."""

import http.client
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from droid_bringup import web_protocol as wp
from droid_bringup.web_server import WebServer

TOKEN = 'test-token-' + uuid.uuid4().hex[:8]


class Echo:
    """Answers every request with a status reply naming its op; counts connections."""

    def __init__(self):
        self.opened = threading.Event()
        self.conns = []

    def on_open(self, conn):
        self.conns.append(conn)
        self.opened.set()

    def on_message(self, conn, text):
        try:
            req = wp.parse(text)
        except wp.ProtocolError as exc:
            conn.send_control(wp.status('error', str(exc), exc.request_id))
            return
        conn.send_control(wp.status('info', f"got {req['op']}", req['id']))

    def on_close(self, conn):
        pass


@pytest.fixture
def static_dir(tmp_path):
    d = tmp_path / 'web'
    d.mkdir()
    (d / 'index.html').write_text('<!doctype html><title>droid</title>')
    (d / 'app.js').write_text('export const x = 1;')
    (tmp_path / 'secret.txt').write_text('outside the web dir')
    return d


def start(static_dir, **kw):
    handler = Echo()
    server = WebServer('127.0.0.1', 0, handler, static_dir,
                       config=lambda: {'hello': 'droid'}, **kw).start()
    return server, handler


def get(port, path, headers=None):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    c.request('GET', path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


def test_the_page_and_its_config_are_served_with_safe_headers(static_dir):
    server, _ = start(static_dir)
    try:
        port = server.bound_port
        status, headers, body = get(port, '/')
        assert status == 200 and b'<title>droid</title>' in body
        assert headers['Content-Type'].startswith('text/html')
        assert headers['X-Content-Type-Options'] == 'nosniff'
        assert "default-src 'self'" in headers['Content-Security-Policy']
        status, headers, _ = get(port, '/app.js')
        assert status == 200 and headers['Content-Type'].startswith('text/javascript')
        status, _, body = get(port, '/config.json')
        assert status == 200 and json.loads(body) == {'hello': 'droid'}
        assert get(port, '/../secret.txt')[0] == 404
        assert get(port, '/%2e%2e/secret.txt')[0] == 404
        assert get(port, '/nothing.js')[0] == 404
    finally:
        server.stop()


def test_websocket_requests_get_replies_in_order(static_dir):
    server, handler = start(static_dir)
    try:
        with connect(f'ws://127.0.0.1:{server.bound_port}/', open_timeout=10) as ws:
            for i in range(20):
                ws.send(json.dumps({'op': 'subscribe', 'id': i, 'topic': '/t'}))
            ws.send('{"op": "teleport", "id": "z"}')
            replies = [json.loads(ws.recv(timeout=10)) for _ in range(21)]
            assert [r['id'] for r in replies] == list(range(20)) + ['z']
            assert replies[-1]['level'] == 'error' and 'teleport' in replies[-1]['msg']
            # topic messages queued from another thread reach the client too
            conn = handler.conns[0]
            conn.outbox.subscribe('/t', 's', 0, 0)
            threading.Thread(target=lambda: (conn.outbox.push_topic(
                '/t', lambda: wp.publish_text('/t', {'data': 1})), conn.notify())).start()
            assert json.loads(ws.recv(timeout=10)) == \
                {'op': 'publish', 'topic': '/t', 'msg': {'data': 1}}
    finally:
        server.stop()


def test_a_token_guards_the_page_and_the_websocket(static_dir):
    server, handler = start(static_dir, token=TOKEN)
    try:
        port = server.bound_port
        status, _, body = get(port, '/')
        assert status == 401 and b'token' in body          # a form asking for it
        assert get(port, '/?token=wrong')[0] == 401
        assert get(port, '/config.json')[0] == 401
        status, headers, _ = get(port, f'/?token={TOKEN}')
        assert status == 200
        cookie = headers['Set-Cookie'].split(';')[0]
        assert cookie == f'{wp.TOKEN_COOKIE}={TOKEN}' and 'HttpOnly' in headers['Set-Cookie']
        assert get(port, '/app.js', {'Cookie': cookie})[0] == 200
        url = f'ws://127.0.0.1:{port}/'
        for bad in (url, url + '?token=wrong'):
            with pytest.raises(InvalidStatus) as err:
                connect(bad, open_timeout=10)
            assert err.value.response.status_code == 401
        assert not handler.opened.is_set()
        for good, headers in ((url + f'?token={TOKEN}', None), (url, {'Cookie': cookie}),
                              (url, {'Authorization': f'Bearer {TOKEN}'})):
            with connect(good, open_timeout=10, additional_headers=headers) as ws:
                ws.send('{"op": "set_level", "level": "info", "id": 1}')
                assert json.loads(ws.recv(timeout=10))['msg'] == 'got set_level'
        assert server.refused >= 5
    finally:
        server.stop()


def test_browsers_on_other_sites_cannot_open_the_websocket(static_dir):
    server, _ = start(static_dir, allowed_origins=['https://app.foxglove.dev'])
    try:
        port = server.bound_port
        url = f'ws://127.0.0.1:{port}/'
        with pytest.raises(InvalidStatus) as err:
            connect(url, open_timeout=10, origin='http://evil.example')
        assert err.value.response.status_code == 403
        for origin in (f'http://127.0.0.1:{port}', 'https://app.foxglove.dev'):
            with connect(url, open_timeout=10, origin=origin):
                pass
    finally:
        server.stop()


def test_bound_to_loopback_only_by_default(static_dir):
    server, _ = start(static_dir)
    try:
        # 127.0.0.2 is this machine too, but not the address the server listens on
        with pytest.raises(OSError):
            connect(f'ws://127.0.0.2:{server.bound_port}/', open_timeout=5)
    finally:
        server.stop()


def test_port_in_use_is_a_clear_error(static_dir):
    server, _ = start(static_dir)
    try:
        with pytest.raises(OSError):
            WebServer('127.0.0.1', server.bound_port, Echo(), static_dir).start()
    finally:
        server.stop()


# ---- a peer on another machine: two network namespaces joined by a veth pair -------------

SERVER_SCRIPT = textwrap.dedent('''
    import sys, time, os
    from droid_bringup import web_protocol as wp
    from droid_bringup.web_server import WebServer
    class H:
        def on_open(self, conn): pass
        def on_message(self, conn, text): conn.send_control(wp.status('info', 'pong'))
        def on_close(self, conn): pass
    host, problem = wp.bind_plan(sys.argv[1], os.environ.get('DROID_DASHBOARD_TOKEN'))
    server = WebServer(host, 9090, H(), sys.argv[2],
                       token=os.environ.get('DROID_DASHBOARD_TOKEN')).start()
    print('READY', host, problem, flush=True)
    sys.stdin.read()
    server.stop()
''')
CLIENT_SCRIPT = textwrap.dedent('''
    import sys
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus
    try:
        with connect(sys.argv[1], open_timeout=5) as ws:
            ws.send('{"op": "set_level", "level": "info"}')
            print('OK', ws.recv(timeout=5))
    except InvalidStatus as exc:
        print('HTTP', exc.response.status_code)
    except OSError as exc:
        print('REFUSED', type(exc).__name__)
''')


def _can_make_netns() -> str:
    if not sys.platform.startswith('linux') or os.geteuid() != 0:
        return 'network namespaces need root on Linux'
    if shutil.which('ip') is None:
        return "the 'ip' tool (iproute2) is missing"
    return ''


@pytest.fixture
def two_hosts():
    """Namespaces 'srv' (10.231.x.1) and 'cli' (10.231.x.2) joined by a veth pair: the
    client is another machine as far as the server can tell."""
    reason = _can_make_netns()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    srv, cli = f'drsrv{tag}', f'drcli{tag}'
    net = 10 + int(tag[:2], 16) % 200
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    try:
        run('ip', 'netns', 'add', srv)
        run('ip', 'netns', 'add', cli)
        run('ip', 'link', 'add', f'v{tag}a', 'netns', srv, 'type', 'veth',
            'peer', 'name', f'v{tag}b', 'netns', cli)
        for ns, dev, addr in ((srv, f'v{tag}a', f'10.231.{net}.1/30'),
                              (cli, f'v{tag}b', f'10.231.{net}.2/30')):
            run('ip', '-n', ns, 'addr', 'add', addr, 'dev', dev)
            run('ip', '-n', ns, 'link', 'set', dev, 'up')
            run('ip', '-n', ns, 'link', 'set', 'lo', 'up')
        yield srv, cli, f'10.231.{net}.1'
    finally:
        for ns in (srv, cli):
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)


def _serve_in(ns, host, static_dir, token):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop('DROID_DASHBOARD_TOKEN', None)
    if token:
        env['DROID_DASHBOARD_TOKEN'] = token
    proc = subprocess.Popen(['ip', 'netns', 'exec', ns, sys.executable, '-c', SERVER_SCRIPT,
                             host, str(static_dir)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith('READY'), line
    return proc, line


def _client_in(ns, url):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(['ip', 'netns', 'exec', ns, sys.executable, '-c', CLIENT_SCRIPT, url],
                         env=env, capture_output=True, text=True, timeout=60)
    return out.stdout.strip() or out.stderr.strip()


def _stop(proc):
    try:
        proc.stdin.close()
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_other_machines_are_refused_unless_opened_with_a_token(two_hosts, static_dir):
    srv, cli, addr = two_hosts
    url = f'ws://{addr}:9090/'
    # default: loopback only -> the other machine cannot even connect
    proc, _ = _serve_in(srv, '127.0.0.1', static_dir, None)
    try:
        assert _client_in(cli, url).startswith('REFUSED')
    finally:
        _stop(proc)
    # asking for the network without a token: still loopback only, and it says why
    proc, line = _serve_in(srv, '0.0.0.0', static_dir, None)
    try:
        assert ' 127.0.0.1 ' in line and 'DROID_DASHBOARD_TOKEN' in line
        assert _client_in(cli, url).startswith('REFUSED')
    finally:
        _stop(proc)
    # opened to the network with a token: a wrong or missing token is refused
    proc, line = _serve_in(srv, '0.0.0.0', static_dir, TOKEN)
    try:
        assert line.split()[1] == '0.0.0.0'
        assert _client_in(cli, url) == 'HTTP 401'
        assert _client_in(cli, url + '?token=guess') == 'HTTP 401'
        reply = _client_in(cli, url + f'?token={TOKEN}')
        assert reply.startswith('OK') and 'pong' in reply
    finally:
        _stop(proc)


def test_static_dir_of_the_package_has_the_page():
    web = Path(__file__).resolve().parent.parent / 'web'
    assert (web / 'index.html').is_file() and (web / 'app.js').is_file()

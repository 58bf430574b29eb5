"""The web dashboard on a real ROS 2 graph: the mock droid, our rosbridge node, and three
clients: a Python websocket client speaking the protocol by hand, roslibjs (npm `roslib`)
in node, and the page itself in headless Chromium (playwright-core + Debian chromium).

The bridge runs as its own process (not from the launch file) so the browser test can
restart it. Screenshots of the page (desktop and phone) go to ``log/dashboard/``.
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from droid_bringup.profiles import parts_of  # noqa: E402
from droid_common import names  # noqa: E402
from droid_common.contract import constants, constants_with_prefix  # noqa: E402
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS  # noqa: E402
from droid_common.testing import Process, free_port, ros_test_env  # noqa: E402
from droid_eyes import render  # noqa: E402
from droid_msgs.msg import EyeState, Persona, ReplySentence, Transcription  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SHOTS = ROOT / 'log' / 'dashboard'
PATTERN = constants_with_prefix('EyeCommand', 'PATTERN_')
SOURCE = constants_with_prefix('EyeState', 'SOURCE_')
SPEAK = constants('Speak', 1)
TOKEN = 'ros-test-token-' + uuid.uuid4().hex[:6]
WAIT = 60.0          # generous: CI shares two cores


# ---- the graph ---------------------------------------------------------------------------

class Probe:
    """An rclpy node spinning in its own thread that records what the droid publishes."""

    def __init__(self):
        rclpy.init()
        self.node = rclpy.create_node('web_test_probe')
        self.lock = threading.Lock()
        self.got = {'reply': [], 'persona': [], 'eyes': [], 'transcription': []}
        sub = self.node.create_subscription
        sub(ReplySentence, names.REPLY, lambda m: self._add('reply', m), RELIABLE_QOS)
        sub(Persona, names.PERSONA, lambda m: self._add('persona', m), LATCHED_QOS)
        sub(EyeState, names.EYE_STATE, lambda m: self._add('eyes', m), LATCHED_QOS)
        sub(Transcription, names.TRANSCRIPTION, lambda m: self._add('transcription', m),
            RELIABLE_QOS)
        self.diag_pub = self.node.create_publisher(DiagnosticArray, names.DIAGNOSTICS, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _add(self, key, msg):
        with self.lock:
            self.got[key].append(msg)

    def wait(self, key, pred, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.got[key]:
                    if pred(m):
                        return m
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f'no matching {key} in {len(self.got[key])} messages: '
                                 f'{self.got[key][-5:]}')

    def report(self, name, level, message):
        status = DiagnosticStatus(level=bytes([level]), name=name, message=message)
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.diag_pub.publish(msg)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


@pytest.fixture(scope='module')
def droid():
    home = tempfile.mkdtemp(prefix='droid-web-test-')
    env = ros_test_env(XDG_CONFIG_HOME=home)         # the persona choice is saved here
    with Process(['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=mock',
                  'dashboard:=false'], env=env) as launch:
        probe = Probe()
        try:
            wanted = set(parts_of('all'))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if wanted <= set(probe.node.get_node_names()):
                    break
                time.sleep(0.2)
            assert wanted <= set(probe.node.get_node_names()), launch.output()[-3000:]
            probe.wait('persona', lambda m: m.name, 120)      # the brain is up
            yield launch, probe, env
        finally:
            probe.close()
            shutil.rmtree(home, ignore_errors=True)


class Bridge:
    """web_bridge as its own process on a free port; restartable."""

    def __init__(self, env, port, extra=()):
        self.env, self.port, self.extra = env, port, list(extra)
        self.proc = None

    def start(self):
        self.proc = Process(['ros2', 'run', 'droid_bringup', 'web_bridge', '--ros-args',
                             '-p', f'port:={self.port}', *self.extra], env=self.env)
        self.proc.__enter__()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=2)
                c.request('GET', '/config.json')
                if c.getresponse().status in (200, 401):
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError('web_bridge did not come up:\n' + self.proc.output()[-3000:])

    def stop(self):
        if self.proc is not None:
            rc = self.proc.stop()
            out = self.proc.output()
            self.proc.__exit__(None, None, None)
            self.proc = None
            return rc, out
        return None, ''


@pytest.fixture(scope='module')
def bridge(droid):
    _, _, env = droid
    b = Bridge(env, free_port()).start()
    yield b
    rc, out = b.stop()
    assert 'Traceback' not in out, out[-3000:]


# ---- a client speaking the protocol by hand -----------------------------------------------

class Client:
    def __init__(self, port, path='/'):
        self._cm = connect(f'ws://127.0.0.1:{port}{path}', open_timeout=20, max_size=None)
        self.ws = self._cm.__enter__()
        self.seen = []

    def send(self, **req):
        self.ws.send(json.dumps(req))

    def until(self, pred, timeout=WAIT, fresh=False):
        """The first message (already received, unless ``fresh``, or arriving) that
        matches."""
        for m in ([] if fresh else self.seen):
            if pred(m):
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = json.loads(self.ws.recv(timeout=max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
            self.seen.append(m)
            if pred(m):
                return m
        raise AssertionError(f'nothing matched; last: {self.seen[-5:]}')

    def close(self):
        self._cm.__exit__(None, None, None)


def op(name, **fields):
    return lambda m: m.get('op') == name and all(m.get(k) == v for k, v in fields.items())


def test_subscribe_call_service_publish_and_errors(bridge, droid):
    c = Client(bridge.port)
    try:
        # a latched topic arrives at once; relative names resolve like in any node
        c.send(op='subscribe', id='m', topic='mode', type='droid_msgs/msg/SystemMode')
        m = c.until(op('publish', topic='mode'))
        assert m['msg']['mode'] in constants('SystemMode').values()
        # a service call without a type: the bridge finds it in the graph
        c.send(op='call_service', id='sm', service='/set_mode',
               args={'mode': constants('SystemMode')['IDLE'], 'reason': 'web test'})
        r = c.until(op('service_response', id='sm'))
        assert r['result'] is True and r['values']['success'] is True
        c.until(lambda m: m.get('op') == 'publish' and m['topic'] == 'mode'
                and m['msg']['reason'] == 'web test')
        # publish a typed line as chat does: the brain answers, seen through the bridge too
        cid = uuid.uuid4().hex[:12]
        c.send(op='subscribe', id='r', topic='/brain/reply', type='droid_msgs/ReplySentence')
        c.send(op='advertise', id='a', topic='/speech/transcription',
               type='droid_msgs/msg/Transcription')
        time.sleep(1.0)                          # let the brain discover the new publisher
        c.send(op='publish', topic='/speech/transcription',
               msg={'conversation_id': cid, 'utterance_id': 1, 'text': 'hello there',
                    'is_final': True, 'confidence': 1.0, 'language': 'en',
                    'source': 'web test'})       # header left out: the bridge stamps it
        first = c.until(lambda m: m.get('op') == 'publish' and m['topic'] == '/brain/reply'
                        and m['msg']['conversation_id'] == cid)
        assert first['msg']['text'] and first['msg']['header']['stamp']['sec'] > 0
        _, probe, _ = droid
        heard = probe.wait('transcription', lambda t: t.conversation_id == cid)
        assert heard.header.stamp.sec > 0 and heard.source == 'web test'
        # clear errors for bad requests, with the request's id
        c.send(op='subscribe', id='e1', topic='/no/such/topic')
        assert 'give its' in c.until(op('status', id='e1'))['msg']
        c.send(op='subscribe', id='e2', topic='/x', type='nope/msg/Nothing')
        assert 'unknown interface type' in c.until(op('status', id='e2'))['msg']
        c.send(op='publish', id='e3', topic='/speech/transcription', msg={'bogus': 1})
        assert 'no field' in c.until(op('status', id='e3'))['msg']
        c.send(op='call_service', id='e4', service='/nobody/here',
               type='droid_msgs/srv/SetMode', timeout=1.0)
        r = c.until(op('service_response', id='e4'))
        assert r['result'] is False and 'not available' in r['values']
    finally:
        c.close()


def test_speak_goal_with_feedback_and_cancel(bridge):
    c = Client(bridge.port)
    try:
        c.send(op='send_action_goal', id='say', action='/voice/speak',
               action_type='droid_msgs/action/Speak', feedback=True,
               args={'text': 'This is the dashboard test speaking a whole sentence.'})
        res = c.until(op('action_result', id='say'))
        feedback = [m for m in c.seen if m.get('op') == 'action_feedback' and m['id'] == 'say']
        assert feedback and all(0.0 <= f['values']['amplitude'] <= 1.0 for f in feedback)
        assert res['status'] == 4 and res['result'] is True
        assert res['values']['status'] == SPEAK['COMPLETED'] and res['values']['played'] > 0
        # cancelled mid-line: the droid stops (a barge-in)
        c.send(op='send_action_goal', id='long', action='voice/speak',
               action_type='droid_msgs/Speak', feedback=True,
               args={'text': ' '.join(['This line is long enough to be cut short.'] * 8)})
        c.until(op('action_feedback', id='long'))
        c.send(op='cancel_action_goal', id='long', action='voice/speak')
        res = c.until(op('action_result', id='long'))
        assert res['status'] == 5 and res['result'] is False          # CANCELED
        assert res['values']['status'] == SPEAK['INTERRUPTED']
    finally:
        c.close()


def test_eye_image_has_the_pixels_the_mock_eyes_render(bridge, droid):
    _, probe, _ = droid
    c = Client(bridge.port)
    try:
        c.send(op='subscribe', id='img', topic='/eyes/image', type='sensor_msgs/msg/Image')
        c.send(op='advertise', id='cmd', topic='/eyes/command', type='droid_msgs/msg/EyeCommand')
        time.sleep(1.0)
        c.send(op='publish', topic='/eyes/command',
               msg={'pattern': PATTERN['happy'], 'color': {'r': 0.0, 'g': 1.0, 'b': 0.0, 'a': 1.0},
                    'brightness': 0.5, 'speed': 0.0, 'duration': {'sec': 20, 'nanosec': 0}})
        state = probe.wait('eyes', lambda s: s.pattern == PATTERN['happy'] and
                           s.source == SOURCE['command'])
        want = render.to_display(render.eye_pixels(
            state.pattern, (state.color.r, state.color.g, state.color.b), state.brightness,
            state.speed)).tobytes()
        img = c.until(lambda m: m.get('op') == 'publish' and m['topic'] == '/eyes/image'
                      and base64.b64decode(m['msg']['data']) == want)
        assert (img['msg']['width'], img['msg']['height'], img['msg']['encoding']) == \
            (16, 8, 'rgb8')
    finally:
        c.close()


def test_microphone_mute_through_the_bridge(bridge):
    c = Client(bridge.port)

    def set_muted(value, rid):
        c.send(op='call_service', id=rid, service='/microphone/set_parameters',
               type='rcl_interfaces/srv/SetParameters',
               args={'parameters': [{'name': 'muted', 'value': {'type': 1,
                                                                'bool_value': value}}]})
        assert c.until(op('service_response', id=rid))['values']['results'][0]['successful']

    def loudest_during_injection(rid):
        c.send(op='call_service', id=rid, service='/audio/inject',
               args={'text': 'hey jarvis, testing the microphone', 'padding': 0.2})
        c.until(op('service_response', id=rid))
        peak, chunks = 0, 0
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            m = c.until(op('publish', topic='/audio/mic'), fresh=True)
            peak = max(peak, max(abs(v) for v in m['msg']['data']))
            chunks += 1
        return peak, chunks

    try:
        c.send(op='subscribe', id='mic', topic='/audio/mic', type='droid_msgs/msg/AudioChunk')
        set_muted(True, 'm1')
        peak, chunks = loudest_during_injection('i1')
        assert chunks > 5 and peak == 0
        set_muted(False, 'm2')
        peak, chunks = loudest_during_injection('i2')
        assert peak > 1000
    finally:
        set_muted(False, 'm3')
        c.close()


def test_a_token_is_required_when_set(droid):
    _, _, env = droid
    b = Bridge(dict(env, DROID_DASHBOARD_TOKEN=TOKEN), free_port(), ['-p', 'eyes_fps:=0.0'])
    b.start()
    try:
        for path in ('/', '/?token=wrong'):
            with pytest.raises(InvalidStatus) as err:
                Client(b.port, path)
            assert err.value.response.status_code == 401
        c = Client(b.port, f'/?token={TOKEN}')
        c.send(op='subscribe', id='m', topic='/mode', type='droid_msgs/msg/SystemMode')
        c.until(op('publish', topic='/mode'))
        c.close()
    finally:
        rc, out = b.stop()
    assert TOKEN not in out                    # never logged
    assert rc == 0, out[-2000:]


# ---- roslibjs and the page -----------------------------------------------------------------

def node_modules():
    for candidate in (os.environ.get('DROID_NODE_MODULES', ''), str(HERE / 'web' / 'node_modules')):
        if candidate and (Path(candidate) / 'roslib').is_dir():
            return Path(candidate)
    return None


def node_dir(tmp_path):
    """A directory with the test scripts and node_modules, for node to run them."""
    modules = node_modules()
    if shutil.which('node') is None or modules is None:
        pytest.skip('node and the npm packages of test/web are needed: ./run_tests.sh installs '
                    'them (or: cd src/droid_bringup/test/web && npm ci)')
    for script in (HERE / 'web').glob('*.mjs'):
        shutil.copy(script, tmp_path / script.name)
    (tmp_path / 'package.json').write_text('{"type": "module"}')
    (tmp_path / 'node_modules').symlink_to(modules)
    return tmp_path


def test_a_roslibjs_client_works_against_the_bridge(bridge, tmp_path):
    work = node_dir(tmp_path)
    out = subprocess.run(['node', 'roslib_client.mjs', f'ws://127.0.0.1:{bridge.port}/'],
                         cwd=work, capture_output=True, text=True, timeout=180)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith('{')]
    checks = {x.get('check'): x for x in lines}
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(checks) == {'connected', 'subscribe', 'call_service', 'publish', 'action'}
    assert checks['call_service']['success'] is True
    assert checks['publish']['source'] == SOURCE['command']
    assert checks['action']['status'] == SPEAK['COMPLETED'] and checks['action']['feedback'] > 0


class Browser:
    def __init__(self, work):
        chromium = shutil.which('chromium') or shutil.which('chromium-browser')
        self.proc = subprocess.Popen(['node', 'browser.mjs'], cwd=work, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(os.environ, CHROMIUM=chromium))
        assert self._read()['value'] == 'ready'

    def _read(self):
        line = self.proc.stdout.readline()
        assert line, 'the browser driver exited'
        return json.loads(line)

    def __call__(self, cmd, **kw):
        self.proc.stdin.write(json.dumps(dict(kw, cmd=cmd)) + '\n')
        self.proc.stdin.flush()
        answer = self._read()
        assert answer['ok'], f'{cmd} {kw}: {answer.get("error")}'
        return answer['value']

    def wait(self, js, timeout=WAIT):
        return self('wait', js=js, timeout=int(timeout * 1000))

    def close(self):
        try:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_the_page_in_headless_chromium(bridge, droid, tmp_path):
    if not (shutil.which('chromium') or shutil.which('chromium-browser')):
        pytest.skip('Debian chromium is needed (apt-get install chromium; ./run_tests.sh '
                    'installs it when run as root)')
    work = node_dir(tmp_path)
    _, probe, _ = droid
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = Browser(work)
    try:
        assert page('goto', url=f'http://127.0.0.1:{bridge.port}/') == 200
        page.wait("document.getElementById('link').dataset.state === 'connected'")

        # typing a line: the reply shows in the page and goes out on brain/reply
        page('fill', selector='#say-text', value='hello from the dashboard')
        page('click', selector='#say-send')
        said = probe.wait('transcription', lambda t: t.text == 'hello from the dashboard'
                          and t.source == 'dashboard')
        reply = probe.wait('reply', lambda r: r.conversation_id == said.conversation_id
                           and not r.is_final)
        page.wait(f"[...document.querySelectorAll('.sentence')].some("
                  f"s => s.textContent === {json.dumps(reply.text)})")
        page.wait("[...document.querySelectorAll('.you.final')].some("
                  "y => y.textContent === 'hello from the dashboard')")

        # switching persona in the page changes brain/persona
        page('fill', selector='#persona-name', value='tars')
        page('click', selector='#persona-set')
        tars = probe.wait('persona', lambda p: p.name == 'tars')
        page.wait(f"document.getElementById('persona').textContent === "
                  f"{json.dumps(tars.display_name or tars.name)}")

        # an eye command from the page appears on eyes/state (and the eyes redraw)
        page('select', selector='#eye-pattern', value=str(PATTERN['angry']))
        page('fill', selector='#eye-color', value='#0000ff')
        page('click', selector='#eye-send')
        probe.wait('eyes', lambda s: s.pattern == PATTERN['angry'] and
                   s.source == SOURCE['command'] and s.color.b > 0.99 and s.color.r < 0.01)
        page.wait("document.getElementById('eyes-text').textContent.startsWith('angry #0000ff')")
        page.wait("Number(document.getElementById('eyes-canvas').dataset.frames) > 0")

        # a node reporting WARN turns its health row yellow
        probe.report('web_test_probe', 1, 'pretend trouble')
        page.wait("document.querySelector('#health-list li[data-name=\"web_test_probe\"]')"
                  "?.dataset.level === 'warn'")
        colour = page('eval', js="getComputedStyle(document.querySelector("
                      "'#health-list li[data-name=\"web_test_probe\"] .dot')).backgroundColor")
        assert colour == 'rgb(241, 196, 15)'               # --warn
        page.wait("document.querySelectorAll('#health-list li[data-level=\"ok\"]').length >= 5")

        # make it say a line: Speak goal with feedback
        page('fill', selector='#speak-text', value='Testing the speak button of the page.')
        page('click', selector='#speak-send')
        page.wait("document.getElementById('speak-note').textContent.startsWith('completed')")
        assert int(page('eval', js="document.getElementById('speak-note').dataset.feedback")) > 0

        # the latency waterfall of the typed turn
        page.wait("document.querySelectorAll('.wf-row').length > 0")

        page('screenshot', path=str(SHOTS / 'dashboard-desktop.png'), fullPage=True)
        page('viewport', width=390, height=844)
        page('screenshot', path=str(SHOTS / 'dashboard-phone.png'), fullPage=True)
        width = page('eval', js='document.documentElement.scrollWidth')
        assert width <= 390, 'the page scrolls sideways on a phone'

        assert page('errors') == []                        # no script error, no 404

        # the bridge restarts: the page reconnects by itself and shows live data again
        bridge.stop()
        page.wait("document.getElementById('link').dataset.state === 'reconnecting'")
        bridge.start()
        page.wait("document.getElementById('link').dataset.state === 'connected'")
        page('select', selector='#eye-pattern', value=str(PATTERN['sad']))
        page('click', selector='#eye-send')
        page.wait("document.getElementById('eyes-text').textContent.startsWith('sad ')")
        assert all('ERR_CONNECTION_REFUSED' in e for e in page('errors'))   # while it was down
    finally:
        page.close()
        # leave the droid as the other tests expect it
        subprocess.run(['ros2', 'param', 'set', '/brain', 'persona', 'rex'],
                       env=droid[2], capture_output=True, timeout=60)

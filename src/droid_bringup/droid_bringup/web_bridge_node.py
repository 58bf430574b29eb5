"""``web_bridge``: the dashboard's server: rosbridge v2 over a websocket, and the page.

    ros2 launch droid_bringup droid.launch.py profile:=mock        # starts it (dashboard:=true)
    ros2 run droid_bringup web_bridge                               # on its own
    # then open http://127.0.0.1:9090/ in a browser

One port serves the static page (``share/droid_bringup/web``), ``/config.json`` (topic
names, constants of the contract, personas) and the rosbridge websocket, the protocol of
roslibjs and of Foxglove's rosbridge connection, in the subset the dashboard needs
(:mod:`droid_bringup.web_protocol`). Where ``rosbridge_suite`` is installed the launch file
can start its ``rosbridge_websocket`` instead; this node then only serves the page
(``rosbridge_port``).

The websocket server runs in its own asyncio thread (:mod:`droid_bringup.web_server`);
requests reach the ROS side through a bounded queue and a guard condition, so ROS objects
are only touched on the executor thread; messages go back through each client's bounded
outbox (drop-oldest for topics), so a slow phone never blocks a ROS callback.

It also publishes ``eyes/image`` (sensor_msgs/Image, rgb8, 16x8, latched) while a
websocket client subscribes to it: the eyes drawn with :func:`droid_eyes.render.eye_pixels`
from ``eyes/state`` and ``voice/amplitude``, the same pixels the mock eyes render.

Access: bound to 127.0.0.1 unless ``host`` says otherwise; any other address needs the
token in the environment variable ``DROID_DASHBOARD_TOKEN`` (else it stays on loopback and
says so on /diagnostics). The token is never logged.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosidl_runtime_py.set_message import set_message_fields
from rosidl_runtime_py.utilities import get_action, get_message, get_service
from sensor_msgs.msg import Image

from droid_bringup import latency
from droid_bringup import web_protocol as wp
from droid_bringup.web_server import WebServer
from droid_common import names
from droid_common.contract import constants, constants_with_prefix
from droid_common.ros import (ERROR, LATCHED_QOS, OK, SENSOR_QOS, WARN, Diagnostics, declare,
                              run)
from droid_common.secrets import env_secret, redact
from droid_eyes import protocol as eye_protocol
from droid_eyes import render
from droid_msgs.msg import EyeState, SpeechAmplitude

TOKEN_ENV = 'DROID_DASHBOARD_TOKEN'
_LEVELS = {'info': 0, 'warning': 1, 'error': 2, 'none': 3}
_RELIABILITY = {ReliabilityPolicy.BEST_EFFORT: 'best_effort'}
_DURABILITY = {DurabilityPolicy.TRANSIENT_LOCAL: 'transient_local'}

# The droid's topics as the page uses them: names key -> interface type.
PAGE_TOPICS = {
    'TRANSCRIPTION': 'droid_msgs/msg/Transcription', 'REPLY': 'droid_msgs/msg/ReplySentence',
    'SENTIMENT': 'droid_msgs/msg/Sentiment', 'PERSONA': 'droid_msgs/msg/Persona',
    'MODE': 'droid_msgs/msg/SystemMode', 'SPEECH_EVENT': 'droid_msgs/msg/SpeechEvent',
    'AMPLITUDE': 'droid_msgs/msg/SpeechAmplitude', 'MUSIC_STATE': 'droid_msgs/msg/MusicState',
    'EYE_STATE': 'droid_msgs/msg/EyeState', 'EYE_COMMAND': 'droid_msgs/msg/EyeCommand',
    'WAKE_WORD': 'droid_msgs/msg/WakeWord', 'VOICE_ACTIVITY': 'droid_msgs/msg/VoiceActivity',
    'TRACE': 'droid_msgs/msg/TraceEvent', 'DIAGNOSTICS': 'diagnostic_msgs/msg/DiagnosticArray',
    'EYE_IMAGE': 'sensor_msgs/msg/Image',
}
PAGE_SERVICES = {'SET_MODE': 'droid_msgs/srv/SetMode',
                 'MUSIC_CONTROL': 'droid_msgs/srv/MusicControl'}
PAGE_ACTIONS = {'SPEAK': 'droid_msgs/action/Speak', 'MUSIC_PLAY': 'droid_msgs/action/PlayMusic'}


def default_web_dir() -> Path:
    """The installed share/droid_bringup/web, else the source tree's web/."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory('droid_bringup')) / 'web'
        if share.is_dir():
            return share
    except Exception:       # noqa: BLE001 - not installed: the source tree
        pass
    return Path(__file__).resolve().parent.parent / 'web'


def shipped_personas() -> list:
    try:
        from droid_brain.personas import default_persona_dir
        return sorted(p.stem for p in Path(default_persona_dir()).glob('*.yaml'))
    except Exception:       # noqa: BLE001 - the page then offers a free text field
        return []


def qos_profile(reliability: str, durability: str, depth: int = 10) -> QoSProfile:
    return QoSProfile(
        depth=depth, history=HistoryPolicy.KEEP_LAST,
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == 'best_effort'
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == 'transient_local'
        else DurabilityPolicy.VOLATILE)


@dataclass
class ClientState:
    level: int = _LEVELS['error']
    subs: dict = field(default_factory=dict)       # name as given -> resolved topic
    pubs: dict = field(default_factory=dict)       # name as given -> resolved topic
    goals: dict = field(default_factory=dict)      # goal id -> _Goal
    auto_ids: int = 0


@dataclass
class _Sub:
    type: str
    qos: tuple
    ros: object = None
    clients: dict = field(default_factory=dict)    # conn -> set of names as given
    last: object = None                             # latest message (latched topics)


@dataclass
class _Pub:
    type: str
    ros: object
    clients: set = field(default_factory=set)


@dataclass
class _Call:
    conn: object
    rid: object
    name: str            # as given
    client: object
    request: object
    deadline: float
    future: object = None


@dataclass
class _Goal:
    conn: object
    rid: object
    name: str
    client: object
    goal: object
    feedback: bool
    deadline: float
    feedback_key: str = ''
    handle: object = None
    cancel: bool = False
    sent: bool = False


class WebBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__('web_bridge', **kwargs)
        self.host = declare(self, 'host', '127.0.0.1', 'Address to serve on: 127.0.0.1 = this '
                            'machine only; 0.0.0.0 = the network (needs DROID_DASHBOARD_TOKEN)',
                            read_only=True)
        self.port = declare(self, 'port', 9090, 'TCP port of the page and the rosbridge '
                            'websocket (9090 = the rosbridge default; 0 = any free port)',
                            min_value=0, max_value=65535, read_only=True)
        self.rosbridge_port = declare(self, 'rosbridge_port', 0, 'Port of an external '
                                      'rosbridge_suite websocket the page should use instead '
                                      'of this node (0 = this node speaks rosbridge itself)',
                                      min_value=0, max_value=65535, read_only=True)
        self.allowed_origins = declare(self, 'allowed_origins', [], 'Other web origins '
                                       'whose pages may open the websocket, e.g. '
                                       'https://app.foxglove.dev (the dashboard itself always '
                                       'may)', read_only=True)
        self.max_clients = declare(self, 'max_clients', 16, 'Websocket clients at once',
                                   min_value=1, max_value=256, read_only=True)
        self.default_queue = declare(self, 'default_queue', 100, 'Messages queued per '
                                     'client and topic when the client gives no '
                                     'queue_length; the oldest is dropped when full',
                                     min_value=1, max_value=10000, read_only=True)
        self.service_timeout_s = declare(self, 'service_timeout_s', 10.0, 'Longest wait for '
                                         'a service or action server and for a service reply '
                                         'when the client gives no timeout [s]',
                                         min_value=0.1, max_value=600.0)
        self.eyes_fps = declare(self, 'eyes_fps', 15.0, 'Frame rate of eyes/image while '
                                'a dashboard client watches it (0 = do not draw the eyes)',
                                min_value=0.0, max_value=60.0, read_only=True)
        self.personas = declare(self, 'personas', [], 'Personas the page offers ([] = the '
                                'files shipped with droid_brain)', read_only=True)
        self.web_dir = declare(self, 'web_dir', '', "Directory of the page ('' = the "
                               "package's share/droid_bringup/web)", read_only=True)
        self.allowed_origins = [o for o in self.allowed_origins if o]
        self.personas = [p for p in self.personas if p] or shipped_personas()

        self.diag = Diagnostics(self, hardware_id='websocket')
        self.namespace = self.get_namespace()
        self._requests: queue.Queue = queue.Queue(maxsize=2000)
        self._wake = self.create_guard_condition(self._drain)
        self._subs: dict = {}
        self._pubs: dict = {}
        self._srv_clients: dict = {}
        self._action_clients: dict = {}
        self._waiting: list = []        # calls / goals whose server is not there yet
        self._inflight: list = []       # service calls sent, for their timeout
        self._closing = False
        self._dropped_reported = 0
        self.create_timer(0.1, self._poll_waiting)
        self.create_timer(1.0, self._housekeeping)

        # the eyes as they look
        self._eye_state = None
        self._eye_amp = 0.0
        self._eye_lock = threading.Lock()
        self._stop = threading.Event()
        self._eye_thread = None
        self._eye_topic = wp.resolve_name(names.EYE_IMAGE, self.namespace)
        if self.eyes_fps > 0:
            self.eye_pub = self.create_publisher(Image, names.EYE_IMAGE, LATCHED_QOS)
            self.create_subscription(EyeState, names.EYE_STATE, self._on_eye_state,
                                     LATCHED_QOS)
            self.create_subscription(SpeechAmplitude, names.AMPLITUDE, self._on_amplitude,
                                     SENSOR_QOS)
            self._eye_thread = threading.Thread(target=self._eye_loop, name='eyes-image',
                                                daemon=True)
            self._eye_thread.start()

        token = env_secret(TOKEN_ENV)
        bind, problem = wp.bind_plan(self.host, token)
        self.problem = problem
        if problem:
            self.get_logger().error(problem)
        web_dir = Path(self.web_dir) if self.web_dir else default_web_dir()
        self.server = WebServer(bind, self.port, self, web_dir, config=self.page_config,
                                token=token, allowed_origins=self.allowed_origins,
                                default_queue=self.default_queue,
                                logger=_RosLog(self.get_logger()))
        try:
            self.server.start()
        except OSError as exc:
            self.server = None
            msg = f'cannot serve on {bind}:{self.port}: {exc.strerror or exc}'
            self.get_logger().error(msg)
            self.diag.set(ERROR, msg)
            return
        port = self.server.bound_port
        shown = 'localhost' if wp.is_loopback(bind) else (bind if bind != '0.0.0.0'
                                                          else '<this machine>')
        self.get_logger().info(
            f'dashboard on http://{shown}:{port}/'
            + (' (add ?token=<DROID_DASHBOARD_TOKEN>)' if token else '')
            + (f'; the page uses rosbridge_suite on port {self.rosbridge_port}'
               if self.rosbridge_port else '; rosbridge websocket on the same port'))
        self.diag.set(WARN if problem else OK, problem or 'serving', address=bind, port=port,
                      token='set' if token else 'none', clients=0)

    # ---- the page's configuration ---------------------------------------------------------
    def page_config(self) -> dict:
        resolve = functools.partial(wp.resolve_name, namespace=self.namespace)
        all_names = {k: v for k, v in vars(names).items() if k.isupper() and
                     isinstance(v, str)}
        return {
            'rosbridge_port': self.rosbridge_port,
            'namespace': self.namespace,
            'topics': {k: {'name': resolve(all_names[k]), 'type': t}
                       for k, t in PAGE_TOPICS.items()},
            'services': {k: {'name': resolve(all_names[k]), 'type': t}
                         for k, t in PAGE_SERVICES.items()},
            'actions': {k: {'name': resolve(all_names[k]), 'type': t}
                        for k, t in PAGE_ACTIONS.items()},
            'nodes': {n: resolve(n) for n in ('brain', 'microphone')},
            'personas': self.personas,
            'constants': {
                'SystemMode': constants('SystemMode'),
                'EyePattern': constants_with_prefix('EyeCommand', 'PATTERN_'),
                'EyeSource': constants_with_prefix('EyeState', 'SOURCE_'),
                'TraceStage': constants_with_prefix('TraceEvent', 'STAGE_'),
                'SpeechEvent': constants('SpeechEvent'),
                'Sentiment': constants('Sentiment'),
                'MusicState': constants('MusicState'),
                'MusicControl': constants('MusicControl', 0),
                'SpeakResult': constants('Speak', 1),
            },
            'latency_intervals': [list(i) for i in latency.INTERVALS],
        }

    # ---- websocket side (server thread): never touches ROS ------------------------------
    def on_open(self, conn) -> None:
        conn.state = ClientState()
        if len(self.server.connections) > self.max_clients:
            conn.close(1013, 'too many dashboard clients')

    def on_message(self, conn, text) -> None:
        try:
            req = wp.parse(text)
        except wp.ProtocolError as exc:
            self._status(conn, 'error', str(exc), exc.request_id)
            return
        if req['op'] == 'set_level':
            conn.state.level = _LEVELS[req['level']]
            return
        self._enqueue((conn, req))

    def on_close(self, conn) -> None:
        if self._closing:
            return
        self._enqueue((conn, {'op': '_close', 'id': None}))

    def _enqueue(self, item) -> None:
        try:
            self._requests.put_nowait(item)
        except queue.Full:
            self._status(item[0], 'error', 'bridge busy: request dropped', item[1].get('id'))
            return
        self._wake.trigger()

    def _status(self, conn, level: str, msg: str, rid=None) -> None:
        if _LEVELS[level] >= conn.state.level:
            conn.send_control(wp.status(level, redact(msg), rid))

    # ---- ROS side (executor thread) ------------------------------------------------------
    def _drain(self) -> None:
        while True:
            try:
                conn, req = self._requests.get_nowait()
            except queue.Empty:
                return
            if conn.closed and req['op'] != '_close':
                continue
            try:
                getattr(self, '_op_' + req['op'].lstrip('_'))(conn, req)
            except wp.ProtocolError as exc:
                self._status(conn, 'error', f"{req['op']}: {exc}", req.get('id'))
            except Exception as exc:        # noqa: BLE001 - one bad request, not the bridge
                self.get_logger().error(f"{req['op']} failed: {redact(exc)}")
                self._status(conn, 'error', f"{req['op']}: {exc}", req.get('id'))

    def _resolve(self, name: str) -> str:
        return wp.resolve_name(name, self.namespace)

    def _graph_type(self, name: str, listing) -> str:
        for graph_name, types in listing:
            if graph_name == name and types:
                return types[0]
        return ''

    @staticmethod
    def _load(loader, type_name: str):
        try:
            return loader(type_name)
        except (AttributeError, ModuleNotFoundError, ValueError) as exc:
            raise wp.ProtocolError(f"unknown interface type '{type_name}' ({exc})") from None

    def _fill(self, msg, data) -> None:
        now = self.get_clock().now().to_msg()
        try:
            set_message_fields(msg, wp.from_json(msg, data, {'sec': now.sec,
                                                             'nanosec': now.nanosec}))
        except wp.ProtocolError:
            raise
        except (AttributeError, TypeError, ValueError, AssertionError) as exc:
            raise wp.ProtocolError(f'bad {type(msg).__name__}: {exc}') from None

    # topics
    def _op_subscribe(self, conn, req) -> None:
        given = req['topic']
        topic = self._resolve(given)
        type_name = req['type'] or self._graph_type(topic, self.get_topic_names_and_types())
        if not type_name:
            raise wp.ProtocolError(f"topic {topic} does not exist yet: give its 'type'")
        msg_cls = self._load(get_message, type_name)
        sub = self._subs.get(topic)
        if sub is not None and sub.type != type_name:
            raise wp.ProtocolError(f'{topic} is {sub.type}, not {type_name}')
        sid = req['id']
        if sid is None:
            conn.state.auto_ids += 1
            sid = f'_auto{conn.state.auto_ids}'
        conn.outbox.subscribe(given, sid, req['throttle_rate'], req['queue_length'])
        conn.state.subs[given] = topic
        if sub is None:
            sub = self._subs[topic] = _Sub(type_name, self._qos_for(topic))
            self._make_subscription(topic, sub, msg_cls)
        elif sub.last is not None:        # a latched value the new client has not seen
            conn.outbox.push_topic(given, self._encoded(sub.last, given))
            conn.notify()
        sub.clients.setdefault(conn, set()).add(given)

    def _qos_for(self, topic: str) -> tuple:
        infos = self.get_publishers_info_by_topic(topic)
        return wp.choose_qos([(_RELIABILITY.get(i.qos_profile.reliability, 'reliable'),
                               _DURABILITY.get(i.qos_profile.durability, 'volatile'))
                              for i in infos])

    def _make_subscription(self, topic: str, sub: _Sub, msg_cls) -> None:
        depth = 1 if sub.qos[1] == 'transient_local' else 50
        sub.ros = self.create_subscription(
            msg_cls, topic, functools.partial(self._on_topic, topic),
            qos_profile(*sub.qos, depth=depth))

    @staticmethod
    def _encoded(msg, given: str):
        cache = {}

        def text(name=given):
            if 'json' not in cache:
                cache['json'] = wp.to_json(msg)
            return wp.publish_text(name, cache['json'])
        return text

    def _on_topic(self, topic: str, msg) -> None:
        sub = self._subs.get(topic)
        if sub is None:
            return
        if sub.qos[1] == 'transient_local':
            sub.last = msg
        cache = {}

        def text(name):
            if 'json' not in cache:          # converted once, on the first send
                cache['json'] = wp.to_json(msg)
            return wp.publish_text(name, cache['json'])
        for conn, given_names in list(sub.clients.items()):
            for given in given_names:
                conn.outbox.push_topic(given, functools.partial(text, given))
            conn.notify()

    def _op_unsubscribe(self, conn, req) -> None:
        given = req['topic']
        if given not in conn.state.subs:
            self._status(conn, 'warning', f'not subscribed to {given}', req['id'])
            return
        if conn.outbox.unsubscribe(given, req['id']):
            self._drop_sub(conn, given)

    def _drop_sub(self, conn, given: str) -> None:
        topic = conn.state.subs.pop(given)
        sub = self._subs.get(topic)
        if sub is None:
            return
        names_of = sub.clients.get(conn, set())
        names_of.discard(given)
        if not names_of:
            sub.clients.pop(conn, None)
        if not sub.clients:
            self.destroy_subscription(sub.ros)
            del self._subs[topic]

    def _op_advertise(self, conn, req) -> None:
        given = req['topic']
        topic = self._resolve(given)
        pub = self._pubs.get(topic)
        if pub is not None and pub.type != req['type']:
            raise wp.ProtocolError(f'{topic} is already advertised as {pub.type}')
        if pub is None:
            msg_cls = self._load(get_message, req['type'])
            qos = qos_profile('reliable', 'transient_local', 1) if req['latch'] else \
                qos_profile('reliable', 'volatile', req['queue_size'])
            pub = self._pubs[topic] = _Pub(req['type'], self.create_publisher(msg_cls, topic,
                                                                             qos))
        pub.clients.add(conn)
        conn.state.pubs[given] = topic

    def _op_unadvertise(self, conn, req) -> None:
        given = req['topic']
        if given not in conn.state.pubs:
            self._status(conn, 'warning', f'{given} is not advertised', req['id'])
            return
        self._drop_pub(conn, given)

    def _drop_pub(self, conn, given: str) -> None:
        topic = conn.state.pubs.pop(given)
        pub = self._pubs.get(topic)
        if pub is None:
            return
        pub.clients.discard(conn)
        if not pub.clients:
            self.destroy_publisher(pub.ros)
            del self._pubs[topic]

    def _op_publish(self, conn, req) -> None:
        given = req['topic']
        topic = self._resolve(given)
        if given not in conn.state.pubs:
            # rosbridge lets a client publish on a topic the graph knows without advertising
            type_name = self._pubs[topic].type if topic in self._pubs else \
                self._graph_type(topic, self.get_topic_names_and_types())
            if not type_name:
                raise wp.ProtocolError(f'advertise {topic} (with its type) before publishing')
            self._op_advertise(conn, {'topic': given, 'type': type_name, 'latch': False,
                                      'queue_size': 100, 'id': req['id']})
        pub = self._pubs[topic]
        msg = self._load(get_message, pub.type)()
        self._fill(msg, req['msg'])
        pub.ros.publish(msg)

    # services
    def _op_call_service(self, conn, req) -> None:
        service = self._resolve(req['service'])
        type_name = req['type'] or self._graph_type(service,
                                                    self.get_service_names_and_types())
        if not type_name:
            raise wp.ProtocolError(f"service {service} does not exist (yet): give its 'type'")
        srv_cls = self._load(get_service, type_name)
        client = self._srv_clients.get((service, type_name))
        if client is None:
            client = self._srv_clients[(service, type_name)] = self.create_client(srv_cls,
                                                                                  service)
        request = srv_cls.Request()
        self._fill(request, wp.args_to_dict(req['args'], list(
            request.get_fields_and_field_types())))
        timeout = req['timeout'] or self.service_timeout_s
        call = _Call(conn, req['id'], req['service'], client, request,
                     time.monotonic() + timeout)
        if client.service_is_ready():
            self._send_call(call)
        else:
            self._waiting.append(call)

    def _send_call(self, call: _Call) -> None:
        call.future = call.client.call_async(call.request)
        self._inflight.append(call)
        call.future.add_done_callback(functools.partial(self._call_done, call))

    def _call_done(self, call: _Call, future) -> None:
        if call in self._inflight:
            self._inflight.remove(call)
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            call.conn.send_control(wp.service_response(call.name, call.rid, str(exc), False))
            return
        call.conn.send_control(wp.service_response(call.name, call.rid,
                                                   wp.to_json(future.result()), True))

    # actions
    def _op_send_action_goal(self, conn, req) -> None:
        action = self._resolve(req['action'])
        action_cls = self._load(get_action, req['action_type'])
        key = (action, req['action_type'])
        client = self._action_clients.get(key)
        if client is None:
            client = self._action_clients[key] = ActionClient(self, action_cls, action)
        goal_msg = action_cls.Goal()
        self._fill(goal_msg, wp.args_to_dict(req['args'], list(
            goal_msg.get_fields_and_field_types())))
        rid = req['id']
        if rid is None:
            conn.state.auto_ids += 1
            rid = f'_goal{conn.state.auto_ids}'
        if rid in conn.state.goals:
            raise wp.ProtocolError(f'a goal with id {rid} is still running')
        goal = _Goal(conn, rid, req['action'], client, goal_msg, req['feedback'],
                     time.monotonic() + self.service_timeout_s)
        if goal.feedback:
            goal.feedback_key = f'\x00feedback {rid}'
            conn.outbox.subscribe(goal.feedback_key, rid, 0, 10)
        conn.state.goals[rid] = goal
        if client.server_is_ready():
            self._send_goal(goal)
        else:
            self._waiting.append(goal)

    def _send_goal(self, goal: _Goal) -> None:
        goal.sent = True
        cb = functools.partial(self._on_feedback, goal) if goal.feedback else None
        future = goal.client.send_goal_async(goal.goal, feedback_callback=cb)
        future.add_done_callback(functools.partial(self._goal_response, goal))

    def _on_feedback(self, goal: _Goal, feedback_msg) -> None:
        fb = feedback_msg.feedback
        goal.conn.outbox.push_topic(goal.feedback_key, lambda: wp.action_feedback(
            goal.name, goal.rid, wp.to_json(fb)))
        goal.conn.notify()

    def _goal_response(self, goal: _Goal, future) -> None:
        exc = future.exception()
        handle = None if exc is not None else future.result()
        if handle is None or not handle.accepted:
            self._finish_goal(goal, f'goal rejected{": " + str(exc) if exc else ""}',
                              wp.GOAL_ABORTED if exc else wp.GOAL_UNKNOWN)
            return
        goal.handle = handle
        if goal.cancel:
            handle.cancel_goal_async()
        handle.get_result_async().add_done_callback(functools.partial(self._goal_result, goal))

    def _goal_result(self, goal: _Goal, future) -> None:
        exc = future.exception()
        if exc is not None:
            self._finish_goal(goal, str(exc), wp.GOAL_ABORTED)
            return
        res = future.result()
        self._finish_goal(goal, wp.to_json(res.result), res.status)

    def _finish_goal(self, goal: _Goal, values, goal_status: int) -> None:
        goal.conn.state.goals.pop(goal.rid, None)
        goal.conn.send_control(wp.action_result(goal.name, goal.rid, values, goal_status))
        if goal.feedback_key:
            goal.conn.outbox.unsubscribe(goal.feedback_key)

    def _op_cancel_action_goal(self, conn, req) -> None:
        goal = conn.state.goals.get(req['id'])
        if goal is None:
            self._status(conn, 'warning', f"no running goal {req['id']}", req['id'])
            return
        goal.cancel = True
        if goal.handle is not None:
            goal.handle.cancel_goal_async()
        elif not goal.sent:
            self._waiting = [w for w in self._waiting if w is not goal]
            self._finish_goal(goal, 'cancelled before the server was available',
                              wp.GOAL_CANCELED)

    # a client left
    def _op_close(self, conn, req) -> None:
        for given in list(conn.state.subs):
            self._drop_sub(conn, given)
        for given in list(conn.state.pubs):
            self._drop_pub(conn, given)
        # running goals keep running (a phone that drops off mid-line should not cut the
        # droid short); their results have no one left to go to
        conn.state.goals.clear()
        self._waiting = [w for w in self._waiting if w.conn is not conn]

    # timers
    def _poll_waiting(self) -> None:
        now = time.monotonic()
        still = []
        for item in self._waiting:
            ready = item.client.service_is_ready() if isinstance(item, _Call) else \
                item.client.server_is_ready()
            if ready:
                if isinstance(item, _Call):
                    self._send_call(item)
                else:
                    self._send_goal(item)
            elif now > item.deadline:
                what = item.client.srv_name if isinstance(item, _Call) else item.name
                if isinstance(item, _Call):
                    item.conn.send_control(wp.service_response(
                        item.name, item.rid, f'service {what} is not available', False))
                else:
                    self._finish_goal(item, f'action server {what} is not available',
                                      wp.GOAL_ABORTED)
            else:
                still.append(item)
        self._waiting = still
        for call in list(self._inflight):
            if now > call.deadline and not call.future.done():
                self._inflight.remove(call)
                call.client.remove_pending_request(call.future)
                call.future.cancel()
                call.conn.send_control(wp.service_response(
                    call.name, call.rid, f'no reply from {call.client.srv_name} in time',
                    False))

    def _housekeeping(self) -> None:
        # a subscription made before its publisher existed (or after the droid restarted
        # with other QoS) is made again with the QoS the publishers now offer
        for topic, sub in list(self._subs.items()):
            qos = self._qos_for(topic)
            if qos != sub.qos and self.count_publishers(topic) > 0:
                self.destroy_subscription(sub.ros)
                sub.qos = qos
                self._make_subscription(topic, sub, self._load(get_message, sub.type))
        if self.server is None:
            return
        conns = list(self.server.connections)
        dropped = sum(c.outbox.dropped(t) for c in conns for t in c.outbox.topics())
        level = WARN if self.problem else OK
        self.diag.set(level, self.problem or 'serving', address=self.server.host,
                      port=self.server.bound_port, clients=len(conns), topics=len(self._subs),
                      refused=self.server.refused, dropped=dropped)

    # ---- eyes/image --------------------------------------------------------------------------
    def _on_eye_state(self, msg) -> None:
        with self._eye_lock:
            self._eye_state = (msg.pattern, (msg.color.r, msg.color.g, msg.color.b),
                               msg.brightness, msg.speed)

    def _on_amplitude(self, msg) -> None:
        with self._eye_lock:
            self._eye_amp = eye_protocol.amplitude_byte(msg.amplitude) / 255.0

    def _eye_loop(self) -> None:
        period = 1.0 / self.eyes_fps
        last = None
        while not self._stop.wait(period):
            with self._eye_lock:
                state, amp = self._eye_state, self._eye_amp
            # drawn only while a dashboard client watches: a graph without one (a
            # deterministic replay, say) sees no extra traffic
            if state is None or self._eye_topic not in self._subs:
                last = None
                continue
            pattern, color, brightness, speed = state
            pixels = render.eye_pixels(pattern, color, brightness, speed, amp,
                                       time.monotonic())
            data = render.to_display(pixels)
            if last is not None and np.array_equal(data, last):
                continue
            last = data
            img = Image(height=data.shape[0], width=data.shape[1], encoding='rgb8',
                        is_bigendian=0, step=data.shape[1] * 3)
            img.header.stamp = self.get_clock().now().to_msg()
            img.header.frame_id = 'eyes'
            img.data = data.tobytes()
            try:
                self.eye_pub.publish(img)
            except Exception:       # noqa: BLE001 - the context is shutting down
                return

    def close(self) -> None:
        self._closing = True
        self._stop.set()
        if self._eye_thread is not None:
            self._eye_thread.join(2.0)
        if self.server is not None:
            self.server.stop()


class _RosLog:
    """The logging.Logger surface the web server uses, onto the node's logger."""

    def __init__(self, logger):
        self._l = logger

    def info(self, msg):
        self._l.info(redact(msg))

    def warning(self, msg):
        self._l.warning(redact(msg))

    def error(self, msg):
        self._l.error(redact(msg))


def main(args=None):
    run(WebBridgeNode, args=args)


if __name__ == '__main__':
    main()

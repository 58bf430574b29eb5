"""The rosbridge v2 JSON protocol, the subset the dashboard needs (plain Python, no rclpy).

What roslibjs, Foxglove's rosbridge connection and the dashboard page speak over the
websocket of ``web_bridge``:

- client -> bridge: ``subscribe`` / ``unsubscribe`` (``type``, ``throttle_rate``,
  ``queue_length``), ``advertise`` / ``unadvertise`` / ``publish``, ``call_service``
  (``args``, ``timeout``), ``send_action_goal`` (``action_type``, ``args``, ``feedback``) /
  ``cancel_action_goal``, ``set_level``;
- bridge -> client: ``publish``, ``service_response``, ``action_feedback``,
  ``action_result``, ``status``.

This module holds what does not need ROS: parsing and validating requests
(:func:`parse`), interface type and name normalisation, the JSON form of messages
(:func:`to_json` / :func:`from_json`, duck-typed on ``get_fields_and_field_types()`` the
way rosbridge encodes them: ``uint8[]`` as base64, ``byte`` as an int, NaN as null), the
QoS a bridge subscription should use given the publishers (:func:`choose_qos`), the
per-client outgoing queues (:class:`Outbox`: bounded, throttled, drop-oldest for topics),
and the access rules (:func:`bind_plan`, :func:`origin_ok`, :func:`token_ok`).
"""

from __future__ import annotations

import base64
import collections
import hmac
import ipaddress
import itertools
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

# ---- requests --------------------------------------------------------------------------

OPS = ('subscribe', 'unsubscribe', 'advertise', 'unadvertise', 'publish', 'call_service',
       'send_action_goal', 'cancel_action_goal', 'set_level')
LEVELS = ('info', 'warning', 'error', 'none')
_NAME_RE = re.compile(r'^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')
_TYPE_RE = re.compile(r'^([A-Za-z][A-Za-z0-9_]*)/(?:(msg|srv|action)/)?([A-Z][A-Za-z0-9_]*)$')


class ProtocolError(ValueError):
    """A request the bridge cannot carry out; the message goes back in a ``status`` op."""

    def __init__(self, message: str, request_id=None):
        super().__init__(message)
        self.request_id = request_id


def _int(req: dict, key: str, default: int = 0, minimum: int = 0) -> int:
    value = req.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ProtocolError(f"'{key}' must be a number >= {minimum}", req.get('id'))
    return int(value)


def _str(req: dict, key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{req.get('op')}: '{key}' must be a non-empty string",
                            req.get('id'))
    return value


def parse(text) -> dict:
    """One websocket text frame -> a validated request dict (defaults filled in).

    Raises :class:`ProtocolError` with a message meant for the client.
    """
    if isinstance(text, (bytes, bytearray)):
        raise ProtocolError('binary frames are not supported (send JSON text)')
    try:
        req = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f'not JSON: {exc}') from None
    if not isinstance(req, dict) or not isinstance(req.get('op'), str):
        raise ProtocolError("a request is a JSON object with a string 'op'")
    op = req['op']
    rid = req.get('id')
    if rid is not None and not isinstance(rid, (str, int)):
        raise ProtocolError("'id' must be a string or an integer")
    if op not in OPS:
        raise ProtocolError(f"unsupported op '{op}' (this bridge speaks: {', '.join(OPS)})",
                            rid)
    out = {'op': op, 'id': rid}
    if op in ('subscribe', 'unsubscribe', 'advertise', 'unadvertise', 'publish'):
        out['topic'] = check_name(_str(req, 'topic'), rid)
    if op == 'subscribe':
        out['type'] = normalize_type(req['type'], 'msg', rid) if req.get('type') else ''
        out['throttle_rate'] = _int(req, 'throttle_rate')
        out['queue_length'] = _int(req, 'queue_length')
        compression = req.get('compression') or 'none'
        if compression != 'none':
            raise ProtocolError(f"compression '{compression}' is not supported (use 'none')",
                                rid)
    elif op == 'advertise':
        out['type'] = normalize_type(_str(req, 'type'), 'msg', rid)
        out['latch'] = bool(req.get('latch', False))
        out['queue_size'] = _int(req, 'queue_size', 100, 1)
    elif op == 'publish':
        msg = req.get('msg', {})
        if not isinstance(msg, dict):
            raise ProtocolError("publish: 'msg' must be a JSON object", rid)
        out['msg'] = msg
    elif op == 'call_service':
        out['service'] = check_name(_str(req, 'service'), rid)
        out['type'] = normalize_type(req['type'], 'srv', rid) if req.get('type') else ''
        out['args'] = _args(req.get('args'), rid)
        timeout = req.get('timeout')
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float))):
            raise ProtocolError("call_service: 'timeout' must be a number of seconds", rid)
        out['timeout'] = float(timeout) if timeout is not None and timeout > 0 else None
    elif op == 'send_action_goal':
        out['action'] = check_name(_str(req, 'action'), rid)
        out['action_type'] = normalize_type(_str(req, 'action_type'), 'action', rid)
        out['args'] = _args(req.get('args'), rid)
        out['feedback'] = bool(req.get('feedback', False))
    elif op == 'cancel_action_goal':
        if rid is None:
            raise ProtocolError("cancel_action_goal: 'id' (the goal's id) is required")
        out['action'] = check_name(_str(req, 'action'), rid)
    elif op == 'set_level':
        level = req.get('level')
        if level not in LEVELS:
            raise ProtocolError(f"set_level: 'level' must be one of {', '.join(LEVELS)}", rid)
        out['level'] = level
    return out


def _args(args, rid):
    """``args`` of a service call / goal: an object, or rosbridge's positional list."""
    if args is None:
        return {}
    if isinstance(args, dict):
        return args
    if isinstance(args, list):
        return list(args)      # positional: mapped onto the request's fields in order
    raise ProtocolError("'args' must be a JSON object (or a list of field values)", rid)


def args_to_dict(args, field_names) -> dict:
    """rosbridge's positional ``args`` list onto the request's field names."""
    if isinstance(args, dict):
        return args
    if len(args) > len(field_names):
        raise ProtocolError(f'{len(args)} positional args for {len(field_names)} fields')
    return dict(zip(field_names, args))


def check_name(name: str, rid=None) -> str:
    """A topic/service/action name (relative or absolute), else :class:`ProtocolError`."""
    if not _NAME_RE.match(name):
        raise ProtocolError(f"'{name}' is not a valid ROS name", rid)
    return name


def resolve_name(name: str, namespace: str = '/') -> str:
    """Relative names resolve in the bridge's namespace, as in any node."""
    if name.startswith('/'):
        return name
    ns = namespace.rstrip('/')
    return f'{ns}/{name}'


def normalize_type(name, kind: str, rid=None) -> str:
    """``pkg/Name`` or ``pkg/kind/Name`` -> ``pkg/kind/Name`` (kind: msg, srv or action)."""
    match = _TYPE_RE.match(name) if isinstance(name, str) else None
    if not match or (match.group(2) and match.group(2) != kind):
        raise ProtocolError(f"'{name}' is not a {kind} type (expected pkg/{kind}/Name)", rid)
    return f'{match.group(1)}/{kind}/{match.group(3)}'


# ---- replies ---------------------------------------------------------------------------

def _dumps(obj) -> str:
    return json.dumps(obj, separators=(',', ':'), allow_nan=False)


def status(level: str, msg: str, rid=None) -> str:
    out = {'op': 'status', 'level': level, 'msg': msg}
    if rid is not None:
        out['id'] = rid
    return _dumps(out)


def publish_text(topic: str, msg_json: dict) -> str:
    return _dumps({'op': 'publish', 'topic': topic, 'msg': msg_json})


def service_response(service: str, rid, values, result: bool) -> str:
    out = {'op': 'service_response', 'service': service, 'result': bool(result),
           'values': values}
    if rid is not None:
        out['id'] = rid
    return _dumps(out)


def action_feedback(action: str, rid, values) -> str:
    return _dumps({'op': 'action_feedback', 'id': rid, 'action': action, 'values': values})


# action_msgs/GoalStatus values (the protocol sends them as ints)
GOAL_UNKNOWN, GOAL_ACCEPTED, GOAL_EXECUTING, GOAL_CANCELING, GOAL_SUCCEEDED, \
    GOAL_CANCELED, GOAL_ABORTED = range(7)


def action_result(action: str, rid, values, goal_status: int) -> str:
    return _dumps({'op': 'action_result', 'id': rid, 'action': action, 'values': values,
                   'status': int(goal_status), 'result': goal_status == GOAL_SUCCEEDED})


# ---- messages <-> JSON -----------------------------------------------------------------

_BYTE_ELEMS = ('octet', 'uint8', 'byte', 'char')
_SEQ_RE = re.compile(r'^sequence<(.+?)(?:,\s*\d+)?>$')
_ARR_RE = re.compile(r'^(.+?)\[\d*\]$')


def element_type(type_str: str):
    """``'sequence<uint8>'`` / ``'uint8[3]'`` -> ``'uint8'``; not an array -> None."""
    m = _SEQ_RE.match(type_str) or _ARR_RE.match(type_str)
    return m.group(1) if m else None


def _is_msg(value) -> bool:
    return hasattr(value, 'get_fields_and_field_types')


def _scalar(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None                 # JSON has no NaN / inf
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        return value[0]             # a `byte` field
    if hasattr(value, 'item'):      # numpy scalar
        return _scalar(value.item())
    return value


def _value(value, type_str: str):
    if _is_msg(value):
        return to_json(value)
    elem = element_type(type_str)
    if elem is not None:
        if elem in _BYTE_ELEMS:
            if isinstance(value, (list, tuple)):        # byte[] -> list of 1-byte bytes
                value = b''.join(v if isinstance(v, bytes) else bytes([v]) for v in value)
            return base64.b64encode(bytes(value)).decode('ascii')
        return [_value(v, elem) for v in value]
    return _scalar(value)


def to_json(msg) -> dict:
    """A ROS message -> JSON-ready dict, as rosbridge encodes it."""
    return {name: _value(getattr(msg, name), type_str)
            for name, type_str in msg.get_fields_and_field_types().items()}


def _prepare(template, data, now_stamp=None):
    """JSON dict -> dict ready for ``rosidl_runtime_py.set_message_fields`` on ``template``
    (base64 strings into bytes, ints into `byte`s, a missing header stamp = now)."""
    if not isinstance(data, dict):
        raise ProtocolError(f'expected a JSON object for {type(template).__name__}')
    types = template.get_fields_and_field_types()
    unknown = set(data) - set(types)
    if unknown:
        raise ProtocolError(f"{type(template).__name__} has no field(s) "
                            f"{', '.join(sorted(unknown))}")
    out = {}
    for name, value in data.items():
        type_str = types[name]
        current = getattr(template, name)
        elem = element_type(type_str)
        if _is_msg(current):
            value = _prepare(current, value, now_stamp if name == 'header' else None)
        elif elem is not None and elem in _BYTE_ELEMS and isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except ValueError:
                raise ProtocolError(f"field '{name}': not base64") from None
            value = [bytes([b]) for b in raw] if elem in ('octet', 'byte') else list(raw)
        elif elem in ('octet', 'byte') and isinstance(value, list):
            value = [bytes([v]) if isinstance(v, int) else v for v in value]
        elif type_str in ('octet', 'byte') and isinstance(value, int):
            value = bytes([value])
        out[name] = value
    if now_stamp is not None and 'stamp' in types and 'stamp' not in data:
        out['stamp'] = now_stamp
    return out


def from_json(template, data: dict, now_stamp: dict | None = None) -> dict:
    """Prepare ``data`` for ``set_message_fields(template, ...)``. ``now_stamp``
    ({'sec', 'nanosec'}) fills a header whose stamp the client left out (rosbridge does
    the same)."""
    prepared = _prepare(template, data, None)
    types = template.get_fields_and_field_types()
    if now_stamp is not None and types.get('header') == 'std_msgs/Header':
        header = dict(prepared.get('header', {}))
        header.setdefault('stamp', now_stamp)
        prepared['header'] = header
    return prepared


# ---- QoS -------------------------------------------------------------------------------

def choose_qos(publishers) -> tuple:
    """(reliability, durability) for a bridge subscription, from the publishers' QoS as
    ``[(reliability, durability)]`` strings ('reliable' / 'best_effort', 'volatile' /
    'transient_local'), the way rosbridge does it: best effort if any publisher is,
    transient local (latched values) if every publisher is. No publisher yet: reliable,
    volatile (the node checks again when publishers appear)."""
    pubs = list(publishers)
    if not pubs:
        return ('reliable', 'volatile')
    reliability = 'best_effort' if any(r == 'best_effort' for r, _ in pubs) else 'reliable'
    durability = 'transient_local' if all(d == 'transient_local' for _, d in pubs) \
        else 'volatile'
    return (reliability, durability)


# ---- the per-client outgoing queues ----------------------------------------------------

class Overflow(RuntimeError):
    """The client does not read its replies: it is disconnected."""


@dataclass
class _TopicQueue:
    throttle_s: float
    items: collections.deque
    subs: dict = field(default_factory=dict)   # subscription id -> (throttle_ms, queue_length)
    last_sent: float = -math.inf
    dropped: int = 0


class Outbox:
    """What one client is sent, filled from ROS threads and drained by its websocket.

    Topic messages go in one queue per subscribed topic: bounded (``queue_length``, or
    ``default_queue`` when the client gave none), the oldest dropped when full, and
    released at most once per ``throttle_rate`` (then only the newest ``queue_length``,
    at least one, are kept). Several subscriptions of one client to one topic share the
    queue: the lowest throttle rate and the longest queue win (as in rosbridge). Replies
    (service responses, action feedback and results, status) are never dropped; more than
    ``control_limit`` unsent ones means the client stopped reading (:class:`Overflow`).
    Items leave in the order they arrived. Thread-safe.
    """

    def __init__(self, default_queue: int = 100, control_limit: int = 1000):
        self.default_queue = max(1, default_queue)
        self.control_limit = control_limit
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._topics: dict = {}
        self._control: collections.deque = collections.deque()

    # subscriptions
    def subscribe(self, topic: str, sub_id, throttle_ms: int, queue_length: int) -> bool:
        """Add a subscription; True if it is the client's first to ``topic``."""
        with self._lock:
            q = self._topics.get(topic)
            first = q is None
            if first:
                q = self._topics[topic] = _TopicQueue(0.0, collections.deque())
            q.subs[sub_id] = (throttle_ms, queue_length)
            self._reshape(q)
            return first

    def unsubscribe(self, topic: str, sub_id=None) -> bool:
        """Remove one subscription (``sub_id``) or all of ``topic``; True if none is left."""
        with self._lock:
            q = self._topics.get(topic)
            if q is None:
                return False
            if sub_id is None or sub_id not in q.subs:
                if sub_id is not None:
                    return False
                q.subs.clear()
            else:
                del q.subs[sub_id]
            if q.subs:
                self._reshape(q)
                return False
            del self._topics[topic]
            return True

    def topics(self) -> list:
        with self._lock:
            return list(self._topics)

    def _reshape(self, q: _TopicQueue) -> None:
        throttle_ms = min(t for t, _ in q.subs.values())
        queue_length = max(n for _, n in q.subs.values())
        q.throttle_s = throttle_ms / 1000.0
        if q.throttle_s > 0:
            maxlen = max(1, queue_length)
        else:
            maxlen = queue_length or self.default_queue
        if q.items.maxlen != maxlen:
            q.items = collections.deque(q.items, maxlen=maxlen)

    # filling (any thread)
    def push_topic(self, topic: str, item) -> bool:
        """Queue a topic message (any object; the sender turns it into text). False if
        the client is not subscribed to ``topic``."""
        with self._lock:
            q = self._topics.get(topic)
            if q is None:
                return False
            if len(q.items) == q.items.maxlen:
                q.dropped += 1
            q.items.append((next(self._seq), item))
            return True

    def push_control(self, text: str) -> None:
        with self._lock:
            if len(self._control) >= self.control_limit:
                raise Overflow(f'{len(self._control)} replies unsent')
            self._control.append((next(self._seq), text))

    def dropped(self, topic: str) -> int:
        with self._lock:
            q = self._topics.get(topic)
            return q.dropped if q else 0

    # draining (the websocket's sender)
    def pop(self, now: float):
        """(item, None) for the next item due at ``now`` [s, monotonic]; else (None,
        seconds until the next throttled one is due, or None if nothing is queued)."""
        with self._lock:
            best = None
            wait = None
            if self._control:
                best = (self._control[0][0], None)
            for topic, q in self._topics.items():
                if not q.items:
                    continue
                due = q.last_sent + q.throttle_s
                if due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                    continue
                if best is None or q.items[0][0] < best[0]:
                    best = (q.items[0][0], topic)
            if best is None:
                return None, wait
            if best[1] is None:
                return self._control.popleft()[1], None
            q = self._topics[best[1]]
            q.last_sent = now
            return q.items.popleft()[1], None

    def pending(self) -> int:
        with self._lock:
            return len(self._control) + sum(len(q.items) for q in self._topics.values())


# ---- access ----------------------------------------------------------------------------

TOKEN_COOKIE = 'droid_dashboard_token'


def is_loopback(host: str) -> bool:
    if host in ('localhost', 'ip6-localhost'):
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def bind_plan(host: str, token: str | None) -> tuple:
    """(address to bind, problem or ''): a non-loopback address needs a token, else the
    bridge stays on 127.0.0.1 and says why."""
    if not host:
        return '127.0.0.1', ''
    if is_loopback(host) or token:
        return host, ''
    return '127.0.0.1', (f"host '{host}' opens the droid to the network and needs an access "
                         'token (set DROID_DASHBOARD_TOKEN); serving on 127.0.0.1 only')


def request_token(path: str, headers) -> str:
    """The token a request carries: ``?token=`` in the URL, ``Authorization: Bearer``, or
    the dashboard's cookie (set when the page was opened with the token)."""
    query = parse_qs(urlsplit(path).query)
    if query.get('token'):
        return query['token'][0]
    auth = headers.get('Authorization') or ''
    if auth.lower().startswith('bearer '):
        return auth[7:].strip()
    cookie = headers.get('Cookie') or ''
    if cookie:
        try:
            jar = SimpleCookie(cookie)
        except CookieError:
            return ''
        if TOKEN_COOKIE in jar:
            return jar[TOKEN_COOKIE].value
    return ''


def token_ok(given: str, expected: str | None) -> bool:
    """No token configured: anyone who can connect may. Else a constant-time match."""
    if not expected:
        return True
    return hmac.compare_digest(given.encode(), expected.encode())


def origin_ok(origin: str | None, host_header: str | None, allowed=()) -> bool:
    """A browser page may open the websocket only from the dashboard itself (same
    host:port) or an origin listed in ``allowed`` ('*' = any). Clients that send no
    Origin (roslibjs in node, command-line tools) are not browsers and are let through."""
    if not origin:
        return True
    if '*' in allowed or origin in allowed:
        return True
    return bool(host_header) and urlsplit(origin).netloc.lower() == host_header.lower()

"""The rosbridge v2 protocol subset of the dashboard bridge (plain Python)."""

import array
import base64
import json
import math

import pytest

from droid_bringup import web_protocol as wp


# ---- parsing -------------------------------------------------------------------------------

def test_subscribe_is_parsed_with_rosbridge_defaults():
    req = wp.parse(json.dumps({'op': 'subscribe', 'id': 'subscribe:/mode:1', 'topic': '/mode',
                               'type': 'droid_msgs/SystemMode'}))
    assert req == {'op': 'subscribe', 'id': 'subscribe:/mode:1', 'topic': '/mode',
                   'type': 'droid_msgs/msg/SystemMode', 'throttle_rate': 0, 'queue_length': 0}


def test_requests_roslibjs_sends_are_accepted():
    # the exact shapes roslib 2.x sends (its compression field included)
    reqs = [
        {'op': 'subscribe', 'id': 's1', 'type': 'std_msgs/msg/String', 'topic': 'chatter',
         'compression': 'none', 'throttle_rate': 0, 'queue_length': 0},
        {'op': 'advertise', 'id': 'a1', 'type': 'std_msgs/msg/String', 'topic': 'chatter',
         'latch': False, 'queue_size': 100},
        {'op': 'publish', 'id': 'p1', 'topic': 'chatter', 'msg': {'data': 'hi'}},
        {'op': 'call_service', 'id': 'c1', 'service': '/set_mode', 'args': {'mode': 2}},
        {'op': 'send_action_goal', 'id': 'g1', 'action': '/voice/speak',
         'action_type': 'droid_msgs/action/Speak', 'args': {'text': 'hi'}, 'feedback': True},
        {'op': 'cancel_action_goal', 'id': 'g1', 'action': '/voice/speak'},
        {'op': 'unsubscribe', 'id': 's1', 'topic': 'chatter'},
        {'op': 'unadvertise', 'id': 'a1', 'topic': 'chatter'},
    ]
    for req in reqs:
        assert wp.parse(json.dumps(req))['op'] == req['op']
    call = wp.parse(json.dumps(reqs[3]))
    assert call['type'] == '' and call['args'] == {'mode': 2} and call['timeout'] is None


@pytest.mark.parametrize('req, needle', [
    ('not json', 'not JSON'),
    ('[1, 2]', "string 'op'"),
    ('{"op": "teleport"}', "unsupported op 'teleport'"),
    ('{"op": "subscribe"}', "'topic'"),
    ('{"op": "subscribe", "topic": "bad name!"}', 'not a valid ROS name'),
    ('{"op": "subscribe", "topic": "/a", "throttle_rate": -5}', 'throttle_rate'),
    ('{"op": "subscribe", "topic": "/a", "type": "nonsense"}', 'not a msg type'),
    ('{"op": "subscribe", "topic": "/a", "compression": "cbor"}', 'compression'),
    ('{"op": "advertise", "topic": "/a"}', "'type'"),
    ('{"op": "publish", "topic": "/a", "msg": 3}', "'msg'"),
    ('{"op": "call_service", "service": "/s", "args": 3}', "'args'"),
    ('{"op": "call_service", "service": "/s", "type": "droid_msgs/msg/SetMode"}', 'srv type'),
    ('{"op": "send_action_goal", "action": "/a"}', "'action_type'"),
    ('{"op": "cancel_action_goal", "action": "/a"}', "'id'"),
    ('{"op": "set_level", "level": "loud"}', 'level'),
])
def test_bad_requests_get_a_clear_error(req, needle):
    with pytest.raises(wp.ProtocolError) as err:
        wp.parse(req)
    assert needle in str(err.value)


def test_an_error_keeps_the_request_id_for_the_status_reply():
    with pytest.raises(wp.ProtocolError) as err:
        wp.parse('{"op": "subscribe", "id": "x7", "topic": "/a", "type": "bad"}')
    assert err.value.request_id == 'x7'
    status = json.loads(wp.status('error', str(err.value), err.value.request_id))
    assert status == {'op': 'status', 'level': 'error', 'msg': str(err.value), 'id': 'x7'}


def test_binary_frames_are_refused():
    with pytest.raises(wp.ProtocolError, match='binary'):
        wp.parse(b'\x00\x01')


def test_types_and_names_are_normalised():
    assert wp.normalize_type('droid_msgs/Speak', 'action') == 'droid_msgs/action/Speak'
    assert wp.normalize_type('std_msgs/msg/String', 'msg') == 'std_msgs/msg/String'
    with pytest.raises(wp.ProtocolError):
        wp.normalize_type('droid_msgs/srv/SetMode', 'msg')
    assert wp.resolve_name('mode', '/') == '/mode'
    assert wp.resolve_name('mode', '/r3x') == '/r3x/mode'
    assert wp.resolve_name('/diagnostics', '/r3x') == '/diagnostics'
    assert wp.args_to_dict([2, 'why'], ['mode', 'reason']) == {'mode': 2, 'reason': 'why'}
    with pytest.raises(wp.ProtocolError):
        wp.args_to_dict([1, 2, 3], ['mode'])


# ---- replies -------------------------------------------------------------------------------

def test_replies_have_the_rosbridge_shape():
    assert json.loads(wp.service_response('/s', 'c1', {'ok': True}, True)) == \
        {'op': 'service_response', 'service': '/s', 'id': 'c1', 'values': {'ok': True},
         'result': True}
    res = json.loads(wp.action_result('/a', 'g1', {'played': 1.0}, wp.GOAL_SUCCEEDED))
    assert res == {'op': 'action_result', 'id': 'g1', 'action': '/a',
                   'values': {'played': 1.0}, 'status': 4, 'result': True}
    assert json.loads(wp.action_result('/a', 'g1', {}, wp.GOAL_CANCELED))['result'] is False
    assert json.loads(wp.action_feedback('/a', 'g1', {'x': 1})) == \
        {'op': 'action_feedback', 'id': 'g1', 'action': '/a', 'values': {'x': 1}}
    assert json.loads(wp.publish_text('/t', {'data': 1})) == \
        {'op': 'publish', 'topic': '/t', 'msg': {'data': 1}}


# ---- message conversion (duck-typed stand-ins for rosidl classes) --------------------------

class FakeMsg:
    FIELDS = {}

    def __init__(self, **values):
        for name in self.FIELDS:
            setattr(self, name, values.get(name))

    @classmethod
    def get_fields_and_field_types(cls):
        return dict(cls.FIELDS)


class Time(FakeMsg):
    FIELDS = {'sec': 'int32', 'nanosec': 'uint32'}


class Header(FakeMsg):
    FIELDS = {'stamp': 'builtin_interfaces/Time', 'frame_id': 'string'}


class Status(FakeMsg):
    FIELDS = {'level': 'octet', 'name': 'string'}


class Everything(FakeMsg):
    FIELDS = {'header': 'std_msgs/Header', 'data': 'sequence<uint8>', 'raw': 'sequence<octet>',
              'samples': 'sequence<int16>', 'gain': 'float', 'rgb': 'float[3]',
              'status': 'sequence<diagnostic_msgs/DiagnosticStatus>', 'level': 'octet'}


def test_messages_become_json_as_rosbridge_encodes_them():
    msg = Everything(header=Header(stamp=Time(sec=3, nanosec=5), frame_id='f'),
                     data=array.array('B', [1, 2, 255]), raw=[b'\x00', b'\x7f'],
                     samples=array.array('h', [-3, 4]), gain=math.nan, rgb=[0.5, 1.0, 0.0],
                     status=[Status(level=b'\x01', name='eyes')], level=b'\x02')
    out = wp.to_json(msg)
    json.dumps(out, allow_nan=False)        # valid JSON for a browser
    assert out == {'header': {'stamp': {'sec': 3, 'nanosec': 5}, 'frame_id': 'f'},
                   'data': base64.b64encode(bytes([1, 2, 255])).decode(),
                   'raw': base64.b64encode(b'\x00\x7f').decode(),
                   'samples': [-3, 4], 'gain': None, 'rgb': [0.5, 1.0, 0.0],
                   'status': [{'level': 1, 'name': 'eyes'}], 'level': 2}


def test_json_is_prepared_for_set_message_fields():
    template = Everything(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=''),
                          data=array.array('B'), raw=[], samples=array.array('h'), gain=0.0,
                          rgb=[0.0, 0.0, 0.0], status=[], level=b'\x00')
    now = {'sec': 7, 'nanosec': 9}
    out = wp.from_json(template, {'data': base64.b64encode(b'\x01\x02').decode(),
                                  'raw': 'AAE=', 'level': 3, 'samples': [1, 2]}, now)
    assert out == {'data': [1, 2], 'raw': [b'\x00', b'\x01'], 'level': b'\x03',
                   'samples': [1, 2], 'header': {'stamp': now}}
    # a header given without a stamp gets one too; a full header is kept
    assert wp.from_json(template, {'header': {'frame_id': 'x'}}, now)['header'] == \
        {'frame_id': 'x', 'stamp': now}
    assert wp.from_json(template, {'header': {'stamp': {'sec': 1, 'nanosec': 0}}}, now) \
        ['header']['stamp'] == {'sec': 1, 'nanosec': 0}
    with pytest.raises(wp.ProtocolError, match='no field'):
        wp.from_json(template, {'nope': 1})
    with pytest.raises(wp.ProtocolError, match='base64'):
        wp.from_json(template, {'data': '***'})


# ---- QoS -----------------------------------------------------------------------------------

def test_subscription_qos_follows_the_publishers():
    assert wp.choose_qos([]) == ('reliable', 'volatile')
    assert wp.choose_qos([('reliable', 'transient_local')]) == ('reliable', 'transient_local')
    assert wp.choose_qos([('best_effort', 'volatile')]) == ('best_effort', 'volatile')
    assert wp.choose_qos([('reliable', 'transient_local'), ('reliable', 'volatile')]) == \
        ('reliable', 'volatile')
    assert wp.choose_qos([('reliable', 'volatile'), ('best_effort', 'volatile')]) == \
        ('best_effort', 'volatile')


# ---- the outbox ----------------------------------------------------------------------------

def drain(box, now):
    out = []
    while True:
        item, _ = box.pop(now)
        if item is None:
            return out
        out.append(item)


def test_outbox_keeps_arrival_order_across_topics_and_replies():
    box = wp.Outbox()
    assert box.subscribe('/a', 's1', 0, 0) is True
    assert box.subscribe('/b', 's2', 0, 0) is True
    box.push_topic('/a', 'a1')
    box.push_control('reply')
    box.push_topic('/b', 'b1')
    box.push_topic('/a', 'a2')
    assert drain(box, 0.0) == ['a1', 'reply', 'b1', 'a2']
    assert box.push_topic('/c', 'x') is False       # not subscribed


def test_outbox_drops_the_oldest_of_a_full_topic_queue():
    box = wp.Outbox(default_queue=3)
    box.subscribe('/amp', 's', 0, 0)
    for i in range(10):
        box.push_topic('/amp', i)
    assert drain(box, 0.0) == [7, 8, 9]
    assert box.dropped('/amp') == 7
    box.subscribe('/x', 's', 0, 2)                   # queue_length given: it is the bound
    for i in range(5):
        box.push_topic('/x', i)
    assert drain(box, 0.0) == [3, 4]


def test_outbox_throttles_and_keeps_only_the_newest_when_throttled():
    box = wp.Outbox()
    box.subscribe('/amp', 's', 100, 0)              # throttle 100 ms, queue_length 0 -> 1
    for i in range(5):
        box.push_topic('/amp', i)
    assert box.pop(10.0) == (4, None)
    box.push_topic('/amp', 5)
    item, wait = box.pop(10.05)
    assert item is None and wait == pytest.approx(0.05)
    assert box.pop(10.1) == (5, None)
    # a reply is never held back by a throttled topic
    box.push_topic('/amp', 6)
    box.push_control('r')
    assert box.pop(10.15) == ('r', None)


def test_several_subscriptions_to_one_topic_share_it():
    box = wp.Outbox()
    assert box.subscribe('/t', 'fast', 0, 0) is True
    assert box.subscribe('/t', 'slow', 500, 0) is False
    box.push_topic('/t', 1)
    box.push_topic('/t', 2)
    assert drain(box, 0.0) == [1, 2]                 # the lowest throttle wins
    assert box.unsubscribe('/t', 'fast') is False    # 'slow' remains
    box.push_topic('/t', 3)
    box.push_topic('/t', 4)
    assert drain(box, 100.0) == [4]
    assert box.unsubscribe('/t', 'unknown') is False
    assert box.unsubscribe('/t', 'slow') is True
    assert box.topics() == []
    box.subscribe('/u', 'a', 0, 0)
    box.subscribe('/u', 'b', 0, 0)
    assert box.unsubscribe('/u') is True             # no id: all of them


def test_a_client_that_stops_reading_overflows():
    box = wp.Outbox(control_limit=3)
    for _ in range(3):
        box.push_control('x')
    with pytest.raises(wp.Overflow):
        box.push_control('x')


# ---- access --------------------------------------------------------------------------------

def test_binding_beyond_loopback_needs_a_token():
    assert wp.bind_plan('127.0.0.1', None) == ('127.0.0.1', '')
    assert wp.bind_plan('localhost', None) == ('localhost', '')
    assert wp.bind_plan('::1', None) == ('::1', '')
    host, problem = wp.bind_plan('0.0.0.0', None)
    assert host == '127.0.0.1' and 'DROID_DASHBOARD_TOKEN' in problem
    assert wp.bind_plan('0.0.0.0', 's3cret-token') == ('0.0.0.0', '')


def test_tokens_are_read_from_the_url_header_or_cookie():
    assert wp.request_token('/?token=abc', {}) == 'abc'
    assert wp.request_token('/', {'Authorization': 'Bearer xyz'}) == 'xyz'
    assert wp.request_token('/', {'Cookie': f'a=1; {wp.TOKEN_COOKIE}=ck'}) == 'ck'
    assert wp.request_token('/', {}) == ''
    assert wp.token_ok('', None) and wp.token_ok('anything', '')
    assert wp.token_ok('abc', 'abc')
    assert not wp.token_ok('abd', 'abc') and not wp.token_ok('', 'abc')


def test_browsers_may_connect_only_from_the_dashboard_origin():
    assert wp.origin_ok(None, '127.0.0.1:9090')                       # not a browser
    assert wp.origin_ok('http://127.0.0.1:9090', '127.0.0.1:9090')
    assert not wp.origin_ok('http://evil.example', '127.0.0.1:9090')
    assert wp.origin_ok('https://app.foxglove.dev', '127.0.0.1:9090',
                        ['https://app.foxglove.dev'])
    assert wp.origin_ok('http://evil.example', 'x', ['*'])

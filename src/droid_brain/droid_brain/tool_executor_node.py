"""tool_executor: the ToolCall action server that runs the LLM's tools.

Every tool is defined once in :mod:`droid_brain.tools` (pydantic model = JSON schema +
validation). Tools act only through the droid's own interfaces:

=============  ===========================================================
play_music     droid_msgs/action/PlayMusic goal on music/play (succeeds once started)
stop_music     droid_msgs/srv/MusicControl STOP on music/control
set_volume     droid_msgs/srv/MusicControl SET_VOLUME on music/control
set_eyes       droid_msgs/EyeCommand on eyes/command
set_mode       droid_msgs/srv/SetMode on set_mode
set_persona    rcl_interfaces/srv/SetParameters on <brain_node>/set_parameters
get_time       the node clock
=============  ===========================================================

Failures (unknown tool, invalid JSON, out-of-range values, a server that is not there,
a timeout) end the goal as aborted with ``success=false`` and a clear ``error`` for the
model. Goals run concurrently (MultiThreadedExecutor + ReentrantCallbackGroup); long
tools send feedback and honour cancel.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from builtin_interfaces.msg import Duration
from droid_common import names
from droid_common.ros import (
    OK,
    RELIABLE_QOS,
    WARN,
    Diagnostics,
    declare,
    log_prefix,
    run,
)
from droid_common.ros_activity import track_activity
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import ColorRGBA

from droid_brain import tools
from droid_brain.tools import ToolError
from droid_msgs.action import PlayMusic, ToolCall
from droid_msgs.msg import EyeCommand
from droid_msgs.srv import MusicControl, SetMode

MODE_NAMES = {v: k for k, v in tools.MODES.items()}


class _Cancelled(Exception):
    pass


class ToolExecutorNode(Node):
    def __init__(self, node_name: str = 'tool_executor', **kwargs):
        super().__init__(node_name, **kwargs)   # kwargs: namespace, parameter_overrides, ...
        self.p = {
            'brain_node': declare(self, 'brain_node', 'brain',
                                  'Name of the brain node (set_persona calls its '
                                  '<name>/set_parameters service; relative = same namespace)',
                                  read_only=True),
            'service_timeout_s': declare(self, 'service_timeout_s', 2.0,
                                         'Wait for a service/action server to appear, and for '
                                         'a service reply [s]', min_value=0.0, max_value=60.0,
                                         read_only=True),
            'music_start_timeout_s': declare(self, 'music_start_timeout_s', 3.0,
                                             'play_music: wait for the track to start [s]',
                                             min_value=0.0, max_value=60.0, read_only=True),
        }
        self._cb = ReentrantCallbackGroup()
        self.diag = Diagnostics(self, hardware_id='tools')
        self.activity = track_activity(self)
        self.eye_pub = self.create_publisher(EyeCommand, names.EYE_COMMAND, RELIABLE_QOS)
        self.music_client = ActionClient(self, PlayMusic, names.MUSIC_PLAY, callback_group=self._cb)
        self.music_control = self.create_client(MusicControl, names.MUSIC_CONTROL,
                                                callback_group=self._cb)
        self.set_mode_client = self.create_client(SetMode, names.SET_MODE, callback_group=self._cb)
        brain = self.p['brain_node'].rstrip('/')
        self.persona_client = self.create_client(SetParameters, f'{brain}/set_parameters',
                                                 callback_group=self._cb)
        self.handlers = {
            'play_music': self._play_music, 'stop_music': self._stop_music,
            'set_volume': self._set_volume, 'set_eyes': self._set_eyes,
            'set_mode': self._set_mode, 'set_persona': self._set_persona,
            'get_time': self._get_time,
        }
        missing = set(tools.REGISTRY) - set(self.handlers)
        if missing:
            raise RuntimeError(f'tools without a handler: {sorted(missing)}')
        self.server = ActionServer(self, ToolCall, names.TOOL_CALL,
                                   execute_callback=self._execute,
                                   goal_callback=lambda goal: GoalResponse.ACCEPT,
                                   cancel_callback=lambda handle: CancelResponse.ACCEPT,
                                   callback_group=self._cb)
        self.diag.set(OK, f'{len(self.handlers)} tools ready')
        self.get_logger().info('tools: ' + ', '.join(tools.REGISTRY))

    # -- the action ----------------------------------------------------------------------
    def _execute(self, goal_handle):
        req = goal_handle.request
        pre = log_prefix(req.conversation_id)
        result = ToolCall.Result()
        try:
            args = tools.validate(req.tool_name, req.arguments_json)
            value = self.handlers[req.tool_name](goal_handle, args)
            result.success = True
            result.result_json = json.dumps(value)
            goal_handle.succeed()
            self.get_logger().info(f'{pre}{req.tool_name}: ok {result.result_json}')
        except _Cancelled:
            result.success = False
            result.result_json = 'null'
            result.error = f'{req.tool_name} was cancelled'
            goal_handle.canceled()
            self.get_logger().info(f'{pre}{req.tool_name}: cancelled')
        except ToolError as exc:
            result.success = False
            result.result_json = 'null'
            result.error = str(exc)
            goal_handle.abort()
            self.get_logger().warning(f'{pre}{req.tool_name}: {exc}')
        except Exception as exc:  # noqa: BLE001 - a tool never kills the node
            result.success = False
            result.result_json = 'null'
            result.error = f'{req.tool_name} failed: {type(exc).__name__}: {exc}'
            goal_handle.abort()
            self.get_logger().error(f'{pre}{result.error}')
            self.diag.set(WARN, result.error)
        return result

    # -- helpers -------------------------------------------------------------------------
    def _feedback(self, goal_handle, status: str, progress: float = -1.0) -> None:
        goal_handle.publish_feedback(ToolCall.Feedback(status=status, progress=progress))

    def _wait(self, goal_handle, event: threading.Event, timeout: float) -> bool:
        """Wait for ``event``; raise _Cancelled on cancel; False on timeout (node clock, so
        a replay times out at the same sim time; idle meanwhile: droid_common.activity)."""
        self.activity.wait(lambda: event.is_set() or goal_handle.is_cancel_requested,
                           timeout=timeout, poll=0.02, what='tool reply')
        if event.is_set():
            return True
        if goal_handle.is_cancel_requested:
            raise _Cancelled()
        return False

    def _set(self, event: threading.Event) -> None:
        event.set()
        self.activity.notify()

    def _call(self, goal_handle, client, request, what: str):
        timeout = self.p['service_timeout_s']
        if not client.wait_for_service(timeout_sec=timeout):
            raise ToolError(f'{what}: service {client.srv_name} is not available '
                            f'(is its node running?)')
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: self._set(done))
        if not self._wait(goal_handle, done, timeout):
            client.remove_pending_request(future)
            raise ToolError(f'{what}: no reply from {client.srv_name} within {timeout:.1f} s')
        return future.result()

    # -- tools ---------------------------------------------------------------------------
    def _play_music(self, goal_handle, args):
        timeout = self.p['service_timeout_s']
        self._feedback(goal_handle, f'looking for "{args.query}"', 0.0)
        if not self.music_client.wait_for_server(timeout_sec=timeout):
            raise ToolError('play_music: the music player is not available '
                            f'(no action server on {names.MUSIC_PLAY})')
        state = {'feedback': None, 'result': None}
        started = threading.Event()
        accepted = threading.Event()
        box = {}

        def on_feedback(fb):
            state['feedback'] = fb.feedback
            self._set(started)

        def on_result(f):
            try:
                state['result'] = f.result().result
            except Exception as exc:  # noqa: BLE001
                state['result'] = exc
            self._set(started)

        def on_goal(f):
            try:
                box['handle'] = f.result()
            except Exception as exc:  # noqa: BLE001
                box['error'] = exc
            h = box.get('handle')
            if h is not None and h.accepted:
                h.get_result_async().add_done_callback(on_result)
            self._set(accepted)

        goal = PlayMusic.Goal(query=args.query, volume=-1.0, loop=False,
                              conversation_id=goal_handle.request.conversation_id)
        self.music_client.send_goal_async(goal, feedback_callback=on_feedback) \
            .add_done_callback(on_goal)
        try:
            if not self._wait(goal_handle, accepted, timeout):
                raise ToolError(f'play_music: the music player did not answer within {timeout:.1f} s')
            handle = box.get('handle')
            if handle is None or not handle.accepted:
                raise ToolError('play_music: the music player rejected the request'
                                + (f" ({box['error']})" if 'error' in box else ''))
            self._feedback(goal_handle, f'starting "{args.query}"', 0.5)
            self._wait(goal_handle, started, self.p['music_start_timeout_s'])
        except _Cancelled:
            h = box.get('handle')
            if h is not None and h.accepted:
                h.cancel_goal_async()
            raise
        res = state['result']
        if isinstance(res, Exception):
            raise ToolError(f'play_music: {res}')
        if res is not None and not res.success:
            raise ToolError(f'play_music: {res.error or "the track could not be played"}')
        if res is not None:   # finished already (a very short track)
            return {'playing': False, 'finished': True, 'track': res.track_title}
        fb = state['feedback']
        title = fb.track_title if fb is not None else ''
        self._feedback(goal_handle, f'playing {title or args.query}', 1.0)
        return {'playing': True, 'track': title or args.query,
                'duration_s': round(float(fb.duration), 1) if fb is not None else 0.0}

    def _music_control(self, goal_handle, command: int, volume: float = 0.0):
        req = MusicControl.Request(command=command, volume=float(volume))
        res = self._call(goal_handle, self.music_control, req, 'music control')
        if not res.success:
            raise ToolError(f'music control: {res.message or "refused"}')
        return res

    def _stop_music(self, goal_handle, args):
        res = self._music_control(goal_handle, MusicControl.Request.STOP)
        return {'stopped': True, 'message': res.message}

    def _set_volume(self, goal_handle, args):
        res = self._music_control(goal_handle, MusicControl.Request.SET_VOLUME, args.level)
        return {'volume': round(float(res.state.volume), 3), 'message': res.message}

    def _set_eyes(self, goal_handle, args):
        r, g, b = args.rgb
        msg = EyeCommand(conversation_id=goal_handle.request.conversation_id,
                         pattern=tools.EYE_PATTERNS[args.pattern],
                         color=ColorRGBA(r=float(r), g=float(g), b=float(b), a=1.0),
                         brightness=float(args.brightness), speed=0.0)
        nanos = int(round(args.duration * 1e9))
        msg.duration = Duration(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.eye_pub.publish(msg)
        return {'pattern': args.pattern, 'colour': args.colour,
                'rgb': [round(r, 3), round(g, 3), round(b, 3)],
                'brightness': args.brightness, 'duration_s': args.duration}

    def _set_mode(self, goal_handle, args):
        req = SetMode.Request(mode=tools.MODES[args.mode], reason='tool set_mode')
        res = self._call(goal_handle, self.set_mode_client, req, 'set_mode')
        if not res.success:
            raise ToolError(f'set_mode: {res.message or "refused"}')
        return {'mode': MODE_NAMES.get(res.mode, str(res.mode)),
                'previous_mode': MODE_NAMES.get(res.previous_mode, str(res.previous_mode))}

    def _set_persona(self, goal_handle, args):
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=args.name)
        req = SetParameters.Request(parameters=[ParameterMsg(name='persona', value=value)])
        res = self._call(goal_handle, self.persona_client, req, 'set_persona')
        result = res.results[0] if res.results else None
        if result is None or not result.successful:
            raise ToolError(f'set_persona: {result.reason if result else "no result"}')
        return {'persona': args.name.lower()}

    def _get_time(self, goal_handle, args):
        ns = self.get_clock().now().nanoseconds
        t = datetime.fromtimestamp(ns / 1e9, tz=UTC).astimezone()
        hour = t.strftime('%I').lstrip('0') or '12'
        return {'iso': t.isoformat(timespec='seconds'),
                'spoken': f"{hour}:{t.strftime('%M %p')} on {t.strftime('%A, %B')} {t.day}",
                'weekday': t.strftime('%A'), 'unix': round(ns / 1e9, 3)}


def main(args=None):
    run(ToolExecutorNode, args=args,
        executor_factory=lambda: MultiThreadedExecutor(num_threads=8))


if __name__ == '__main__':
    main()

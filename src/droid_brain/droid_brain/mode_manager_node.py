"""mode_manager: the droid's system mode (sleep / idle / ambient / interactive).

Publishes droid_msgs/SystemMode on ``mode`` (latched), serves droid_msgs/srv/SetMode on
``set_mode``. A wake word switches to INTERACTIVE (reason "wake word"); after
``interactive_timeout_s`` without conversation activity (transcriptions, speech events,
reply sentences; never while the droid is speaking) it returns to the mode it came from.
An INTERACTIVE mode set through the service stays until changed. The mode logic is the
plain-Python :class:`droid_brain.modes.ModeMachine`.
"""

from __future__ import annotations

from droid_common import names
from droid_common.contract import constants
from droid_common.ros import (
    LATCHED_QOS,
    OK,
    RELIABLE_QOS,
    Diagnostics,
    check_choice,
    declare,
    now_sec,
    run,
)
from droid_common.ros_activity import track_activity
from rclpy.node import Node

from droid_brain.modes import MODES, ModeMachine
from droid_msgs.msg import (
    ReplySentence,
    SpeechEvent,
    SystemMode,
    Transcription,
    WakeWord,
)
from droid_msgs.srv import SetMode

SPEECH = constants('SpeechEvent')


class ModeManagerNode(Node):
    def __init__(self, node_name: str = 'mode_manager', **kwargs):
        super().__init__(node_name, **kwargs)   # kwargs: namespace, parameter_overrides, ...
        choices = sorted(MODES, key=MODES.get)
        initial = declare(self, 'initial_mode', 'idle', 'Mode at startup', read_only=True,
                          choices=choices)
        check_choice('initial_mode', initial, choices)
        timeout = declare(self, 'interactive_timeout_s', 20.0,
                          'Return from a wake-word INTERACTIVE mode after this long without '
                          'conversation activity [s]; 0 = never', min_value=0.0,
                          max_value=3600.0)
        self.machine = ModeMachine(MODES[initial], timeout, now_sec(self))
        self.diag = Diagnostics(self)
        self.pub = self.create_publisher(SystemMode, names.MODE, LATCHED_QOS)
        self.create_service(SetMode, names.SET_MODE, self._on_set_mode)
        self.create_subscription(WakeWord, names.WAKE_WORD, self._on_wake, RELIABLE_QOS)
        self.create_subscription(Transcription, names.TRANSCRIPTION,
                                 lambda m: self.machine.activity(now_sec(self)), RELIABLE_QOS)
        self.create_subscription(ReplySentence, names.REPLY,
                                 lambda m: self.machine.activity(now_sec(self)), RELIABLE_QOS)
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self._on_speech, RELIABLE_QOS)
        self.add_on_set_parameters_callback(self._on_params)
        self.create_timer(0.1, self._tick)
        self.activity = track_activity(self)   # tells a replay when it is done
        self._publish(self.machine.last_change)
        self.diag.set(OK, f'mode {self.machine.mode_name}')

    def _publish(self, change) -> None:
        msg = SystemMode(mode=change.mode, previous_mode=change.previous, reason=change.reason)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.get_logger().info(f'mode {self.machine.name(change.previous)} -> '
                               f'{self.machine.name(change.mode)} ({change.reason})')
        self.diag.set(OK, f'mode {self.machine.mode_name}')

    def _on_set_mode(self, request, response):
        previous = self.machine.mode
        change, error = self.machine.set(request.mode, request.reason or 'service',
                                         now_sec(self))
        response.previous_mode = previous
        response.mode = self.machine.mode
        response.success = error == ''
        response.message = error or f'mode is {self.machine.mode_name}'
        if change is not None:
            self._publish(change)
        return response

    def _on_wake(self, msg) -> None:
        change = self.machine.wake(now_sec(self))
        if change is not None:
            self._publish(change)

    def _on_speech(self, msg) -> None:
        # RESUMED speaks again; PAUSED holds the voice while the user talks.
        self.machine.speech(msg.event in (SPEECH['STARTED'], SPEECH['RESUMED']), now_sec(self))

    def _on_params(self, params):
        from rcl_interfaces.msg import SetParametersResult
        for p in params:
            if p.name == 'interactive_timeout_s':
                self.machine.timeout = float(p.value)
        return SetParametersResult(successful=True)

    def _tick(self) -> None:
        change = self.machine.tick(now_sec(self))
        if change is not None:
            self._publish(change)


def main(args=None):
    run(ModeManagerNode, args=args)


if __name__ == '__main__':
    main()

"""The part of the ``eyes`` and ``mock_eyes`` node shells they share (imports rclpy).

Both nodes subscribe to the same topics, declare the same expression parameters and
publish the same topics (eye state, trace, diagnostics, and ``eyes/frames``, the frames
written to the device as std_msgs/UInt8MultiArray, one message per frame), so that the
mock keeps exactly the real node's contract. Subclasses implement the output:
:meth:`EyesNodeBase.output_state`, :meth:`EyesNodeBase.output_amplitude`,
:meth:`EyesNodeBase.poll_device` (-> device_connected).
"""

from __future__ import annotations

from droid_common import names
from droid_common.ros import (
    LATCHED_QOS,
    LATCHED_SUB_QOS,
    RELIABLE_QOS,
    SENSOR_QOS,
    Diagnostics,
    declare,
    fail_fast,
    log_prefix,
    now_sec,
    to_sec,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from rclpy.node import Node
from std_msgs.msg import ColorRGBA, UInt8MultiArray

from droid_eyes.expression import (
    BUILTIN_THEMES,
    DEFAULTS,
    DESCRIPTIONS,
    LOOK_KEYS,
    MODES,
    PATTERNS,
    THEME_KEYS,
    Expression,
    ExpressionConfig,
)
from droid_msgs.msg import (
    EyeCommand,
    EyeState,
    Persona,
    ReplySentence,
    Sentiment,
    SpeechAmplitude,
    SpeechEvent,
    SystemMode,
    TraceEvent,
    Transcription,
    WakeWord,
)

# Debug topic: every frame written to the device (droid_common.names has no entry yet).
FRAMES = names.EYE_FRAMES


class RosLogAdapter:
    """The tiny logging.Logger surface droid_eyes.link uses, onto an rclpy logger."""

    def __init__(self, logger):
        self._l = logger

    def info(self, msg):
        self._l.info(str(msg))

    def warning(self, msg):
        self._l.warning(str(msg))

    def error(self, msg):
        self._l.error(str(msg))

    def exception(self, msg):
        self._l.error(str(msg))

    def debug(self, msg):
        self._l.debug(str(msg))


def declare_expression_params(node) -> dict:
    """Declare every expression parameter; return them flat (dotted keys)."""
    flat = {}
    pattern_names = sorted(PATTERNS, key=PATTERNS.get)
    for key in ('default_theme', 'theme_names', 'initial_mode', 'history'):
        kw = {}
        if key == 'initial_mode':
            kw['choices'] = list(MODES)
        if key == 'history':
            kw.update(min_value=1, max_value=10000)
        flat[key] = declare(node, key, DEFAULTS[key], DESCRIPTIONS[key], read_only=True, **kw)
    for look in LOOK_KEYS:
        what = look.replace('.', ' ')
        flat[f'{look}.pattern'] = declare(
            node, f'{look}.pattern', DEFAULTS[f'{look}.pattern'],
            f'pattern shown for {what} (an EyeCommand PATTERN_* name, lower case)',
            choices=pattern_names, read_only=True)
        flat[f'{look}.brightness'] = declare(
            node, f'{look}.brightness', DEFAULTS[f'{look}.brightness'],
            f'brightness for {what}, 0..1', min_value=0.0, max_value=1.0, read_only=True)
        flat[f'{look}.speed'] = declare(
            node, f'{look}.speed', DEFAULTS[f'{look}.speed'],
            f'animation speed for {what} [Hz]; 0 = pattern default',
            min_value=0.0, max_value=50.0, read_only=True)
    for key in ('sentiment.hold', 'sentiment.timeout', 'listening.timeout', 'thinking.timeout',
                'speaking.gap_hold'):
        flat[key] = declare(node, key, DEFAULTS[key], DESCRIPTIONS[key] + ' [s]',
                            min_value=0.0, max_value=3600.0, read_only=True)
    default_theme = flat['default_theme']
    for name in list(flat['theme_names']) + [default_theme]:
        builtin = BUILTIN_THEMES.get(name, BUILTIN_THEMES.get(default_theme,
                                                              BUILTIN_THEMES['default']))
        for key in THEME_KEYS:
            pname = f'themes.{name}.{key}'
            if node.has_parameter(pname):
                continue
            value = declare(node, pname, [float(v) for v in builtin[key]],
                            f'colour [r, g, b] (0..1) of theme {name} for {key}',
                            read_only=True, dynamic_type=True)
            flat[pname] = [float(v) for v in value]
    return flat


class EyesNodeBase(Node):
    """Subscriptions, expression, eye state, trace and diagnostics of the eyes nodes."""

    HARDWARE_ID = 'eyes'

    def __init__(self, node_name: str = 'eyes'):
        super().__init__(node_name)
        self.activity = track_activity(self)   # tells a replay when it is done
        flat = declare_expression_params(self)
        try:
            self.config = ExpressionConfig.from_flat(flat)
        except (ValueError, KeyError, TypeError) as exc:
            fail_fast(self, f'bad eye expression parameters: {exc}')
        self.update_period = declare(self, 'update_period', 0.05,
                                     'period of the timer that expires timed looks and polls '
                                     'the device [s]', min_value=0.005, max_value=1.0,
                                     read_only=True)
        self.declare_node_params()
        self.expr = Expression(self.config, now_sec(self))
        self._connected = False
        self.state_pub = self.create_publisher(EyeState, names.EYE_STATE, LATCHED_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        self.frames_pub = self.create_publisher(UInt8MultiArray, FRAMES, 10)
        self.diag = Diagnostics(self, hardware_id=self.HARDWARE_ID)
        # Upstream first: messages that arrive together are handled in the order of
        # creation, so the wake word comes before the mode change it caused (a replay
        # gives the same eyes on a loaded machine).
        self.create_subscription(WakeWord, names.WAKE_WORD, self._on_wake, RELIABLE_QOS)
        self.create_subscription(Transcription, names.TRANSCRIPTION, self._on_transcription,
                                 RELIABLE_QOS)
        self.create_subscription(SystemMode, names.MODE, self._on_mode, LATCHED_SUB_QOS)
        self.create_subscription(ReplySentence, names.REPLY, self._on_reply, RELIABLE_QOS)
        self.create_subscription(Sentiment, names.SENTIMENT, self._on_sentiment, RELIABLE_QOS)
        self.create_subscription(EyeCommand, names.EYE_COMMAND, self._on_command, RELIABLE_QOS)
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self._on_speech, RELIABLE_QOS)
        self.create_subscription(SpeechAmplitude, names.AMPLITUDE, self._on_amplitude, SENSOR_QOS)
        self.create_subscription(Persona, names.PERSONA, self._on_persona, LATCHED_SUB_QOS)
        self.start_output()
        self.output_state(self.expr.look)
        self._publish_state()
        self.create_timer(self.update_period, self._on_timer)

    # ---- for subclasses -----------------------------------------------------------------
    def declare_node_params(self) -> None:
        pass

    def start_output(self) -> None:
        pass

    def output_state(self, look) -> None:
        raise NotImplementedError

    def output_amplitude(self, amplitude: float) -> None:
        raise NotImplementedError

    def poll_device(self) -> bool:
        """Update diagnostics; return device_connected."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def publish_frame(self, data: bytes) -> None:
        msg = UInt8MultiArray()
        msg.data = bytes(data)
        self.frames_pub.publish(msg)

    # ---- callbacks ----------------------------------------------------------------------
    def _now(self) -> float:
        return now_sec(self)

    def _stamp(self, msg) -> float:
        """The message's stamp in seconds; an unset (zero) stamp counts as received now."""
        t = to_sec(msg.header.stamp)
        return t if t > 0.0 else self._now()

    def _apply(self, change, why: str = '', stamp_msg=None) -> None:
        """Output a change; ``stamp_msg`` is the triggering message's exact stamp (the
        expression works in float seconds, which lose ~100 ns at epoch scale)."""
        if change is None:
            if self.expr.last_ignored and why:
                self.get_logger().debug(f'{why}: ignored ({self.expr.last_ignored})')
            return
        look = change.look
        self.get_logger().debug(f'{log_prefix(look.conversation_id)}eyes -> {look.describe()} '
                                f'({why})')
        self.output_state(look)
        self._publish_state()
        if change.trace is not None:
            cid, utterance, input_stamp = change.trace
            msg = TraceEvent()
            msg.header.stamp = self.get_clock().now().to_msg()
            msg.conversation_id = cid
            msg.utterance_id = int(utterance)
            msg.stage = TraceEvent.STAGE_EYES_REACTED
            msg.input_stamp = stamp_msg if stamp_msg is not None else to_time_msg(input_stamp)
            msg.node = self.get_fully_qualified_name()
            msg.detail = look.describe()
            self.trace_pub.publish(msg)

    def _publish_state(self) -> None:
        # Under a replay, once per tick: the look the tick's events led to, whatever order
        # they were handled in (droid_common.activity.defer).
        self.activity.defer('eyes/state', self._publish_state_now)

    def _publish_state_now(self) -> None:
        look = self.expr.look
        msg = EyeState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.conversation_id = look.conversation_id
        msg.pattern = int(look.pattern)
        r, g, b = look.color
        msg.color = ColorRGBA(r=float(r), g=float(g), b=float(b), a=1.0)
        msg.brightness = float(look.brightness)
        msg.speed = float(look.speed)
        msg.source = int(look.source)
        msg.device_connected = bool(self._connected)
        self.state_pub.publish(msg)

    def _on_timer(self) -> None:
        self._apply(self.expr.tick(self._now()), 'timer')
        connected = bool(self.poll_device())
        if connected != self._connected:
            self._connected = connected
            self._publish_state()

    def _on_sentiment(self, msg: Sentiment) -> None:
        self._apply(self.expr.on_sentiment(msg.conversation_id, msg.utterance_id, msg.label,
                                           msg.score, self._stamp(msg), self._now()),
                    'sentiment', msg.header.stamp)

    def _on_speech(self, msg: SpeechEvent) -> None:
        self._apply(self.expr.on_speech(msg.conversation_id, msg.utterance_id,
                                        msg.sentence_index, msg.event, msg.last_in_reply,
                                        self._stamp(msg), self._now()), 'speech',
                    msg.header.stamp)

    def _on_amplitude(self, msg: SpeechAmplitude) -> None:
        value = self.expr.on_amplitude(msg.conversation_id, msg.amplitude,
                                       self._stamp(msg))
        if value is not None:
            self.output_amplitude(value)

    def _on_mode(self, msg: SystemMode) -> None:
        self._apply(self.expr.on_mode(msg.mode, self._stamp(msg), self._now()), 'mode',
                    msg.header.stamp)

    def _on_command(self, msg: EyeCommand) -> None:
        duration = msg.duration.sec + msg.duration.nanosec * 1e-9
        c = msg.color
        self._apply(self.expr.on_command(msg.conversation_id, msg.pattern, (c.r, c.g, c.b),
                                         msg.brightness, msg.speed, duration,
                                         self._stamp(msg), self._now()), 'command',
                    msg.header.stamp)

    def _on_persona(self, msg: Persona) -> None:
        c = msg.eye_color
        self._apply(self.expr.on_persona(msg.eye_theme, (c.r, c.g, c.b),
                                         self._stamp(msg), self._now()), 'persona',
                    msg.header.stamp)

    def _on_wake(self, msg: WakeWord) -> None:
        self._apply(self.expr.on_wake(msg.conversation_id, self._stamp(msg),
                                      self._now()), 'wake word', msg.header.stamp)

    def _on_transcription(self, msg: Transcription) -> None:
        self._apply(self.expr.on_transcription(msg.conversation_id, msg.utterance_id,
                                               msg.is_final, self._stamp(msg),
                                               self._now()), 'transcription',
                    msg.header.stamp)

    def _on_reply(self, msg: ReplySentence) -> None:
        self._apply(self.expr.on_reply(msg.conversation_id, msg.utterance_id, msg.is_final,
                                       msg.interrupted, self._stamp(msg), self._now()),
                    'reply', msg.header.stamp)

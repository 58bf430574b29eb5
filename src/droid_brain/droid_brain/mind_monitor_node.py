"""mind_monitor: on a body whose mind runs on another host, watch the link to the mind.

Started by ``droid.launch.py role:=body`` only. Every ``ping_period_s`` it calls the
``get_parameters`` service of each node in ``mind_nodes`` (relative names: the body's own
namespace, so a fleet's bodies each watch their own mind). The plain-Python
:class:`droid_brain.mind_link.MindLink` turns the answers into waiting / up / lost.

While the mind is not reachable:

* ``/diagnostics`` says WARN with the silent nodes (within ``lost_after_s`` plus one tick);
* the eyes show the "no brain" look: an ``eyes/command`` renewed every ``ping_period_s``
  with a short duration, so the eyes return to normal by themselves once it stops;
* when the user talks (an utterance ends on ``audio/utterance``, or a final typed line
  arrives on ``speech/transcription``) the droid says the active persona's
  ``fallback_line`` locally through the ``voice/speak`` action.

When the mind answers again the look is cleared at once, ``/diagnostics`` says OK and
the log gives the length of the outage.
"""

from __future__ import annotations

from droid_common import names
from droid_common.contract import constants, constants_with_prefix
from droid_common.ros import (
    LATCHED_QOS,
    OK,
    RELIABLE_QOS,
    WARN,
    Diagnostics,
    check_choice,
    declare,
    now_sec,
    run,
)
from droid_common.ros_activity import track_activity
from rcl_interfaces.srv import GetParameters
from rclpy.action import ActionClient
from rclpy.node import Node
from std_msgs.msg import ColorRGBA

from droid_brain.mind_link import UP, WAITING, FallbackGate, MindLink
from droid_brain.personas import DEFAULTS, default_persona_dir, load_persona_dir, resolve
from droid_msgs.action import Speak
from droid_msgs.msg import EyeCommand, Persona, Transcription, Utterance

PATTERNS = constants_with_prefix('EyeCommand', 'PATTERN_')
UTTERANCE = constants('Utterance')


class MindMonitorNode(Node):
    def __init__(self, node_name: str = 'mind_monitor', **kwargs):
        super().__init__(node_name, **kwargs)   # kwargs: namespace, parameter_overrides, ...
        p = {}
        p['mind_nodes'] = declare(self, 'mind_nodes', ['stt', 'brain', 'tool_executor'],
                                  'Nodes of the mind pinged through their get_parameters '
                                  'service (relative = this namespace)', read_only=True)
        p['ping_period_s'] = declare(self, 'ping_period_s', 0.5, 'Ping period per node [s]',
                                     min_value=0.02, max_value=10.0, read_only=True)
        p['lost_after_s'] = declare(self, 'lost_after_s', 1.5,
                                    'A node silent this long = the mind is unreachable [s] '
                                    '(longer than ping_period_s)',
                                    min_value=0.05, max_value=60.0, read_only=True)
        p['look_pattern'] = declare(self, 'look_pattern', 'spin',
                                    "Eye pattern while the mind is unreachable ('none' = leave "
                                    'the eyes alone)', read_only=True,
                                    choices=sorted(PATTERNS) + ['none'])
        p['look_color'] = declare(self, 'look_color', [1.0, 0.25, 0.0],
                                  'Eye colour [r, g, b] in [0, 1] while the mind is unreachable',
                                  read_only=True)
        p['look_brightness'] = declare(self, 'look_brightness', 0.5,
                                       'Eye brightness while the mind is unreachable',
                                       min_value=0.0, max_value=1.0, read_only=True)
        p['fallback_cooldown_s'] = declare(self, 'fallback_cooldown_s', 5.0,
                                           'Say the fallback line at most once per this long '
                                           '[s]', min_value=0.0, max_value=600.0,
                                           read_only=True)
        p['default_persona'] = declare(self, 'default_persona', 'rex',
                                       'Persona whose fallback line is said before the brain '
                                       'announced one', read_only=True)
        p['persona_dir'] = declare(self, 'persona_dir', '',
                                   "Directory of persona YAML files; '' = the package's",
                                   read_only=True)
        self.p = p
        check_choice('look_pattern', p['look_pattern'], sorted(PATTERNS) + ['none'])
        color = list(p['look_color'])
        if len(color) != 3 or not all(0.0 <= float(c) <= 1.0 for c in color):
            raise ValueError(f"parameter 'look_color' must be [r, g, b] in [0, 1], got {color}")
        self.look_color = ColorRGBA(r=float(color[0]), g=float(color[1]), b=float(color[2]),
                                    a=1.0)

        self.link = MindLink(p['mind_nodes'], p['ping_period_s'], p['lost_after_s'],
                             now_sec(self))
        self.gate = FallbackGate(p['fallback_cooldown_s'])
        self.persona = p['default_persona']
        self._personas, errors = load_persona_dir(p['persona_dir'] or default_persona_dir())
        for err in errors:
            self.get_logger().warning(f'persona: {err}')

        self.diag = Diagnostics(self, hardware_id='network')
        self.clients_ = {n: self.create_client(GetParameters, f'{n}/get_parameters')
                         for n in self.link.nodes}
        self._pending = {n: [] for n in self.link.nodes}     # [(future, sent_at)]
        self.eye_pub = self.create_publisher(EyeCommand, names.EYE_COMMAND, RELIABLE_QOS)
        self.speak = ActionClient(self, Speak, names.SPEAK)
        self.create_subscription(Persona, names.PERSONA, self._on_persona, LATCHED_QOS)
        self.create_subscription(Utterance, names.UTTERANCE, self._on_utterance, RELIABLE_QOS)
        self.create_subscription(Transcription, names.TRANSCRIPTION, self._on_transcription,
                                 RELIABLE_QOS)
        self._last_look = None
        self.create_timer(min(0.05, p['ping_period_s'] / 2), self._tick)
        self.activity = track_activity(self)   # tells a replay when it is done
        self.diag.set(WARN, self.link.describe(now_sec(self)), component='mind',
                      **self._values())
        self.get_logger().info(f"watching the mind: {', '.join(self.link.nodes)} "
                               f"(lost after {p['lost_after_s']} s)")

    # -- pings ------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = now_sec(self)
        for node in self.link.due(now):
            client = self.clients_[node]
            if not client.service_is_ready():
                continue                      # not discovered (yet / any more): no answer
            future = client.call_async(GetParameters.Request(names=[]))
            future.add_done_callback(lambda f, n=node, t=now: self._answered(n, t, f))
            self._pending[node].append((future, now))
        self._prune(now)
        change = self.link.tick(now)
        if change is not None:
            self._changed(change, now)
        if not self.link.reachable:
            self._show_look(now)

    def _answered(self, node: str, sent_at: float, future) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        self.link.answered(node, sent_at, now_sec(self))

    def _prune(self, now: float) -> None:
        """Forget pings older than lost_after_s (their answers no longer matter)."""
        for node, pending in self._pending.items():
            keep = []
            for future, sent in pending:
                if future.done():
                    continue
                if now - sent > self.p['lost_after_s']:
                    self.clients_[node].remove_pending_request(future)
                    future.cancel()
                else:
                    keep.append((future, sent))
            self._pending[node] = keep

    def _values(self) -> dict:
        rtt = self.link.rtt_ms()
        values = {f'rtt_ms {n}': ('-' if v is None else f'{v:.1f}') for n, v in rtt.items()}
        values['state'] = self.link.state
        values['outages'] = str(len(self.link.outages))
        if self.link.outages:
            values['last_outage_s'] = f'{self.link.outages[-1]:.2f}'
        return values

    def _changed(self, change, now: float) -> None:
        log = self.get_logger()
        message = self.link.describe(now)
        if change.state == UP:
            self.diag.set(OK, message, component='mind', **self._values())
            if change.previous == WAITING:
                log.info(f'{message}, after {change.outage_s:.2f} s')
            else:
                log.warning(f'mind reachable again after {change.outage_s:.2f} s')
            self._clear_look(now)
        else:
            self.diag.set(WARN, message, component='mind', **self._values())
            log.warning(f'{message} for {self.link.silent_for(now):.2f} s: the droid cannot '
                        'answer until it is back')

    # -- eyes -------------------------------------------------------------------------------
    def _eye_command(self, duration_s: float) -> EyeCommand:
        msg = EyeCommand(pattern=PATTERNS[self.p['look_pattern']], color=self.look_color,
                         brightness=float(self.p['look_brightness']))
        msg.duration.sec = int(duration_s)
        msg.duration.nanosec = int(round((duration_s - int(duration_s)) * 1e9))
        msg.header.stamp = self.get_clock().now().to_msg()
        return msg

    def _show_look(self, now: float) -> None:
        if self.p['look_pattern'] == 'none':
            return
        period = self.p['ping_period_s']
        if self._last_look is not None and now - self._last_look < period:
            return
        self._last_look = now
        # Renewed while the mind is away; expires by itself (4 periods) if we stop.
        self.eye_pub.publish(self._eye_command(max(1.0, 4 * period)))

    def _clear_look(self, now: float) -> None:
        if self.p['look_pattern'] == 'none' or self._last_look is None:
            return
        self._last_look = None
        self.eye_pub.publish(self._eye_command(0.001))   # supersedes the look, ends at once

    # -- the user talks while the mind is away ------------------------------------------------
    def _on_persona(self, msg: Persona) -> None:
        if msg.name:
            self.persona = msg.name

    def _on_utterance(self, msg: Utterance) -> None:
        if msg.state == UTTERANCE['ENDED']:
            self._user_spoke(msg.conversation_id, msg.utterance_id)

    def _on_transcription(self, msg: Transcription) -> None:
        if msg.is_final and msg.text.strip():
            self._user_spoke(msg.conversation_id, msg.utterance_id)

    def fallback_line(self) -> str:
        fields = self._personas.get(self.persona.strip().lower())
        line = resolve(fields).fallback_line if fields else ''
        return line or DEFAULTS['fallback_line']

    def _user_spoke(self, cid: str, utterance: int) -> None:
        now = now_sec(self)
        if self.link.reachable or not self.gate.should_speak((cid, utterance), now):
            return
        if not self.speak.server_is_ready():
            self.get_logger().warning('mind unreachable and no tts to say so (voice/speak)')
            return
        line = self.fallback_line()
        self.get_logger().info(f"mind unreachable: saying {self.persona}'s fallback line")
        self.speak.send_goal_async(Speak.Goal(text=line, conversation_id=cid,
                                              utterance_id=utterance))


def main(args=None):
    run(MindMonitorNode, args=args)


if __name__ == '__main__':
    main()

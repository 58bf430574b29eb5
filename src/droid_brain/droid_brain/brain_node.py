"""brain: final transcriptions in -> streamed reply sentences, sentiment and tool calls out.

Thin rclpy shell around :mod:`droid_brain.engine`: the LLM streams on the engine's worker
thread (never on a callback); callbacks only hand turns over (latest wins) or cancel.

Subscribes: speech/transcription (finals; partials for preemptive generation),
voice/speech_event (INTERRUPTED = barge-in), audio/wake_word (a new conversation cancels the
old reply), audio/utterance (for preemptive generation: the voiced audio so far, and ENDED,
the end of the user's turn).

Preemptive generation (:mod:`droid_brain.preemptive`): when the user pauses and a partial
covers all the speech so far (``preemptive_on_pause``), when the end of the turn is known
(the listener ended the utterance) or the latest partial has been stable for
``preemptive_stable_ms``, the LLM request starts from that partial as a tentative turn;
voice after the pause cancels a reply started there;
the final transcription keeps it when the words match (its held sentences go out at once)
or cancels it and starts again from the final. Nothing of a discarded reply is published.
Publishes: brain/reply, brain/sentiment, brain/persona (latched), trace, /diagnostics.
Action client: tools/call (droid_msgs/action/ToolCall).
"""

from __future__ import annotations

import threading
from pathlib import Path

from builtin_interfaces.msg import Time as TimeMsg
from droid_common import names
from droid_common.contract import constants
from droid_common.ros import (
    ERROR,
    LATCHED_QOS,
    OK,
    RELIABLE_QOS,
    WARN,
    Diagnostics,
    check_choice,
    declare,
    log_prefix,
    now_sec,
    run,
    to_sec,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from droid_common.secrets import env_secret, redact
from droid_common.turn_taking import DEFAULT_MIN_WORDS, confirms_barge_in
from rcl_interfaces.msg import SetParametersResult
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import ColorRGBA

from droid_brain import sentiment, tools
from droid_brain.clock import FuncClock
from droid_brain.engine import Engine, Sink, Turn, TurnWorker
from droid_brain.memory import SessionMemory, TokenCounter
from droid_brain.mock_llm import MockBackend, MockScript, MockScriptError
from droid_brain.preemptive import KEEP, RESTART, Preemptor, ReplyGate
from droid_brain.personas import (
    PersonaError,
    PersonaStore,
    default_persona_dir,
    default_state_file,
)
from droid_brain.retry import RetryPolicy
from droid_brain.stream import ToolResult
from droid_brain.turns import TurnTracker
from droid_msgs.action import ToolCall
from droid_msgs.msg import (
    Persona,
    ReplySentence,
    Sentiment,
    SpeechEvent,
    TraceEvent,
    Transcription,
    Utterance,
    WakeWord,
)

TRACE = constants('TraceEvent')
SPEECH = constants('SpeechEvent')
BACKENDS = ('openai', 'mock')
_LEVELS = {'ok': OK, 'warn': WARN, 'error': ERROR}


def _share_file(*parts) -> str:
    """A file of this package: the source tree's, else the installed share directory's."""
    src = Path(__file__).resolve().parent.parent.joinpath(*parts)
    if src.exists():
        return str(src)
    try:
        from ament_index_python.packages import get_package_share_directory
        return str(Path(get_package_share_directory('droid_brain')).joinpath(*parts))
    except Exception:  # noqa: BLE001
        return str(src)


class _NodeSink(Sink):
    """Engine output -> ROS messages (called on the worker thread)."""

    def __init__(self, node: BrainNode):
        self.node = node

    def sentence(self, turn, index, text, persona):
        n = self.node
        msg = ReplySentence(conversation_id=turn.conversation_id,
                            utterance_id=turn.utterance_id, index=index, text=text,
                            is_final=False, interrupted=False, persona=persona)
        msg.header.stamp = n.get_clock().now().to_msg()
        n.remember_said(turn, index, text)
        n.reply_pub.publish(msg)
        n.get_logger().debug(f'{log_prefix(turn.conversation_id)}say[{index}]: {text}')

    def end(self, turn, index, interrupted, reply_text, persona):
        n = self.node
        msg = ReplySentence(conversation_id=turn.conversation_id,
                            utterance_id=turn.utterance_id, index=index, text='',
                            is_final=True, interrupted=interrupted, persona=persona)
        msg.header.stamp = n.get_clock().now().to_msg()
        n.reply_pub.publish(msg)
        if reply_text:
            label, score = sentiment.analyse(reply_text)
            s = Sentiment(conversation_id=turn.conversation_id,
                          utterance_id=turn.utterance_id, label=label, score=score)
            s.header.stamp = n.get_clock().now().to_msg()
            n.sentiment_pub.publish(s)
        how = ''
        if interrupted:
            how = ', interrupted' + (f': {turn.cancel_reason}' if turn.cancel_reason else '')
        shown = reply_text if len(reply_text) <= 300 else reply_text[:297] + '...'
        n.get_logger().info(f'{log_prefix(turn.conversation_id)}reply ({index} sentences'
                            f'{how}): {shown}')

    def trace(self, turn, stage, detail='', at=None):
        n = self.node
        msg = TraceEvent(conversation_id=turn.conversation_id, utterance_id=turn.utterance_id,
                         stage=TRACE['STAGE_' + stage], node=n.get_fully_qualified_name(),
                         detail=detail[:200])
        msg.header.stamp = n.get_clock().now().to_msg() if at is None else to_time_msg(at)
        if turn.input_stamp_ns is not None:
            ns = turn.input_stamp_ns
            msg.input_stamp = TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        else:
            msg.input_stamp = to_time_msg(turn.input_stamp)
        n.trace_pub.publish(msg)

    def status(self, level, message):
        self.node.set_llm_status(level, message)


class BrainNode(Node):
    def __init__(self, node_name: str = 'brain', **kwargs):
        super().__init__(node_name, **kwargs)   # kwargs: namespace, parameter_overrides, ...
        log = self.get_logger()
        p = {}
        p['backend'] = declare(self, 'backend', 'openai',
                               "LLM backend: 'openai' (any OpenAI-compatible server) or 'mock'",
                               read_only=True, choices=BACKENDS)
        check_choice('backend', p['backend'], BACKENDS)
        p['base_url'] = declare(self, 'base_url', 'https://api.openai.com/v1',
                                'OpenAI-compatible API base URL (Ollama: http://localhost:11434/v1)',
                                read_only=True)
        p['model'] = declare(self, 'model', 'gpt-4o-mini', 'Chat model name', read_only=True)
        p['temperature'] = declare(self, 'temperature', 0.7, 'Sampling temperature',
                                   min_value=0.0, max_value=2.0, read_only=True)
        p['max_tokens'] = declare(self, 'max_tokens', 300, 'Maximum tokens per LLM response',
                                  min_value=1, max_value=32768, read_only=True)
        p['request_timeout_s'] = declare(self, 'request_timeout_s', 15.0,
                                         'Timeout of one LLM request (connect and each read) [s]',
                                         min_value=0.1, max_value=600.0, read_only=True)
        p['max_retries'] = declare(self, 'max_retries', 2,
                                   'Retries of a failed LLM request (5xx, 429, timeout)',
                                   min_value=0, max_value=10, read_only=True)
        p['retry_base_delay_s'] = declare(self, 'retry_base_delay_s', 0.5,
                                          'First retry backoff, doubled per retry [s]',
                                          min_value=0.0, max_value=30.0, read_only=True)
        p['retry_max_delay_s'] = declare(self, 'retry_max_delay_s', 4.0,
                                         'Longest retry backoff (also caps Retry-After) [s]',
                                         min_value=0.0, max_value=120.0, read_only=True)
        p['max_tool_rounds'] = declare(self, 'max_tool_rounds', 3,
                                       'LLM rounds with tools offered per turn',
                                       min_value=0, max_value=10, read_only=True)
        p['barge_in_min_words'] = declare(self, 'barge_in_min_words', DEFAULT_MIN_WORDS,
                                          'A final transcription said over the droid starts a '
                                          'new turn only with this many real words (not uh-huh, '
                                          'mm, yeah) or a command word; keep equal to the '
                                          "tts's", min_value=1, max_value=10, read_only=True)
        p['filler_after_s'] = declare(self, 'filler_after_s', 1.5,
                                      "A tool still running after this long gets the persona's "
                                      'filler line once, so there is no dead air [s] (0 = off)',
                                      min_value=0.0, max_value=60.0, read_only=True)
        p['token_budget'] = declare(self, 'token_budget', 4000,
                                    'Session memory budget [tokens], trimmed after each turn',
                                    min_value=200, max_value=1000000, read_only=True)
        p['sentence_max_chars'] = declare(self, 'sentence_max_chars', 200,
                                          'Cut a sentence without a stop beyond this length',
                                          min_value=20, max_value=2000, read_only=True)
        p['first_clause_chars'] = declare(self, 'first_clause_chars', 60,
                                          "The reply's first sentence ends at the first "
                                          'clause boundary (, ; : dash) after this many '
                                          'characters, so speech starts sooner (0 = whole '
                                          'sentences)', min_value=0, max_value=2000,
                                          read_only=True)
        p['preemptive_generation'] = declare(self, 'preemptive_generation', False,
                                             'Start the LLM request from the latest partial '
                                             'transcription when the end of the turn is known '
                                             '(or the partial is stable), keep it if the final '
                                             'says the same words, else restart (on in the '
                                             'real profile)', read_only=True)
        p['preemptive_stable_ms'] = declare(self, 'preemptive_stable_ms', 0.0,
                                            'Also start preemptively when the latest partial '
                                            'has not changed for this long [ms] (0 = only at '
                                            'the end of the turn)', min_value=0.0,
                                            max_value=10000.0, read_only=True)
        p['preemptive_on_pause'] = declare(self, 'preemptive_on_pause', True,
                                           'With preemptive generation: also start as soon as '
                                           'a partial covers all the speech so far and the user '
                                           'paused (before the listener decides the turn is '
                                           'over; voice after the pause cancels it)',
                                           read_only=True)
        p['tool_timeout_s'] = declare(self, 'tool_timeout_s', 20.0,
                                      'Longest wait for one ToolCall result [s]',
                                      min_value=0.1, max_value=600.0, read_only=True)
        p['tool_server_timeout_s'] = declare(self, 'tool_server_timeout_s', 2.0,
                                             'Wait for the tool executor to be available [s]',
                                             min_value=0.0, max_value=60.0, read_only=True)
        p['persona'] = declare(self, 'persona', '',
                               "Active persona (file stem in persona_dir); '' = the saved "
                               'choice, else default_persona. Settable at run time.')
        p['default_persona'] = declare(self, 'default_persona', 'rex',
                                       'Persona used when nothing is saved', read_only=True)
        p['persona_dir'] = declare(self, 'persona_dir', '',
                                   "Directory of persona YAML files; '' = the package's",
                                   read_only=True)
        p['state_file'] = declare(self, 'state_file', '',
                                  "User state file (active persona); '' = "
                                  '$XDG_CONFIG_HOME/droid/brain_state.yaml, or '
                                  '$XDG_CONFIG_HOME/droid/<namespace>/brain_state.yaml in a '
                                  'namespace', read_only=True)
        p['mock_time_to_first_token_s'] = declare(
            self, 'mock_time_to_first_token_s', 0.3, 'Mock backend: delay of the first token [s]',
            min_value=0.0, max_value=60.0, read_only=True)
        p['mock_token_rate'] = declare(self, 'mock_token_rate', 30.0,
                                       'Mock backend: tokens per second (0 = unpaced)',
                                       min_value=0.0, max_value=100000.0, read_only=True)
        p['mock_script'] = declare(self, 'mock_script', '',
                                   "Mock backend: reply script YAML; '' = the package's",
                                   read_only=True)
        self.p = p

        self.diag = Diagnostics(self, hardware_id='llm')
        self.activity = track_activity(self)
        self._cb = ReentrantCallbackGroup()
        self.reply_pub = self.create_publisher(ReplySentence, names.REPLY, RELIABLE_QOS)
        self.sentiment_pub = self.create_publisher(Sentiment, names.SENTIMENT, RELIABLE_QOS)
        self.persona_pub = self.create_publisher(Persona, names.PERSONA, LATCHED_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        self.tool_client = ActionClient(self, ToolCall, names.TOOL_CALL, callback_group=self._cb)

        # Personas (defaults -> user overrides -> persona) and the saved choice.
        persona_dir = p['persona_dir'] or default_persona_dir()
        state_file = p['state_file'] or default_state_file(self.get_namespace())
        self.personas = PersonaStore(persona_dir, state_file, p['default_persona'])
        for err in self.personas.errors:
            log.error(err)
        persona, warnings = self.personas.startup(p['persona'])
        for w in warnings:
            log.warning(f'persona: {w}')
        if self.personas.errors:
            self.diag.set(WARN, self.personas.errors[0], component='persona')
        else:
            self.diag.set(OK, f'persona {persona.name}', component='persona')
        log.info(f"persona '{persona.name}' ({persona.display_name}); available: "
                 f"{', '.join(self.personas.names) or '(none)'}")

        self._droid_speaking = False     # from SpeechEvents: STARTED .. last ENDED/INTERRUPTED
        self._said: dict = {}            # (conversation_id, utterance_id) -> {index: text}
        self._said_lock = threading.Lock()
        self.memory = SessionMemory(persona.system_prompt, p['token_budget'],
                                    TokenCounter(logger=log))
        self.backend = self._make_backend()
        self.engine = Engine(
            self.backend, self.memory, _NodeSink(self), tool_runner=self._run_tools,
            tools_schema=tools.openai_tools(),
            clock=FuncClock(lambda: now_sec(self), activity=self.activity),
            retry=RetryPolicy(p['max_retries'], p['retry_base_delay_s'], 2.0,
                              p['retry_max_delay_s']),
            max_tool_rounds=p['max_tool_rounds'], sentence_max_chars=p['sentence_max_chars'],
            persona=lambda: self.personas.active, logger=log,
            filler_after_s=p['filler_after_s'], first_clause_chars=p['first_clause_chars'],
            activity=self.activity)
        self.worker = TurnWorker(self.engine, on_dropped=self._dropped, logger=log)
        self.turns = TurnTracker()
        self.preemptor = Preemptor(p['preemptive_stable_ms'] / 1000.0,
                                   enabled=p['preemptive_generation'],
                                   on_pause=p['preemptive_on_pause'])
        self._preempt_cond = threading.Condition()
        self._closing = False
        self._preempt_thread = None
        if p['preemptive_generation'] and p['preemptive_stable_ms'] > 0:
            self._preempt_thread = threading.Thread(target=self._preempt_loop,
                                                    name='brain-preempt', daemon=True)
            self._preempt_thread.start()
        self.diag.set(OK, 'preemptive generation ' + ('on' if p['preemptive_generation']
                                                      else 'off'), component='preemptive')

        self.add_on_set_parameters_callback(self._check_params)
        self.add_post_set_parameters_callback(self._apply_params)
        if persona.name != p['persona']:
            self.set_parameters([Parameter('persona', value=persona.name)])
        self._publish_persona(persona)

        # Upstream first (the order simultaneous messages are handled in): wake word,
        # transcription, then the droid's own speech events.
        self.create_subscription(WakeWord, names.WAKE_WORD, self._on_wake, RELIABLE_QOS,
                                 callback_group=self._cb)
        self.create_subscription(Transcription, names.TRANSCRIPTION, self._on_transcription,
                                 RELIABLE_QOS, callback_group=self._cb)
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self._on_speech_event,
                                 RELIABLE_QOS, callback_group=self._cb)
        if p['preemptive_generation']:
            self.create_subscription(Utterance, names.UTTERANCE, self._on_utterance,
                                     RELIABLE_QOS, callback_group=self._cb)
        log.info(f'brain ready: backend {self.backend.name}'
                 + (f" ({p['base_url']}, model {p['model']})" if self.backend.name == 'openai'
                    else ''))

    # -- backend ------------------------------------------------------------------------
    def _make_backend(self):
        p, log = self.p, self.get_logger()
        if p['backend'] == 'openai':
            from droid_brain.llm_openai import OpenAIBackend, is_official_openai
            key = env_secret('OPENAI_API_KEY')
            if key or not is_official_openai(p['base_url']):
                self.set_llm_status('ok', f"openai backend: {p['base_url']} model {p['model']}"
                                    + ('' if key else ' (no OPENAI_API_KEY: local server)'))
                return OpenAIBackend(p['base_url'], p['model'], key, p['temperature'],
                                     p['max_tokens'], p['request_timeout_s'])
            banner = '!' * 72
            log.warning(f'\n{banner}\n!! OPENAI_API_KEY is not set and base_url is the official '
                        f'OpenAI API:\n!! falling back to the MOCK brain (scripted replies).\n'
                        f'!! Export OPENAI_API_KEY or set base_url to a local server.\n{banner}')
            self.set_llm_status('warn', 'OPENAI_API_KEY not set: using the mock brain backend',
                                sticky=True)
        return self._make_mock()

    def _make_mock(self):
        p, log = self.p, self.get_logger()
        path = p['mock_script'] or _share_file('config', 'mock_script.yaml')
        try:
            script = MockScript.load(path)
        except MockScriptError as exc:
            log.error(f'{exc}; the mock brain only has its default reply')
            self.diag.set(ERROR, str(exc), component='mock script')
            script = MockScript.from_dict({})
        self.set_llm_status('ok', f'mock backend ({Path(path).name})')
        return MockBackend(script, FuncClock(lambda: now_sec(self), activity=self.activity),
                           p['mock_time_to_first_token_s'], p['mock_token_rate'])

    def set_llm_status(self, level: str, message: str, sticky: bool = False) -> None:
        """LLM health on /diagnostics; a sticky WARN (mock fallback) is never cleared."""
        lvl = _LEVELS.get(level, WARN)
        if sticky:
            self._llm_floor = (lvl, message)
        floor = getattr(self, '_llm_floor', None)
        if floor is not None and lvl < floor[0]:
            lvl, message = floor[0], f'{floor[1]}; {message}'
        self.diag.set(lvl, redact(message), component='llm')

    # -- persona --------------------------------------------------------------------------
    def _check_params(self, params) -> SetParametersResult:
        for param in params:
            if param.name == 'persona':
                name = str(param.value or '')
                if name and name.strip().lower() not in self.personas.personas:
                    return SetParametersResult(
                        successful=False,
                        reason=f"unknown persona '{name}'; available: "
                               f"{', '.join(self.personas.names) or '(none)'}")
                if not name:
                    return SetParametersResult(successful=False,
                                               reason='persona must not be empty')
        return SetParametersResult(successful=True)

    def _apply_params(self, params) -> None:
        for param in params:
            if param.name != 'persona':
                continue
            name = str(param.value).strip().lower()
            if name == self.personas.active.name:
                continue
            try:
                persona, warning = self.personas.switch(name)
            except PersonaError as exc:   # validated before: should not happen
                self.get_logger().error(str(exc))
                continue
            self.memory.set_system_prompt(persona.system_prompt)
            self._publish_persona(persona)
            self.get_logger().info(f"persona switched to '{persona.name}' "
                                   f'({persona.display_name})')
            if warning:
                self.get_logger().error(warning)
                self.diag.set(WARN, warning, component='persona')
            elif not self.personas.state.error:
                self.diag.set(OK, f'persona {persona.name}', component='persona')

    def _publish_persona(self, persona) -> None:
        r, g, b = persona.eye_color
        msg = Persona(name=persona.name, display_name=persona.display_name,
                      elevenlabs_voice_id=persona.elevenlabs_voice_id,
                      offline_voice=persona.offline_voice,
                      piper_voice=persona.piper_voice,
                      offline_rate_wpm=float(persona.offline_rate_wpm),
                      eye_theme=persona.eye_theme,
                      eye_color=ColorRGBA(r=float(r), g=float(g), b=float(b), a=1.0))
        msg.header.stamp = self.get_clock().now().to_msg()
        self.persona_pub.publish(msg)

    # -- inputs ---------------------------------------------------------------------------
    def _on_transcription(self, msg: Transcription) -> None:
        key = (msg.conversation_id, msg.utterance_id)
        if not msg.is_final:
            self._on_partial(key, msg.text.strip(), to_sec(msg.audio_end))
            return
        decision = self.turns.admit(msg.conversation_id, msg.utterance_id, msg.text,
                                    msg.is_final, to_sec(msg.header.stamp), now_sec(self))
        if decision.text is None:
            if msg.is_final and decision.reason.startswith(('stale', 'duplicate')):
                self.get_logger().info(f'{log_prefix(msg.conversation_id)}ignored: '
                                       f'{decision.reason}')
            return
        text = decision.text
        if decision.truncated:
            self.get_logger().warning(f'{log_prefix(msg.conversation_id)}transcription cut to '
                                      f'{len(text)} characters')
        verdict = self.preemptor.final(key, text, now_sec(self))
        if self._droid_speaking and not confirms_barge_in(text, self.p['barge_in_min_words']):
            # The tts forgave it and resumes (same rule): a backchannel, not a new turn.
            self.worker.cancel_tentative('backchannel')
            self.get_logger().info(f'{log_prefix(msg.conversation_id)}heard "{text}" over '
                                   'the droid: not real words, no new turn')
            return
        prefix = log_prefix(msg.conversation_id)
        if verdict == KEEP and self.worker.confirm(key):
            self.get_logger().info(f'{prefix}heard: {text} (preemptive reply kept, started '
                                   f'{self.preemptor.stats.saved_s[-1] * 1000.0:.0f} ms '
                                   'earlier)')
            self._preempt_diag()
            return
        if verdict == RESTART:
            self.worker.cancel_tentative('the final transcription differs')
            self.get_logger().info(f'{prefix}preemptive reply dropped: the final differs')
        if verdict is not None:
            self._preempt_diag()
        stamp = msg.header.stamp
        self.worker.submit(Turn(msg.conversation_id, msg.utterance_id, text,
                                input_stamp=to_sec(stamp),
                                input_stamp_ns=stamp.sec * 1_000_000_000 + stamp.nanosec))
        self.get_logger().info(f'{prefix}heard: {text}')      # after: the turn is under way

    # -- preemptive generation ------------------------------------------------------------
    def _can_preempt(self) -> bool:
        """Only from a quiet state: the droid silent and no reply in the works."""
        return not self._droid_speaking and not self.worker.busy()

    def _on_partial(self, key: tuple, text: str, audio_end: float = 0.0) -> None:
        if not self.preemptor.enabled or not text:
            return
        if self.preemptor.partial(key, text, now_sec(self), audio_end):
            if self.worker.cancel_tentative('the partial transcription changed'):
                self.get_logger().debug(f'{log_prefix(key[0])}preemptive reply dropped: '
                                        'the words changed')
        if self._can_preempt():
            start = self.preemptor.pause_due(now_sec(self))
            if start is not None:
                self._start_tentative(*start, why='pause')
                return
            start = self.preemptor.due(now_sec(self))     # e.g. delivered after the end
            if start is not None:
                self._start_tentative(*start, why='end of turn, late partial')
                return
        with self._preempt_cond:
            self._preempt_cond.notify_all()

    def _on_utterance(self, msg: Utterance) -> None:
        """The listener's utterance: while it grows, where its voiced audio ends so far (a
        reply started at a pause is dropped when voice follows); when it ends, the end of
        the turn is known (a tentative reply starts if the latest partial covers the
        speech, up to ``audio_end``)."""
        if msg.state in (Utterance.STARTED, Utterance.AUDIO):
            if self.preemptor.voiced((msg.conversation_id, msg.utterance_id),
                                     to_sec(msg.audio_end)) and \
                    self.worker.cancel_tentative('the user went on speaking'):
                self.get_logger().debug(f'{log_prefix(msg.conversation_id)}preemptive reply '
                                        'dropped: the user went on speaking')
        elif msg.state == Utterance.CANCELLED:
            self.preemptor.forget()
            self.worker.cancel_tentative('utterance cancelled')
        elif msg.state == Utterance.ENDED and self._can_preempt():
            start = self.preemptor.end_of_turn((msg.conversation_id, msg.utterance_id),
                                               now_sec(self), to_sec(msg.audio_end))
            if start is not None:
                self._start_tentative(*start, why='end of turn')
            else:
                self._preempt_diag()

    def _preempt_loop(self) -> None:
        """Starts a tentative turn when the latest partial has been stable long enough."""
        max_wait = 0.01 if self.get_parameter('use_sim_time').value else 1.0
        while True:
            with self._preempt_cond:
                if self._closing:
                    return
                nd = self.preemptor.next_due()
                now = now_sec(self)
                wait = max_wait if nd is None else min(max(nd - now, 0.0), max_wait)
                if wait > 0.0:
                    self._preempt_cond.wait(wait)
                if self._closing:
                    return
            if self.preemptor.next_due() is not None and self._can_preempt():
                start = self.preemptor.due(now_sec(self))
                if start is not None:
                    self._start_tentative(*start, why='stable partial')

    def _start_tentative(self, key: tuple, text: str, why: str) -> None:
        self.get_logger().info(f'{log_prefix(key[0])}preemptive reply ({why}): {text}')
        self.worker.submit(Turn(key[0], key[1], text, input_stamp=now_sec(self),
                                gate=ReplyGate()))

    def _preempt_diag(self) -> None:
        st = self.preemptor.stats.as_dict()
        self.diag.set(OK, f"preemptive generation: hit rate {st['hit_rate']}",
                      component='preemptive', **{k: str(v) for k, v in st.items()})

    def remember_said(self, turn, index: int, text: str) -> None:
        """The sentences published per turn (the last few turns), for :meth:`_on_speech_event`."""
        key = (turn.conversation_id, turn.utterance_id)
        with self._said_lock:
            said = self._said.setdefault(key, {})
            said[index] = text
            while len(self._said) > 16:
                self._said.pop(next(iter(self._said)))

    def _on_speech_event(self, msg: SpeechEvent) -> None:
        if msg.event in (SPEECH['STARTED'], SPEECH['PAUSED'], SPEECH['RESUMED']):
            self._droid_speaking = True
        elif msg.event == SPEECH['INTERRUPTED'] or (msg.event == SPEECH['ENDED']
                                                   and msg.last_in_reply):
            self._droid_speaking = False
        if msg.event != SPEECH['INTERRUPTED'] or not msg.conversation_id:
            return
        if self.worker.cancel(msg.conversation_id, msg.utterance_id, 'barge-in'):
            self.get_logger().info(f'{log_prefix(msg.conversation_id)}barge-in: reply cancelled')
        key = (msg.conversation_id, msg.utterance_id)
        with self._said_lock:
            said = dict(self._said.get(key) or {})
        if not said:
            return                     # not a reply of this brain (a Speak goal, another one)
        heard = [said[i] for i in sorted(said) if i < msg.sentence_index] + [msg.heard]
        heard_text = ' '.join(t for t in heard if t.strip())
        self.memory.set_heard(key, heard_text)
        self.get_logger().info(f'{log_prefix(msg.conversation_id)}the user heard: '
                               f'"{heard_text}" [interrupted]')

    def _on_wake(self, msg: WakeWord) -> None:
        self.worker.cancel_tentative('new conversation (wake word)')
        current = self.worker.current
        if current is not None and current.conversation_id != msg.conversation_id:
            self.worker.cancel(current.conversation_id, None, 'new conversation (wake word)')

    def _dropped(self, turn: Turn) -> None:
        """A queued turn replaced before it started: close it with an interrupted marker."""
        msg = ReplySentence(conversation_id=turn.conversation_id,
                            utterance_id=turn.utterance_id, index=0, is_final=True,
                            interrupted=True, persona=self.personas.active.name)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.reply_pub.publish(msg)

    # -- tools ----------------------------------------------------------------------------
    def _run_tools(self, turn: Turn, calls) -> list:
        """Send one ToolCall goal per call (all at once), wait for all results (worker thread)."""
        log = self.get_logger()
        pre = log_prefix(turn.conversation_id)
        if not self.tool_client.wait_for_server(timeout_sec=self.p['tool_server_timeout_s']):
            err = f'tool executor not available (no ToolCall server on {names.TOOL_CALL})'
            log.warning(pre + err)
            self.diag.set(WARN, err, component='tools')
            return [ToolResult(False, error=err) for _ in calls]
        self.diag.set(OK, 'tool executor available', component='tools')
        entries = []
        for c in calls:
            entry = {'call': c, 'event': threading.Event(), 'handle': None, 'result': None}
            goal = ToolCall.Goal(tool_name=c.name, arguments_json=c.arguments, call_id=c.id,
                                 conversation_id=turn.conversation_id,
                                 utterance_id=turn.utterance_id)
            log.info(f'{pre}tool call {c.name}({c.arguments})')
            future = self.tool_client.send_goal_async(goal)
            future.add_done_callback(lambda f, e=entry: self._goal_response(f, e))
            entries.append(entry)
        # The timeout is on the node clock: a replay times out at the same sim time.
        deadline = self.activity.now() + self.p['tool_timeout_s']
        for e in entries:
            done = self.activity.wait(
                lambda e=e: e['event'].is_set() or turn.cancel.is_set(),
                timeout=max(0.0, deadline - self.activity.now()), poll=0.02, what='tool result')
            if turn.cancel.is_set():
                # Cancelled with the reply, except the tools that must finish (they run
                # on; their results are not waited for).
                self._cancel_goals([x for x in entries
                                    if not tools.must_finish(x['call'].name)])
                return [x['result'] or ToolResult(
                    False, error='continues after the interruption'
                    if tools.must_finish(x['call'].name) else 'cancelled')
                    for x in entries]
            if not done:
                self._cancel_goals([e])
                e['result'] = ToolResult(
                    False, error=f"tool {e['call'].name} timed out after "
                                 f"{self.p['tool_timeout_s']:.0f} s")
        results = [e['result'] or ToolResult(False, error='no result') for e in entries]
        for c, r in zip(calls, results):
            log.info(f'{pre}tool {c.name} -> ' + ('ok ' + r.result_json if r.success
                                                   else 'FAILED: ' + r.error))
        return results

    def _goal_response(self, future, entry) -> None:
        try:
            handle = future.result()
        except Exception as exc:  # noqa: BLE001
            entry['result'] = ToolResult(False, error=f'goal not sent: {exc}')
            entry['event'].set()
            self.activity.notify()
            return
        if handle is None or not handle.accepted:
            entry['result'] = ToolResult(False, error='tool executor rejected the call')
            entry['event'].set()
            self.activity.notify()
            return
        entry['handle'] = handle
        handle.get_result_async().add_done_callback(
            lambda f, e=entry: self._goal_result(f, e))

    def _goal_result(self, future, entry) -> None:
        try:
            res = future.result().result
            entry['result'] = ToolResult(bool(res.success), res.result_json or 'null',
                                         res.error)
        except Exception as exc:  # noqa: BLE001
            entry['result'] = ToolResult(False, error=f'no result: {exc}')
        entry['event'].set()
        self.activity.notify()

    @staticmethod
    def _cancel_goals(entries) -> None:
        for e in entries:
            handle = e.get('handle')
            if handle is not None and not e['event'].is_set():
                try:
                    handle.cancel_goal_async()
                except Exception:  # noqa: BLE001
                    pass

    def close(self) -> None:
        with self._preempt_cond:
            self._closing = True
            self._preempt_cond.notify_all()
        if self._preempt_thread is not None:
            self._preempt_thread.join(2.0)
        self.worker.close()
        self.backend.close()


def main(args=None):
    run(BrainNode, args=args)


if __name__ == '__main__':
    main()

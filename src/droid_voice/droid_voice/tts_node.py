"""The ``tts`` node: speaks reply sentences and Speak goals; lifecycle, amplitude, barge-in.

Thin rclpy shell around :mod:`droid_voice.sentences` (which sentences to speak),
:mod:`droid_voice.speaker` (synthesis ahead of playback, timed events) and
:mod:`droid_voice.output` (sounddevice, or the mock speaker paced by the node clock).
"""

from __future__ import annotations

import json
import threading

from droid_common import names
from droid_common.ros import (
    ERROR,
    LATCHED_SUB_QOS,
    OK,
    RELIABLE_QOS,
    SENSOR_QOS,
    WARN,
    Diagnostics,
    check_choice,
    declare,
    log_prefix,
    moments,
    now_sec,
    run,
    to_sec,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from droid_common.secrets import env_secret, redact
from droid_common.turn_taking import DEFAULT_MIN_WORDS
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from droid_msgs.action import Speak
from droid_msgs.msg import (
    AudioChunk,
    Persona,
    ReplySentence,
    SpeechAmplitude,
    SpeechEvent,
    TraceEvent,
    Transcription,
    VoiceActivity,
)
from droid_voice.barge_in import MODES as BARGE_IN_MODES
from droid_voice.barge_in import PAUSE as BARGE_PAUSE
from droid_voice.barge_in import RESUME as BARGE_RESUME
from droid_voice.barge_in import STOP as BARGE_STOP
from droid_voice.barge_in import BargeInArbiter, BargeInConfig
from droid_voice.heard import heard_text
from droid_voice.output import MockOutput, SoundDeviceOutput
from droid_voice.playback import PlaybackTap, publisher_of
from droid_voice.sentences import Drop, ReplyEnd, Sentence, Supersede, TurnTracker
from droid_voice.sentences import Speak as SpeakAction
from droid_voice.speakable import speakable
from droid_voice.speaker import COMPLETED, FAILED, INTERRUPTED, Speaker, Utterance
from droid_voice.synth import (
    DEFAULT_ELEVENLABS_MODEL,
    RATE,
    ElevenLabsBackend,
    EspeakBackend,
    FirstWorking,
    MockBackend,
    PiperBackend,
    ProviderError,
    VoiceSpec,
)

BACKENDS = ('elevenlabs', 'piper', 'espeak', 'mock')
OUTPUTS = ('sounddevice', 'mock')
_RESULT = {COMPLETED: Speak.Result.COMPLETED, INTERRUPTED: Speak.Result.INTERRUPTED,
           FAILED: Speak.Result.FAILED}


class TtsNode(Node):
    def __init__(self, node_name: str = 'tts', **kwargs):
        super().__init__(node_name, **kwargs)
        p = self._declare_params()
        self.diag = Diagnostics(self, hardware_id=f'audio output {p["device"] or "default"}')
        self.activity = track_activity(self)
        self._fqn = self.get_fully_qualified_name()
        self._persona = Persona()
        self._persona_lock = threading.Lock()
        self._tracker = TurnTracker(reorder_timeout=p['reorder_timeout'])
        self._tracker_lock = threading.Lock()
        self._arbiter = BargeInArbiter(BargeInConfig(
            mode=p['barge_in_mode'], resume_s=p['barge_in_resume_ms'] / 1000.0,
            min_words=p['barge_in_min_words'],
            confirm_speech_s=p['barge_in_confirm_speech_ms'] / 1000.0))
        self._arbiter_lock = threading.Lock()
        # key -> {'first_audio', 'last_ended', 'last_index', 'done', 'stamp'}; _turns_lock
        # makes "the last sentence ended" and "the reply ends at sentence n" meet exactly once
        # whichever comes first (reply callback vs events thread).
        self._turns: dict = {}
        self._turns_lock = threading.RLock()
        self._goal_utts: dict = {}         # goal uuid bytes -> Utterance
        self._last_amplitude = 0.0
        self._fallbacks = 0
        self._record = (open(p['record_path'], 'a', encoding='utf-8')  # noqa: SIM115 - closed in close()
                        if p['record_path'] else None)
        self._record_lock = threading.Lock()

        primary, fallback, backend_msg, level = self._make_backends(p)
        self.speaker = Speaker(primary, fallback, clock=self._now, fade_s=p['fade_ms'] / 1000.0,
                               amplitude_hz=p['amplitude_rate_hz'], queue_size=p['queue_size'],
                               default_voice=lambda: self._voice_for(''),
                               on_warning=self._on_synth_warning,
                               fallback_cooldown=p['fallback_cooldown'],
                               normalize=speakable if p['speakable_text'] else None,
                               activity=self.activity, trim_lead=p['trim_lead'])
        self.diag.set(level, backend_msg, component='synthesis', backend=primary.name)

        # Publishers / subscriptions / action.
        self.pub_event = self.create_publisher(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        self.pub_amp = self.create_publisher(SpeechAmplitude, names.AMPLITUDE, SENSOR_QOS)
        self.pub_trace = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        topics = MutuallyExclusiveCallbackGroup()
        self.create_subscription(ReplySentence, names.REPLY, self._on_reply, RELIABLE_QOS,
                                 callback_group=topics)
        self.create_subscription(Persona, names.PERSONA, self._on_persona, LATCHED_SUB_QOS,
                                 callback_group=topics)
        barge = ReentrantCallbackGroup()
        self.create_subscription(VoiceActivity, names.VOICE_ACTIVITY, self._on_voice_activity,
                                 SENSOR_QOS, callback_group=barge)
        self.create_subscription(Transcription, names.TRANSCRIPTION, self._on_transcription,
                                 RELIABLE_QOS, callback_group=barge)
        # The arbiter needs its tick only while a barge-in is pending (speech paused): the
        # timer is armed then and cancelled otherwise, so an idle droid is not woken 50
        # times a second (each wake of this node's executor costs ~1 ms of Python).
        self._barge_timer = self.create_timer(0.02, self._barge_in_tick, callback_group=barge)
        self._barge_timer.cancel()
        self._action = ActionServer(self, Speak, names.SPEAK, execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=self._on_cancel,
                                    callback_group=ReentrantCallbackGroup())
        self.create_timer(0.25, self._poll_tracker, callback_group=topics)

        # What is played goes out as the echo reference of the microphone (droid_audio.aec).
        self.pub_playback = self.create_publisher(AudioChunk, names.PLAYBACK, RELIABLE_QOS)
        self._tap = PlaybackTap(self.speaker.render,
                                publisher_of(self.pub_playback, 'tts') if p['publish_playback']
                                else (lambda t, samples: None), RATE)

        # Output last: it starts pulling audio right away. Sleeps are bounded by this much
        # wall time only under sim time (a simulated clock may jump); else they last until
        # the next due time or a wake-up.
        self._max_wait = 0.003 if self._sim_time() else 0.25
        self.output = self._make_output(p)
        self.speaker.on_audio = getattr(self.output, 'wake', None)   # mock: no block wait
        self._stop = threading.Event()
        self._events_thread = self.activity.spawn(self._events_loop, 'tts-events')
        self.get_logger().info(
            f'tts ready: backend {primary.name}'
            f'{" (fallback " + fallback.name + ")" if fallback else ""}, output {p["output"]}, '
            f'amplitude {p["amplitude_rate_hz"]:.0f} Hz, fade {p["fade_ms"]:.0f} ms')

    # -- setup ----------------------------------------------------------------------------
    def _declare_params(self) -> dict:
        d = {}
        d['backend'] = declare(self, 'backend', 'elevenlabs',
                               'Synthesis backend: elevenlabs | piper | espeak | mock (elevenlabs '
                               'without ELEVENLABS_API_KEY speaks with the offline voice: Piper, '
                               'else espeak-ng)', read_only=True,
                               choices=BACKENDS)
        check_choice('backend', d['backend'], BACKENDS)
        d['output'] = declare(self, 'output', 'sounddevice',
                              'Audio output: sounddevice | mock (no device, paced by the node clock)',
                              read_only=True, choices=OUTPUTS)
        check_choice('output', d['output'], OUTPUTS)
        d['device'] = declare(self, 'device', '', 'Output device (index or name substring); '
                              'empty = default', read_only=True)
        d['blocksize'] = declare(self, 'blocksize', 160, 'Output block [samples at 16 kHz]; '
                                 'small blocks make barge-in faster', min_value=0, max_value=4096,
                                 read_only=True)
        d['latency_ms'] = declare(self, 'latency_ms', 40.0, 'Requested output latency [ms] '
                                  '(device buffer; part of the barge-in stop time and of every '
                                  "reply's latency; raise it if tts logs output underruns)",
                                  min_value=5.0, max_value=1000.0, read_only=True)
        d['model_id'] = declare(self, 'model_id', DEFAULT_ELEVENLABS_MODEL,
                                'ElevenLabs model id', read_only=True)
        d['voice_id'] = declare(self, 'voice_id', '', 'ElevenLabs voice id used when the active '
                                'persona has none (empty = the backend default)')
        d['stability'] = declare(self, 'stability', 0.5, 'ElevenLabs voice stability',
                                 min_value=0.0, max_value=1.0, read_only=True)
        d['similarity_boost'] = declare(self, 'similarity_boost', 0.75,
                                        'ElevenLabs similarity boost', min_value=0.0,
                                        max_value=1.0, read_only=True)
        d['use_websocket'] = declare(self, 'use_websocket', True,
                                     'ElevenLabs: websocket stream-input (lowest time to first '
                                     'audio) instead of the HTTP stream endpoint', read_only=True)
        d['base_url'] = declare(self, 'base_url', '', 'ElevenLabs API base URL (empty = '
                                'https://api.elevenlabs.io); for tests and self-hosting',
                                read_only=True)
        d['ws_base_url'] = declare(self, 'ws_base_url', '', 'ElevenLabs websocket base URL '
                                   '(empty = base_url with ws/wss)', read_only=True)
        d['request_timeout'] = declare(self, 'request_timeout', 10.0, 'ElevenLabs timeout [s]',
                                       min_value=0.5, max_value=120.0, read_only=True)
        d['fallback_cooldown'] = declare(self, 'fallback_cooldown', 10.0,
                                         'After an ElevenLabs failure, use the offline voice '
                                         'for this long [s] before trying again',
                                         min_value=0.0, max_value=3600.0, read_only=True)
        d['piper_voice'] = declare(self, 'piper_voice', 'joe-us', 'Piper voice when the persona '
                                   'has none: a packaged name (joe-us) or the path of a .onnx '
                                   'voice', read_only=True)
        d['piper_voice_dir'] = declare(self, 'piper_voice_dir', '', 'Directory of downloaded '
                                       'Piper voices (<name>.onnx + <name>.onnx.json)',
                                       read_only=True)
        d['piper_length_scale'] = declare(self, 'piper_length_scale', 0.0, 'Piper speaking '
                                          'pace: > 1 slower, < 1 faster (0 = the voice\'s own)',
                                          min_value=0.0, max_value=3.0, read_only=True)
        d['piper_clause_chars'] = declare(self, 'piper_clause_chars', 40, 'Piper synthesises a '
                                          'long sentence clause by clause (cut after , ; : '
                                          'into pieces of at least this many characters), so '
                                          'it starts speaking sooner (0 = whole sentences)',
                                          min_value=0, max_value=1000, read_only=True)
        d['piper_first_clause_chars'] = declare(self, 'piper_first_clause_chars', 15,
                                                'The first clause of a sentence may be this '
                                                'short (at least), so its first audio is '
                                                'ready sooner; the rest is synthesised while '
                                                'it plays (0 = as piper_clause_chars)',
                                                min_value=0, max_value=1000, read_only=True)
        d['piper_streaming'] = declare(self, 'piper_streaming', True, 'Piper starts playing a '
                                       'clause before it is all synthesised (its decoder runs '
                                       'slice by slice, the same audio, at one calibrated '
                                       'level per voice); false = whole clauses, each '
                                       'normalised by Piper', read_only=True)
        d['espeak_voice'] = declare(self, 'espeak_voice', 'en-us', 'espeak-ng voice when the '
                                    'persona has no offline_voice', read_only=True)
        d['espeak_rate_wpm'] = declare(self, 'espeak_rate_wpm', 175.0, 'espeak-ng rate when the '
                                       'persona has none [words/min]', min_value=40.0,
                                       max_value=500.0, read_only=True)
        d['words_per_minute'] = declare(self, 'words_per_minute', 160.0, 'Mock backend speaking '
                                        'rate [words/min]', min_value=10.0, max_value=2000.0,
                                        read_only=True)
        d['mock_amplitude'] = declare(self, 'mock_amplitude', 0.3, 'Mock backend tone level '
                                      '(0 = silent audio)', min_value=0.0, max_value=1.0,
                                      read_only=True)
        d['fade_ms'] = declare(self, 'fade_ms', 30.0, 'Fade-out on barge-in/cancel [ms]',
                               min_value=1.0, max_value=100.0, read_only=True)
        d['trim_lead'] = declare(self, 'trim_lead', True, 'Drop the silence a voice puts '
                                 'before each sentence (Piper: 40-60 ms), keeping 10 ms: the '
                                 'droid is heard sooner', read_only=True)
        d['amplitude_rate_hz'] = declare(self, 'amplitude_rate_hz', 50.0, 'Amplitude message '
                                         'rate while speaking [Hz]', min_value=30.0,
                                         max_value=200.0, read_only=True)
        d['barge_in'] = declare(self, 'barge_in', True, 'Stop speaking when voice activity '
                                'turns true while the droid speaks')
        d['speakable_text'] = declare(self, 'speakable_text', True, 'Say markdown, URLs, '
                                      'emoji, numbers, dates, units and abbreviations as words '
                                      '(brain/reply keeps what the model wrote)',
                                      read_only=True)
        d['barge_in_mode'] = declare(self, 'barge_in_mode', 'confirm', 'confirm: pause on '
                                     "the user's voice, stop only for real words, else resume; "
                                     'immediate: stop on any voice', read_only=True,
                                     choices=list(BARGE_IN_MODES))
        check_choice('barge_in_mode', d['barge_in_mode'], BARGE_IN_MODES)
        d['barge_in_resume_ms'] = declare(self, 'barge_in_resume_ms', 600.0, 'Paused and no '
                                          'real words this long (and the voice stopped): '
                                          'resume where it paused [ms]', min_value=100.0,
                                          max_value=5000.0, read_only=True)
        d['barge_in_min_words'] = declare(self, 'barge_in_min_words', DEFAULT_MIN_WORDS,
                                          'Words (not counting uh-huh, mm, yeah, ...) that '
                                          'confirm a barge-in; a command word (stop, wait) '
                                          'always does. Keep equal to the brain\'s',
                                          min_value=1, max_value=10, read_only=True)
        d['barge_in_confirm_speech_ms'] = declare(self, 'barge_in_confirm_speech_ms', 1200.0,
                                                  'Voice going on this long confirms a '
                                                  'barge-in before any words arrive [ms]',
                                                  min_value=200.0, max_value=10000.0,
                                                  read_only=True)
        d['publish_playback'] = declare(self, 'publish_playback', True, 'Publish what is played '
                                        'on audio/playback: the echo reference of the '
                                        "microphone's echo cancellation", read_only=True)
        d['record_path'] = declare(self, 'record_path', '', 'Append what was said (JSON lines) '
                                   'to this file; empty = off', read_only=True)
        d['reorder_timeout'] = declare(self, 'reorder_timeout', 2.0, 'Wait this long for a '
                                       'missing sentence index before skipping it [s]',
                                       min_value=0.1, max_value=30.0, read_only=True)
        d['queue_size'] = declare(self, 'queue_size', 32, 'Sentences waiting for synthesis',
                                  min_value=1, max_value=1000, read_only=True)
        d['mock_block_ms'] = declare(self, 'mock_block_ms', 20.0, 'Mock output block [ms]',
                                     min_value=1.0, max_value=200.0, read_only=True)
        self._p = d
        return d

    def _make_backends(self, p):
        espeak = EspeakBackend(p['espeak_voice'], p['espeak_rate_wpm'])
        if p['backend'] == 'mock':
            return MockBackend(p['words_per_minute'], p['mock_amplitude']), None, \
                'mock voice', OK
        if p['backend'] == 'espeak':
            return espeak, None, 'offline voice espeak-ng', OK
        offline, offline_msg = self._offline_voice(p, espeak)
        if p['backend'] == 'piper':
            return offline, None, offline_msg, OK if offline.name == 'piper' else WARN
        key = env_secret('ELEVENLABS_API_KEY')
        if not key:
            self.get_logger().warning(f'ELEVENLABS_API_KEY is not set: speaking with the '
                                      f'{offline_msg}')
            return offline, None, f'no ELEVENLABS_API_KEY: using the {offline_msg}', WARN
        try:
            el = ElevenLabsBackend(key, model_id=p['model_id'], voice_id=p['voice_id'],
                                   stability=p['stability'],
                                   similarity_boost=p['similarity_boost'],
                                   use_websocket=p['use_websocket'], base_url=p['base_url'],
                                   ws_base_url=p['ws_base_url'], timeout=p['request_timeout'])
        except Exception as exc:  # noqa: BLE001
            msg = redact(f'ElevenLabs client failed ({exc}): using the {offline_msg}')
            self.get_logger().error(msg)
            return offline, None, msg, WARN
        mode = 'websocket stream-input' if p['use_websocket'] else 'HTTP stream'
        return el, offline, (f'ElevenLabs ({mode}, model {p["model_id"]}), offline fallback '
                             f'{offline_msg}'), OK

    def _offline_voice(self, p, espeak):
        """Piper (then espeak-ng for a sentence Piper cannot say), or espeak-ng alone when
        the Piper voice does not load. Loading happens here, once, not on the first reply."""
        piper = PiperBackend(p['piper_voice'], p['piper_voice_dir'], p['piper_length_scale'],
                             p['piper_clause_chars'], p['piper_first_clause_chars'],
                             streaming=p['piper_streaming'])
        try:
            piper.load()
        except ProviderError as exc:
            self.get_logger().warning(f'offline neural voice unavailable: {exc}; '
                                      'the offline voice is espeak-ng')
            return espeak, f'offline voice espeak-ng (Piper unavailable: {exc})'
        note = piper.notes.get(piper.default_voice, '')
        return FirstWorking(piper, espeak), \
            f'offline voice Piper ({p["piper_voice"]}, {note}), espeak-ng as last resort'

    def _make_output(self, p):
        if p['output'] == 'sounddevice':
            out = SoundDeviceOutput(self._tap, self._now, sample_rate=RATE,
                                    device=p['device'], blocksize=p['blocksize'],
                                    latency=p['latency_ms'] / 1000.0)
            try:
                out.start()
                self.diag.set(OK, f'audio output open, latency {out.output_latency * 1000:.0f} ms',
                              component='output')
                return out
            except Exception as exc:  # noqa: BLE001 - no device: degrade to the mock speaker
                msg = f'cannot open audio output {p["device"] or "(default)"}: {exc}; ' \
                      'speaking silently (mock output)'
                self.get_logger().error(msg)
                self.diag.set(ERROR, msg, component='output')
        else:
            self.diag.set(OK, 'mock speaker (no audio device)', component='output')
        out = MockOutput(self._tap, self._now, sample_rate=RATE,
                         block_s=p['mock_block_ms'] / 1000.0, activity=self.activity)
        out.start()
        return out

    def _now(self) -> float:
        return now_sec(self)

    def _sim_time(self) -> bool:
        return bool(self.get_parameter('use_sim_time').value)

    # -- inputs ---------------------------------------------------------------------------
    def _on_persona(self, msg: Persona) -> None:
        with self._persona_lock:
            self._persona = msg
        self.get_logger().info(f'persona {msg.name!r}: voice '
                               f'{msg.elevenlabs_voice_id or "(default)"} / '
                               f'{msg.offline_voice or "(default)"}')

    def _voice_for(self, override: str) -> VoiceSpec:
        with self._persona_lock:
            persona = self._persona
        el = persona.elevenlabs_voice_id or self._p['voice_id']
        off = persona.offline_voice or self._p['espeak_voice']
        piper = persona.piper_voice or self._p['piper_voice']
        rate = persona.offline_rate_wpm if persona.offline_rate_wpm > 0 else \
            self._p['espeak_rate_wpm']
        if override:
            backend = self.speaker_backend_name()
            if backend == 'elevenlabs':
                el = override
            elif backend == 'piper':
                piper = override
            else:
                off = override
        return VoiceSpec(el, off, float(rate), piper)

    def speaker_backend_name(self) -> str:
        sp = getattr(self, 'speaker', None)
        return sp.backend.name if sp is not None else self._p['backend']

    def _on_reply(self, msg: ReplySentence) -> None:
        now = self._now()
        s = Sentence(msg.conversation_id, int(msg.utterance_id), int(msg.index), msg.text,
                     bool(msg.is_final), bool(msg.interrupted), msg.persona,
                     to_sec(msg.header.stamp), now)
        with self._tracker_lock:
            actions = self._tracker.add(s, now)
        self._apply(actions)

    def _poll_tracker(self) -> None:
        with self._tracker_lock:
            actions = self._tracker.poll(self._now())
        self._apply(actions)

    def _apply(self, actions: list) -> None:
        log = self.get_logger()
        for a in actions:
            if isinstance(a, SpeakAction):
                s = a.sentence
                if not s.text.strip():
                    continue
                with self._turns_lock:
                    turn = self._turns.setdefault(s.key, {'first_audio': False,
                                                          'last_ended': -1, 'last_index': -1,
                                                          'done': False})
                    turn.setdefault('stamp', s.stamp)
                utt = Utterance(s.text, conversation_id=s.conversation_id,
                                utterance_id=s.utterance_id, index=s.index,
                                voice=self._voice_for(''), input_stamp=s.stamp,
                                received=s.received, last_in_reply=a.last_in_reply,
                                words_per_minute=self._p['words_per_minute'])
                if not self.speaker.submit(utt):
                    log.error(log_prefix(s.conversation_id) + 'synthesis queue full: sentence '
                              f'{s.index} dropped')
                    self.diag.set(WARN, 'synthesis queue full, sentences dropped',
                                  component='synthesis')
            elif isinstance(a, Supersede):
                stopped = self.speaker.stop_turn(a.old, 'newer conversation')
                log.info(log_prefix(a.old[0]) + f'superseded by conversation {a.new[0]} '
                         f'(utterance {a.new[1]}){": stopped speaking" if stopped else ""}')
            elif isinstance(a, Drop):
                log.debug(log_prefix(a.sentence.conversation_id) +
                          f'sentence {a.sentence.index} dropped: {a.reason}')
            elif isinstance(a, ReplyEnd):
                with self._turns_lock:
                    turn = self._turns.get(a.key)
                    if a.last_index < 0 or turn is None:
                        continue
                    turn['last_index'] = a.last_index
                    # Still to be played: its ENDED event will carry last_in_reply. Already
                    # ended (the marker came late): the reply is done now.
                    if not self.speaker.set_last(a.key, a.last_index) and \
                            turn['last_ended'] == a.last_index and not turn['done']:
                        self._speech_done(a.key, self._now())

    # Barge-in inputs go through activity.ordered: live, at once; under a replay, at the
    # end of their tick in a fixed order (voice activity, words, then the timer), so a
    # replay decides the same whichever the executor took first.
    def _on_voice_activity(self, msg: VoiceActivity) -> None:
        self.activity.ordered('barge_in', 0, lambda: self._voice_activity(msg))

    def _on_transcription(self, msg: Transcription) -> None:
        self.activity.ordered('barge_in', 1, lambda: self._transcription(msg))

    def _barge_in_tick(self) -> None:
        self.activity.ordered('barge_in', 2, self._barge_in_timer)

    def _voice_activity(self, msg: VoiceActivity) -> None:
        if not self.get_parameter('barge_in').value:
            return
        cur = self.speaker.current()
        stamp = to_sec(msg.header.stamp)
        droid = cur is not None and not cur.stop_reason and not (
            stamp and cur.started_at is not None and stamp < cur.started_at)  # voice from
        with self._arbiter_lock:                        # before this sentence was heard
            action = self._arbiter.voice(msg.speaking, self._now(), droid)
            self._arm_barge_timer()
        self._apply_barge_in(action, 'voice activity', stamp)

    def _transcription(self, msg: Transcription) -> None:
        with self._arbiter_lock:
            action = self._arbiter.transcription(msg.text, self._now())
            self._arm_barge_timer()
        self._apply_barge_in(action, f'words: "{msg.text[:40]}"', to_sec(msg.header.stamp))

    def _barge_in_timer(self) -> None:
        with self._arbiter_lock:
            if self._arbiter.paused and self.speaker.paused() is None:
                self._arbiter.reset()      # the paused sentence ended another way
            action = self._arbiter.tick(self._now())
            self._arm_barge_timer()
        self._apply_barge_in(action, 'voice went on')

    def _arm_barge_timer(self) -> None:
        """Tick the arbiter while it waits for something (call with _arbiter_lock)."""
        if self._arbiter.needs_tick:
            if self._barge_timer.is_canceled():
                self._barge_timer.reset()
        elif not self._barge_timer.is_canceled():
            self._barge_timer.cancel()

    def _apply_barge_in(self, action, reason: str, input_stamp: float = 0.0) -> None:
        if action is None:
            return
        log = self.get_logger()
        if action == BARGE_PAUSE:
            cur = self.speaker.current()
            if cur is not None and self.speaker.pause(cur):
                log.info(log_prefix(cur.conversation_id) + f'paused ({reason}): waiting for '
                         f'words before stopping "{cur.text[:40]}"')
        elif action == BARGE_RESUME:
            held = self.speaker.paused()
            if held is not None and self.speaker.resume(held):
                log.info(log_prefix(held.conversation_id) + 'no words followed: resuming '
                         f'"{held.text[:40]}"')
        elif action == BARGE_STOP:
            utt = self.speaker.paused() or self.speaker.current()
            if utt is not None and not utt.stop_reason:
                self._barge_in(utt, reason, input_stamp)

    def _barge_in(self, utt: Utterance, reason: str, input_stamp: float = 0.0) -> None:
        t0 = self._now()
        if utt.goal:
            self.speaker.stop(utt, reason)
        else:
            with self._tracker_lock:
                if self._tracker.current == utt.key:
                    self._tracker.interrupt()
            self.speaker.stop_turn(utt.key, reason)
        self._trace(TraceEvent.STAGE_BARGE_IN, utt, t0, input_stamp, reason)
        self.get_logger().info(log_prefix(utt.conversation_id) +
                               f'barge-in ({reason}): stopping "{utt.text[:40]}"')

    # -- Speak action -----------------------------------------------------------------------
    def _on_cancel(self, goal_handle) -> CancelResponse:
        utt = self._goal_utts.get(bytes(goal_handle.goal_id.uuid))
        if utt is not None:
            heard = utt.state in ('playing',)
            if heard:
                self._barge_in(utt, 'cancel')
            else:
                self.speaker.stop(utt, 'cancel')
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle):
        g = goal_handle.request
        utt = Utterance(g.text, conversation_id=g.conversation_id, utterance_id=g.utterance_id,
                        goal=True, voice=self._voice_for(g.voice), received=self._now(),
                        words_per_minute=self._p['words_per_minute'])
        gid = bytes(goal_handle.goal_id.uuid)
        self._goal_utts[gid] = utt
        try:
            if g.text.strip():
                self.speaker.submit(utt)

                def woken():
                    return utt.done.is_set() or (goal_handle.is_cancel_requested and
                                                 not utt.stop_reason)
                # idle until done, a cancel, or the next feedback (0.1 s on the node clock)
                while not (self.activity.wait(woken, timeout=0.1, poll=0.02, what='speak')
                           and utt.done.is_set()):
                    if utt.done.is_set():
                        break
                    if goal_handle.is_cancel_requested and not utt.stop_reason:
                        self.speaker.stop(utt, 'cancel')
                    fb = Speak.Feedback(played=float(utt.played_s),
                                        duration_estimate=float(utt.duration_estimate),
                                        amplitude=float(self._last_amplitude))
                    goal_handle.publish_feedback(fb)
            else:
                utt.status, utt.error = FAILED, 'empty text'
            result = Speak.Result(status=_RESULT.get(utt.status, Speak.Result.FAILED),
                                  played=float(utt.played_s), backend=utt.backend,
                                  error=utt.error if utt.status == FAILED else '')
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
            elif utt.status == FAILED:
                goal_handle.abort()
            else:
                goal_handle.succeed()
            return result
        finally:
            self._goal_utts.pop(gid, None)

    # -- outputs ------------------------------------------------------------------------------
    def _events_loop(self) -> None:
        """Publishes the speaker's events when they are due: sleeps until the next due time
        or a new event (no polling)."""
        while not self._stop.is_set():
            events = []
            try:
                events = self.speaker.pop_due(self._now(), resolve=False)
                for e in events:
                    self._publish_event(e)
            except Exception as exc:  # noqa: BLE001 - keep publishing; say why
                self.get_logger().error(redact(f'event publishing failed: {exc}'))
            finally:
                self.speaker.resolve(events)       # a Speak goal ends after its ENDED
            # idle (droid_common.activity) until the next event is due, or an earlier one
            # is pushed (Speaker wakes this thread then): no polling
            nd = self.speaker.next_due()
            self.activity.wait(lambda: self._stop.is_set() or self.speaker.next_due() != nd,
                               until=nd, poll=0.25, what='speech events')

    def _publish_event(self, e) -> None:
        if e.kind == 'amplitude':
            self._last_amplitude = e.amplitude
            m = SpeechAmplitude(conversation_id=e.conversation_id, amplitude=float(e.amplitude))
            m.header.stamp = to_time_msg(e.t)
            self.pub_amp.publish(m)
            return
        utt = e.utt
        if e.kind == 'written':
            turn = self._turns.get(utt.key)
            if not utt.goal and turn is not None and not turn['first_audio']:
                turn['first_audio'] = True
                self._trace(TraceEvent.STAGE_FIRST_AUDIO, utt, e.t, utt.input_stamp, utt.backend)
            return
        if e.kind == 'started':
            self._speech_event(SpeechEvent.STARTED, utt, e.t)
            return
        if e.kind == 'failed':
            self.get_logger().error(log_prefix(utt.conversation_id) +
                                    f'could not speak "{utt.text[:40]}": {utt.error}')
            self.diag.set(ERROR, f'synthesis failed: {utt.error}', component='synthesis')
            return
        if e.kind == 'dropped':
            return
        if e.kind in ('paused', 'resumed'):
            self._speech_event(SpeechEvent.PAUSED if e.kind == 'paused' else
                               SpeechEvent.RESUMED, utt, e.t, e.played)
            return
        kind = SpeechEvent.ENDED if e.kind == 'ended' else SpeechEvent.INTERRUPTED
        ended_in_turn = not utt.goal and e.kind == 'ended'
        if ended_in_turn:
            with self._turns_lock:      # before ENDED is out: a late marker must see it
                turn = self._turns.get(utt.key)
                if turn is not None:
                    turn['last_ended'] = utt.index
        self._log_said(utt, e.kind)     # recorded before ENDED is out: a listener may read it
        self._speech_event(kind, utt, e.t, e.played)
        if e.kind == 'ended' and utt.backend == self.speaker.backend.name and \
                self.speaker.fallback is not None and \
                self.diag.level('synthesis') == WARN and self._fallbacks:
            self.diag.set(OK, f'{utt.backend} speaking again', component='synthesis')
        if ended_in_turn:
            with self._turns_lock:
                turn = self._turns.get(utt.key)
                if turn is not None and (utt.last_in_reply or
                                         turn['last_index'] == utt.index):
                    self._speech_done(utt.key, e.t, utt)

    def _speech_event(self, kind: int, utt: Utterance, t: float,
                      played: float | None = None) -> None:
        played = utt.played_s if played is None else played
        if kind in (SpeechEvent.STARTED, SpeechEvent.PAUSED, SpeechEvent.RESUMED):
            heard = ''
        elif kind == SpeechEvent.ENDED:
            heard = utt.text
        else:
            heard = heard_text(utt.text, played, utt.duration_estimate)
        m = SpeechEvent(conversation_id=utt.conversation_id, utterance_id=utt.utterance_id,
                        sentence_index=0 if utt.goal else utt.index, event=kind, text=utt.text,
                        heard=heard,
                        duration_estimate=float(utt.duration_estimate),
                        played=0.0 if kind == SpeechEvent.STARTED else float(played),
                        last_in_reply=bool(utt.last_in_reply), backend=utt.backend)
        m.header.stamp = to_time_msg(t)
        self.pub_event.publish(m)

    def _speech_done(self, key: tuple, t: float, utt: Utterance | None = None) -> None:
        with self._turns_lock:
            turn = self._turns.get(key)
            if turn is None or turn['done']:
                return
            turn['done'] = True
            ref = utt or Utterance('', conversation_id=key[0], utterance_id=key[1])
            self._trace(TraceEvent.STAGE_SPEECH_DONE, ref, t, turn.get('stamp', 0.0),
                        ref.backend)
            for old in list(self._turns)[:-64]:
                self._turns.pop(old, None)

    def _trace(self, stage: int, utt: Utterance, t: float, input_stamp: float,
               detail: str = '') -> None:
        m = TraceEvent(conversation_id=utt.conversation_id, utterance_id=utt.utterance_id,
                       stage=stage, node=self._fqn, detail=detail)
        m.header.stamp = to_time_msg(t)
        m.input_stamp = to_time_msg(input_stamp)
        self.pub_trace.publish(m)

    def _on_synth_warning(self, message: str, utt: Utterance) -> None:
        self._fallbacks += 1
        self.get_logger().warning(log_prefix(utt.conversation_id) + redact(message))
        self.diag.set(WARN, redact(message), component='synthesis',
                      fallbacks=str(self._fallbacks))

    def _log_said(self, utt: Utterance, how: str) -> None:
        self.get_logger().info(log_prefix(utt.conversation_id) +
                               f'said [{utt.backend}] "{utt.text}" ({utt.played_s:.2f} s, {how})')
        if self._record is None:
            return
        line = json.dumps({'conversation_id': utt.conversation_id,
                           'utterance_id': utt.utterance_id, 'index': utt.index,
                           'goal': utt.goal, 'text': utt.text, 'spoken': utt.spoken,
                           'backend': utt.backend,
                           'status': utt.status, 'played': round(utt.played_s, 4),
                           'started': utt.started_at, 'ended': utt.ended_at,
                           'last_in_reply': utt.last_in_reply})
        with self._record_lock:
            self._record.write(line + '\n')
            self._record.flush()

    def close(self) -> None:
        self._stop.set()
        self.activity.notify()
        self.speaker.wake()
        self.output.close()
        self._tap.close()
        jumps = moments(self._tap.jumps)
        under = moments(getattr(self.output, 'underflows', ()))
        if under:
            jumps += ('; ' if jumps else '') + f'output underruns at {under}'
        self.get_logger().info(f'echo reference: {self._tap.published} messages, '
                               f'{self._tap.realigned} re-alignments'
                               f'{" (" + jumps + ")" if jumps else ""}, {self._tap.dropped} '
                               'dropped')
        self.speaker.close()
        self._events_thread.join(timeout=2.0)
        if self._record is not None:
            self._record.close()


def main(args=None):
    run(TtsNode, args=args, executor_factory=lambda: MultiThreadedExecutor(num_threads=4))


if __name__ == '__main__':
    main()

"""``listener`` node: wake word + voice activity + endpointing (logic in
:mod:`droid_audio.endpointer`, models in :mod:`droid_audio.detectors`).

Subscribes ``audio/mic`` (AudioChunk), ``voice/speech_event`` (the droid's own speech,
for the self-hearing guard and the follow-up window) and ``mode`` (SystemMode, latched).
Publishes ``audio/wake_word`` (WakeWord), ``audio/voice_activity`` (VoiceActivity, on
change and every ``voice_activity_period_s``), ``audio/utterance`` (Utterance: STARTED
with pre-roll, AUDIO, ENDED/CANCELLED) and ``trace`` (STAGE_WAKE, STAGE_SPEECH_START,
STAGE_SPEECH_END). The subscription callback only queues the chunk; inference runs in a
worker thread with a bounded queue (oldest dropped and counted on /diagnostics).
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np
from droid_common import names
from droid_common.audio import MIC_RATE
from droid_common.ros import (
    ERROR,
    LATCHED_SUB_QOS,
    OK,
    RELIABLE_QOS,
    SENSOR_QOS,
    WARN,
    Diagnostics,
    declare,
    log_prefix,
    now_sec,
    run,
    to_sec,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from rclpy.node import Node

from droid_audio.detectors import (
    EnergyVad,
    GatedWakeWord,
    ModelError,
    SileroVad,
    WakeWordDetector,
)
from droid_audio.endpointer import (
    MODE,
    MODE_NAMES,
    ListenerConfig,
    ListenerCore,
    TraceMark,
    UtteranceEvent,
    VoiceActivityEvent,
    WakeEvent,
    parse_mode,
)
from droid_audio.framing import DropOldestQueue, FrameAssembler
from droid_audio.turn import SmartTurn
from droid_audio.msgs import chunk_samples, int16_array
from droid_msgs.msg import (
    AudioChunk,
    SpeechEvent,
    SystemMode,
    TraceEvent,
    Transcription,
    Utterance,
    VoiceActivity,
    WakeWord,
)

_TRIGGERS = {0: 'wake word', 1: 'follow-up', 2: 'barge-in', 3: 'injected'}
_ENDS = {0: '', 1: 'silence', 2: 'max length', 3: 'cancelled'}


class ListenerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('listener', **kwargs)
        d = ListenerConfig()
        self.wake_models = declare(self, 'wakeword_models', ['hey_jarvis'],
                                   'openwakeword models: built-in names (hey_jarvis, alexa, '
                                   'hey_mycroft, hey_rhasspy, timer, weather) or .onnx paths',
                                   read_only=True)
        self.vad_model = declare(self, 'vad_model', '', "Silero VAD .onnx ('' = the file "
                                 'openwakeword ships, else faster-whisper\'s)', read_only=True)
        self.turn_model_path = declare(self, 'turn_model', '', "Semantic end-of-turn model "
                                       "(smart-turn v3 .onnx; '' = the one pipecat-ai ships; "
                                       "'off' = silence-only endpointing)", read_only=True)
        self.turn_threads = declare(self, 'turn_model_threads', 1, 'CPU threads of one '
                                    'smart-turn run (2 cores: ~105 ms on 1 thread, ~65 ms '
                                    'on 2, which leave no core to the audio meanwhile)',
                                    min_value=1, max_value=8, read_only=True)
        cfg = ListenerConfig(
            threshold=declare(self, 'threshold', d.threshold, 'Wake-word score threshold',
                              min_value=0.0, max_value=1.0, read_only=True),
            refractory_s=declare(self, 'refractory_s', d.refractory_s, 'Ignore further wakes '
                                 'for this long after one [s]', min_value=0.0, max_value=30.0,
                                 read_only=True),
            vad_threshold=declare(self, 'vad_threshold', d.vad_threshold, 'Speech '
                                  'probability counted as voiced', min_value=0.0,
                                  max_value=1.0, read_only=True),
            barge_in_threshold=declare(self, 'barge_in_threshold', d.barge_in_threshold,
                                       'Stricter speech probability while the droid speaks',
                                       min_value=0.0, max_value=1.0, read_only=True),
            barge_in_ms=declare(self, 'barge_in_ms', d.barge_in_ms, 'Voiced this long above '
                                'barge_in_threshold = barge-in [ms]', min_value=0.0,
                                max_value=3000.0, read_only=True),
            onset_ms=declare(self, 'onset_ms', d.onset_ms, 'Voiced this long = voice onset '
                             '[ms]', min_value=0.0, max_value=3000.0, read_only=True),
            hangover_ms=declare(self, 'hangover_ms', d.hangover_ms, 'Voice activity stays on '
                                'this long after speech [ms]', min_value=0.0,
                                max_value=5000.0, read_only=True),
            silence_ms=declare(self, 'silence_ms', d.silence_ms, 'Trailing silence that ends '
                               'an utterance when no turn model is loaded [ms]',
                               min_value=80.0, max_value=10000.0, read_only=True),
            turn_silence_ms=declare(self, 'turn_silence_ms', d.turn_silence_ms, 'Short '
                                    'trailing silence that ends the turn when the turn '
                                    'model finds it complete [ms]', min_value=80.0,
                                    max_value=2000.0, read_only=True),
            incomplete_silence_ms=declare(self, 'incomplete_silence_ms',
                                          d.incomplete_silence_ms, 'Trailing silence that '
                                          'ends the turn when the turn model finds it '
                                          'incomplete ("play the, um, ...") [ms]',
                                          min_value=200.0, max_value=10000.0,
                                          read_only=True),
            turn_threshold=declare(self, 'turn_threshold', d.turn_threshold, 'Turn-complete '
                                   'probability of the turn model that ends the turn',
                                   min_value=0.0, max_value=1.0, read_only=True),
            words_silence_ms=declare(self, 'words_silence_ms', d.words_silence_ms,
                                     'Silence that ends the turn when the partial '
                                     'transcript covering all the speech reads as a '
                                     'finished sentence, even if the turn model is unsure '
                                     '(0 = off; needs the turn model) [ms]', min_value=0.0,
                                     max_value=10000.0, read_only=True),
            noise_gate_db=declare(self, 'noise_gate_db', d.noise_gate_db, 'Over background '
                                  'noise, a VAD window below noise_gate_prob counts as speech '
                                  'for the end of speech only this far above the noise '
                                  "floor (cuts the VAD's slow decay after the last word; "
                                  '0 = off) [dB]', min_value=0.0, max_value=40.0,
                                  read_only=True),
            noise_gate_prob=declare(self, 'noise_gate_prob', d.noise_gate_prob, 'A VAD window '
                                    'at least this sure is speech whatever its level',
                                    min_value=0.0, max_value=1.0, read_only=True),
            min_speech_ms=declare(self, 'min_speech_ms', d.min_speech_ms, 'Voiced audio '
                                  'needed before silence can end an utterance [ms]',
                                  min_value=0.0, max_value=5000.0, read_only=True),
            max_utterance_s=declare(self, 'max_utterance_s', d.max_utterance_s, 'Longest '
                                    'utterance [s]', min_value=1.0, max_value=120.0,
                                    read_only=True),
            wake_timeout_s=declare(self, 'wake_timeout_s', d.wake_timeout_s, 'End a woken '
                                   'utterance with no speech after this long [s]',
                                   min_value=0.5, max_value=60.0, read_only=True),
            preroll_ms=declare(self, 'preroll_ms', d.preroll_ms, 'Audio kept before the '
                               'trigger so the first syllable is not cut [ms]',
                               min_value=0.0, max_value=3000.0, read_only=True),
            follow_up_s=declare(self, 'follow_up_s', d.follow_up_s, 'Follow-up window after '
                                'the droid finished replying [s]', min_value=0.0,
                                max_value=120.0, read_only=True),
            wake_hold_ms=declare(self, 'wake_hold_ms', d.wake_hold_ms, 'A follow-up does not '
                                 'end this long after the wake score rose without firing (the '
                                 'user may be saying the wake phrase; 0 = off) [ms]',
                                 min_value=0.0, max_value=3000.0, read_only=True),
            echo_tail_ms=declare(self, 'echo_tail_ms', d.echo_tail_ms, 'Self-hearing guard '
                                 'stays on this long after the droid stops [ms]',
                                 min_value=0.0, max_value=5000.0, read_only=True),
            vad_period_s=declare(self, 'voice_activity_period_s', d.vad_period_s, 'Steady '
                                 'VoiceActivity publishing period [s]', min_value=0.05,
                                 max_value=60.0, read_only=True),
        )
        self.wake_gate = declare(self, 'wake_vad_gate', True, 'Run the wake-word model only '
                                 'around voice (after 2 s without any, frames are kept and '
                                 'replayed at the next hint of voice): saves most of the '
                                 'idle CPU', read_only=True)
        initial = declare(self, 'initial_mode', 'IDLE', 'Mode until a SystemMode arrives: '
                          'SLEEP, IDLE, AMBIENT or INTERACTIVE', read_only=True,
                          choices=['SLEEP', 'IDLE', 'AMBIENT', 'INTERACTIVE'])
        queue_chunks = declare(self, 'queue_chunks', 50, 'Audio chunks queued for the '
                               'worker; the oldest is dropped when full', min_value=2,
                               max_value=1000, read_only=True)
        self.cfg = cfg
        try:
            mode = parse_mode(initial)
        except ValueError as exc:
            self.get_logger().error(f'{exc}; starting in IDLE')
            mode = MODE['IDLE']
        if not cfg.turn_silence_ms <= cfg.incomplete_silence_ms:
            self.get_logger().error(f'turn_silence_ms {cfg.turn_silence_ms} > '
                                    f'incomplete_silence_ms {cfg.incomplete_silence_ms}; '
                                    'using turn_silence_ms for both')
            cfg.incomplete_silence_ms = cfg.turn_silence_ms
        self.diag = Diagnostics(self, hardware_id='listener')
        self.activity = track_activity(self)
        self._load_models()
        self.core = ListenerCore(cfg, initial_mode=mode,
                                 turn_model=self.turn.predict if self.turn else None)
        self.core.emit_early = self._publish

        self.wake_pub = self.create_publisher(WakeWord, names.WAKE_WORD, RELIABLE_QOS)
        self.vad_pub = self.create_publisher(VoiceActivity, names.VOICE_ACTIVITY, RELIABLE_QOS)
        self.utt_pub = self.create_publisher(Utterance, names.UTTERANCE, RELIABLE_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)

        self._audio = DropOldestQueue(queue_chunks)
        self._control = collections.deque()
        self._control_lock = threading.Lock()
        self._assembler = FrameAssembler()
        self._frame_ms = collections.deque(maxlen=500)
        self._utt_seq = 0
        self._dropped_reported = 0
        self._last_stats = time.monotonic()
        self.create_subscription(AudioChunk, names.AUDIO, self._on_audio, SENSOR_QOS)
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self._on_speech, RELIABLE_QOS)
        self.create_subscription(SystemMode, names.MODE, self._on_mode, LATCHED_SUB_QOS)
        if self.turn is not None and cfg.words_silence_ms > 0:
            self.create_subscription(Transcription, names.TRANSCRIPTION, self._on_words,
                                     RELIABLE_QOS)
        self._stop = threading.Event()
        self._worker = self.activity.spawn(self._work, 'listener-worker')

    def _load_models(self) -> None:
        try:
            self.wake = GatedWakeWord(WakeWordDetector(self.wake_models),
                                      open_prob=0.15 if self.wake_gate else 0.0)
            self.get_logger().info(f"wake word models: {', '.join(self.wake.names)} "
                                   f'(threshold {self.cfg.threshold})')
            self.diag.set(OK, 'ready', component='wake_word', models=','.join(self.wake.names))
        except ModelError as exc:
            self.wake = None
            self.get_logger().error(f'{exc}; wake word disabled')
            self.diag.set(ERROR, f'wake word disabled: {exc}', component='wake_word')
        try:
            self.vad = SileroVad(self.vad_model)
            self.diag.set(OK, 'Silero VAD', component='vad', model=self.vad.path)
        except ModelError as exc:
            self.vad = EnergyVad()
            self.get_logger().error(f'{exc}; falling back to a level-based VAD')
            self.diag.set(WARN, f'level-based VAD fallback: {exc}', component='vad')
        self.turn = None
        if self.turn_model_path.strip().lower() in ('off', 'none', 'false'):
            self.get_logger().info(f'no turn model: an utterance ends after '
                                   f'{self.cfg.silence_ms:.0f} ms of silence')
            self.diag.set(OK, f'off: silence-only endpointing ({self.cfg.silence_ms:.0f} ms)',
                          component='turn')
            return
        try:
            self.turn = SmartTurn(self.turn_model_path.strip(), threads=self.turn_threads)
            self.get_logger().info(
                f'turn model {self.turn.path}: a complete turn ends after '
                f'{self.cfg.turn_silence_ms:.0f} ms of silence, an incomplete one after '
                f'{self.cfg.incomplete_silence_ms:.0f} ms ({self.turn_threads} threads)')
            self.diag.set(OK, 'smart-turn', component='turn', model=self.turn.path)
        except ModelError as exc:
            self.get_logger().warning(f'{exc}; silence-only endpointing '
                                      f'({self.cfg.silence_ms:.0f} ms)')
            self.diag.set(WARN, f'no turn model, silence-only endpointing '
                          f'({self.cfg.silence_ms:.0f} ms): {exc}', component='turn')

    # ---- callbacks: copy and queue only --------------------------------------------------------

    def _on_audio(self, msg: AudioChunk) -> None:
        self._audio.put(msg)

    def _on_speech(self, msg: SpeechEvent) -> None:
        with self._control_lock:
            self._control.append(('speech', msg))

    def _on_words(self, msg: Transcription) -> None:
        if not msg.is_final:
            with self._control_lock:
                self._control.append(('words', msg))

    def _on_mode(self, msg: SystemMode) -> None:
        with self._control_lock:
            self._control.append(('mode', msg))

    # ---- worker ---------------------------------------------------------------------------------

    def _has_work(self) -> bool:
        return self._stop.is_set() or len(self._audio) > 0 or bool(self._control)

    def _work(self) -> None:
        while not self._stop.is_set():
            # Idle (droid_common.activity) until a chunk or a control message is queued;
            # every 0.1 s of wall time anyway, for the statistics.
            self.activity.wait(self._has_work, poll=0.02, wall_timeout=0.1, what='audio')
            msg = self._audio.get(timeout=0)
            self._apply_control()
            if msg is not None:
                try:
                    self._process_chunk(msg)
                except Exception as exc:  # noqa: BLE001 - keep listening
                    self.get_logger().error(f'audio processing failed: {exc!r}')
                    self.diag.set(ERROR, f'processing failed: {exc}', component='worker')
            if time.monotonic() - self._last_stats > 2.0:
                self._report_stats()

    def _apply_control(self) -> None:
        while True:
            with self._control_lock:
                if not self._control:
                    return
                kind, msg = self._control.popleft()
            if kind == 'words':
                self._publish(self.core.on_transcript(msg.conversation_id, msg.utterance_id,
                                                      msg.text, to_sec(msg.audio_end)))
                continue
            t = to_sec(msg.header.stamp) or now_sec(self)
            if kind == 'mode':
                old = self.core.mode
                if msg.mode not in MODE_NAMES:
                    self.get_logger().warning(f'ignoring unknown system mode {msg.mode}')
                    continue
                self._publish(self.core.set_mode(msg.mode, t))
                if old == MODE['SLEEP'] and msg.mode != old:
                    self._reset_models()
                if old != msg.mode:
                    self.get_logger().info(f'mode {MODE_NAMES[old]} -> {MODE_NAMES[msg.mode]}')
            else:
                self.core.on_speech_event(msg.event, t, msg.conversation_id, msg.last_in_reply)

    def _reset_models(self) -> None:
        self._assembler.reset()
        self.vad.reset()
        if self.wake is not None:
            self.wake.reset()

    def _process_chunk(self, msg: AudioChunk) -> None:
        gaps = self._assembler.gaps
        frames = self._assembler.push(chunk_samples(msg), to_sec(msg.header.stamp),
                                      sample_rate=msg.sample_rate or MIC_RATE,
                                      channels=msg.channels or 1, seq=msg.seq)
        if self._assembler.gaps != gaps:
            self.core.reset_audio()
        for frame in frames:
            if self.core.mode == MODE['SLEEP']:
                continue
            t0 = time.perf_counter()
            prob = self.vad.predict(frame.samples)
            scores = self.wake.predict(frame.samples, prob) if self.wake is not None else None
            events = self.core.process(frame.t, frame.samples, scores, prob,
                                       getattr(self.vad, 'windows', None))
            self._frame_ms.append((time.perf_counter() - t0) * 1000.0)
            self._publish(events)

    # ---- publishing -----------------------------------------------------------------------------

    def _publish(self, events) -> None:
        for ev in events:
            if isinstance(ev, UtteranceEvent):
                self._publish_utterance(ev)
            elif isinstance(ev, VoiceActivityEvent):
                m = VoiceActivity()
                m.header.stamp = to_time_msg(ev.t)
                m.conversation_id = ev.conversation_id
                m.speaking = ev.speaking
                m.probability = float(min(1.0, max(0.0, ev.probability)))
                m.during_droid_speech = ev.during_droid_speech
                self.vad_pub.publish(m)
            elif isinstance(ev, WakeEvent):
                m = WakeWord()
                m.header.stamp = to_time_msg(ev.t)
                m.conversation_id = ev.conversation_id
                m.model_name = ev.model
                m.score = float(min(1.0, max(0.0, ev.score)))
                m.threshold = float(ev.threshold)
                self.wake_pub.publish(m)
                self.get_logger().info(f'{log_prefix(ev.conversation_id)}wake word '
                                       f'{ev.model!r} (score {ev.score:.2f})')
            elif isinstance(ev, TraceMark):
                m = TraceEvent()
                m.header.stamp = to_time_msg(now_sec(self))
                m.conversation_id = ev.conversation_id
                m.utterance_id = int(ev.utterance_id)
                m.stage = int(ev.stage)
                m.input_stamp = to_time_msg(ev.t)
                m.node = self.get_fully_qualified_name()
                m.detail = ev.detail
                self.trace_pub.publish(m)

    def _publish_utterance(self, ev: UtteranceEvent) -> None:
        m = Utterance()
        m.header.stamp = to_time_msg(ev.t)
        m.conversation_id = ev.conversation_id
        m.utterance_id = int(ev.utterance_id)
        m.state = int(ev.state)
        m.trigger = int(ev.trigger)
        m.end_reason = int(ev.end_reason)
        m.audio_start = to_time_msg(ev.audio_start)
        if ev.audio_end:     # ENDED: end of speech; STARTED/AUDIO: voiced so far
            m.audio_end = to_time_msg(ev.audio_end)
        if ev.state == Utterance.STARTED:
            self._utt_seq = 0
        m.audio.header.stamp = to_time_msg(ev.t)
        m.audio.header.frame_id = 'utterance'
        m.audio.sample_rate = MIC_RATE
        m.audio.channels = 1
        m.audio.seq = self._utt_seq
        m.audio.data = int16_array(ev.audio) if len(ev.audio) else int16_array(np.zeros(0))
        self._utt_seq += 1
        self.utt_pub.publish(m)
        prefix = log_prefix(ev.conversation_id)
        if ev.state == Utterance.STARTED:
            self.get_logger().info(f'{prefix}utterance {ev.utterance_id} started '
                                   f'({_TRIGGERS.get(ev.trigger, ev.trigger)}, '
                                   f'{len(ev.audio) / MIC_RATE:.2f} s pre-roll)')
        elif ev.state in (Utterance.ENDED, Utterance.CANCELLED):
            verb = 'ended' if ev.state == Utterance.ENDED else 'cancelled'
            turn = self.core.last_turn_prob
            turn = f', turn complete p={turn:.2f}' if turn is not None and \
                ev.state == Utterance.ENDED and ev.end_reason == Utterance.END_SILENCE else ''
            if turn and self.core.last_end_detail == 'words':
                turn = f', the words read complete (turn model p={self.core.last_turn_prob:.2f})'
            behind = now_sec(self) - ev.t
            self.get_logger().info(f'{prefix}utterance {ev.utterance_id} {verb} '
                                   f'({_ENDS.get(ev.end_reason, ev.end_reason)}{turn}, '
                                   f'{ev.t - ev.audio_start:.2f} s; decided {behind:.2f} s '
                                   'after the audio)')

    def _report_stats(self) -> None:
        self._last_stats = time.monotonic()
        dropped = self._audio.dropped
        st = self.core.stats
        values = {'mode': MODE_NAMES.get(self.core.mode, '?'), 'dropped_chunks': dropped,
                  'wakes': st['wakes'], 'turn_complete': st['turn_complete'],
                  'turn_incomplete': st['turn_incomplete']}
        if self.wake is not None:
            values['wake_frames_skipped'] = self.wake.skipped
        if self.turn is not None and st['turn_checks']:
            values['turn_ms_last'] = f'{self.turn.last_ms:.0f}' 
        if self._frame_ms:
            ms = np.asarray(self._frame_ms)
            values['frame_ms_p50'] = f'{np.percentile(ms, 50):.2f}'
            values['frame_ms_p99'] = f'{np.percentile(ms, 99):.2f}'
        if dropped != self._dropped_reported:
            self.get_logger().warning(f'worker overloaded: {dropped - self._dropped_reported} '
                                      'audio chunks dropped')
            self._dropped_reported = dropped
            self.diag.set(WARN, f'{dropped} audio chunks dropped (worker overloaded)',
                          component='worker', **values)
        else:
            self.diag.set(OK, f'listening (mode {values["mode"]})', component='worker',
                          **values)

    def close(self) -> None:
        self._stop.set()
        self._audio.close()
        self._worker.join(timeout=3.0)


def main(args=None):
    run(ListenerNode, args=args)


if __name__ == '__main__':
    main()

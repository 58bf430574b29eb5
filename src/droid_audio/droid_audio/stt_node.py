"""``stt`` node: faster-whisper speech-to-text of the listener's utterances.

Subscribes ``audio/utterance`` (Utterance). While an utterance grows, a partial
Transcription is published every ``partial_interval_ms`` of new audio (when the worker is
free); at ENDED one final; CANCELLED publishes nothing. Results go to
``speech/transcription`` (RELIABLE) with source 'whisper', the conversation/utterance
ids and audio_start/audio_end; ``trace`` gets STAGE_PARTIAL (first partial) and
STAGE_FINAL_TRANSCRIPT. The model loads once, in a background thread, with progress
logged; a missing or corrupt model is an ERROR on /diagnostics (no stack trace) and the
node stays up. Models are never downloaded (see :func:`droid_audio.stt_engine.resolve_model`).
"""

from __future__ import annotations

import threading

from droid_common import names
from droid_common.audio import MIC_RATE
from droid_common.ros import (
    ERROR,
    OK,
    RELIABLE_QOS,
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

from droid_audio.detectors import ModelError, SileroVad
from droid_audio.msgs import chunk_samples
from droid_audio.stt_engine import (
    GuardConfig,
    SttModelError,
    UtteranceBuffers,
    WhisperEngine,
    resolve_model,
)
from droid_msgs.msg import TraceEvent, Transcription, Utterance

STAGE_PARTIAL = TraceEvent.STAGE_PARTIAL
STAGE_FINAL = TraceEvent.STAGE_FINAL_TRANSCRIPT


class SttNode(Node):
    def __init__(self, **kwargs):
        super().__init__('stt', **kwargs)
        g = GuardConfig()
        self.model_name = declare(self, 'model', 'base.en', 'Whisper model: a local '
                                  'CTranslate2 model directory, or a size name (tiny.en, '
                                  'base.en, ...) found in model_cache_dir', read_only=True)
        self.cache_dir = declare(self, 'model_cache_dir', '', 'Local directory holding '
                                 'converted models by size name (never downloaded)',
                                 read_only=True)
        self.compute_type = declare(self, 'compute_type', 'int8', 'CTranslate2 compute type',
                                    read_only=True, choices=['int8', 'int8_float32', 'int16',
                                                             'float32', 'default'])
        self.cpu_threads = declare(self, 'cpu_threads', 2, 'CPU threads for inference',
                                   min_value=1, max_value=64, read_only=True)
        self.language = declare(self, 'language', 'en', "Spoken language (ISO 639-1); '' = "
                                'detect (multilingual models only)', read_only=True)
        self.beam_size = declare(self, 'beam_size', 1, 'Beam size (1 = greedy, fastest)',
                                 min_value=1, max_value=10, read_only=True)
        self.partial_ms = declare(self, 'partial_interval_ms', 400, 'A partial per this much '
                                  'new audio [ms] (0 = no partials)', min_value=0,
                                  max_value=10000, read_only=True)
        guard = GuardConfig(
            no_speech_threshold=declare(self, 'no_speech_threshold', g.no_speech_threshold,
                                        'Drop segments with no_speech_prob above this ...',
                                        min_value=0.0, max_value=1.0, read_only=True),
            log_prob_threshold=declare(self, 'log_prob_threshold', g.log_prob_threshold,
                                       '... and avg_logprob below this', min_value=-20.0,
                                       max_value=0.0, read_only=True),
            vad_threshold=declare(self, 'vad_threshold', g.vad_threshold, 'Silero speech '
                                  'probability; an utterance never reaching it is silence '
                                  '(nothing published)', min_value=0.0, max_value=1.0,
                                  read_only=True),
            min_speech_ratio=declare(self, 'min_speech_ratio', g.min_speech_ratio, 'Fraction '
                                     'of VAD windows that must be speech', min_value=0.0,
                                     max_value=1.0, read_only=True),
            max_tokens_per_s=declare(self, 'max_tokens_per_s', g.max_tokens_per_s, 'Token '
                                     'budget per second of audio (stops runaway loops)',
                                     min_value=1.0, max_value=50.0, read_only=True),
        )
        self.strip = declare(self, 'strip_prefixes', ['hey jarvis', 'jarvis'], 'Wake '
                             'phrases removed from the start of transcripts')

        self.activity = track_activity(self)    # with the endpoints: the contract
        self.pub = self.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        self.diag = Diagnostics(self, hardware_id='faster-whisper')
        self.buffers = UtteranceBuffers(self.partial_ms / 1000.0)
        self.create_subscription(Utterance, names.UTTERANCE, self._on_utterance, RELIABLE_QOS)
        try:
            vad = SileroVad()
        except ModelError as exc:
            vad = None
            self.get_logger().warning(f'{exc}; silence guard by VAD disabled')
        self.engine = None
        self._guard, self._vad = guard, vad
        self._stop = threading.Event()
        self._warned_not_ready = False
        self.diag.set(WARN, 'loading model', model=self.model_name)
        self._worker = self.activity.spawn(self._work, 'stt-worker')

    # ---- model ----------------------------------------------------------------------------------

    def _load(self) -> bool:
        try:
            path = resolve_model(self.model_name, self.cache_dir)
            self.get_logger().info(f'loading Whisper model {path} ({self.compute_type}, '
                                   f'{self.cpu_threads} threads) ...')
            engine = WhisperEngine(path, self.compute_type, self.cpu_threads, self.language,
                                   self.beam_size, self._guard, self._vad, tuple(self.strip))
            seconds = engine.load()
        except SttModelError as exc:
            self.get_logger().error(f'{exc}; speech-to-text disabled')
            self.diag.set(ERROR, f'no model: {exc}', model=self.model_name)
            return False
        self.engine = engine
        self.get_logger().info(f'Whisper model loaded and warmed up in {seconds:.1f} s')
        self.diag.set(OK, 'model loaded', model=path, load_s=f'{seconds:.1f}')
        return True

    # ---- subscription: buffer only ------------------------------------------------------------

    def _on_utterance(self, msg: Utterance) -> None:
        cid, uid = msg.conversation_id, msg.utterance_id
        stamp = to_sec(msg.header.stamp)
        if msg.state == Utterance.STARTED:
            self.buffers.start(cid, uid, to_sec(msg.audio_start), stamp,
                               chunk_samples(msg.audio))
        elif msg.state == Utterance.AUDIO:
            self.buffers.append(cid, uid, stamp, chunk_samples(msg.audio))
        elif msg.state == Utterance.ENDED:
            self.buffers.end(cid, uid, stamp, to_sec(msg.audio_end), chunk_samples(msg.audio))
        elif msg.state == Utterance.CANCELLED:
            self.buffers.cancel(cid, uid)

    # ---- worker -----------------------------------------------------------------------------------

    def _next_job(self):
        """The next job; idle (droid_common.activity) while there is none."""
        self.activity.wait(lambda: self._stop.is_set() or self.buffers.has_job(), poll=0.05,
                           wall_timeout=0.5, what='utterances')
        return self.buffers.next_job(timeout=0)

    def _work(self) -> None:
        if not self._load():
            # Keep draining so buffers do not grow; say why nothing is transcribed.
            while not self._stop.is_set():
                job = self._next_job()
                if job is not None and job.kind == 'final':
                    self.get_logger().warning(
                        f'{log_prefix(job.buffer.conversation_id)}utterance '
                        f'{job.buffer.utterance_id} not transcribed: no Whisper model',
                        throttle_duration_sec=10.0)
            return
        while not self._stop.is_set():
            job = self._next_job()
            if job is None:
                continue
            try:
                self._run(job)
            except Exception as exc:  # noqa: BLE001 - keep serving
                self.get_logger().error(f'transcription failed: {exc!r}')
                self.diag.set(ERROR, f'transcription failed: {exc}')

    def _run(self, job) -> None:
        buf = job.buffer
        prefix = log_prefix(buf.conversation_id)
        if job.kind == 'partial':
            if not self.buffers.is_open(buf.key):
                return   # ended or cancelled meanwhile: the final will follow
            new_audio = job.audio[-max(1, int(self.partial_ms * MIC_RATE / 1000)):]
            if buf.partials and self.engine.is_silence(new_audio):
                return   # trailing silence adds no words: keep the worker free for the final
            res = self.engine.transcribe(job.audio)
            if res.silent or not res.text or res.text == buf.last_partial_text:
                return
            if not self.buffers.is_open(buf.key):
                return
            buf.last_partial_text = res.text
            end = buf.audio_start + len(job.audio) / MIC_RATE
            self._publish(buf, res, False, end)
            if buf.partials == 0:
                self._trace(buf, STAGE_PARTIAL, buf.last_stamp)
            buf.partials += 1
            return
        if len(job.audio) == 0:
            return
        res = self.engine.transcribe(job.audio)
        if res.silent or not res.text:
            why = 'silence' if res.silent else \
                f'no text ({res.dropped} segments dropped by the guard)'
            self.get_logger().info(f'{prefix}utterance {buf.utterance_id}: {why}; '
                                   'nothing published')
            return
        self._publish(buf, res, True, buf.audio_end)
        self._trace(buf, STAGE_FINAL, buf.end_stamp)
        dur = len(job.audio) / MIC_RATE
        self.get_logger().info(f'{prefix}utterance {buf.utterance_id}: {res.text!r} '
                               f'({dur:.1f} s audio in {res.seconds:.2f} s)')
        if self.diag.level() != OK:
            self.diag.set(OK, 'model loaded')

    def _publish(self, buf, res, final: bool, audio_end: float) -> None:
        m = Transcription()
        m.header.stamp = to_time_msg(now_sec(self))
        m.conversation_id = buf.conversation_id
        m.utterance_id = int(buf.utterance_id)
        m.text = res.text
        m.is_final = final
        m.confidence = float(res.confidence)
        m.language = res.language or ''
        m.audio_start = to_time_msg(buf.audio_start)
        m.audio_end = to_time_msg(audio_end)
        m.source = 'whisper'
        self.pub.publish(m)

    def _trace(self, buf, stage: int, input_stamp: float) -> None:
        m = TraceEvent()
        m.header.stamp = to_time_msg(now_sec(self))
        m.conversation_id = buf.conversation_id
        m.utterance_id = int(buf.utterance_id)
        m.stage = stage
        m.input_stamp = to_time_msg(input_stamp)
        m.node = self.get_fully_qualified_name()
        m.detail = 'whisper'
        self.trace_pub.publish(m)

    def close(self) -> None:
        self._stop.set()
        self.buffers.close()
        self._worker.join(timeout=5.0)


def main(args=None):
    run(SttNode, args=args)


if __name__ == '__main__':
    main()

"""``stt`` node: faster-whisper speech-to-text of the listener's utterances.

Subscribes ``audio/utterance`` (Utterance). While an utterance grows, a partial
Transcription is published every ``partial_interval_ms`` of new audio while new voiced
audio keeps coming (when the worker is free), and one as soon as the user pauses (the
listener's voiced-so-far mark, ``audio_end`` on AUDIO, stops advancing); at ENDED one
final — the pause's decode itself when no voiced audio came after it, so the final is
out as soon as the endpoint is decided — else a fresh decode; CANCELLED publishes
nothing. Decoding: :class:`droid_audio.stt_engine.WhisperEngine` (10 s encoder window). Results go to
``speech/transcription`` (RELIABLE) with source 'whisper', the conversation/utterance
ids and audio_start/audio_end; ``trace`` gets STAGE_PARTIAL (first partial) and
STAGE_FINAL_TRANSCRIPT. The model loads once, in a background thread, with progress
logged; a missing or corrupt model is an ERROR on /diagnostics (no stack trace) and the
node stays up. A size name that is not cached is downloaded first when ``allow_download``
(:func:`droid_audio.models.resolve_model`): "downloading N%" in the log and on /diagnostics,
retried with a growing pause while the network is down; then it works offline.
"""

from __future__ import annotations

import os
import sys
import threading
import time

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
from droid_audio.models import DownloadError, DownloadProgress, downloads_running
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
        self.model_name = declare(self, 'model', 'tiny.en', 'Whisper model: a local '
                                  'CTranslate2 model directory, or a faster-whisper size '
                                  'name (tiny.en, base.en, small.en, distil-small.en, ...) '
                                  'looked up in the cache, downloaded once if allowed',
                                  read_only=True)
        self.cache_dir = declare(self, 'model_cache_dir', '', "Model cache directory ('' = "
                                 'the Hugging Face cache, ~/.cache/huggingface/hub)',
                                 read_only=True)
        self.allow_download = declare(self, 'allow_download', True, 'Download a size name '
                                      'that is not cached (HF_ENDPOINT, HF_HUB_OFFLINE '
                                      'honoured); false = error instead', read_only=True)
        self.compute_type = declare(self, 'compute_type', 'int8', 'CTranslate2 compute type',
                                    read_only=True, choices=['int8', 'int8_float32', 'int16',
                                                             'float32', 'default'])
        self.cpu_threads = declare(self, 'cpu_threads', 2, 'CPU threads for inference',
                                   min_value=1, max_value=64, read_only=True)
        self.language = declare(self, 'language', 'en', "Spoken language (ISO 639-1); '' = "
                                'detect (multilingual models only)', read_only=True)
        self.beam_size = declare(self, 'beam_size', 1, 'Beam size (1 = greedy, fastest)',
                                 min_value=1, max_value=10, read_only=True)
        self.window_s = declare(self, 'window_s', 10.0, 'Encoder window for utterances up to '
                                'this long [s] (longer: their length + 2 s; a loop is decoded '
                                'again with the full 30 s); shorter decodes faster',
                                min_value=1.0, max_value=30.0, read_only=True)
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
            no_speech_sure_threshold=declare(self, 'no_speech_sure_threshold',
                                             g.no_speech_sure_threshold, 'Drop results '
                                             'with no_speech_prob above this however '
                                             'confident', min_value=0.0, max_value=1.0,
                                             read_only=True),
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
        # Nothing is stripped from the text: the listener cuts the wake phrase out of the
        # audio at the detection point.
        self.strip = ()

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
        self._progress = None           # DownloadProgress while a download runs
        self._downloaded = False
        self._logged_step = -1
        self.diag.set(WARN, 'loading model', model=self.model_name)
        self._worker = self.activity.spawn(self._work, 'stt-worker')

    # ---- model ----------------------------------------------------------------------------------

    def _on_download(self, name: str, repo: str, cache: str) -> None:
        self._downloaded = True
        self.get_logger().info(f"Whisper model '{name}' is not cached: downloading {repo} "
                               f'into {cache} (once; progress below and on /diagnostics)')
        self.diag.set(WARN, f'downloading {name} 0%', model=name, repo=repo, cache=cache)

    def _on_progress(self, info) -> None:          # huggingface_hub's download threads
        if not self.context.ok():                   # shutting down: nothing to report to
            return
        mb = 1e6
        self.diag.set(WARN, f'downloading {info.name} {info.percent}%', model=info.name,
                      percent=str(info.percent), downloaded_mb=f'{info.done / mb:.1f}',
                      total_mb=f'{info.total / mb:.1f}')
        step = info.percent // 10
        if step > self._logged_step:
            self._logged_step = step
            self.get_logger().info(f'downloading {info}')

    def _resolve(self):
        """The model's directory, downloaded first if needed; retried while the download
        fails (network down, hub unreachable). None when shutting down."""
        delay = 15.0
        while not self._stop.is_set():
            self._progress = DownloadProgress(self.model_name, self._on_progress)
            try:
                return resolve_model(self.model_name, self.cache_dir, self.allow_download,
                                     self._progress, on_download=self._on_download)
            except DownloadError as exc:
                if self._stop.is_set() or not self.context.ok():
                    return None
                self.get_logger().error(f'{exc}; retrying in {delay:.0f} s')
                self.diag.set(ERROR, f'download failed, retrying in {delay:.0f} s: {exc}',
                              model=self.model_name)
                self._stop.wait(delay)
                delay = min(delay * 2, 600.0)
            finally:
                self._progress = None
        return None

    def _load(self) -> bool:
        try:
            path = self._resolve()
            if path is None:
                return False
            if self._downloaded:
                self.get_logger().info(f'downloaded {self.model_name} to {path}')
            self.diag.set(WARN, 'loading model', model=path)
            self.get_logger().info(f'loading Whisper model {path} ({self.compute_type}, '
                                   f'{self.cpu_threads} threads) ...')
            engine = WhisperEngine(path, self.compute_type, self.cpu_threads, self.language,
                                   self.beam_size, self._guard, self._vad, tuple(self.strip),
                                   window_s=self.window_s)
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
        voiced = to_sec(msg.audio_end)        # voiced so far (STARTED/AUDIO), 0 = unknown
        if msg.state == Utterance.STARTED:
            self.buffers.start(cid, uid, to_sec(msg.audio_start), stamp,
                               chunk_samples(msg.audio), voiced)
        elif msg.state == Utterance.AUDIO:
            self.buffers.append(cid, uid, stamp, chunk_samples(msg.audio), voiced)
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
            if self._stop.is_set():
                return
            # Keep draining so buffers do not grow; say why nothing is transcribed.
            while not self._stop.is_set():
                job = self._next_job()
                if job is not None and job.kind == 'final':
                    self.get_logger().warning(
                        f'{log_prefix(job.buffer.conversation_id)}utterance '
                        f'{job.buffer.utterance_id} not transcribed: no Whisper model',
                        throttle_duration_sec=10.0)
            return
        if self._downloaded:           # what was said during the download is stale now
            while (job := self.buffers.next_job(timeout=0)) is not None:
                if job.kind == 'final':
                    self.get_logger().info(
                        f'{log_prefix(job.buffer.conversation_id)}utterance '
                        f'{job.buffer.utterance_id} dropped: it ended while the model was '
                        'downloading')
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
            res = self.engine.transcribe(job.audio)
            self.buffers.record(buf, len(job.audio), res)
            if res.silent or not res.text or \
                    (res.text == buf.last_partial_text and job.why != 'pause'):
                return      # (a pause's decode goes out anyway: it covers all the speech)
            if not self.buffers.is_open(buf.key):
                return   # ended or cancelled meanwhile: the final follows (reusing this)
            buf.last_partial_text = res.text
            end = buf.audio_start + len(job.audio) / MIC_RATE
            self._publish(buf, res, False, end)
            if buf.partials == 0:
                self._trace(buf, STAGE_PARTIAL, buf.last_stamp)
            buf.partials += 1
            return
        if job.audio is None:
            res = buf.decoded        # no voiced audio after the last decode: it is the final
        elif len(job.audio) == 0:
            return
        else:
            res = self.engine.transcribe(job.audio)
        if res.silent or not res.text:
            why = 'silence' if res.silent else \
                f'no text ({res.dropped} segments dropped by the guard)'
            self.get_logger().info(f'{prefix}utterance {buf.utterance_id}: {why}; '
                                   'nothing published')
            return
        self._publish(buf, res, True, buf.audio_end)
        self._trace(buf, STAGE_FINAL, buf.end_stamp)
        how = f'the decode made during the pause ({res.seconds:.2f} s)' if job.audio is None \
            else f'{len(job.audio) / MIC_RATE:.1f} s audio in {res.seconds:.2f} s'
        after = time.monotonic() - buf.ended_at
        self.get_logger().info(f'{prefix}utterance {buf.utterance_id}: {res.text!r} ({how}; '
                               f'published {after:.2f} s after the end)')
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
        progress = self._progress
        if progress is not None:
            progress.cancel()            # the download stops at its next chunk
        self.buffers.close()
        self._worker.join(timeout=5.0)


def main(args=None):
    run(SttNode, args=args)
    if downloads_running():      # cancelled, but a download thread waits on the network:
        sys.stdout.flush()       # leave now (its partial file is removed by the next one)
        sys.stderr.flush()
        os._exit(0)


if __name__ == '__main__':
    main()

"""Speech-to-text without rclpy: faster-whisper loading (the model directory comes from
:func:`droid_audio.models.resolve_model`), a guarded transcribe, and the per-utterance
buffers that decide when a partial or the final transcription is due.

Decoding (see :class:`WhisperEngine`): an utterance is one Whisper window, decoded
greedily (or with ``beam_size``) by CTranslate2 with the faster-whisper feature extractor
and tokenizer, without timestamps and without conditioning on earlier text. The encoder
window is ``window_s`` (10 s) rather than Whisper's fixed 30 s — longer utterances get
the next whole second plus 2 s, up to 30 s — which makes a decode of a short command
about 3.5x faster (tiny.en: ~80 ms instead of ~290 ms on 2 cores; 15 s: ~140 ms) at
the same or better accuracy on the droid's phrase set (36 clips: WER 6.2 % at 10 s,
6.8 % at 15 s; 8 s and 6 s loop and lose words); an output that loops (compression
ratio > 2.4, or one phrase said over again) is decoded again with the full 30 s window. Longer audio than 30 s goes through faster-whisper's own ``transcribe``.

Hallucination guard:

* one temperature (0.0): no fallback sampling;
* a result whose ``no_speech_prob`` > ``no_speech_threshold`` **and** ``avg_logprob`` <
  ``log_prob_threshold`` is dropped, so is one whose ``no_speech_prob`` >
  ``no_speech_sure_threshold`` (tiny.en writes a confident "you" for silence), and so
  is one that still loops (or is a few letters over and over, "BLELELE"), and so is a segment that is only one of Whisper's well-known
  training-set hallucinations (video outros and subtitle credits such as "Thanks for
  watching."), which nobody says to a droid;
* an utterance the Silero VAD finds no speech in is not transcribed at all (nothing is
  published for silence);
* at most ``max_tokens_per_s`` x duration + 16 new tokens per utterance (no endless loops).
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
from droid_common.audio import MIC_RATE

# Model resolution and download live in droid_audio.models (re-exported here).
from droid_audio.models import SttModelError, resolve_model  # noqa: F401


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over its zlib-compressed bytes (> 2.4: a repetition loop)."""
    data = text.strip().encode('utf-8')
    return len(data) / len(zlib.compress(data)) if data else 0.0


def repeats(text: str) -> bool:
    """True when the words are one phrase said over again ('Open the door. Open the
    door.'), or most of the text is a few letters over and over inside a word
    ('BLELELELELELE', heard in music): Whisper loops that short texts do not compress
    enough to show."""
    low = text.lower()
    w = re.sub(r"[^a-z0-9' ]", ' ', low).split()
    n = len(w)
    return (n >= 4 and any(all(w[i] == w[i - p] for i in range(p, n))
                           for p in range(1, n // 2 + 1))) or letter_loop(text)


def letter_loop(text: str) -> bool:
    """True when most of the text is 1-4 letters over and over ('BLELELELELELE'): no
    word, so dropped even after the full window (a phrase said twice may be meant)."""
    letters = re.sub(r'[^a-z0-9]', '', text.lower())
    run = max((len(m.group(0)) for m in re.finditer(r'([a-z0-9]{1,4})\1{5,}', letters)),
              default=0)
    return run >= 12 and run >= len(letters) / 2


# Whisper's best-known hallucinations on noise and breathing (outros and credits of the
# subtitled videos it learnt from), compared as lower-case words.
KNOWN_HALLUCINATIONS = frozenset({
    'thanks for watching', 'thank you for watching', 'thanks for watching everyone',
    'thank you so much for watching', 'please subscribe', 'please like and subscribe',
    'like and subscribe', 'subscribe to my channel', 'see you in the next video',
    'subtitles by the amara org community', 'transcription by castingwords',
})


def is_known_hallucination(text: str) -> bool:
    """True when ``text`` is only one of :data:`KNOWN_HALLUCINATIONS` (said once or over)."""
    words = ' '.join(re.sub(r"[^a-z0-9' ]", ' ', text.lower()).split())
    return any(words == ' '.join([h] * k) for h in KNOWN_HALLUCINATIONS for k in (1, 2, 3))


def strip_phrases(text: str, phrases) -> str:
    """Drop a leading wake phrase ('Hey Jarvis, play music.' -> 'play music.')."""
    out = text.strip()
    for p in sorted([p for p in (phrases or []) if p.strip()], key=len, reverse=True):
        words = [re.escape(w) for w in p.split()]
        m = re.match(r'^\W*' + r'\W+'.join(words) + r'\b[\s,.!?:;-]*', out, re.IGNORECASE)
        if m:
            return out[m.end():].strip()
    return out


@dataclass
class GuardConfig:
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    no_speech_sure_threshold: float = 0.9   # above this: dropped however confident
    vad_threshold: float = 0.5          # Silero probability counted as speech
    min_speech_ratio: float = 0.0       # fraction of VAD windows that must be speech
    max_tokens_per_s: float = 8.0


@dataclass
class SttResult:
    text: str
    confidence: float
    language: str
    kept: int = 0
    dropped: int = 0
    silent: bool = False
    seconds: float = 0.0                # processing time


class WhisperEngine:
    """faster-whisper on CPU with the droid's guard. Load once, transcribe many."""

    def __init__(self, model_path: str, compute_type: str = 'int8', cpu_threads: int = 2,
                 language: str = 'en', beam_size: int = 1, guard: GuardConfig | None = None,
                 vad=None, strip: tuple = (), window_s: float = 10.0):
        self.model_path = model_path
        self.compute_type = compute_type
        self.cpu_threads = int(cpu_threads)
        self.language = language or None
        self.beam_size = max(1, int(beam_size))
        self.guard = guard or GuardConfig()
        self.vad = vad                  # SileroVad or None (then no silence gate)
        self.strip = tuple(strip)
        self.window_s = float(min(30.0, max(1.0, window_s)))
        self._model = None
        self._lock = threading.Lock()
        self._dec = None                # feature extractor, tokenizer, prompt (lazy)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self, warm_up: bool = True) -> float:
        """Load the model (seconds taken). Raises :class:`SttModelError`."""
        t0 = time.monotonic()
        try:
            from faster_whisper import WhisperModel
            if not os.path.isfile(os.path.join(self.model_path, 'tokenizer.json')):
                raise SttModelError(f'{self.model_path} has no tokenizer.json')
            model = WhisperModel(self.model_path, device='cpu', compute_type=self.compute_type,
                                 cpu_threads=self.cpu_threads, local_files_only=True)
        except SttModelError:
            raise
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SttModelError(f'cannot load Whisper model {self.model_path}: {msg}') from exc
        if self.language and not model.model.is_multilingual and self.language != 'en':
            raise SttModelError(f"model {self.model_path} is English-only; language "
                                f"'{self.language}' is not supported")
        self._model = model
        if warm_up:
            try:
                self._transcribe(np.zeros(MIC_RATE, dtype=np.float32), 4)
            except Exception as exc:
                self._model = None
                raise SttModelError(f'Whisper model {self.model_path} fails to run: {exc}') from exc
        return time.monotonic() - t0

    def _transcribe(self, audio: np.ndarray, max_new_tokens: int):
        """([(text, avg_logprob, no_speech_prob)], language) for float32 audio."""
        detect = self.language is None and self._model.model.is_multilingual
        if len(audio) <= 30 * MIC_RATE and not detect:
            window = min(30.0, max(self.window_s, math.ceil(len(audio) / MIC_RATE) + 2.0))
            out = self._generate(audio, max_new_tokens, window)
            if window < 30.0 and (compression_ratio(out[0]) > 2.4 or repeats(out[0])):
                out = self._generate(audio, max_new_tokens, 30.0)    # it looped: full window
            return [out], self.language or 'en'
        g = self.guard
        segments, info = self._model.transcribe(
            audio, language=self.language, task='transcribe', beam_size=self.beam_size,
            best_of=1, temperature=0.0, condition_on_previous_text=False,
            without_timestamps=True, no_speech_threshold=g.no_speech_threshold,
            log_prob_threshold=g.log_prob_threshold, compression_ratio_threshold=None,
            vad_filter=False, max_new_tokens=max_new_tokens, suppress_blank=True)
        return [(s.text, s.avg_logprob, s.no_speech_prob) for s in segments], info.language

    def _decoder(self):
        if self._dec is None:
            from faster_whisper.feature_extractor import FeatureExtractor
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens
            m = self._model
            tok = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task='transcribe',
                            language=self.language or 'en')
            fe = FeatureExtractor(feature_size=m.model.n_mels)
            prompt = list(tok.sot_sequence) + [tok.no_timestamps]
            self._dec = (fe, tok, prompt, list(get_suppressed_tokens(tok, [-1])))
        return self._dec

    def _generate(self, audio: np.ndarray, max_new_tokens: int, window_s: float) -> tuple:
        import ctranslate2
        fe, tok, prompt, suppress = self._decoder()
        n = int(window_s * MIC_RATE)
        x = audio[:n] if len(audio) >= n else \
            np.concatenate([audio, np.zeros(n - len(audio), np.float32)])
        feats = fe(x, padding=0)[:, :n // fe.hop_length]
        res = self._model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None])), [prompt],
            beam_size=self.beam_size, patience=1.0, length_penalty=1.0,
            max_length=len(prompt) + max_new_tokens, return_scores=True,
            return_no_speech_prob=True, suppress_blank=True, suppress_tokens=suppress)[0]
        ids = res.sequences_ids[0]
        text = tok.decode([t for t in ids if t < tok.eot])
        avg_logprob = res.scores[0] * len(ids) / (len(ids) + 1)
        return text, float(avg_logprob), float(res.no_speech_prob)

    def is_silence(self, samples: np.ndarray) -> bool:
        if self.vad is None:
            return False
        if self.guard.min_speech_ratio <= 0:
            return not self.vad.has_speech(samples, self.guard.vad_threshold)
        peak, ratio = self.vad.speech_ratio(samples, self.guard.vad_threshold)
        return peak < self.guard.vad_threshold or ratio < self.guard.min_speech_ratio

    def transcribe(self, samples: np.ndarray, check_silence: bool = True) -> SttResult:
        """Transcribe int16 mono 16 kHz audio (thread-safe: one call at a time)."""
        if self._model is None:
            raise SttModelError('Whisper model not loaded')
        t0 = time.monotonic()
        x = np.asarray(samples)
        if check_silence and self.is_silence(x):
            return SttResult('', -1.0, self.language or '', silent=True,
                             seconds=time.monotonic() - t0)
        audio = (x.astype(np.float32) / 32768.0) if x.dtype != np.float32 else x
        dur = len(audio) / MIC_RATE
        cap = int(min(400, self.guard.max_tokens_per_s * dur + 16))
        with self._lock:
            segments, language = self._transcribe(audio, cap)
        kept, dropped = [], 0
        for text, avg_logprob, no_speech in segments:
            if (no_speech > self.guard.no_speech_threshold and
                    avg_logprob < self.guard.log_prob_threshold) or \
                    no_speech > self.guard.no_speech_sure_threshold or \
                    compression_ratio(text) > 2.4 or letter_loop(text) or \
                    is_known_hallucination(text):
                dropped += 1
                continue
            kept.append((text, avg_logprob))
        text = ' '.join(t.strip() for t, _ in kept if t.strip()).strip()
        text = strip_phrases(text, self.strip)
        conf = float(np.clip(np.mean([np.exp(lp) for _, lp in kept]), 0.0, 1.0)) \
            if kept else -1.0
        return SttResult(text, conf, language or '', len(kept), dropped,
                         seconds=time.monotonic() - t0)


# ---- per-utterance buffers ---------------------------------------------------------------

@dataclass
class UtteranceBuffer:
    conversation_id: str
    utterance_id: int
    audio_start: float
    chunks: list = field(default_factory=list)
    samples: int = 0
    ended: bool = False
    audio_end: float = 0.0
    end_stamp: float = 0.0        # stamp of the ENDED message (trace input_stamp)
    last_stamp: float = 0.0       # stamp of the latest message
    partial_at: int = 0           # samples covered by the last partial run
    partials: int = 0
    last_partial_text: str = ''
    voiced: int = 0               # samples up to the end of the voiced audio so far
    voiced_known: bool = False    # the producer says where voiced audio ends (audio_end)
    decoded_upto: int = 0         # samples covered by the latest decode ...
    decoded: SttResult | None = None   # ... and its result
    reused: bool = False          # the final is that result (no decode after the end)
    ended_at: float = 0.0         # time.monotonic() when ENDED arrived

    @property
    def key(self) -> tuple:
        return (self.conversation_id, self.utterance_id)

    @property
    def duration(self) -> float:
        return self.samples / MIC_RATE

    def audio(self) -> np.ndarray:
        if not self.chunks:
            return np.zeros(0, dtype=np.int16)
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0]


@dataclass
class Job:
    kind: str                      # 'partial' or 'final'
    buffer: UtteranceBuffer
    audio: np.ndarray | None       # None: a final that reuses buffer.decoded
    why: str = ''                  # partial: 'cadence' or 'pause'; final: 'decode' or 'reuse'


class UtteranceBuffers:
    """Collects Utterance messages (any thread) and hands jobs to one worker thread.

    Order: finals first (oldest first); then, for the newest open utterance, a *pause*
    partial as soon as the producer's voiced-so-far mark (``Utterance.audio_end`` on
    STARTED/AUDIO) stops advancing and at least ``pause_samples`` (one 32 ms VAD window)
    of audio came after it — the user paused, so the words so far are decoded while the endpoint is still
    being decided; then a *cadence* partial once the audio grew by
    ``partial_interval_s`` since the last partial and new voiced audio came since the
    last decode. Every decode's result is kept (:meth:`record`); at the end, when it
    covered all the voiced audio (no voiced audio came after it), the final reuses it
    instead of decoding again. Without voiced-so-far marks: cadence partials only, and
    the final always decodes."""

    def __init__(self, partial_interval_s: float = 0.4, max_open: int = 4,
                 max_seconds: float = 60.0, pause_samples: int = 512):
        self.partial_interval_s = partial_interval_s
        self.max_open = max_open
        self.max_samples = int(max_seconds * MIC_RATE)
        self.pause_samples = int(pause_samples)
        self._open: dict = {}
        self._finals: list = []
        self._cond = threading.Condition()
        self._closed = False
        self.ignored = 0

    def _mark(self, buf: UtteranceBuffer, voiced_end: float) -> None:
        if voiced_end and voiced_end > 0:
            buf.voiced_known = True
            buf.voiced = max(buf.voiced, min(buf.samples, int(round(
                (voiced_end - buf.audio_start) * MIC_RATE))))

    def start(self, cid: str, uid: int, audio_start: float, stamp: float,
              audio: np.ndarray, voiced_end: float = 0.0) -> None:
        with self._cond:
            buf = UtteranceBuffer(cid, uid, audio_start, last_stamp=stamp)
            self._open[buf.key] = buf
            while len(self._open) > self.max_open:   # forget the oldest open one
                self._open.pop(next(iter(self._open)))
            self._append(buf, audio)
            self._mark(buf, voiced_end)
            self._cond.notify_all()

    def _append(self, buf: UtteranceBuffer, audio: np.ndarray) -> None:
        a = np.asarray(audio, dtype=np.int16)
        if a.size and buf.samples < self.max_samples:
            buf.chunks.append(a.copy())
            buf.samples += len(a)

    def append(self, cid: str, uid: int, stamp: float, audio: np.ndarray,
               voiced_end: float = 0.0) -> bool:
        with self._cond:
            buf = self._open.get((cid, uid))
            if buf is None:
                self.ignored += 1
                return False
            buf.last_stamp = stamp
            self._append(buf, audio)
            self._mark(buf, voiced_end)
            self._cond.notify_all()
            return True

    def end(self, cid: str, uid: int, stamp: float, audio_end: float,
            audio: np.ndarray | None = None) -> bool:
        with self._cond:
            buf = self._open.pop((cid, uid), None)
            if buf is None:
                self.ignored += 1
                return False
            if audio is not None:
                self._append(buf, audio)
            buf.ended = True
            buf.ended_at = time.monotonic()
            buf.end_stamp = buf.last_stamp = stamp
            buf.audio_end = audio_end or (buf.audio_start + buf.duration)
            if buf.voiced_known and audio_end:
                buf.voiced = min(buf.samples, int(round((audio_end - buf.audio_start) *
                                                        MIC_RATE)))
            self._finals.append(buf)
            self._cond.notify_all()
            return True

    def cancel(self, cid: str, uid: int) -> bool:
        with self._cond:
            return self._open.pop((cid, uid), None) is not None

    def is_open(self, key: tuple) -> bool:
        with self._cond:
            return key in self._open

    def record(self, buf: UtteranceBuffer, upto: int, result: SttResult) -> None:
        """Keep a decode's result (of the first ``upto`` samples) for reuse."""
        with self._cond:
            if upto >= buf.decoded_upto:
                buf.decoded_upto, buf.decoded = upto, result
            self._cond.notify_all()

    def next_job(self, timeout: float | None = None):
        """Block up to ``timeout`` s for the next :class:`Job` (None on timeout/close)."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._closed:
                job = self._pick()
                if job is not None:
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def has_job(self) -> bool:
        """Whether :meth:`next_job` would return a job now (no side effects)."""
        with self._cond:
            return self._closed or self._due() is not None

    def _due(self) -> str | None:
        """The kind of job due now: 'final', 'pause', 'cadence' or None (no side effects;
        :meth:`has_job` and :meth:`_pick` share it, so a waiting worker wakes for a pause
        as well as for a cadence partial)."""
        if self._finals:
            return 'final'
        if not self._open:
            return None
        buf = next(reversed(self._open.values()))
        if buf.voiced_known:
            fresh = buf.decoded_upto < buf.voiced       # voiced audio not decoded yet
            if fresh and buf.samples - buf.voiced >= self.pause_samples:
                return 'pause'
            if not fresh:
                return None
        if self.partial_interval_s > 0 and \
                buf.samples - buf.partial_at >= int(self.partial_interval_s * MIC_RATE):
            return 'cadence'
        return None

    def _pick(self):
        due = self._due()
        if due is None:
            return None
        if due == 'final':
            buf = self._finals.pop(0)
            if buf.voiced_known and buf.decoded is not None and buf.voiced > 0 and \
                    buf.decoded_upto >= buf.voiced:
                buf.reused = True
                return Job('final', buf, None, 'reuse')
            return Job('final', buf, buf.audio(), 'decode')
        buf = next(reversed(self._open.values()))
        buf.partial_at = buf.samples
        return Job('partial', buf, buf.audio().copy(), due)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

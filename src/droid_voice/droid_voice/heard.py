"""What the user heard of an interrupted sentence (plain Python, no rclpy).

A sentence stopped after ``played`` of its ``duration`` seconds was heard up to the last
word that finished playing. With word timings from the backend (ElevenLabs sends character
alignment) those are used; otherwise each word's share of the time is estimated from its
length in characters (+1 for the gap after it), which follows speech far better than an
equal share per word: "I" is short, "extraordinary" is long.
"""

from __future__ import annotations


def heard_text(text: str, played: float, duration: float, word_ends=None) -> str:
    """The words of ``text`` heard after ``played`` seconds of a ``duration`` s sentence.

    ``word_ends``: optional end time [s] of each word of ``text`` (backend timings).
    """
    words = text.split()
    if not words or played <= 0.0:
        return ''
    if word_ends is not None and len(word_ends) == len(words):
        return ' '.join(w for w, end in zip(words, word_ends) if end <= played + 1e-6)
    if duration <= 0.0 or played >= duration:
        return text.strip() if played >= duration > 0.0 else ''
    weights = [len(w) + 1 for w in words]
    total = float(sum(weights))
    heard, elapsed = [], 0.0
    for w, weight in zip(words, weights):
        elapsed += duration * weight / total
        if elapsed > played + 1e-6:
            break
        heard.append(w)
    return ' '.join(heard)

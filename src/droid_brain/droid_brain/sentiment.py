"""Sentiment of a reply with VADER (vaderSentiment; its lexicon ships in the wheel).

Label convention (VADER's): compound >= 0.05 positive, <= -0.05 negative, else neutral.
Labels are the droid_msgs/Sentiment constants.
"""

from __future__ import annotations

import functools

from droid_common.contract import constants

_S = constants('Sentiment')
POSITIVE, NEUTRAL, NEGATIVE = _S['POSITIVE'], _S['NEUTRAL'], _S['NEGATIVE']
THRESHOLD = 0.05


@functools.lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    return SentimentIntensityAnalyzer()


def label_for(score: float) -> int:
    if score >= THRESHOLD:
        return POSITIVE
    if score <= -THRESHOLD:
        return NEGATIVE
    return NEUTRAL


def analyse(text: str) -> tuple:
    """``(label, compound score in [-1, 1])`` of ``text``."""
    score = float(_analyzer().polarity_scores(text or '')['compound'])
    return label_for(score), max(-1.0, min(1.0, score))

"""Barge-in that forgives false alarms (plain Python, no rclpy).

When the user's voice starts while the droid speaks, the tts *pauses* (a fade, as fast as
a stop). Then, in order:

* real words confirm the barge-in: a transcription (partial or final) heard since the pause
  with at least ``min_words`` words that are not backchannels, or a command word
  (:func:`droid_common.turn_taking.confirms_barge_in`); or the voice going on for
  ``confirm_speech_s`` (a long sentence whose first partial is late) -> **stop**: the reply
  is cancelled and the user's utterance is heard;
* otherwise, once the voice has stopped and ``resume_s`` has passed since the pause (a
  cough, a door, "uh-huh") -> **resume** where it paused; the turn is not interrupted;
* words that confirm within ``late_s`` after a resume still stop the droid (the
  transcription of a short command can arrive after the resume).

``mode='immediate'`` keeps the old behaviour: any voice stops the droid at once.
The arbiter only decides; the node applies the decision to the speaker.
"""

from __future__ import annotations

from dataclasses import dataclass

from droid_common.turn_taking import DEFAULT_MIN_WORDS, confirms_barge_in

PAUSE, STOP, RESUME = 'pause', 'stop', 'resume'
MODES = ('confirm', 'immediate')


@dataclass
class BargeInConfig:
    mode: str = 'confirm'
    resume_s: float = 0.6          # no real words this long after the pause -> resume
    min_words: int = DEFAULT_MIN_WORDS
    confirm_speech_s: float = 1.2  # voice going on this long confirms without words
    late_s: float = 1.5            # confirming words this soon after a resume still stop


class BargeInArbiter:
    """Feed it the user's voice activity, transcriptions and a periodic tick while
    :attr:`needs_tick` (all times in node-clock seconds); it answers with ``PAUSE`` /
    ``STOP`` / ``RESUME`` / ``None``."""

    def __init__(self, config: BargeInConfig | None = None):
        self.cfg = config or BargeInConfig()
        self.paused_at: float | None = None
        self.voice_since: float | None = None      # the user's voice is on since
        self.voice_off_at: float | None = None
        self.resumed_at: float | None = None
        self.stats = {'paused': 0, 'resumed': 0, 'confirmed': 0}

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    @property
    def needs_tick(self) -> bool:
        """Whether :meth:`tick` can decide anything now (only while paused): a node may
        stop ticking otherwise."""
        return self.paused

    def voice(self, speaking: bool, t: float, droid_speaking: bool) -> str | None:
        if not speaking:
            if self.voice_since is not None:
                self.voice_off_at = t
            self.voice_since = None
            return None
        if self.voice_since is None:
            self.voice_since = t
            self.voice_off_at = None
        if self.paused or not droid_speaking:
            return None
        if self.cfg.mode == 'immediate':
            return self._confirm()
        self.paused_at = t
        self.resumed_at = None
        self.stats['paused'] += 1
        return PAUSE

    def transcription(self, text: str, t: float) -> str | None:
        late = self.resumed_at is not None and t - self.resumed_at <= self.cfg.late_s
        if (self.paused or late) and confirms_barge_in(text, self.cfg.min_words):
            return self._confirm()
        return None

    def tick(self, t: float) -> str | None:
        if not self.paused:
            return None
        if self.voice_since is not None:
            if t - max(self.voice_since, self.paused_at) >= self.cfg.confirm_speech_s:
                return self._confirm()
            return None
        if t - self.paused_at >= self.cfg.resume_s:
            self.paused_at = None
            self.resumed_at = t
            self.stats['resumed'] += 1
            return RESUME
        return None

    def reset(self) -> None:
        """The paused speech ended another way (stopped, superseded, cancelled)."""
        self.paused_at = None
        self.resumed_at = None

    def _confirm(self) -> str:
        self.paused_at = None
        self.resumed_at = None
        self.stats['confirmed'] += 1
        return STOP

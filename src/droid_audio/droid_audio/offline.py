"""The listener's models and logic run over a recording, without ROS (tests, benchmark):
openwakeword + Silero VAD + smart-turn feeding :class:`ListenerCore` frame by frame, the
way the ``listener`` node does, on a timeline made from the sample count."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from droid_common.audio import FRAME_SAMPLES, MIC_RATE

from droid_audio.endpointer import MODE, UTT, ListenerConfig, ListenerCore, UtteranceEvent


@dataclass
class HeardUtterance:
    started: UtteranceEvent
    chunks: list = field(default_factory=list)
    end: UtteranceEvent | None = None

    @property
    def audio(self) -> np.ndarray:
        return np.concatenate([self.started.audio] + [c.audio for c in self.chunks])

    @property
    def audio_start(self) -> float:
        return self.started.audio_start


class OfflineListener:
    def __init__(self, config: ListenerConfig | None = None, wake_models=('hey_jarvis',),
                 turn_model: str | None = '', mode: str = 'IDLE'):
        """``turn_model``: '' = the packaged smart-turn model, a path, or None (off)."""
        from droid_audio.detectors import GatedWakeWord, SileroVad, WakeWordDetector
        self.wake = GatedWakeWord(WakeWordDetector(list(wake_models)))   # as the node
        self.vad = SileroVad()
        self.turn = None
        if turn_model is not None:
            from droid_audio.turn import SmartTurn
            self.turn = SmartTurn(turn_model)
        self.core = ListenerCore(config or ListenerConfig(), initial_mode=MODE[mode],
                                 turn_model=self.turn.predict if self.turn else None)
        self.t = 0.0
        self._carry = np.zeros(0, np.int16)
        self.events: list = []

    @property
    def now(self) -> float:
        """Capture time of the next sample fed (frames are cut across feeds)."""
        return self.t + len(self._carry) / MIC_RATE

    def feed(self, samples: np.ndarray) -> list:
        """Process audio (any length; the remainder of a frame waits for more)."""
        x = np.concatenate([self._carry, np.asarray(samples, np.int16)])
        out = []
        n = FRAME_SAMPLES
        i = 0
        while i + n <= len(x):
            frame = x[i:i + n]
            prob = self.vad.predict(frame)
            scores = self.wake.predict(frame, prob)
            out += self.core.process(self.t, frame, scores, prob, self.vad.windows)
            self.t += n / MIC_RATE
            i += n
        self._carry = x[i:]
        self.events += out
        return out

    def utterances(self, events: list | None = None) -> list:
        """The utterances in ``events`` (default: all so far), in order."""
        out, open_ = [], {}
        for e in self.events if events is None else events:
            if not isinstance(e, UtteranceEvent):
                continue
            key = (e.conversation_id, e.utterance_id)
            if e.state == UTT['STARTED']:
                open_[key] = HeardUtterance(e)
                out.append(open_[key])
            elif key in open_ and e.state == UTT['AUDIO']:
                open_[key].chunks.append(e)
            elif key in open_:
                open_.pop(key).end = e
        return out

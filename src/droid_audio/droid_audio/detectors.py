"""Wake-word and voice-activity models (plain Python; openwakeword + onnxruntime).

- :class:`WakeWordDetector`: openwakeword 0.5.1 with the ONNX runtime; models by name
  (``hey_jarvis``, ``alexa``, ``hey_mycroft``, ``hey_rhasspy``, ``timer``, ``weather``:
  they ship inside the openwakeword wheel) or by path to a custom ``.onnx`` model.
- :class:`SileroVad`: Silero VAD through onnxruntime on the ONNX file openwakeword
  ships (``resources/models/silero_vad.onnx``, v4 interface) or faster-whisper's
  (``assets/silero_vad_v6.onnx``, v6 interface). No torch.
- :class:`EnergyVad`: a crude level-based fallback used only when no Silero model loads.

All take 16 kHz mono int16 frames of 1280 samples (80 ms).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
from droid_common.audio import MIC_RATE
from droid_common.onnx import cpu_session


class ModelError(RuntimeError):
    """A model file is missing or cannot be loaded (message is user-facing)."""


def _session(path: str, threads: int = 1):
    """The listener's models: :func:`droid_common.onnx.cpu_session` (threads that sleep)."""
    return cpu_session(path, threads)


def openwakeword_models_dir() -> Path:
    import openwakeword
    return Path(openwakeword.__file__).resolve().parent / 'resources' / 'models'


def builtin_wakeword_models() -> dict:
    """{name: onnx path} of the models shipped in the openwakeword wheel."""
    import openwakeword
    return {name: spec['model_path'].replace('.tflite', '.onnx')
            for name, spec in openwakeword.models.items()}


class WakeWordDetector:
    """openwakeword streaming detector over ONNX models. ``predict(frame)`` returns
    ``{model_name: score}`` for one 80 ms frame."""

    def __init__(self, models):
        names = [m for m in (models or []) if str(m).strip()]
        if not names:
            raise ModelError('no wake-word model configured (parameter wakeword_models)')
        builtin = builtin_wakeword_models()
        paths, labels = [], []
        for m in names:
            m = str(m).strip()
            if m.endswith('.onnx') or os.sep in m:
                if not os.path.isfile(m):
                    raise ModelError(f'wake-word model file not found: {m}')
                if not m.endswith('.onnx'):
                    raise ModelError(f'wake-word model must be an .onnx file: {m}')
                paths.append(m)
                labels.append(Path(m).stem)
            else:
                key = m.replace(' ', '_')
                if key not in builtin or not os.path.isfile(builtin[key]):
                    raise ModelError(f"unknown wake-word model '{m}' (built in: "
                                     f"{', '.join(sorted(builtin))}; or give a .onnx path)")
                paths.append(builtin[key])
                labels.append(key)
        try:
            import openwakeword
            # Full paths: openwakeword keys each model by its file stem.
            self._model = openwakeword.Model(wakeword_models=list(paths),
                                             inference_framework='onnx')
        except Exception as exc:
            raise ModelError(f'cannot load wake-word models {names}: {exc}') from exc
        self._labels = dict(zip([Path(p).stem for p in paths], labels))
        self.names = labels

    def predict(self, frame: np.ndarray) -> dict:
        scores = self._model.predict(np.asarray(frame, dtype=np.int16))
        return {self._labels.get(k, k): float(v) for k, v in scores.items()}

    def reset(self) -> None:
        """Forget the streaming context (after a gap or sleep)."""
        self._model.reset()
        pre = self._model.preprocessor
        pre.raw_data_buffer.clear()
        pre.melspectrogram_buffer = np.ones((76, 32)).astype(np.float32)
        pre.accumulated_samples = 0
        pre.raw_data_remainder = np.empty(0)
        pre.feature_buffer = pre._get_embeddings(
            np.random.randint(-1000, 1000, 16000 * 4).astype(np.int16))


class GatedWakeWord:
    """A :class:`WakeWordDetector` run only around voice (openwakeword's features are
    most of the listener's idle CPU). ``predict(frame, vad_prob)``: once the VAD has
    heard nothing (probability < ``open_prob``) for ``hold_frames`` frames, frames are
    only kept (the last ``keep_frames``) and score 0; the next frame with a hint of voice
    first replays the kept frames through the detector, so its streaming context (the
    model reads ~2 s: 16 embeddings of 76 mel frames) is exactly what it would have been,
    and the detector runs on from there. A wake phrase is voice, so nothing is missed."""

    def __init__(self, detector, open_prob: float = 0.15, hold_frames: int = 25,
                 keep_frames: int = 32):
        self.detector = detector
        self.names = detector.names
        self.open_prob = float(open_prob)
        self.hold_frames = int(hold_frames)
        self._kept = collections.deque(maxlen=int(keep_frames))
        self._running = True
        self._quiet = 0
        self.skipped = 0            # frames not run through the detector
        self.replays = 0            # times the kept frames were replayed

    def predict(self, frame: np.ndarray, vad_prob: float) -> dict:
        voice = vad_prob >= self.open_prob
        self._quiet = 0 if voice else self._quiet + 1
        if self._running:
            scores = self.detector.predict(frame)
            if self._quiet >= self.hold_frames:
                self._running = False
            return scores
        if not voice:
            self._kept.append(np.array(frame, dtype=np.int16))
            self.skipped += 1
            return {n: 0.0 for n in self.names}
        for kept in self._kept:
            self.detector.predict(kept)
        self._kept.clear()
        self.replays += 1
        self._running = True
        return self.detector.predict(frame)

    def reset(self) -> None:
        self.detector.reset()
        self._kept.clear()
        self._running, self._quiet = True, 0


def default_vad_model() -> str:
    """The Silero ONNX file shipped by openwakeword, else faster-whisper's."""
    candidates = []
    try:
        candidates.append(openwakeword_models_dir() / 'silero_vad.onnx')
    except Exception:  # noqa: BLE001
        pass
    try:
        import faster_whisper
        candidates.append(Path(faster_whisper.__file__).resolve().parent / 'assets' /
                          'silero_vad_v6.onnx')
    except Exception:  # noqa: BLE001
        pass
    for c in candidates:
        if c.is_file():
            return str(c)
    raise ModelError('no Silero VAD ONNX file found (openwakeword or faster-whisper)')


class SileroVad:
    """Streaming Silero VAD. ``predict(frame)`` returns the highest speech probability
    of the 512-sample windows completed by this frame (state carried across frames)."""

    WINDOW = 512

    def __init__(self, model_path: str = '', threads: int = 1):
        path = model_path or default_vad_model()
        if not os.path.isfile(path):
            raise ModelError(f'VAD model file not found: {path}')
        try:
            self._sess = _session(path, threads)
        except Exception as exc:
            raise ModelError(f'cannot load VAD model {path}: {exc}') from exc
        names = [i.name for i in self._sess.get_inputs()]
        if 'sr' in names:
            self._kind = 'v4'
        elif names[:3] == ['input', 'h', 'c']:
            self._kind = 'v6'
        else:
            raise ModelError(f'unsupported Silero VAD model interface {names} in {path}')
        self.path = path
        self.reset()

    def reset(self) -> None:
        if self._kind == 'v4':
            self._h = np.zeros((2, 1, 64), np.float32)
            self._c = np.zeros((2, 1, 64), np.float32)
        else:
            self._h = np.zeros((1, 1, 128), np.float32)
            self._c = np.zeros((1, 1, 128), np.float32)
            self._context = np.zeros(64, np.float32)
        self._carry = np.zeros(0, np.float32)
        self._last = 0.0
        self.windows = []

    def _window(self, x: np.ndarray) -> float:
        if self._kind == 'v4':
            out, self._h, self._c = self._sess.run(None, {
                'input': x[None, :], 'sr': np.array(MIC_RATE, np.int64),
                'h': self._h, 'c': self._c})
            return float(out[0][0])
        inp = np.concatenate([self._context, x])[None, :]
        self._context = x[-64:]
        out, self._h, self._c = self._sess.run(None, {'input': inp, 'h': self._h, 'c': self._c})
        return float(np.ravel(out)[0])

    def predict(self, frame: np.ndarray) -> float:
        x = np.asarray(frame, dtype=np.float32) / 32768.0
        buf = np.concatenate([self._carry, x]) if len(self._carry) else x
        probs = []
        n = self.WINDOW
        i = 0
        carried = len(self._carry)
        while i + n <= len(buf):
            probs.append(self._window(buf[i:i + n]))
            i += n
        self._carry = buf[i:].copy()
        # (probability, end of the window in samples from the start of this frame)
        self.windows = [(p, (k + 1) * n - carried) for k, p in enumerate(probs)]
        if probs:
            self._last = max(probs)
        return self._last

    def speech_ratio(self, samples: np.ndarray, threshold: float = 0.5) -> tuple:
        """(max probability, fraction of windows >= threshold) over a whole clip; the
        streaming state is reset before and after."""
        self.reset()
        x = np.asarray(samples, dtype=np.float32) / 32768.0
        probs = [self._window(x[i:i + self.WINDOW])
                 for i in range(0, len(x) - self.WINDOW + 1, self.WINDOW)]
        self.reset()
        if not probs:
            return 0.0, 0.0
        p = np.asarray(probs)
        return float(p.max()), float(np.mean(p >= threshold))

    def has_speech(self, samples: np.ndarray, threshold: float = 0.5) -> bool:
        """True as soon as one window of the clip reaches ``threshold`` (stops there);
        the streaming state is reset before and after."""
        self.reset()
        x = np.asarray(samples, dtype=np.float32) / 32768.0
        try:
            return any(self._window(x[i:i + self.WINDOW]) >= threshold
                       for i in range(0, len(x) - self.WINDOW + 1, self.WINDOW))
        finally:
            self.reset()


class EnergyVad:
    """Fallback VAD from the frame level: 0 below ``floor_dbfs``, 1 at ``floor + span``."""

    def __init__(self, floor_dbfs: float = -50.0, span_db: float = 20.0):
        self.floor, self.span = floor_dbfs, span_db

    def reset(self) -> None:
        pass

    def predict(self, frame: np.ndarray) -> float:
        x = np.asarray(frame, dtype=np.float32)
        rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
        db = 20.0 * np.log10(max(rms, 1e-3) / 32768.0)
        return float(np.clip((db - self.floor) / self.span, 0.0, 1.0))

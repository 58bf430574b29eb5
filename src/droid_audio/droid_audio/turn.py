"""Semantic end of turn: the smart-turn v3 model, run with onnxruntime (no torch).

Smart-turn (BSD-2, by Daily; shipped in the ``pipecat-ai`` wheel as
``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``) reads the last 8 s of
the user's audio and says how likely the user has finished their turn, from the words
*and* the intonation: "what time is it?" is complete, "play the, um," is not.

Input: 16 kHz mono audio, the last 8 s (zero-padded at the front when shorter),
normalised to zero mean and unit variance, as Whisper log-mel features (80 x 800,
``chunk_length=8``; computed with faster-whisper's numpy feature extractor, which gives
the same features as the Hugging Face Whisper extractor). Output: one probability.

Only the model file is used: the droid installs ``pipecat-ai`` without its
dependencies (``requirements-nodeps.txt``) and never imports it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
from droid_common.audio import MIC_RATE

from droid_audio.detectors import ModelError, _session

WINDOW_S = 8
PACKAGED_MODEL = 'pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx'


def default_turn_model() -> str:
    """Path of the smart-turn ONNX file inside the installed ``pipecat-ai`` distribution
    (found through its metadata; the package is not imported)."""
    from importlib import metadata
    try:
        dist = metadata.distribution('pipecat-ai')
    except metadata.PackageNotFoundError as exc:
        raise ModelError('smart-turn model not installed (pip install --no-deps '
                         'pipecat-ai==1.14.0, see requirements-nodeps.txt)') from exc
    path = Path(dist.locate_file(PACKAGED_MODEL))
    if not path.is_file():
        raise ModelError(f'smart-turn model file missing from pipecat-ai {dist.version}: '
                         f'{path}')
    return str(path)


class SmartTurn:
    """``predict(samples)`` -> probability in [0, 1] that the turn is complete, for the
    utterance audio so far (16 kHz mono int16 or float; only the last 8 s are used)."""

    def __init__(self, model_path: str = '', threads: int = 1):
        path = model_path or default_turn_model()
        if not os.path.isfile(path):
            raise ModelError(f'smart-turn model file not found: {path}')
        try:
            self._sess = _session(path, threads)
        except Exception as exc:
            raise ModelError(f'cannot load smart-turn model {path}: {exc}') from exc
        inputs = self._sess.get_inputs()
        if [i.name for i in inputs] != ['input_features'] or \
                list(inputs[0].shape[1:]) != [80, 100 * WINDOW_S]:
            raise ModelError(f'{path} is not a smart-turn v3 model (inputs '
                             f'{[(i.name, i.shape) for i in inputs]})')
        from faster_whisper.feature_extractor import FeatureExtractor
        self._fe = FeatureExtractor(chunk_length=WINDOW_S)
        self._lock = threading.Lock()
        self.path = path
        self.last_ms = 0.0

    def features(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        n = WINDOW_S * MIC_RATE
        x = x[-n:] if len(x) >= n else np.concatenate([np.zeros(n - len(x), np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        return self._fe(x, padding=0)[:, :100 * WINDOW_S].astype(np.float32)

    def predict(self, samples: np.ndarray) -> float:
        t0 = time.perf_counter()
        feats = self.features(samples)[None]
        with self._lock:
            out = self._sess.run(None, {'input_features': feats})[0]
        self.last_ms = (time.perf_counter() - t0) * 1000.0
        return float(np.clip(np.ravel(out)[0], 0.0, 1.0))

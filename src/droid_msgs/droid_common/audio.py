"""Small audio helpers shared by the droid's packages (plain Python, numpy/scipy).

- :func:`espeak` synthesises speech with the espeak-ng program (Debian package
  ``espeak-ng``): the offline voice, the mock microphone's injected utterances and the
  tests' speech all come from here.
- :func:`to_int16_mono` / :func:`resample` bring any audio to the droid's microphone
  format (16 kHz mono int16).
- :func:`read_audio` reads a WAV/FLAC/OGG/MP3 file with soundfile.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from math import gcd

import numpy as np

MIC_RATE = 16000          # [Hz] the droid's microphone path
FRAME_SAMPLES = 1280      # 80 ms at 16 kHz, what openwakeword wants


class EspeakError(RuntimeError):
    """espeak-ng is missing or failed."""


def espeak_available() -> bool:
    return shutil.which('espeak-ng') is not None


def espeak(text: str, voice: str = '', rate_wpm: float = 0.0, pitch: int = -1,
           timeout: float = 30.0) -> tuple:
    """Synthesise ``text`` with espeak-ng; return ``(int16 mono samples, sample_rate)``."""
    exe = shutil.which('espeak-ng')
    if exe is None:
        raise EspeakError('espeak-ng is not installed (Debian package espeak-ng)')
    cmd = [exe, '--stdout']
    if voice:
        cmd += ['-v', voice]
    if rate_wpm and rate_wpm > 0:
        cmd += ['-s', str(int(rate_wpm))]
    if pitch >= 0:
        cmd += ['-p', str(int(pitch))]
    cmd += ['--', text]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EspeakError(f'espeak-ng timed out after {timeout:.0f} s') from exc
    if proc.returncode != 0 or not proc.stdout:
        raise EspeakError('espeak-ng failed: ' + proc.stderr.decode(errors='replace').strip())
    import soundfile
    data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype='int16', always_2d=True)
    return data[:, 0].copy(), int(rate)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal (float or int16); returns float32."""
    x = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or x.size == 0:
        return x
    from scipy.signal import resample_poly
    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g).astype(np.float32)


def to_int16_mono(data: np.ndarray, rate: int, rate_out: int = MIC_RATE) -> np.ndarray:
    """Any (frames,) or (frames, channels) int/float audio -> int16 mono at ``rate_out``."""
    x = np.asarray(data)
    scale = 1.0 if np.issubdtype(x.dtype, np.integer) else 32767.0
    x = x.astype(np.float32) * scale
    if x.ndim == 2:
        x = x.mean(axis=1)
    y = resample(x, rate, rate_out)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def read_audio(path: str, dtype: str = 'int16') -> tuple:
    """Read an audio file (WAV, FLAC, OGG, MP3 via libsndfile) -> (frames x channels, rate)."""
    import soundfile
    data, rate = soundfile.read(path, dtype=dtype, always_2d=True)
    return data, int(rate)


def rms01(samples: np.ndarray) -> float:
    """RMS of int16 samples normalised to [0, 1] (full-scale sine = 1)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(x * x))) / (32767.0 / np.sqrt(2.0))
    return min(1.0, rms)

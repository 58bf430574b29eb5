"""Draw what the eyes show, for people without the hardware (numpy + zlib; no rclpy).

:func:`eye_pixels` reproduces the sketch's two 8x8 matrices (shapes and pattern levels of
``firmware/droid_eyes/droid_eyes.ino``) in the state's colour, as an (8, 16, 3) float
array; :func:`to_png` writes it scaled up as a PNG (a tiny writer: zlib + struct, no
Pillow); :func:`to_ansi` renders it with 24-bit ANSI colour blocks for a terminal.
"""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np

from droid_eyes.expression import PATTERNS

_P = PATTERNS
SHAPES = {
    'open': [0x3C, 0x7E, 0xFF, 0xFF, 0xFF, 0xFF, 0x7E, 0x3C],
    'wide': [0x3C, 0x7E, 0xFF, 0xE7, 0xE7, 0xFF, 0x7E, 0x3C],
    'happy': [0x00, 0x18, 0x3C, 0x66, 0xC3, 0x81, 0x00, 0x00],
    'sad': [0x00, 0x00, 0x03, 0x0F, 0x3F, 0xFF, 0x7E, 0x3C],     # lids rise to the nose
    'angry': [0x00, 0x00, 0xC0, 0xF0, 0xFC, 0xFF, 0x7E, 0x3C],   # lids fall to the nose
    'closed': [0x00, 0x00, 0x00, 0x00, 0x7E, 0x00, 0x00, 0x00],
}
DEFAULT_SPEED = {_P['blink']: 0.3, _P['pulse']: 0.5, _P['spin']: 1.0, _P['thinking']: 1.5}


def _bits(rows) -> np.ndarray:
    return np.array([[(r >> (7 - c)) & 1 for c in range(8)] for r in rows], dtype=float)


def eye_pixels(pattern: int, color, brightness: float, speed: float, amplitude: float = 0.0,
               t: float = 0.0) -> np.ndarray:
    """Both eyes at time ``t`` [s] as an (8, 16, 3) array of RGB in [0, 1]."""
    hz = speed if speed > 0 else DEFAULT_SPEED.get(pattern, 1.0)
    phase = (t * hz) % 1.0
    lvl = 1.0
    left = np.zeros((8, 8))
    mirror = True
    if pattern == _P['off']:
        lvl = 0.0
    elif pattern == _P['blink']:
        left = _bits(SHAPES['open'] if phase < 0.9 else SHAPES['closed'])
    elif pattern == _P['pulse']:
        left = _bits(SHAPES['open'])
        lvl = 0.15 + 0.85 * (0.5 - 0.5 * math.cos(phase * 2 * math.pi))
    elif pattern == _P['listening']:
        left = _bits(SHAPES['wide'])
    elif pattern in (_P['happy'], _P['sad'], _P['angry']):
        left = _bits(SHAPES[{_P['happy']: 'happy', _P['sad']: 'sad',
                             _P['angry']: 'angry'}[pattern]])
    elif pattern == _P['speaking']:
        half = 1 + int(amplitude * 3)
        rows = [SHAPES['open'][r] if 4 - half <= r < 4 + half else 0 for r in range(8)]
        left = _bits(rows)
        lvl = 0.2 + 0.8 * amplitude
    elif pattern == _P['spin']:
        border = [(0, c) for c in range(8)] + [(r, 7) for r in range(1, 8)] + \
                 [(7, c) for c in range(6, -1, -1)] + [(r, 0) for r in range(6, 0, -1)]
        head = int(phase * 28) % 28
        for k in range(4):
            r, c = border[(head - k) % 28]
            left[r, c] = 1.0
        mirror = False
    elif pattern == _P['thinking']:
        x = phase * 2 if phase < 0.5 else 2 - phase * 2
        col = int(x * 6.99)
        left[2:6, col:col + 2] = 1.0
        mirror = False
    else:  # solid and anything unknown
        left = _bits(SHAPES['open'])
    right = left[:, ::-1] if mirror else left
    mask = np.concatenate([left, right], axis=1)
    rgb = np.clip(np.asarray(list(color)[:3], dtype=float), 0, 1)
    return mask[:, :, None] * rgb[None, None, :] * float(np.clip(brightness * lvl, 0, 1))


GAMMA = 0.45   # LEDs look brighter than their duty cycle: display values as v ** GAMMA


def _display(pixels: np.ndarray) -> np.ndarray:
    return (np.clip(pixels, 0, 1) ** GAMMA * 255 + 0.5).astype(np.uint8)


def to_display(pixels: np.ndarray) -> np.ndarray:
    """Float pixels -> the uint8 RGB values the renders show (gamma applied); the web
    dashboard's ``eyes/image`` carries these."""
    return _display(pixels)


def to_png(pixels: np.ndarray, scale: int = 12, gap: int = 2, eye_gap: int = 2) -> bytes:
    """An (H, W, 3) float image -> PNG bytes, each pixel an LED of ``scale`` px; two eyes
    (W = 16) are drawn ``eye_gap`` LEDs apart."""
    img8 = _display(pixels)
    # unlit LEDs as dark grey dots, so the matrix is visible when off
    img8 = np.where(img8.sum(axis=2, keepdims=True) == 0, np.uint8(28), img8)
    if img8.shape[1] == 16 and eye_gap > 0:
        space = np.zeros((img8.shape[0], eye_gap, 3), dtype=np.uint8)
        img8 = np.concatenate([img8[:, :8], space, img8[:, 8:]], axis=1)
    h, w, _ = img8.shape
    big = np.zeros((h * scale, w * scale, 3), dtype=np.uint8)
    s = scale - gap
    for y in range(h):
        for x in range(w):
            big[y * scale + gap // 2:y * scale + gap // 2 + s,
                x * scale + gap // 2:x * scale + gap // 2 + s] = img8[y, x]
    return png_bytes(big)


def png_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array -> PNG file bytes (8-bit RGB, no filter)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b''.join(b'\x00' + rgb[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack('>I', len(data)) + kind + data + \
            struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + \
        chunk(b'IDAT', zlib.compress(raw, 6)) + chunk(b'IEND', b'')


def to_ansi(pixels: np.ndarray, title: str = '') -> str:
    """An (H, W, 3) float image -> lines of 24-bit ANSI colour blocks (2 chars per LED)."""
    out = [title] if title else []
    for row in _display(pixels).astype(int):
        line = []
        for r, g, b in row:
            if r == g == b == 0:
                line.append('\x1b[38;2;60;60;60m··')
            else:
                line.append(f'\x1b[38;2;{r};{g};{b}m██')
        out.append(''.join(line[:8]) + '\x1b[0m    ' + ''.join(line[8:]) + '\x1b[0m')
    return '\n'.join(out) + '\n'

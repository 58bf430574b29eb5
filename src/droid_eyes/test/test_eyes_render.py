"""The mock's renderings: eye pixels per pattern, a valid PNG, ANSI blocks (no ROS)."""

import struct
import zlib

import numpy as np
from droid_eyes.expression import PATTERNS

from droid_eyes import render


def read_png(data: bytes):
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack('>I', data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack('>I', data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.setdefault(kind, b'')
        chunks[kind] += body
        pos += 12 + n
    w, h, depth, ctype = struct.unpack('>IIBB', chunks[b'IHDR'][:10])
    assert (depth, ctype) == (8, 2) and b'IEND' in chunks
    raw = zlib.decompress(chunks[b'IDAT'])
    rows = [raw[y * (3 * w + 1):(y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return np.frombuffer(b''.join(r[1:] for r in rows), dtype=np.uint8).reshape(h, w, 3)


def test_patterns_light_the_expected_leds():
    red = (1.0, 0.0, 0.0)
    off = render.eye_pixels(PATTERNS['off'], red, 1.0, 0.0)
    assert off.max() == 0
    solid = render.eye_pixels(PATTERNS['solid'], red, 1.0, 0.0)
    assert solid.shape == (8, 16, 3) and solid[3, 3, 0] == 1.0 and solid[0, 0, 0] == 0.0
    assert solid[..., 1:].max() == 0                        # only red
    assert np.array_equal(solid[:, :8], solid[:, 8:][:, ::-1])   # mirrored eyes
    quiet = render.eye_pixels(PATTERNS['speaking'], red, 1.0, 0.0, amplitude=0.0)
    loud = render.eye_pixels(PATTERNS['speaking'], red, 1.0, 0.0, amplitude=1.0)
    assert (loud > 0).sum() > (quiet > 0).sum() and loud.max() > quiet.max()
    happy = render.eye_pixels(PATTERNS['happy'], red, 1.0, 0.0)
    assert not np.array_equal(happy, solid)
    a = render.eye_pixels(PATTERNS['spin'], red, 1.0, 1.0, t=0.0)
    b = render.eye_pixels(PATTERNS['spin'], red, 1.0, 1.0, t=0.5)
    assert (a > 0).sum() == 4 * 2 and not np.array_equal(a, b)   # it moves
    dim = render.eye_pixels(PATTERNS['solid'], red, 0.25, 0.0)
    assert dim.max() == 0.25


def test_png_is_valid_and_shows_the_colour():
    px = render.eye_pixels(PATTERNS['solid'], (0.0, 1.0, 0.0), 1.0, 0.0)
    img = read_png(render.to_png(px, scale=10, gap=2, eye_gap=2))
    assert img.shape == (80, 180, 3)                         # 16 LEDs + 2 between the eyes
    assert tuple(img[35, 85]) == (0, 0, 0)                   # the space between the eyes
    assert tuple(img[35, 125]) == (0, 255, 0)                # the right eye
    assert tuple(img[35, 35]) == (0, 255, 0)                 # a lit LED centre
    assert tuple(img[5, 5]) == (28, 28, 28)                  # an unlit LED
    assert tuple(img[0, 0]) == (0, 0, 0)                     # the gap between LEDs


def test_ansi_blocks():
    px = render.eye_pixels(PATTERNS['solid'], (0.0, 0.0, 1.0), 1.0, 0.0)
    text = render.to_ansi(px, 'eyes: ambient:solid')
    lines = text.splitlines()
    assert lines[0] == 'eyes: ambient:solid' and len(lines) == 9
    assert '\x1b[38;2;0;0;255m██' in text and text.count('██') == 2 * 52   # the open eye shape has 52 LEDs

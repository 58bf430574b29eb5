"""The Arduino sketch compiled for the host (stub Arduino API, g++; the MAX7219 and NeoPixel
drivers' host branches record what they would send) and driven with frames from the Python
codec: the firmware and the codec agree, byte for byte (no ROS, no AVR toolchain; needs a
C++ compiler, which building droid_msgs needs anyway). The real thing, built for the
ATmega328P and run in simavr, is test_eyes_firmware_sim.py."""

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from droid_eyes.expression import PATTERNS

from droid_eyes import protocol as P
from droid_eyes import render

HOST = Path(__file__).resolve().parent.parent / 'firmware' / 'host_test'


def compiler():
    cxx = shutil.which('c++') or shutil.which('g++') or shutil.which('clang++')
    assert cxx, 'a C++ compiler (g++) is needed to build the sketch for the host'
    return cxx


@pytest.fixture(scope='module')
def firmware(tmp_path_factory):
    out = tmp_path_factory.mktemp('fw')
    exes = {}
    for name, flags in (('matrix', []), ('neopixel', ['-DEYES_USE_NEOPIXEL=1'])):
        exe = out / f'host_eyes_{name}'
        res = subprocess.run([compiler(), '-std=c++17', '-Wall', '-Wextra', '-Werror',
                              '-I', str(HOST / 'stubs'), *flags, '-x', 'c++',
                              str(HOST / 'host_main.cpp'), '-o', str(exe)],
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        exes[name] = exe
    return exes


def run(exe, data: bytes, ms: int = 1200):
    res = subprocess.run([str(exe), str(ms)], input=data, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    items = P.Decoder().feed(res.stdout)
    assert all(isinstance(i, P.Frame) for i in items), items     # the sketch emits good frames
    info = {}
    for line in res.stderr.decode().splitlines():
        key, *vals = line.split()
        info.setdefault(key, []).append([int(v) for v in vals])
    return items, info


def test_the_sketch_speaks_the_codec(firmware):
    happy = P.DeviceState.from_floats(PATTERNS['happy'], (1.0, 0.0, 0.0), 1.0, 0.0)
    speak = P.DeviceState.from_floats(PATTERNS['speaking'], (0.0, 1.0, 0.0), 0.5, 0.0)
    bad = bytearray(P.encode(P.SET_STATE, 3, happy.pack()))
    bad[6] ^= 0x10
    stream = b''.join([
        P.encode(P.HELLO, 1, P.hello_payload()),
        P.encode(P.SET_STATE, 2, happy.pack()),
        bytes(bad),
        P.encode(P.AMPLITUDE, 4, b'\xc8'),
        P.encode(P.FULL_STATE, 5, P.full_state_payload(speak, 100)),
        bytes(random.Random(3).randrange(256) for _ in range(200)).replace(b'\xa5', b'\x00'),
        P.encode(P.SET_STATE, 6, b'\x01\x02'),
        P.encode(0x30, 7),
        P.encode(P.HELLO, 8, b'\x63'),
        P.encode(P.HEARTBEAT, 9),
    ])
    frames, info = run(firmware['matrix'], stream, ms=1200)
    kinds = [(f.type, f.seq) for f in frames if f.type != P.DEV_HEARTBEAT]
    assert kinds == [(P.DEV_HELLO, 0), (P.DEV_HELLO, 1), (P.ACK, 2), (P.NACK, 3),
                     (P.ACK, 5), (P.NACK, 6), (P.NACK, 7), (P.NACK, 8)]
    by_seq = {f.seq: f for f in frames if f.type in (P.ACK, P.NACK)}
    assert by_seq[2].payload == bytes((P.SET_STATE,))
    assert by_seq[3].payload == bytes((P.NACK_BAD_CRC,))
    assert by_seq[5].payload == bytes((P.FULL_STATE,))
    assert by_seq[6].payload == bytes((P.NACK_BAD_PAYLOAD,))
    assert by_seq[7].payload == bytes((P.NACK_UNKNOWN_TYPE,))
    assert by_seq[8].payload == bytes((P.NACK_BAD_VERSION,))
    version, boot_id, caps = P.parse_dev_hello(frames[0].payload)
    assert version == P.PROTOCOL_VERSION and caps == P.CAP_MATRIX
    beats = [P.parse_dev_heartbeat(f.payload) for f in frames if f.type == P.DEV_HEARTBEAT]
    assert len(beats) == 2                           # every 500 ms over 1.2 s
    assert beats[-1][0] == boot_id and beats[-1][1] == 5 and beats[-1][2] >= 1
    assert info['STATE'][0] == [speak.pattern, speak.r, speak.g, speak.b, speak.brightness,
                                speak.speed_centihz, 100]


@pytest.mark.parametrize('pattern', ['solid', 'listening', 'happy', 'sad', 'angry'])
def test_matrix_shapes_match_the_mock_renderer(firmware, pattern):
    state = P.DeviceState.from_floats(PATTERNS[pattern], (1.0, 1.0, 1.0), 1.0, 0.0)
    _, info = run(firmware['matrix'], P.encode(P.SET_STATE, 1, state.pack()), ms=100)
    left, right = info['ROWS'][0], info['ROWS'][1]
    assert left[1] == 15 and right[1] == 15                 # full intensity
    px = render.eye_pixels(PATTERNS[pattern], (1, 1, 1), 1.0, 0.0)
    for r in range(8):
        bits_left = sum(int(px[r, c, 0] > 0) << (7 - c) for c in range(8))
        bits_right = sum(int(px[r, 8 + c, 0] > 0) << (7 - c) for c in range(8))
        assert left[2 + r] == bits_left and right[2 + r] == bits_right


def test_neopixel_build_renders_the_colour(firmware):
    state = P.DeviceState.from_floats(PATTERNS['solid'], (1.0, 0.0, 0.0), 1.0, 0.0)
    frames, info = run(firmware['neopixel'], P.encode(P.SET_STATE, 1, state.pack()), ms=200)
    assert P.parse_dev_hello(frames[0].payload)[2] == P.CAP_MATRIX | P.CAP_NEOPIXEL
    shows, first_pixel = info['RING'][0]
    capped = (255 * (96 + 1)) >> 8            # NEOPIXEL_MAX_BRIGHTNESS = 96 scales full red
    assert shows > 0 and first_pixel == capped << 16

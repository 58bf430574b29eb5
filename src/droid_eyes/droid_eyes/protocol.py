"""The eyes serial protocol: binary frames between the host and the eye Arduino (no rclpy).

Frame layout (all multi-byte fields big-endian)::

    +-------+-----+------+-----+-----------------+----------+
    | START | LEN | TYPE | SEQ | PAYLOAD (LEN B) | CRC16    |
    | 0xA5  | u8  | u8   | u8  | 0..MAX_PAYLOAD  | hi, lo   |
    +-------+-----+------+-----+-----------------+----------+

CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over
LEN, TYPE, SEQ and PAYLOAD. The start byte may also occur inside a frame: the decoder
does not rely on escaping but on LEN + CRC, and after a bad frame it rescans from the
byte after the failed start byte, so it resynchronises on the next good frame.

Host -> device types are 0x01..0x7F, device -> host types 0x80..0xFF:

=============  =====  ===========  =========================================================
type           value  acked        payload
=============  =====  ===========  =========================================================
HELLO          0x01   by DEV_HELLO version u8
HEARTBEAT      0x02   no           (empty)
SET_STATE      0x03   ACK/NACK     pattern u8, r u8, g u8, b u8, brightness u8, speed u16
FULL_STATE     0x04   ACK/NACK     SET_STATE fields + amplitude u8 + flags u8
AMPLITUDE      0x05   no           amplitude u8 (0..255 = 0..1)
DEV_HELLO      0x81   -            version u8, boot_id u16, capabilities u8 (boot / reply)
DEV_HEARTBEAT  0x82   -            boot_id u16, last command seq u8, rx error count u8
ACK            0x83   -            acked type u8 (SEQ = the acked frame's SEQ)
NACK           0x84   -            reason u8 (SEQ = the rejected frame's SEQ, if readable)
=============  =====  ===========  =========================================================

``speed`` is in centi-hertz (0..655.35 Hz). Pattern numbers are the droid_msgs
``EyeCommand.PATTERN_*`` constants. The device sends DEV_HELLO unasked when it boots, so
a reset (watchdog, brown-out, USB re-enumeration) is seen by the host, which then sends
FULL_STATE; DEV_HEARTBEAT carries the boot id too, in case the boot frame was lost.

The Arduino sketch's ``protocol.h`` is generated from this module
(``python -m droid_eyes.gen_firmware_header``) and a test checks it is up to date.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 1
START = 0xA5
MAX_PAYLOAD = 32
HEADER_SIZE = 4          # START, LEN, TYPE, SEQ
CRC_SIZE = 2
OVERHEAD = HEADER_SIZE + CRC_SIZE
MAX_FRAME = OVERHEAD + MAX_PAYLOAD

# Frame types. Host -> device.
HELLO = 0x01
HEARTBEAT = 0x02
SET_STATE = 0x03
FULL_STATE = 0x04
AMPLITUDE = 0x05
# Device -> host.
DEV_HELLO = 0x81
DEV_HEARTBEAT = 0x82
ACK = 0x83
NACK = 0x84

TYPE_NAMES = {HELLO: 'HELLO', HEARTBEAT: 'HEARTBEAT', SET_STATE: 'SET_STATE',
              FULL_STATE: 'FULL_STATE', AMPLITUDE: 'AMPLITUDE', DEV_HELLO: 'DEV_HELLO',
              DEV_HEARTBEAT: 'DEV_HEARTBEAT', ACK: 'ACK', NACK: 'NACK'}
# Host frames the device must ACK or NACK (HELLO is answered by DEV_HELLO instead).
ACKED_TYPES = (SET_STATE, FULL_STATE)

# NACK reasons.
NACK_BAD_CRC = 1
NACK_BAD_LENGTH = 2
NACK_UNKNOWN_TYPE = 3
NACK_BAD_PAYLOAD = 4
NACK_BAD_VERSION = 5
NACK_NAMES = {NACK_BAD_CRC: 'bad crc', NACK_BAD_LENGTH: 'bad length',
              NACK_UNKNOWN_TYPE: 'unknown type', NACK_BAD_PAYLOAD: 'bad payload',
              NACK_BAD_VERSION: 'bad version'}

# DEV_HELLO capability bits.
CAP_MATRIX = 0x01        # two 8x8 MAX7219 matrices
CAP_NEOPIXEL = 0x02      # a NeoPixel ring

# Payload sizes.
STATE_SIZE = 7
FULL_STATE_SIZE = 9
DEV_HELLO_SIZE = 4
DEV_HEARTBEAT_SIZE = 4

# Device-side timing the sketch uses (the host's are ROS parameters).
DEVICE_HEARTBEAT_MS = 500     # the device sends DEV_HEARTBEAT this often
DEVICE_LINK_TIMEOUT_MS = 3000  # no host frame for this long: the device shows its link-lost look
BAUD = 115200


def crc16(data, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (check value of b'123456789' is 0x29B1)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


# A table makes the host side ~8x faster than the bit loop (the sketch uses the loop).
_TABLE = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _TABLE.append(_c & 0xFFFF)
del _i, _c


def crc16_fast(data, crc: int = 0xFFFF) -> int:
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes = b''

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f'0x{self.type:02x}')

    def encode(self) -> bytes:
        return encode(self.type, self.seq, self.payload)

    def __repr__(self) -> str:
        return f'Frame({self.name}, seq={self.seq}, payload={self.payload.hex()})'


@dataclass(frozen=True)
class BadFrame:
    """A frame-shaped run of bytes that failed its length or CRC check.

    ``type`` and ``seq`` are what the header claimed (they may be garbage too)."""
    reason: int
    type: int
    seq: int


def encode(type_: int, seq: int, payload: bytes = b'') -> bytes:
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f'payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}')
    if not 0 <= type_ <= 255 or not 0 <= seq <= 255:
        raise ValueError('type and seq are bytes')
    body = bytes((len(payload), type_, seq)) + payload
    crc = crc16_fast(body)
    return bytes((START,)) + body + bytes((crc >> 8, crc & 0xFF))


class Decoder:
    """Incremental frame decoder. :meth:`feed` never raises, whatever the input.

    Returns, in order, the good frames (:class:`Frame`) and the rejected ones
    (:class:`BadFrame`) found so far; bytes that are not part of any frame are skipped
    and counted in :attr:`skipped`.
    """

    def __init__(self):
        self._buf = bytearray()
        self.frames = 0
        self.bad = 0
        self.skipped = 0

    def reset(self) -> None:
        self._buf.clear()

    def feed(self, data) -> list:
        out = []
        try:
            self._buf += data
        except TypeError:
            return out
        buf = self._buf
        while buf:
            if buf[0] != START:
                idx = buf.find(START)
                drop = len(buf) if idx < 0 else idx
                self.skipped += drop
                del buf[:drop]
                continue
            if len(buf) < HEADER_SIZE:
                break
            length = buf[1]
            if length > MAX_PAYLOAD:
                out.append(BadFrame(NACK_BAD_LENGTH, buf[2], buf[3]))
                self.bad += 1
                self.skipped += 1
                del buf[:1]
                continue
            total = OVERHEAD + length
            if len(buf) < total:
                break
            crc = crc16_fast(memoryview(buf)[1:HEADER_SIZE + length])
            if crc == (buf[total - 2] << 8 | buf[total - 1]):
                out.append(Frame(buf[2], buf[3], bytes(buf[HEADER_SIZE:HEADER_SIZE + length])))
                self.frames += 1
                del buf[:total]
            else:
                out.append(BadFrame(NACK_BAD_CRC, buf[2], buf[3]))
                self.bad += 1
                self.skipped += 1
                del buf[:1]
        return out


# ---- payloads ---------------------------------------------------------------------------

def _u8(x: float) -> int:
    """[0, 1] -> 0..255, clamped."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0
    if x != x:  # NaN
        return 0
    return int(round(max(0.0, min(1.0, x)) * 255.0))


@dataclass(frozen=True)
class DeviceState:
    """The animation state as the device sees it (quantised to bytes)."""
    pattern: int = 0
    r: int = 0
    g: int = 0
    b: int = 0
    brightness: int = 0
    speed_centihz: int = 0

    @classmethod
    def from_floats(cls, pattern: int, rgb, brightness: float, speed_hz: float) -> DeviceState:
        try:
            speed = float(speed_hz)
            speed = 0 if speed != speed else int(round(max(0.0, min(655.35, speed)) * 100.0))
        except (TypeError, ValueError):
            speed = 0
        r, g, b = (tuple(rgb) + (0.0, 0.0, 0.0))[:3]
        return cls(int(pattern) & 0xFF, _u8(r), _u8(g), _u8(b), _u8(brightness), speed)

    def pack(self) -> bytes:
        return struct.pack('>BBBBBH', self.pattern, self.r, self.g, self.b, self.brightness,
                           self.speed_centihz)

    @classmethod
    def unpack(cls, payload: bytes) -> DeviceState:
        """The first STATE_SIZE bytes of a payload; ValueError if it is shorter."""
        if len(payload) < STATE_SIZE:
            raise ValueError(f'state payload of {len(payload)} bytes, need {STATE_SIZE}')
        return cls(*struct.unpack('>BBBBBH', bytes(payload[:STATE_SIZE])))


def set_state_payload(state: DeviceState) -> bytes:
    return state.pack()


def full_state_payload(state: DeviceState, amplitude: int, flags: int = 0) -> bytes:
    return state.pack() + bytes((amplitude & 0xFF, flags & 0xFF))


def parse_full_state(payload: bytes):
    """FULL_STATE payload -> (DeviceState, amplitude, flags)."""
    if len(payload) != FULL_STATE_SIZE:
        raise ValueError('bad FULL_STATE payload length')
    return DeviceState.unpack(payload[:STATE_SIZE]), payload[7], payload[8]


def amplitude_byte(amplitude: float) -> int:
    return _u8(amplitude)


def hello_payload() -> bytes:
    return bytes((PROTOCOL_VERSION,))


def dev_hello_payload(boot_id: int, capabilities: int, version: int = PROTOCOL_VERSION) -> bytes:
    return struct.pack('>BHB', version, boot_id & 0xFFFF, capabilities & 0xFF)


def parse_dev_hello(payload: bytes):
    """DEV_HELLO payload -> (version, boot_id, capabilities); ValueError if malformed."""
    if len(payload) != DEV_HELLO_SIZE:
        raise ValueError('bad DEV_HELLO payload length')
    return struct.unpack('>BHB', payload)


def dev_heartbeat_payload(boot_id: int, last_seq: int, rx_errors: int) -> bytes:
    return struct.pack('>HBB', boot_id & 0xFFFF, last_seq & 0xFF, min(rx_errors, 255))


def parse_dev_heartbeat(payload: bytes):
    """DEV_HEARTBEAT payload -> (boot_id, last_seq, rx_errors); ValueError if malformed."""
    if len(payload) != DEV_HEARTBEAT_SIZE:
        raise ValueError('bad DEV_HEARTBEAT payload length')
    return struct.unpack('>HBB', payload)


def frame_size(type_: int) -> int:
    """Size on the wire of a host frame of this type, in bytes."""
    sizes = {HELLO: 1, HEARTBEAT: 0, SET_STATE: STATE_SIZE, FULL_STATE: FULL_STATE_SIZE,
             AMPLITUDE: 1, DEV_HELLO: DEV_HELLO_SIZE, DEV_HEARTBEAT: DEV_HEARTBEAT_SIZE,
             ACK: 1, NACK: 1}
    return OVERHEAD + sizes[type_]


def wire_bytes_per_second(baud: int) -> float:
    """Payload capacity of an 8N1 serial line (10 bit times per byte)."""
    return baud / 10.0

"""The serial codec: CRC, frames, payloads; the decoder never raises and resyncs."""

from hypothesis import given, settings
from hypothesis import strategies as st

from droid_eyes import protocol as P

types = st.integers(0, 255)
seqs = st.integers(0, 255)
payloads = st.binary(max_size=P.MAX_PAYLOAD)


def test_crc_is_ccitt_false():
    assert P.crc16(b'123456789') == 0x29B1
    assert P.crc16_fast(b'123456789') == 0x29B1
    assert P.crc16(b'') == 0xFFFF


@given(st.binary(max_size=200))
def test_table_crc_matches_bitwise_crc(data):
    assert P.crc16_fast(data) == P.crc16(data)


@given(st.binary(min_size=1, max_size=64), st.integers(0, 7), st.data())
def test_crc_detects_every_single_bit_flip(data, bit, draw):
    i = draw.draw(st.integers(0, len(data) - 1))
    flipped = bytearray(data)
    flipped[i] ^= 1 << bit
    assert P.crc16(bytes(flipped)) != P.crc16(data)


def test_frame_layout():
    data = P.encode(P.SET_STATE, 7, b'\x08\x01\x02\x03\x04\x00\x64')
    assert data[0] == P.START and data[1] == 7 and data[2] == P.SET_STATE and data[3] == 7
    assert len(data) == P.OVERHEAD + 7 == P.frame_size(P.SET_STATE)
    crc = P.crc16(data[1:-2])
    assert data[-2:] == bytes((crc >> 8, crc & 0xFF))


@given(types, seqs, payloads)
def test_round_trip(type_, seq, payload):
    frames = P.Decoder().feed(P.encode(type_, seq, payload))
    assert frames == [P.Frame(type_, seq, payload)]


@given(st.lists(st.tuples(types, seqs, payloads), max_size=8), st.data())
def test_round_trip_in_arbitrary_chunks(frames, data):
    stream = b''.join(P.encode(*f) for f in frames)
    dec = P.Decoder()
    out = []
    i = 0
    while i < len(stream):
        n = data.draw(st.integers(1, 16))
        out += dec.feed(stream[i:i + n])
        i += n
    assert out == [P.Frame(*f) for f in frames]


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_decoder_never_raises_on_garbage(garbage):
    dec = P.Decoder()
    items = dec.feed(garbage)
    assert all(isinstance(i, (P.Frame, P.BadFrame)) for i in items)
    assert dec.feed(None) == [] and dec.feed(12) == []   # wrong types are ignored too


@settings(max_examples=300)
@given(st.binary(max_size=100), types, seqs, payloads)
def test_decoder_resyncs_on_the_next_good_frame(garbage, type_, seq, payload):
    good = P.Frame(type_, seq, payload)
    dec = P.Decoder()
    # Garbage, then enough clean frames to flush any bogus length a fake START claimed.
    n = P.MAX_FRAME // len(good.encode()) + 3
    items = dec.feed(garbage + good.encode() * n)
    frames = [i for i in items if isinstance(i, P.Frame)]
    assert frames[-2:] == [good, good]


@settings(max_examples=500)
@given(types, seqs, payloads, st.integers(0, 2 * P.MAX_FRAME), st.integers(0, 7))
def test_corrupted_frame_is_rejected_and_the_next_one_decoded(type_, seq, payload, pos, bit):
    data = bytearray(P.encode(type_, seq, payload))
    pos %= len(data)
    data[pos] ^= 1 << bit
    follow = P.Frame(P.HEARTBEAT, 1)
    # A flipped bit may forge a START whose bogus LEN swallows up to MAX_FRAME bytes:
    # send more than that after it (the live link always has more frames coming).
    n = P.MAX_FRAME // P.OVERHEAD + 2
    items = P.Decoder().feed(bytes(data) + follow.encode() * n)
    good = [i for i in items if isinstance(i, P.Frame)]
    assert P.Frame(type_, seq, payload) not in good      # never accepted when corrupted
    assert good[-2:] == [follow, follow]


def test_bad_length_is_reported():
    dec = P.Decoder()
    items = dec.feed(bytes((P.START, P.MAX_PAYLOAD + 1, P.SET_STATE, 9)))
    assert items == [P.BadFrame(P.NACK_BAD_LENGTH, P.SET_STATE, 9)]


anyfloat = st.one_of(st.floats(-1, 2), st.just(float('nan')), st.just(float('inf')))


@given(st.integers(0, 10), st.tuples(anyfloat, anyfloat, anyfloat), anyfloat,
       st.one_of(st.floats(-10, 1000), st.just(float("nan")), st.just(float("inf"))))
def test_state_payload_round_trip_and_clamping(pattern, rgb, brightness, speed):
    s = P.DeviceState.from_floats(pattern, rgb, brightness, speed)
    for v in (s.r, s.g, s.b, s.brightness):
        assert 0 <= v <= 255
    assert 0 <= s.speed_centihz <= 0xFFFF
    assert P.DeviceState.unpack(s.pack()) == s
    full, amp, flags = P.parse_full_state(P.full_state_payload(s, 200, 1))
    assert (full, amp, flags) == (s, 200, 1)


def test_device_payloads():
    assert P.parse_dev_hello(P.dev_hello_payload(0xBEEF, P.CAP_MATRIX)) == \
        (P.PROTOCOL_VERSION, 0xBEEF, P.CAP_MATRIX)
    assert P.parse_dev_heartbeat(P.dev_heartbeat_payload(0x1234, 9, 300)) == (0x1234, 9, 255)


def test_amplitude_frames_leave_room_at_115200_baud():
    # >= 30 amplitude updates/s must use a small part of the line: 60/s here.
    budget = P.wire_bytes_per_second(115200)
    used = 60 * P.frame_size(P.AMPLITUDE) + 2 * P.frame_size(P.HEARTBEAT)
    assert used / budget < 0.05

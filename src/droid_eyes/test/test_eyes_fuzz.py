"""Fuzz: the eyes' expression, the protocol decoder and the serial link against hostile
input (no ROS): no exception escapes, and the state stays valid."""

import math
import time

from droid_common import fuzz as F
from droid_eyes.expression import (
    PATTERN_NAMES,
    SOURCE_NAMES,
    Expression,
    ExpressionConfig,
)
from droid_eyes.link import ERROR, OK, WARN, LinkConfig, SerialLink
from droid_eyes.virtual_device import VirtualEyesDevice
from hypothesis import given
from hypothesis import strategies as st

from droid_eyes import protocol as P

# ---- expression -----------------------------------------------------------------------------

colors = st.one_of(st.tuples(F.floats(), F.floats(), F.floats()), st.none(),
                   st.lists(F.floats(), max_size=5))
event = st.one_of(
    st.tuples(st.just('wake'), F.ids()),
    st.tuples(st.just('transcription'), F.ids(), F.ints(), st.booleans()),
    st.tuples(st.just('reply'), F.ids(), F.ints(), st.booleans(), st.booleans()),
    st.tuples(st.just('sentiment'), F.ids(), F.ints(), F.ints(), F.floats()),
    st.tuples(st.just('speech'), F.ids(), F.ints(), F.ints(), F.ints(), st.booleans()),
    st.tuples(st.just('amplitude'), F.ids(), F.floats()),
    st.tuples(st.just('mode'), F.ints()),
    st.tuples(st.just('persona'), F.texts(5000), colors),
    st.tuples(st.just('command'), F.ids(), F.ints(), colors, F.floats(), F.floats(),
              F.durations()),
    st.tuples(st.just('tick'),),
)


def feed(e: Expression, ev, stamp, now):
    kind, *a = ev
    if kind == 'wake':
        return e.on_wake(a[0], stamp, now)
    if kind == 'transcription':
        return e.on_transcription(a[0], a[1], a[2], stamp, now)
    if kind == 'reply':
        return e.on_reply(a[0], a[1], a[2], a[3], stamp, now)
    if kind == 'sentiment':
        return e.on_sentiment(a[0], a[1], a[2], a[3], stamp, now)
    if kind == 'speech':
        return e.on_speech(a[0], a[1], a[2], a[3], a[4], stamp, now)
    if kind == 'amplitude':
        value = e.on_amplitude(a[0], a[1], stamp)
        assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)
        return None
    if kind == 'mode':
        return e.on_mode(a[0], stamp, now)
    if kind == 'persona':
        return e.on_persona(a[0], a[1], stamp, now)
    if kind == 'command':
        return e.on_command(a[0], a[1], a[2], a[3], a[4], a[5], stamp, now)
    return e.tick(now)


def check_look(look):
    assert look.pattern in PATTERN_NAMES and look.source in SOURCE_NAMES
    assert len(look.color) == 3
    assert all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in look.color), look
    assert math.isfinite(look.brightness) and 0.0 <= look.brightness <= 1.0, look
    assert math.isfinite(look.speed) and look.speed >= 0.0, look
    assert isinstance(look.conversation_id, str)
    P.DeviceState.from_floats(look.pattern, look.color, look.brightness, look.speed).pack()


@F.fuzz(400)
@given(st.lists(st.tuples(event, F.stamps(), st.floats(900.0, 1100.0) | F.floats()),
                min_size=1, max_size=60))
def test_expression_survives_hostile_events(events):
    e = Expression(ExpressionConfig.from_flat({'history': 4}), 1000.0)
    for ev, stamp, now in events:
        change = feed(e, ev, stamp, now)
        if change is not None:
            check_look(change.look)
            assert change.look == e.look
            if change.trace is not None:
                cid, utterance, _ = change.trace
                assert cid and utterance >= 1
        check_look(e.look)
        assert len(e._old) <= 4 and len(e._traced) <= 16
    # and it still works: a command shows, SLEEP ends it
    e.on_command('', 1, (1.0, 0.0, 0.0), 1.0, 0.0, 0.0, 5000.0, 5000.0)
    assert e.look.pattern == 1 and e.look.color == (1.0, 0.0, 0.0)


def test_non_finite_stamps_and_times_do_not_disable_the_stale_rule():
    e = Expression(ExpressionConfig.from_flat(), 1000.0)
    e.on_wake('c1', float('nan'), 1000.0)           # a NaN stamp counts as "now"
    e.on_wake('c2', 1001.0, float('inf'))           # a NaN/inf clock reading is skipped
    assert e.conversation_id == 'c2'
    e.on_wake('c3', 999.0, 1002.0)                  # stamped before c2 started: stale
    assert e.conversation_id == 'c2' and 'before' in e.last_ignored


def test_a_future_stamp_does_not_make_later_events_stale():
    e = Expression(ExpressionConfig.from_flat(), 1000.0)
    e.on_command('', 1, (1.0, 0.0, 0.0), 1.0, 0.0, 0.0, 1e12, 1000.0)    # bogus stamp
    e.on_command('', 2, (0.0, 1.0, 0.0), 1.0, 0.0, 0.0, 1001.0, 1001.0)
    assert e.look.pattern == 2


def test_the_clock_going_back_keeps_timed_looks_and_forgets_old_stamps():
    e = Expression(ExpressionConfig.from_flat(), 1000.0)
    e.on_command('', 1, (1.0, 0.0, 0.0), 1.0, 0.0, 5.0, 1000.0, 1000.0)   # for 5 s
    assert e.tick(3.0) is None and e.look.pattern == 1      # /clock restarted at 3 s
    e.on_command('', 2, (0.0, 1.0, 0.0), 1.0, 0.0, 2.0, 3.5, 3.5)         # not "stale"
    assert e.look.pattern == 2
    assert e.tick(5.4) is None and e.tick(5.6) is not None and e.look.pattern != 2


# ---- protocol ------------------------------------------------------------------------------

@F.fuzz(300)
@given(st.lists(st.one_of(st.binary(max_size=80),
                          st.builds(P.encode, st.integers(0, 255), st.integers(0, 255),
                                    st.binary(max_size=P.MAX_PAYLOAD))), max_size=20))
def test_decoder_and_payload_parsers_never_raise_unexpectedly(chunks):
    dec = P.Decoder()
    for chunk in chunks:
        for item in dec.feed(chunk):
            if isinstance(item, P.BadFrame):
                continue
            assert len(item.payload) <= P.MAX_PAYLOAD
            for parse in (P.parse_dev_hello, P.parse_dev_heartbeat, P.parse_full_state,
                          P.DeviceState.unpack):
                try:
                    parse(item.payload)
                except ValueError:
                    pass
    assert dec.frames + dec.bad >= 0 and len(dec._buf) <= 2 * P.MAX_FRAME + 80


@F.fuzz(200)
@given(F.ints(), st.lists(F.floats(), max_size=4), F.floats(), F.floats(), F.floats())
def test_device_state_from_hostile_floats(pattern, rgb, brightness, speed, amplitude):
    s = P.DeviceState.from_floats(pattern, rgb, brightness, speed)
    assert 0 <= s.pattern <= 255 and 0 <= s.speed_centihz <= 0xFFFF
    assert P.DeviceState.unpack(s.pack()) == s
    assert 0 <= P.amplitude_byte(amplitude) <= 255


# ---- the link against a hostile device ------------------------------------------------------

device_frames = st.one_of(
    st.binary(max_size=120),                                               # line noise
    st.builds(P.encode, st.sampled_from([P.ACK, P.NACK, P.DEV_HEARTBEAT, 0x80, 0xFF, 0x00,
                                         P.HELLO, P.SET_STATE]),
              st.integers(0, 255), st.binary(max_size=P.MAX_PAYLOAD)),     # odd frames
    st.builds(lambda seq: P.encode(P.ACK, seq, bytes((P.SET_STATE,))), st.integers(0, 255)),
    st.builds(lambda seq, why: P.encode(P.NACK, seq, bytes((why,))), st.integers(0, 255),
              st.integers(0, 255)),
    st.builds(lambda bid: P.encode(P.DEV_HEARTBEAT, 0, P.dev_heartbeat_payload(bid, 0, 0)),
              st.integers(0, 0xFFFF)),                                     # "new boot ids"
    st.builds(lambda v, bid: P.encode(P.DEV_HELLO, 0, P.dev_hello_payload(bid, 1, v)),
              st.integers(0, 255), st.integers(0, 0xFFFF)),                # other versions
)


def test_the_link_survives_a_hostile_device(tmp_path):
    with VirtualEyesDevice(str(tmp_path / 'ttyEYES'), heartbeat_period=0.2, seed=2) as dev:
        link = SerialLink(LinkConfig(port=str(tmp_path / 'tty*'), ack_timeout=0.05,
                                     handshake_timeout=1.0, hello_interval=0.05,
                                     reconnect_period=0.05, heartbeat_period=0.2,
                                     link_timeout=1.0, retry_max_delay=0.2)).start()
        try:
            deadline = time.monotonic() + 5
            while not link.status().connected and time.monotonic() < deadline:
                time.sleep(0.01)
            assert link.status().connected
            counter = [0]

            @F.fuzz(40)
            @given(st.lists(device_frames, min_size=1, max_size=8))
            def burst(frames):
                for data in frames:
                    dev.inject(data)
                counter[0] += 1
                want = P.DeviceState.from_floats(counter[0] % 11, (0.5, 0.2, 0.1), 1.0, 0.0)
                acks = link.status().counters['acks']
                link.set_state(want)
                assert dev.wait_until(lambda d: d.state == want, timeout=10), link.status()
                # The device applies a state before it acknowledges it, so the link counts the
                # ack a moment later: wait for it (each change is acknowledged at least once).
                deadline = time.monotonic() + 5
                while link.status().counters['acks'] <= acks and time.monotonic() < deadline:
                    time.sleep(0.005)
                assert link.status().counters['acks'] > acks, link.status()
                st_ = link.status()
                assert link._thread.is_alive()
                assert st_.level in (OK, WARN, ERROR)
                assert all(v >= 0 for v in st_.counters.values())

            burst()
            assert counter[0] >= 10
        finally:
            link.close()
    assert not link._thread

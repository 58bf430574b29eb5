"""The eyes firmware built for the ATmega328P (avr-gcc, Debian's Arduino core) and run in
simavr in real time, as a board on a pseudo-terminal: the project's codec and SerialLink
talk to it, the MAX7219 / NeoPixel pins are decoded into what the LEDs show.
(No ROS; needs gcc-avr, avr-libc, binutils-avr, arduino-core-avr, gcc, libsimavr-dev.)

The ROS-level test with the real `eyes` node is test_eyes_firmware_sim_ros.py.
"""

import sys
import threading
import time
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent / 'firmware'
sys.path.insert(0, str(FIRMWARE))
import avr_build  # noqa: E402
import avr_sim  # noqa: E402
from droid_eyes.expression import PATTERNS  # noqa: E402
from droid_eyes.link import LinkConfig, SerialLink  # noqa: E402

from droid_eyes import protocol as P  # noqa: E402
from droid_eyes import render  # noqa: E402

serial = pytest.importorskip('serial')

MISSING = avr_build.missing_tools(simulator=True)
pytestmark = pytest.mark.skipif(bool(MISSING), reason='the AVR toolchain / simavr is missing: '
                                + '; '.join(MISSING))

CAP = {'matrix': P.CAP_MATRIX, 'matrix_ring': P.CAP_MATRIX | P.CAP_NEOPIXEL,
       'ring': P.CAP_NEOPIXEL, 'none': 0}


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp('avr')
    firmware = avr_build.build_all(out)
    return firmware, avr_build.build_simulator(out)


@pytest.fixture
def board_factory(built, tmp_path):
    firmware, sim = built
    boards = []

    def make(config='matrix', **kw):
        link = tmp_path / f'ttyEYES{len(boards)}'
        board = avr_sim.SimulatedBoard(firmware[config].elf, link, sim,
                                       log_path=tmp_path / f'sim{len(boards)}.log', **kw)
        boards.append(board)
        return board.start()

    yield make
    for b in boards:
        assert b.close() == 0                      # stops cleanly, no hang
        assert not b.crashed


class RawHost:
    """The host side with the bare codec over pyserial (no link logic)."""

    def __init__(self, path):
        self.ser = serial.Serial(str(path), P.BAUD, timeout=0)
        self.dec = P.Decoder()
        self.items = []

    def send(self, data: bytes):
        self.ser.write(data)
        self.ser.flush()

    def pump(self, until, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            data = self.ser.read(4096)
            if data:
                self.items += self.dec.feed(data)
            if until(self.items):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)

    def frames(self, *types):
        return [f for f in self.items if isinstance(f, P.Frame) and f.type in types]

    def bad(self):
        return [f for f in self.items if isinstance(f, P.BadFrame)]

    def handshake(self, timeout=5.0):
        """HELLO until answered (one sent while the board boots is lost, as on a real
        board), like the link does; returns the DEV_HELLO fields."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(P.encode(P.HELLO, 1, P.hello_payload()))
            if self.pump(lambda items: [f for f in self.frames(P.DEV_HELLO) if f.seq == 1], 0.3):
                return P.parse_dev_hello(self.frames(P.DEV_HELLO)[-1].payload)
        raise AssertionError(f'no DEV_HELLO: {self.items}')

    def close(self):
        self.ser.close()


def bits(pattern, amplitude=0.0):
    """The mock renderer's eyes as MAX7219 rows: (left rows, right rows)."""
    px = render.eye_pixels(pattern, (1, 1, 1), 1.0, 0.0, amplitude=amplitude)
    left = tuple(sum(int(px[r, c, 0] > 0) << (7 - c) for c in range(8)) for r in range(8))
    right = tuple(sum(int(px[r, 8 + c, 0] > 0) << (7 - c) for c in range(8)) for r in range(8))
    return left, right


def shows(frame, pattern, intensity=15, amplitude=0.0):
    left, right = bits(pattern, amplitude)
    return (frame.rows(0) == left and frame.rows(1) == right and
            frame.intensity(0) == intensity and frame.intensity(1) == intensity)


def test_every_configuration_builds_for_the_atmega328p(built):
    firmware, sim = built
    assert set(firmware) == {'matrix', 'matrix_ring', 'ring', 'none'}
    for name, fw in firmware.items():
        assert Path(fw.elf).read_bytes()[:4] == b'\x7fELF'
        lines = Path(fw.hex).read_text().split()
        assert lines[0].startswith(':') and lines[-1] == ':00000001FF'   # Intel HEX
        assert 2000 < fw.flash <= avr_build.FLASH_SIZE, (name, fw.flash)
        assert fw.ram < 1024, (name, fw.ram)       # leaves > 1 KB of the 2 KB for the stack
    # the drivers cost what they should: the ring adds the pixel buffer, the matrices little
    assert firmware['none'].flash < firmware['matrix'].flash < firmware['matrix_ring'].flash
    assert firmware['matrix_ring'].ram - firmware['matrix'].ram >= 3 * 24
    assert sim.exists()


def test_a_warning_fails_the_build(built, tmp_path):
    sketch = tmp_path / 'droid_eyes'
    sketch.mkdir()
    for f in (avr_build.SKETCH_DIR).iterdir():
        (sketch / f.name).write_bytes(f.read_bytes())
    ino = sketch / 'droid_eyes.ino'
    ino.write_text(ino.read_text() + '\nstatic int unused_thing() { int x; return 1; }\n')
    with pytest.raises(avr_build.BuildError, match='unused'):
        avr_build.build_firmware('matrix', tmp_path / 'out', sketch_dir=sketch)


@pytest.mark.parametrize('config', ['matrix', 'matrix_ring', 'ring', 'none'])
def test_the_board_speaks_the_codec(board_factory, config):
    board = board_factory(config)
    host = RawHost(board.link_path)
    try:
        version, boot_id, caps = host.handshake()
        assert version == P.PROTOCOL_VERSION and caps == CAP[config]
        before = board.counters()
        happy = P.DeviceState.from_floats(PATTERNS['happy'], (1.0, 0.0, 0.0), 1.0, 0.0)
        bad = bytearray(P.encode(P.SET_STATE, 3, happy.pack()))
        bad[6] ^= 0x10
        host.send(b''.join([
            P.encode(P.SET_STATE, 2, happy.pack()),
            bytes(bad),
            P.encode(P.AMPLITUDE, 4, b'\xc8'),
            P.encode(P.FULL_STATE, 5, P.full_state_payload(happy, 100)),
            P.encode(P.SET_STATE, 6, b'\x01\x02'),
            P.encode(0x30, 7),
            P.encode(P.HELLO, 8, b'\x63'),
            P.encode(P.HEARTBEAT, 9),
        ]))
        assert host.pump(lambda items: len(host.frames(P.ACK, P.NACK)) >= 6, 5), host.items
        replies = {f.seq: (f.type, f.payload) for f in host.frames(P.ACK, P.NACK)}
        assert replies == {2: (P.ACK, bytes((P.SET_STATE,))),
                           3: (P.NACK, bytes((P.NACK_BAD_CRC,))),
                           5: (P.ACK, bytes((P.FULL_STATE,))),
                           6: (P.NACK, bytes((P.NACK_BAD_PAYLOAD,))),
                           7: (P.NACK, bytes((P.NACK_UNKNOWN_TYPE,))),
                           8: (P.NACK, bytes((P.NACK_BAD_VERSION,)))}
        assert not host.bad()                      # everything the board sent is well formed
        # heartbeats every 0.5 s carry the boot id, the last command and the error count
        n = len(host.frames(P.DEV_HEARTBEAT))
        assert host.pump(lambda items: len(host.frames(P.DEV_HEARTBEAT)) >= n + 2, 5)
        beat = P.parse_dev_heartbeat(host.frames(P.DEV_HEARTBEAT)[-1].payload)
        assert beat == (boot_id, 5, 1)
        counters = board.counters()
        assert counters['frames'] - before['frames'] == 7       # all but the corrupted one
        assert counters['amplitudes'] - before['amplitudes'] == 1
        assert counters['bad_frames'] - before['bad_frames'] == 1
    finally:
        host.close()


def test_states_become_the_right_pixels_on_the_matrices(board_factory):
    board = board_factory('matrix')
    host = RawHost(board.link_path)
    try:
        host.handshake()
        for seq, name in enumerate(['solid', 'listening', 'happy', 'sad', 'angry', 'off'], 10):
            state = P.DeviceState.from_floats(PATTERNS[name], (1.0, 1.0, 1.0), 1.0, 0.0)
            host.send(P.encode(P.SET_STATE, seq, state.pack()))
            if name == 'off':
                ok = board.wait_display(lambda f: f.rows(0) == (0,) * 8 and
                                        f.rows(1) == (0,) * 8, 5)
            else:
                ok = board.wait_display(lambda f, name=name: shows(f, PATTERNS[name]), 5)
            assert ok, (name, board.display())
        # brightness -> MAX7219 intensity (0..15)
        host.send(P.encode(P.SET_STATE, 20, P.DeviceState.from_floats(
            PATTERNS['happy'], (1.0, 1.0, 1.0), 0.5, 0.0).pack()))
        assert board.wait_display(lambda f: shows(f, PATTERNS['happy'], intensity=7), 5)
        # the speaking eye opens with the amplitude
        host.send(P.encode(P.FULL_STATE, 21, P.full_state_payload(P.DeviceState.from_floats(
            PATTERNS['speaking'], (1.0, 1.0, 1.0), 1.0, 0.0), 0)))
        assert board.wait_display(lambda f: shows(f, PATTERNS['speaking'], 3, 0.0), 5), \
            board.display()                       # level 0.2 at amplitude 0: intensity 3
        host.send(P.encode(P.AMPLITUDE, 22, b'\xff'))
        assert board.wait_display(lambda f: shows(f, PATTERNS['speaking'], 15, 1.0), 5), \
            board.display()
    finally:
        host.close()


@pytest.mark.parametrize('config', ['ring', 'matrix_ring'])
def test_states_become_the_right_colours_on_the_ring(board_factory, config):
    board = board_factory(config)
    host = RawHost(board.link_path)
    try:
        host.handshake()
        state = P.DeviceState.from_floats(PATTERNS['solid'], (1.0, 0.5, 0.0), 1.0, 0.0)
        host.send(P.encode(P.SET_STATE, 2, state.pack()))
        cap = 96 + 1                              # NEOPIXEL_MAX_BRIGHTNESS
        want = ((255 * cap) >> 8, (128 * cap) >> 8, 0)
        assert board.wait_ring(lambda f: len(f.pixels) == 24 and
                               all(p == want for p in f.pixels), 5), \
            [(f.t_us, f.pixels[:2]) for f in board.ring_frames]
        if config == 'matrix_ring':
            assert board.wait_display(lambda f: shows(f, PATTERNS['solid']), 5)
        host.send(P.encode(P.SET_STATE, 3, P.DeviceState.from_floats(
            PATTERNS['off'], (1.0, 0.5, 0.0), 1.0, 0.0).pack()))
        assert board.wait_ring(lambda f: all(p == (0, 0, 0) for p in f.pixels), 5)
    finally:
        host.close()


def burst(first_seq: int, n: int, amplitudes: int = 0) -> tuple[bytes, list[int]]:
    """n SET_STATE frames back to back, each a different look (every one redraws), with
    ``amplitudes`` AMPLITUDE frames after each."""
    looks = ['happy', 'sad', 'angry', 'listening', 'speaking', 'solid', 'spin', 'thinking']
    data, seqs, seq = [], [], first_seq
    for i in range(n):
        state = P.DeviceState.from_floats(PATTERNS[looks[i % len(looks)]], (1.0, 0.2, 0.1),
                                          0.3 + 0.7 * (i % 2), 0.0)
        data.append(P.encode(P.SET_STATE, seq & 0xFF, state.pack()))
        seqs.append(seq & 0xFF)
        seq += 1
        for k in range(amplitudes):
            data.append(P.encode(P.AMPLITUDE, seq & 0xFF, bytes(((37 * (i + k)) & 0xFF,))))
            seq += 1
    return b''.join(data), seqs


@pytest.mark.parametrize('config', ['matrix', 'matrix_ring', 'ring', 'none'])
def test_bursts_at_the_line_rate_are_all_acknowledged(board_factory, config):
    """The fix for the receive-buffer overflow: with LedControl's bit-banged writes a
    redraw took ~7 ms and 1-2 frames of a 40-frame burst were lost. Here every frame of
    back-to-back bursts (115200 baud, nothing between frames) is received and ACKed."""
    board = board_factory(config)
    host = RawHost(board.link_path)
    try:
        host.handshake()
        before = board.counters()
        sent_frames, amplitude_frames, seqs = 0, 0, []
        for b in range(4):
            amps = 2 if b % 2 else 0
            data, burst_seqs = burst(10 + 100 * b, 40, amplitudes=amps)
            host.send(data)
            seqs += burst_seqs
            sent_frames += 40 * (1 + amps)
            amplitude_frames += 40 * amps
            assert host.pump(lambda items, n=len(seqs): len(host.frames(P.ACK, P.NACK)) >= n,
                             15), \
                (config, b, len(host.frames(P.ACK, P.NACK)), len(seqs))
        acks = [f.seq for f in host.frames(P.ACK)]
        assert acks == seqs                         # all of them, in order
        # (what this test checks is host -> board: every ACK arrived in order and the
        # board counts no bad frame below; a board -> host heartbeat garbled by the pty on
        # an overloaded machine is not part of it)
        assert not host.frames(P.NACK)
        # the firmware got every frame (the last AMPLITUDEs may still be on the wire)
        assert wait(lambda: board.counters()['frames'] - before['frames'] >= sent_frames, 5)
        counters = board.counters()
        assert counters['frames'] - before['frames'] == sent_frames
        assert counters['amplitudes'] - before['amplitudes'] == amplitude_frames
        assert counters['bad_frames'] == 0
        assert counters['render_max_us'] < 3000, counters   # well inside the 5.5 ms buffer
        stats = board.stats()
        assert stats['overruns'] == 0               # and the UART never overran
        if config in ('matrix', 'matrix_ring'):
            assert stats['max_bad_latches'] == 0    # whole 32-bit words to the chain
    finally:
        host.close()


def link_for(path, **kw):
    cfg = LinkConfig(port=str(path), **kw)
    return SerialLink(cfg).start()


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_serial_link_resyncs_after_a_reset_and_a_replug(board_factory):
    board = board_factory('matrix')
    link = link_for(board.link_path)
    try:
        assert wait(lambda: link.status().connected, 10), link.status()
        happy = P.DeviceState.from_floats(PATTERNS['happy'], (0.0, 1.0, 0.0), 1.0, 0.0)
        link.set_state(happy)
        assert board.wait_display(lambda f: shows(f, PATTERNS['happy']), 5), board.display()

        # A reset (DTR, watchdog, brown-out): the boot look, then the host's FULL_STATE.
        # (A reply to a HELLO that crossed the boot DEV_HELLO also counts as a reset for
        # the link: count from here.)
        resets0 = link.status().counters['device_resets']
        board.clear()
        t0 = time.monotonic()
        board.reset()
        assert board.wait_display(lambda f: not shows(f, PATTERNS['happy']), 5)
        assert board.wait_display(lambda f: shows(f, PATTERNS['happy']), 10), board.display()
        took_reset = board.display().wall - t0
        assert wait(lambda: link.status().counters['device_resets'] == resets0 + 1 and
                    link.status().connected, 5), link.status()

        # Unplugged: the pty and its path vanish; the link reports it and waits. Back: a
        # new pty, the board powers up blank, the link reconnects and resyncs.
        board.unplug()
        assert wait(lambda: not link.status().connected, 5)
        board.clear()
        t0 = time.monotonic()
        board.plug()
        assert board.wait_display(lambda f: shows(f, PATTERNS['happy']), 10), board.display()
        took_replug = board.display().wall - t0
        st = link.status()
        assert st.connected and st.counters['connects'] == 2 and st.counters['losses'] >= 1
        print(f'resync after reset {took_reset:.3f} s, after replug {took_replug:.3f} s')
    finally:
        link.close()


def test_amplitude_at_the_links_full_rate_loses_nothing(board_factory):
    board = board_factory('matrix_ring')
    link = link_for(board.link_path, amplitude_max_rate=1000.0)
    stop = threading.Event()
    try:
        assert wait(lambda: link.status().connected, 10), link.status()
        link.set_state(P.DeviceState.from_floats(PATTERNS['speaking'], (1.0, 1.0, 1.0), 1.0,
                                                 0.0))

        def speak():                               # a voice envelope, faster than 1 kHz
            k = 0
            while not stop.is_set():
                link.set_amplitude((k % 97) / 96.0)
                k += 1
                time.sleep(0.0005)

        talker = threading.Thread(target=speak, daemon=True)
        talker.start()
        time.sleep(3.0)
        stop.set()
        talker.join(2)
        link.set_amplitude(1.0)
        assert board.wait_display(lambda f: shows(f, PATTERNS['speaking'], 15, 1.0), 5), \
            board.display()
        st = link.status()
        sent = st.counters['amplitude_frames']
        assert sent > 500                          # it did run near the link's full rate
        assert wait(lambda: board.counters()['amplitudes'] == sent, 5), \
            (board.counters(), st.counters)
        assert st.counters['nacks'] == 0 and st.counters['retries'] == 0
        assert board.counters()['bad_frames'] == 0 and board.stats()['overruns'] == 0
        print(f'{sent} AMPLITUDE frames in ~3 s, all received')
    finally:
        stop.set()
        link.close()


def test_a_board_that_resets_when_the_port_opens(board_factory):
    """Like an Uno / Nano (DTR auto-reset) with a bootloader that waits 0.5 s: opening the
    port reboots the board, the link's HELLOs meanwhile are lost, the boot DEV_HELLO
    completes the handshake."""
    board = board_factory('matrix', reset_on_open=True, boot_ms=500)
    link = link_for(board.link_path)
    try:
        t0 = time.monotonic()
        assert wait(lambda: link.status().connected, 10), link.status()
        took = time.monotonic() - t0
        assert [why for _, _, why in board.resets] == ['power', 'open']
        link.set_state(P.DeviceState.from_floats(PATTERNS['sad'], (1.0, 0.0, 0.0), 1.0, 0.0))
        assert board.wait_display(lambda f: shows(f, PATTERNS['sad']), 5), board.display()
        assert board.stats()['lost_rx_off'] > 0    # the HELLOs sent into the bootloader
        print(f'connected {took:.3f} s after opening (0.5 s bootloader wait)')
    finally:
        link.close()


def test_stop_is_immediate_even_with_the_host_attached(board_factory):
    board = board_factory('matrix')
    host = RawHost(board.link_path)
    try:
        host.handshake()
        t0 = time.monotonic()
        assert board.close() == 0
        assert time.monotonic() - t0 < 5
        assert not Path(board.link_path).exists()
    finally:
        host.close()

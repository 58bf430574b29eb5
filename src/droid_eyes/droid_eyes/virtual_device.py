"""A virtual eye Arduino on a pseudo-terminal, for tests and benchmarks (no rclpy).

It implements the device side of :mod:`droid_eyes.protocol` the way the sketch does:
boot DEV_HELLO, DEV_HELLO in reply to HELLO, ACK/NACK of SET_STATE and FULL_STATE,
unacknowledged AMPLITUDE, DEV_HEARTBEAT every 0.5 s. The host opens it through a stable
symlink (``link_path``), which :meth:`replug` re-points at a fresh pty, like a USB
device coming back under ``/dev/serial/by-id``.

Fault injection: :meth:`drop_next` (frames lost on the wire), :meth:`drop_every` (a
periodic loss: every n-th frame), :meth:`nack_next`,
:meth:`inject` (garbage or hand-made frames), :meth:`reset` (the sketch rebooting
mid-stream), :meth:`unplug` / :meth:`replug`, :meth:`mute` (a hung device)::

    dev = VirtualEyesDevice('/tmp/x/ttyEYES').plug()
    ...                     # point the eyes node's `port` at /tmp/x/ttyEYES (or /tmp/x/tty*)
    dev.wait_until(lambda d: d.state.pattern == 8, timeout=2)
    dev.close()
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty

from droid_eyes import protocol as P


class VirtualEyesDevice:
    def __init__(self, link_path: str, capabilities: int = P.CAP_MATRIX,
                 heartbeat_period: float = P.DEVICE_HEARTBEAT_MS / 1000.0,
                 boot_hello: bool = True, seed: int | None = None):
        self.link_path = link_path
        self.capabilities = capabilities
        self.heartbeat_period = heartbeat_period
        self.boot_hello = boot_hello
        self._rng = random.Random(seed)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._master = self._slave = -1
        self.slave_name = ''
        # device state (what the LEDs show)
        self.boot_id = 0
        self.state = P.DeviceState()
        self.amplitude = 0
        self.last_seq = 0
        self.rx_errors = 0
        # observations
        self.frames: list = []        # (monotonic time, Frame) of every good host frame
        self.applied: list = []       # ('state'|'full'|'amplitude', value, time)
        self.bad: list = []           # BadFrames received
        self.boots = 0
        self.plugged = False
        self._drop = 0
        self._drop_types: tuple = P.ACKED_TYPES
        self._drop_every = 0
        self._received = 0            # good host frames seen since drop_every()
        self.dropped: list = []       # (monotonic time, Frame) of every frame dropped
        self._nack = 0
        self._muted = False

    # ---- life cycle ---------------------------------------------------------------------
    def plug(self) -> VirtualEyesDevice:
        """Connect: a fresh pty, the symlink pointed at it, the device boots."""
        if self.plugged:
            return self
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)            # no echo / line editing before the host opens it
        os.set_blocking(self._master, False)
        self.slave_name = os.ttyname(self._slave)
        head, tail = os.path.split(self.link_path)
        tmp = os.path.join(head, f'.{tail}.tmp{os.getpid()}')   # hidden: globs skip it
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link_path)
        self._stop.clear()
        self.plugged = True
        self._boot()
        self._thread = threading.Thread(target=self._run, name='virtual-eyes', daemon=True)
        self._thread.start()
        return self

    def unplug(self) -> None:
        """Disconnect: the pty closes (host reads fail) and the symlink disappears."""
        if not self.plugged:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None
        try:
            os.unlink(self.link_path)
        except FileNotFoundError:
            pass
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1
        self.plugged = False
        with self._cond:
            self._cond.notify_all()

    def replug(self) -> None:
        self.unplug()
        self.plug()

    def close(self) -> None:
        self.unplug()

    def __enter__(self):
        return self.plug()

    def __exit__(self, *exc):
        self.close()
        return False

    # ---- fault injection ----------------------------------------------------------------
    def reset(self) -> None:
        """The sketch reboots: state lost, new boot id, boot DEV_HELLO."""
        with self._cond:
            self._boot()

    def drop_next(self, n: int = 1, types=P.ACKED_TYPES) -> None:
        """Ignore (as if lost on the wire) the next ``n`` host frames of these types."""
        with self._cond:
            self._drop, self._drop_types = n, tuple(types)

    def drop_every(self, n: int) -> None:
        """Lose every ``n``-th good host frame, whatever its type, from now on (0 = stop);
        the device keeps sending its heartbeats."""
        with self._cond:
            self._drop_every, self._received = max(0, int(n)), 0

    def nack_next(self, n: int = 1) -> None:
        """Reject the next ``n`` acknowledged frames with NACK(bad payload)."""
        with self._cond:
            self._nack = n

    def mute(self, muted: bool = True) -> None:
        """A hung device: reads and applies nothing, sends nothing."""
        with self._cond:
            self._muted = muted

    def inject(self, data: bytes) -> None:
        """Write raw bytes to the host (garbage, partial or hand-made frames)."""
        self._send_raw(data)

    # ---- observation --------------------------------------------------------------------
    def wait_until(self, predicate, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def frames_of(self, *types) -> list:
        with self._cond:
            return [f for _, f in self.frames if f.type in types]

    def clear(self) -> None:
        with self._cond:
            self.frames.clear()
            self.applied.clear()
            self.bad.clear()

    # ---- device side --------------------------------------------------------------------
    def _boot(self) -> None:
        self.boot_id = self._rng.randrange(1, 0x10000)
        self.boots += 1
        self.state = P.DeviceState()
        self.amplitude = 0
        self.last_seq = 0
        self.rx_errors = 0
        self._decoder = P.Decoder()
        if self.boot_hello:
            self._send(P.DEV_HELLO, 0, P.dev_hello_payload(self.boot_id, self.capabilities))

    def _send_raw(self, data: bytes) -> None:
        if self._master < 0:
            return
        try:
            os.write(self._master, data)
        except (BlockingIOError, OSError):
            pass  # a real UART would drop too

    def _send(self, type_: int, seq: int, payload: bytes = b'') -> None:
        if not self._muted:
            self._send_raw(P.encode(type_, seq, payload))

    def _run(self) -> None:
        next_hb = time.monotonic() + self.heartbeat_period
        while not self._stop.is_set():
            timeout = max(0.0, min(next_hb - time.monotonic(), 0.05))
            try:
                ready, _, _ = select.select([self._master], [], [], timeout)
                data = os.read(self._master, 4096) if ready else b''
            except (BlockingIOError, InterruptedError):
                data = b''
            except OSError:
                data = b''
                time.sleep(0.01)
            now = time.monotonic()
            if data:
                with self._cond:
                    if not self._muted:
                        for item in self._decoder.feed(data):
                            self._handle(item, now)
                    self._cond.notify_all()
            if now >= next_hb:
                next_hb = now + self.heartbeat_period
                with self._cond:
                    self._send(P.DEV_HEARTBEAT, 0,
                               P.dev_heartbeat_payload(self.boot_id, self.last_seq,
                                                       self.rx_errors))

    def _handle(self, item, now: float) -> None:
        if isinstance(item, P.BadFrame):
            self.bad.append(item)
            self.rx_errors += 1
            self._send(P.NACK, item.seq, bytes((item.reason,)))
            return
        f = item
        if self._drop_every:
            self._received += 1
            if self._received % self._drop_every == 0:
                self.dropped.append((now, f))
                return
        if self._drop and f.type in self._drop_types:
            self._drop -= 1
            self.dropped.append((now, f))
            return
        self.frames.append((now, f))
        if f.type == P.HELLO:
            if f.payload[:1] != bytes((P.PROTOCOL_VERSION,)):
                self._send(P.NACK, f.seq, bytes((P.NACK_BAD_VERSION,)))
            else:
                self._send(P.DEV_HELLO, f.seq, P.dev_hello_payload(self.boot_id,
                                                                   self.capabilities))
        elif f.type == P.HEARTBEAT:
            pass
        elif f.type in (P.SET_STATE, P.FULL_STATE):
            size = P.STATE_SIZE if f.type == P.SET_STATE else P.FULL_STATE_SIZE
            if len(f.payload) != size:
                self._send(P.NACK, f.seq, bytes((P.NACK_BAD_PAYLOAD,)))
                return
            if self._nack:
                self._nack -= 1
                self._send(P.NACK, f.seq, bytes((P.NACK_BAD_PAYLOAD,)))
                return
            if f.type == P.SET_STATE:
                self.state = P.DeviceState.unpack(f.payload)
                self.applied.append(('state', self.state, now))
            else:
                self.state, self.amplitude, _flags = P.parse_full_state(f.payload)
                self.applied.append(('full', (self.state, self.amplitude), now))
            self.last_seq = f.seq
            self._send(P.ACK, f.seq, bytes((f.type,)))
        elif f.type == P.AMPLITUDE:
            if len(f.payload) == 1:
                self.amplitude = f.payload[0]
                self.applied.append(('amplitude', self.amplitude, now))
        else:
            self._send(P.NACK, f.seq, bytes((P.NACK_UNKNOWN_TYPE,)))

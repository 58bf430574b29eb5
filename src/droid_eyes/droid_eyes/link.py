"""The host side of the eyes serial link (pyserial, its own thread; no rclpy).

:class:`SerialLink` owns the port in one background thread:

- finds the port (a path, or a glob such as ``/dev/serial/by-id/*Arduino*``), opens it,
  handshakes (HELLO until the device answers DEV_HELLO; an Arduino that resets on open
  answers with its boot DEV_HELLO), then sends FULL_STATE;
- sends the latest wanted animation state as SET_STATE, stop-and-wait: one command in
  flight, ACK'd by sequence number, retransmitted on NACK or when its ACK is overdue. The
  wait before each resend grows exponentially from ``ack_timeout`` (``retry_backoff``,
  capped at ``retry_max_delay``) with random jitter (``retry_jitter``), so resends never
  fall into step with a periodic fault (a device dropping every fifth frame);
- after ``max_retries`` unacknowledged resends the link is *degraded*, not lost, as long
  as the device keeps talking (heartbeats): WARN, and it keeps resending at the capped
  delay. Reopening the port is the last resort (on an Uno or Nano it resets the board):
  only a silent device (nothing valid for ``link_timeout``), an I/O error or an unplug
  lead to it;
- streams amplitude as unacknowledged AMPLITUDE frames, coalesced: only the latest value
  is sent, at most ``amplitude_max_rate`` per second, and only when it changed;
- sends HEARTBEAT every ``heartbeat_period``; declares the link lost when nothing valid
  came from the device for ``link_timeout`` (the device heartbeats every 0.5 s); while
  handshaking, a device that heartbeats but missed a HELLO gets more HELLOs (backed off),
  not a reopen;
- on a device reset (unasked DEV_HELLO, or a new boot id in DEV_HEARTBEAT) resends the
  FULL_STATE; on an I/O error or unplug closes the port, reports it and retries every
  ``reconnect_period`` (backed off with jitter up to ``retry_max_delay`` while opening
  fails) until the device is back, then handshakes and resyncs.

Bytes from the device go through :class:`droid_eyes.protocol.Decoder`, which never
raises; nothing the device sends can crash the link. Callers (ROS callbacks) only call
:meth:`SerialLink.set_state` / :meth:`SerialLink.set_amplitude`, which never block.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import select
import threading
import time
from dataclasses import dataclass, field, replace

from droid_eyes import protocol as P

OK, WARN, ERROR = 0, 1, 2


class LinkLost(Exception):
    pass


@dataclass
class LinkConfig:
    port: str = '/dev/serial/by-id/*Arduino*'
    baud: int = P.BAUD
    ack_timeout: float = 0.15
    max_retries: int = 3
    handshake_timeout: float = 3.0
    hello_interval: float = 0.25
    reconnect_period: float = 0.25
    heartbeat_period: float = 0.5
    link_timeout: float = 2.0
    amplitude_max_rate: float = 60.0
    write_timeout: float = 0.5
    retry_backoff: float = 2.0
    retry_max_delay: float = 1.0
    retry_jitter: float = 0.5


def backoff_delay(base: float, attempt: int, factor: float, cap: float, jitter: float,
                  rng: random.Random) -> float:
    """The wait before retry number ``attempt`` (1 = the first wait): ``base`` grown by
    ``factor`` per attempt, capped at ``cap``, stretched by a random factor in
    [1, 1 + jitter] (never shorter than the nominal wait)."""
    base = max(0.0, float(base))
    cap = max(base, float(cap))
    try:
        nominal = base * math.pow(max(1.0, float(factor)), max(0, int(attempt) - 1))
    except OverflowError:
        nominal = cap
    if not math.isfinite(nominal):
        nominal = cap
    return min(nominal, cap) * (1.0 + rng.uniform(0.0, max(0.0, float(jitter))))


@dataclass
class LinkStatus:
    level: int = WARN
    message: str = 'starting'
    connected: bool = False       # open, handshaken and the full state acknowledged
    port: str = ''
    boot_id: int | None = None
    counters: dict = field(default_factory=dict)


COUNTERS = ('frames_sent', 'bytes_sent', 'acks', 'nacks', 'retries', 'rx_frames', 'rx_bad',
            'rx_skipped', 'device_resets', 'resyncs', 'connects', 'losses', 'amplitude_frames',
            'degraded', 'opens')


def resolve_port(pattern: str) -> str | None:
    """First existing path matching ``pattern`` (a path or a glob), sorted; else None."""
    if any(c in pattern for c in '*?['):
        for path in sorted(glob.glob(pattern)):
            if os.path.exists(path):
                return path
        return None
    return pattern if os.path.exists(pattern) else None


def _default_serial_factory(port: str, cfg: LinkConfig):
    import serial  # pyserial
    return serial.Serial(port, cfg.baud, timeout=0, write_timeout=cfg.write_timeout,
                         exclusive=True)


@dataclass
class _Pending:
    frame: P.Frame
    data: bytes
    state: P.DeviceState
    amplitude: int | None
    deadline: float
    tries: int = 1


class SerialLink:
    """Keeps the device showing the wanted state, across unplugs and resets."""

    def __init__(self, config: LinkConfig, serial_factory=None, on_write=None,
                 logger: logging.Logger | None = None, clock=time.monotonic,
                 rng: random.Random | None = None):
        self.cfg = config
        self._factory = serial_factory or _default_serial_factory
        self._on_write = on_write            # called (frame bytes, monotonic time) per write
        self._log = logger or logging.getLogger('droid_eyes.link')
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._want = P.DeviceState()
        self._amp = 0
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._status = LinkStatus(message=f'waiting for a device matching {config.port}',
                                  port='', counters={k: 0 for k in COUNTERS})
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._ser = None
        self._ever_connected = False
        self._synced_once = False

    # ---- API (any thread, never blocks) -------------------------------------------------
    def start(self) -> SerialLink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='eyes-serial', daemon=True)
            self._thread.start()
        return self

    def set_state(self, state: P.DeviceState) -> None:
        with self._lock:
            if state == self._want:
                return
            self._want = state
        self._wake()

    def set_amplitude(self, amplitude: float) -> None:
        value = P.amplitude_byte(amplitude)
        with self._lock:
            if value == self._amp:
                return
            self._amp = value
        self._wake()

    def status(self) -> LinkStatus:
        with self._lock:
            return replace(self._status, counters=dict(self._status.counters))

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    # ---- internals ----------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b'\0')
        except (BlockingIOError, OSError):
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, OSError):
            pass

    def _set_status(self, level: int, message: str, connected: bool, quiet: bool = False,
                    **kw) -> None:
        with self._lock:
            changed = (level, message) != (self._status.level, self._status.message)
            self._status.level, self._status.message = level, message
            self._status.connected = connected
            for k, v in kw.items():
                setattr(self._status, k, v)
        if changed:
            (self._log.info if level == OK or quiet else self._log.warning)(message)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._status.counters[name] += n

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _delay(self, base: float, attempt: int) -> float:
        c = self.cfg
        return backoff_delay(base, attempt, c.retry_backoff, c.retry_max_delay, c.retry_jitter,
                             self._rng)

    def _run(self) -> None:
        failures = 0     # opens / sessions in a row that never got in sync: backs off
        while not self._stop.is_set():
            port = resolve_port(self.cfg.port)
            if port is None:
                # Looking for the port disturbs nothing: no backoff, so a board plugged
                # back in is found within reconnect_period.
                if self._ever_connected:
                    self._set_status(ERROR, f'device lost: no device matching {self.cfg.port}; '
                                     'waiting for it to come back', False, port='')
                else:
                    self._set_status(WARN, f'no device matching {self.cfg.port}; waiting', False)
                self._sleep(self.cfg.reconnect_period)
                continue
            try:
                self._ser = self._factory(port, self.cfg)
            except Exception as exc:  # noqa: BLE001 - any open failure: retry later
                failures += 1
                self._set_status(ERROR, f'cannot open {port}: {exc}', False, port=port)
                self._sleep(self._delay(self.cfg.reconnect_period, failures))
                continue
            self._count('opens')
            self._synced_once = False
            try:
                self._session(self._ser, port)
            except Exception as exc:  # noqa: BLE001 - I/O error, unplug, silence: reconnect
                if not self._stop.is_set():
                    self._count('losses')
                    self._set_status(ERROR, f'device lost on {port}: {exc}; reconnecting',
                                     False, port=port)
            finally:
                try:
                    self._ser.close()
                except Exception:  # noqa: BLE001
                    pass
                self._ser = None
            failures = 0 if self._synced_once else failures + 1
            if not self._stop.is_set():
                self._sleep(self._delay(min(self.cfg.reconnect_period, 0.1), failures))

    def _write(self, ser, frame: P.Frame) -> bytes:
        data = frame.encode()
        n = ser.write(data)
        if n is not None and n != len(data):
            raise LinkLost(f'short write ({n} of {len(data)} bytes)')
        now = self._clock()
        with self._lock:
            c = self._status.counters
            c['frames_sent'] += 1
            c['bytes_sent'] += len(data)
            if frame.type == P.AMPLITUDE:
                c['amplitude_frames'] += 1
        if self._on_write is not None:
            try:
                self._on_write(data, now)
            except Exception:  # noqa: BLE001 - an observer must not break the link
                self._log.exception('on_write callback failed')
        return data

    def _read(self, ser, decoder: P.Decoder, timeout: float) -> list:
        """Wait up to ``timeout`` for device bytes or a wake-up; return decoded items."""
        try:
            fds = [ser.fileno(), self._wake_r]
        except Exception:  # noqa: BLE001 - no fileno: poll
            fds = None
        if fds is not None:
            ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
            if self._wake_r in ready:
                self._drain_wake()
            if fds[0] not in ready:
                return []
        else:
            time.sleep(min(max(0.0, timeout), 0.002))
        data = ser.read(4096)
        if not data:
            return []
        items = decoder.feed(data)
        return items

    def _session(self, ser, port: str) -> None:
        cfg = self.cfg
        dec = P.Decoder()
        skipped0 = 0
        # -- handshake --
        self._set_status(WARN, f'opened {port}; handshaking', False, quiet=True, port=port)
        now = self._clock()
        deadline = now + cfg.handshake_timeout
        next_hello = now
        hellos = 0
        boot_id = None
        while boot_id is None:
            if self._stop.is_set():
                return
            now = self._clock()
            if now >= deadline:
                raise LinkLost(f'no DEV_HELLO within {cfg.handshake_timeout:.1f} s')
            if now >= next_hello:
                self._write(ser, P.Frame(P.HELLO, self._next_seq(), P.hello_payload()))
                hellos += 1
                next_hello = now + self._delay(cfg.hello_interval, hellos)
            for item in self._read(ser, dec, min(next_hello, deadline) - now):
                if not isinstance(item, P.Frame):
                    continue
                if item.type == P.DEV_HELLO:
                    try:
                        version, bid, _caps = P.parse_dev_hello(item.payload)
                    except ValueError:
                        continue
                    if version != P.PROTOCOL_VERSION:
                        raise LinkLost(f'device speaks protocol {version}, '
                                       f'host {P.PROTOCOL_VERSION}')
                    boot_id = bid
                elif item.type == P.DEV_HEARTBEAT and len(item.payload) == P.DEV_HEARTBEAT_SIZE:
                    # Alive, it only missed our HELLO (or we its answer): more HELLOs, not
                    # a reopen (which would reset the board).
                    deadline = max(deadline, self._clock() + cfg.handshake_timeout)
                    if hellos > cfg.max_retries:
                        self._set_status(WARN, f'device on {port} heartbeats but has not '
                                         f'answered {hellos} HELLOs; retrying', False)
        self._count('connects')
        self._set_status(WARN, f'handshake with {port} done (boot {boot_id:#06x}); syncing',
                         False, quiet=True, boot_id=boot_id)
        # -- streaming --
        last_rx = self._clock()
        pending: _Pending | None = None
        acked: P.DeviceState | None = None
        amp_sent = None
        need_full = True
        synced = False
        degraded = False
        next_hb = self._clock()
        next_amp = 0.0
        amp_interval = 1.0 / cfg.amplitude_max_rate if cfg.amplitude_max_rate > 0 else 0.0

        def resend(pending: _Pending, now: float, why: str) -> _Pending:
            nonlocal degraded
            if pending.tries > cfg.max_retries and not degraded:
                # The device keeps talking (the silence check comes first), so this is a
                # bad line or a busy device: degraded, not lost. Keep trying, backed off.
                degraded = True
                self._count('degraded')
                self._set_status(WARN, f'degraded: {pending.frame.name} not acknowledged '
                                 f'after {pending.tries} tries ({why}) while the device on '
                                 f'{port} keeps answering; still retrying', synced)
            with self._lock:
                want, amp = self._want, self._amp
            return self._retransmit(ser, pending, now, want, amp)

        while not self._stop.is_set():
            now = self._clock()
            with self._lock:
                want, amp = self._want, self._amp
            # timers first
            if now - last_rx > cfg.link_timeout:
                raise LinkLost(f'device silent for {now - last_rx:.1f} s')
            if pending is not None and now >= pending.deadline:
                pending = resend(pending, now, 'ack timeout')
            if pending is None:
                if need_full:
                    frame = P.Frame(P.FULL_STATE, self._next_seq(),
                                    P.full_state_payload(want, amp))
                    pending = _Pending(frame, self._write(ser, frame), want, amp,
                                       now + self._delay(cfg.ack_timeout, 1))
                    need_full = False
                elif want != acked:
                    frame = P.Frame(P.SET_STATE, self._next_seq(), P.set_state_payload(want))
                    pending = _Pending(frame, self._write(ser, frame), want, None,
                                       now + self._delay(cfg.ack_timeout, 1))
            if synced and amp != amp_sent and now >= next_amp:
                self._write(ser, P.Frame(P.AMPLITUDE, self._next_seq(), bytes((amp,))))
                amp_sent = amp
                next_amp = now + amp_interval
            if now >= next_hb:
                self._write(ser, P.Frame(P.HEARTBEAT, self._next_seq()))
                next_hb = now + cfg.heartbeat_period
            # wait for the device or a wake-up
            wait = min(next_hb, last_rx + cfg.link_timeout + 0.01) - now
            if pending is not None:
                wait = min(wait, pending.deadline - now)
            if synced and amp != amp_sent:
                wait = min(wait, next_amp - now)
            items = self._read(ser, dec, min(wait, 0.1))
            if dec.skipped != skipped0:
                self._count('rx_skipped', dec.skipped - skipped0)
                skipped0 = dec.skipped
            for item in items:
                now = self._clock()
                if isinstance(item, P.BadFrame):
                    self._count('rx_bad')
                    continue
                last_rx = now
                self._count('rx_frames')
                if item.type == P.ACK:
                    if pending is not None and item.seq == pending.frame.seq:
                        self._count('acks')
                        acked = pending.state
                        if pending.amplitude is not None:
                            amp_sent = pending.amplitude
                            if not synced:
                                synced = True
                                self._synced_once = True
                                self._count('resyncs')
                                self._ever_connected = True
                                degraded = False
                                self._set_status(OK, f'connected to {port} '
                                                 f'(boot {boot_id:#06x}), in sync', True)
                        if degraded:
                            degraded = False
                            self._set_status(OK, f'connected to {port} (boot {boot_id:#06x}), '
                                             f'in sync again after {pending.tries} tries', True)
                        pending = None
                elif item.type == P.NACK:
                    self._count('nacks')
                    code = item.payload[0] if item.payload else 0
                    # (a NACK for a garbled header may carry any seq: resend then too)
                    if pending is not None and (item.seq == pending.frame.seq or code in (
                            P.NACK_BAD_CRC, P.NACK_BAD_LENGTH)):
                        pending = resend(pending, now, f'NACK ({P.NACK_NAMES.get(code, "?")})')
                elif item.type == P.DEV_HELLO:
                    try:
                        _v, bid, _c = P.parse_dev_hello(item.payload)
                    except ValueError:
                        continue
                    # An unasked DEV_HELLO: the device (re)booted; resync everything.
                    boot_id = bid
                    self._count('device_resets')
                    self._log.warning(f'device on {port} reset (boot {bid:#06x}): resyncing')
                    pending, acked, need_full, synced, degraded = None, None, True, False, False
                    self._set_status(WARN, f'device on {port} reset; resyncing', False,
                                     boot_id=bid)
                elif item.type == P.DEV_HEARTBEAT:
                    try:
                        bid, _seq, _err = P.parse_dev_heartbeat(item.payload)
                    except ValueError:
                        continue
                    if bid != boot_id:
                        boot_id = bid
                        self._count('device_resets')
                        self._log.warning(f'device on {port} has a new boot id {bid:#06x}: '
                                          'resyncing')
                        pending, acked, need_full, synced, degraded = (None, None, True, False,
                                                                       False)
                        self._set_status(WARN, f'device on {port} reset; resyncing', False,
                                         boot_id=bid)

    def _retransmit(self, ser, pending: _Pending, now: float, want: P.DeviceState,
                    amp: int) -> _Pending:
        """Resend the frame in flight (the latest wanted state if it changed meanwhile:
        then a new frame with a new sequence number), and schedule the next resend."""
        self._count('retries')
        if pending.state != want or (pending.amplitude is not None and pending.amplitude != amp):
            if pending.frame.type == P.FULL_STATE:
                frame = P.Frame(P.FULL_STATE, self._next_seq(), P.full_state_payload(want, amp))
                pending.amplitude = amp
            else:
                frame = P.Frame(P.SET_STATE, self._next_seq(), P.set_state_payload(want))
            pending.frame, pending.data, pending.state = frame, frame.encode(), want
        data = pending.data
        n = ser.write(data)
        if n is not None and n != len(data):
            raise LinkLost(f'short write ({n} of {len(data)} bytes)')
        with self._lock:
            self._status.counters['frames_sent'] += 1
            self._status.counters['bytes_sent'] += len(data)
        if self._on_write is not None:
            try:
                self._on_write(data, now)
            except Exception:  # noqa: BLE001
                pass
        pending.tries += 1
        pending.deadline = now + self._delay(self.cfg.ack_timeout, pending.tries)
        return pending

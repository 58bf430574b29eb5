"""The host side of the eyes serial link (pyserial, its own thread; no rclpy).

:class:`SerialLink` owns the port in one background thread:

- finds the port (a path, or a glob such as ``/dev/serial/by-id/*Arduino*``), opens it,
  handshakes (HELLO until the device answers DEV_HELLO; an Arduino that resets on open
  answers with its boot DEV_HELLO), then sends FULL_STATE;
- sends the latest wanted animation state as SET_STATE, stop-and-wait: one command in
  flight, ACK'd by sequence number, retransmitted on NACK or after ``ack_timeout``, at
  most ``max_retries`` times, after which the link is declared lost;
- streams amplitude as unacknowledged AMPLITUDE frames, coalesced: only the latest value
  is sent, at most ``amplitude_max_rate`` per second, and only when it changed;
- sends HEARTBEAT every ``heartbeat_period``; declares the link lost when nothing valid
  came from the device for ``link_timeout`` (the device heartbeats every 0.5 s);
- on a device reset (unasked DEV_HELLO, or a new boot id in DEV_HEARTBEAT) resends the
  FULL_STATE; on an I/O error or unplug closes the port, reports it and retries every
  ``reconnect_period`` until the device is back, then handshakes and resyncs.

Bytes from the device go through :class:`droid_eyes.protocol.Decoder`, which never
raises; nothing the device sends can crash the link. Callers (ROS callbacks) only call
:meth:`SerialLink.set_state` / :meth:`SerialLink.set_amplitude`, which never block.
"""

from __future__ import annotations

import glob
import logging
import os
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


@dataclass
class LinkStatus:
    level: int = WARN
    message: str = 'starting'
    connected: bool = False       # open, handshaken and the full state acknowledged
    port: str = ''
    boot_id: int | None = None
    counters: dict = field(default_factory=dict)


COUNTERS = ('frames_sent', 'bytes_sent', 'acks', 'nacks', 'retries', 'rx_frames', 'rx_bad',
            'rx_skipped', 'device_resets', 'resyncs', 'connects', 'losses', 'amplitude_frames')


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
                 logger: logging.Logger | None = None, clock=time.monotonic):
        self.cfg = config
        self._factory = serial_factory or _default_serial_factory
        self._on_write = on_write            # called (frame bytes, monotonic time) per write
        self._log = logger or logging.getLogger('droid_eyes.link')
        self._clock = clock
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

    def _run(self) -> None:
        while not self._stop.is_set():
            port = resolve_port(self.cfg.port)
            if port is None:
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
                self._set_status(ERROR, f'cannot open {port}: {exc}', False, port=port)
                self._sleep(self.cfg.reconnect_period)
                continue
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
            if not self._stop.is_set():
                self._sleep(min(self.cfg.reconnect_period, 0.1))

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
        boot_id = None
        while boot_id is None:
            if self._stop.is_set():
                return
            now = self._clock()
            if now >= deadline:
                raise LinkLost(f'no DEV_HELLO within {cfg.handshake_timeout:.1f} s')
            if now >= next_hello:
                self._write(ser, P.Frame(P.HELLO, self._next_seq(), P.hello_payload()))
                next_hello = now + cfg.hello_interval
            for item in self._read(ser, dec, min(next_hello, deadline) - now):
                if isinstance(item, P.Frame) and item.type == P.DEV_HELLO:
                    try:
                        version, bid, _caps = P.parse_dev_hello(item.payload)
                    except ValueError:
                        continue
                    if version != P.PROTOCOL_VERSION:
                        raise LinkLost(f'device speaks protocol {version}, '
                                       f'host {P.PROTOCOL_VERSION}')
                    boot_id = bid
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
        next_hb = self._clock()
        next_amp = 0.0
        amp_interval = 1.0 / cfg.amplitude_max_rate if cfg.amplitude_max_rate > 0 else 0.0
        while not self._stop.is_set():
            now = self._clock()
            with self._lock:
                want, amp = self._want, self._amp
            # timers first
            if now - last_rx > cfg.link_timeout:
                raise LinkLost(f'device silent for {now - last_rx:.1f} s')
            if pending is not None and now >= pending.deadline:
                pending = self._retransmit(ser, pending, now, 'ack timeout')
            if pending is None:
                if need_full:
                    frame = P.Frame(P.FULL_STATE, self._next_seq(),
                                    P.full_state_payload(want, amp))
                    pending = _Pending(frame, self._write(ser, frame), want, amp,
                                       now + cfg.ack_timeout)
                    need_full = False
                elif want != acked:
                    frame = P.Frame(P.SET_STATE, self._next_seq(), P.set_state_payload(want))
                    pending = _Pending(frame, self._write(ser, frame), want, None,
                                       now + cfg.ack_timeout)
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
                                self._count('resyncs')
                                self._ever_connected = True
                                self._set_status(OK, f'connected to {port} '
                                                 f'(boot {boot_id:#06x}), in sync', True)
                        pending = None
                elif item.type == P.NACK:
                    self._count('nacks')
                    if pending is not None:
                        reason = P.NACK_NAMES.get(item.payload[:1] and item.payload[0], '?')
                        pending = self._retransmit(ser, pending, now, f'NACK ({reason})')
                elif item.type == P.DEV_HELLO:
                    try:
                        _v, bid, _c = P.parse_dev_hello(item.payload)
                    except ValueError:
                        continue
                    # An unasked DEV_HELLO: the device (re)booted; resync everything.
                    boot_id = bid
                    self._count('device_resets')
                    self._log.warning(f'device on {port} reset (boot {bid:#06x}): resyncing')
                    pending, acked, need_full, synced = None, None, True, False
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
                        pending, acked, need_full, synced = None, None, True, False
                        self._set_status(WARN, f'device on {port} reset; resyncing', False,
                                         boot_id=bid)

    def _retransmit(self, ser, pending: _Pending, now: float, why: str):
        if pending.tries > self.cfg.max_retries:
            raise LinkLost(f'{pending.frame.name} seq {pending.frame.seq} not acknowledged '
                           f'after {pending.tries} tries ({why})')
        self._count('retries')
        ser.write(pending.data)
        with self._lock:
            self._status.counters['frames_sent'] += 1
            self._status.counters['bytes_sent'] += len(pending.data)
        if self._on_write is not None:
            try:
                self._on_write(pending.data, now)
            except Exception:  # noqa: BLE001
                pass
        pending.tries += 1
        pending.deadline = now + self.cfg.ack_timeout
        return pending

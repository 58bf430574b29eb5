"""A simulated eyes board: the firmware's ELF running in the simavr harness
(``sim/eyes_sim.c``), seen from Python (stdlib only; no ROS).

The board's serial port is a pseudo-terminal behind ``link_path`` (what the host opens,
like ``/dev/serial/by-id/...``); what the firmware drives on the MAX7219 and NeoPixel pins
comes back decoded, as :class:`MaxFrame` / :class:`RingFrame` with simulated timestamps::

    fw = avr_build.build_firmware('matrix', out)
    with SimulatedBoard(fw.elf, tmp / 'ttyEYES', avr_build.build_simulator(out)) as board:
        ...                                  # open tmp / 'ttyEYES' with pyserial
        board.wait_display(lambda f: f.rows(0) == HAPPY, timeout=5)
        board.reset()                        # as the DTR line does on a real board
        board.unplug(); board.plug()         # the pty vanishes, then comes back (power cycle)
        board.counters()                     # the firmware's own counters, read from its RAM

:meth:`close` stops the harness (``quit`` on stdin, then SIGTERM, then SIGKILL) and never
hangs.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass

COUNTER_NAMES = ('frames', 'amplitudes', 'bad_frames', 'renders', 'render_max_us')


@dataclass(frozen=True)
class MaxFrame:
    """What the MAX7219 chain shows: per device, ``(intensity, rows)`` or None when it is
    shut down. Device 0 is the first of the chain (the left eye). Rows are 8 ints, bit 7
    the leftmost column."""
    t_us: int
    devices: tuple
    wall: float

    def rows(self, device: int):
        d = self.devices[device]
        return None if d is None else d[1]

    def intensity(self, device: int):
        d = self.devices[device]
        return None if d is None else d[0]


@dataclass(frozen=True)
class RingFrame:
    """The NeoPixels' colours after a latch, as (r, g, b) per pixel."""
    t_us: int
    pixels: tuple
    wall: float


def _parse_max(line: str, wall: float) -> MaxFrame:
    parts = line.split()
    devices = []
    for item in parts[2:]:
        if item == 'off':
            devices.append(None)
        else:
            intensity, rows = item.split(':')
            devices.append((int(intensity), tuple(bytes.fromhex(rows))))
    return MaxFrame(int(parts[1]), tuple(devices), wall)


def _parse_ring(line: str, wall: float) -> RingFrame:
    parts = line.split()
    raw = bytes.fromhex(parts[3]) if len(parts) > 3 else b''
    pixels = tuple((raw[i + 1], raw[i], raw[i + 2]) for i in range(0, len(raw) - 2, 3))  # GRB
    return RingFrame(int(parts[1]), pixels, wall)


class SimulatedBoard:
    def __init__(self, elf, link_path, simulator, *, reset_on_open: bool = False,
                 boot_ms: int = 0, speed: float = 1.0, max_pins: str | None = None,
                 ring_pin: str | None = None, watch=('eyes_counters:5x2',),
                 log_path=None):
        self.elf = str(elf)
        self.link_path = str(link_path)
        self.simulator = str(simulator)
        args = [self.simulator, '--link', self.link_path, '--speed', str(speed),
                '--boot-ms', str(boot_ms)]
        if reset_on_open:
            args.append('--reset-on-open')
        if max_pins:
            args += ['--max', max_pins]
        if ring_pin:
            args += ['--ring', ring_pin]
        for w in watch:
            args += ['--watch', w]
        self._args = args + [self.elf]
        self._log_path = log_path
        self._cond = threading.Condition()
        self._proc: subprocess.Popen | None = None
        self._rc: int | None = None
        self._reader: threading.Thread | None = None
        self._stats: dict | None = None
        self.lines: list = []          # (wall time, line) of every event
        self.max_frames: list = []     # MaxFrame, in order
        self.ring_frames: list = []    # RingFrame, in order
        self.resets: list = []         # (wall time, sim us, why)
        self.crashed = False
        self.pty = ''

    # ---- life cycle ---------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> SimulatedBoard:
        stderr = open(self._log_path, 'ab') if self._log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=stderr, text=True, bufsize=1,
                                      start_new_session=True)
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        self._reader = threading.Thread(target=self._read, name='eyes-sim', daemon=True)
        self._reader.start()
        if not self.wait_line(lambda line: line.startswith('READY'), timeout):
            self.close()
            raise RuntimeError(f'the simulator did not start: {self._args}')
        return self

    def close(self, timeout: float = 5.0) -> int | None:
        """Stop the harness; returns its exit status (0 = clean), also when called again."""
        proc = self._proc
        if proc is None:
            return self._rc
        if proc.poll() is None:
            try:
                proc.stdin.write('quit\n')
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(2)
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        if self._reader is not None:
            self._reader.join(2)
        self._proc = None
        self._rc = proc.returncode
        return self._rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def returncode(self):
        return None if self._proc is None else self._proc.poll()

    # ---- commands -----------------------------------------------------------------------
    def _command(self, cmd: str) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError('the simulator is not running')
        self._proc.stdin.write(cmd + '\n')
        self._proc.stdin.flush()

    def reset(self, timeout: float = 5.0) -> None:
        """Reset the MCU (what DTR does on an Uno / Nano); returns once it happened."""
        n = len(self.resets)
        self._command('reset')
        if not self.wait_for(lambda b: len(b.resets) > n, timeout):
            raise RuntimeError('the simulator did not reset')

    def unplug(self, timeout: float = 5.0) -> None:
        """The board goes away: its pty closes and ``link_path`` disappears."""
        n = self._count('UNPLUGGED')
        self._command('unplug')
        if not self.wait_for(lambda b: b._count('UNPLUGGED') > n, timeout):
            raise RuntimeError('the simulator did not unplug')

    def plug(self, timeout: float = 5.0) -> None:
        """The board comes back on a new pty behind ``link_path``, powering up (reset)."""
        n = self._count('PLUGGED')
        self._command('plug')
        if not self.wait_for(lambda b: b._count('PLUGGED') > n, timeout):
            raise RuntimeError('the simulator did not plug')

    def stats(self, timeout: float = 5.0) -> dict:
        """The harness' counters (bytes, overruns, lag...) and the watched variables."""
        with self._cond:
            self._stats = None
        self._command('stats')
        if not self.wait_for(lambda b: b._stats is not None, timeout):
            raise RuntimeError('no STATS from the simulator')
        return dict(self._stats)

    def counters(self, timeout: float = 5.0) -> dict:
        """The firmware's ``eyes_counters`` (frames received, amplitudes, bad frames,
        renders, longest render in us), read from the simulated RAM."""
        st = self.stats(timeout)
        return {name: st[f'eyes_counters.{i}'] for i, name in enumerate(COUNTER_NAMES)
                if f'eyes_counters.{i}' in st}

    # ---- observation --------------------------------------------------------------------
    def _count(self, prefix: str) -> int:
        return sum(1 for _, line in self.lines if line.startswith(prefix))

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is not None and self._proc.poll() is not None
                                 and not self._reader.is_alive()):
                    return predicate(self)
                self._cond.wait(min(left, 0.05))
            return True

    def wait_line(self, predicate, timeout: float) -> bool:
        return self.wait_for(lambda b: any(predicate(line) for _, line in b.lines), timeout)

    def display(self) -> MaxFrame | None:
        with self._cond:
            return self.max_frames[-1] if self.max_frames else None

    def ring(self) -> RingFrame | None:
        with self._cond:
            return self.ring_frames[-1] if self.ring_frames else None

    def wait_display(self, predicate, timeout: float) -> bool:
        """Wait until the matrices' latest frame satisfies ``predicate(MaxFrame)``."""
        return self.wait_for(lambda b: bool(b.max_frames) and predicate(b.max_frames[-1]),
                             timeout)

    def wait_ring(self, predicate, timeout: float) -> bool:
        return self.wait_for(lambda b: bool(b.ring_frames) and predicate(b.ring_frames[-1]),
                             timeout)

    def clear(self) -> None:
        with self._cond:
            self.max_frames.clear()
            self.ring_frames.clear()

    def _read(self) -> None:
        proc = self._proc
        for line in proc.stdout:
            now = time.monotonic()
            line = line.rstrip('\n')
            with self._cond:
                self.lines.append((now, line))
                if len(self.lines) > 20000:
                    del self.lines[:10000]
                kind = line.split(' ', 1)[0]
                try:
                    if kind == 'MAX':
                        self.max_frames.append(_parse_max(line, now))
                    elif kind == 'RING':
                        self.ring_frames.append(_parse_ring(line, now))
                    elif kind == 'RESET':
                        _, us, why = line.split(' ', 2)
                        self.resets.append((now, int(us), why))
                    elif kind == 'STATS':
                        self._stats = {k: float(v) if '.' in v and not k.startswith('eyes')
                                       else int(v)
                                       for k, v in (kv.split('=', 1) for kv in line.split()[1:])}
                    elif kind in ('READY', 'PLUGGED'):
                        self.pty = line.split()[-1] if kind == 'PLUGGED' else line.split()[1]
                    elif kind == 'CRASH':
                        self.crashed = True
                except ValueError:
                    pass
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()


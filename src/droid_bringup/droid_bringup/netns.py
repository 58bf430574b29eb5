"""Hosts on a private network, made of Linux network namespaces (plain Python, needs root).

The multi-machine tests and the network benchmark start the droid's body and mind as if
on different hosts: each host is a network namespace with one interface ``eth0`` on a
private subnet (``10.213.<n>.0/24`` by default). Nothing they send leaves the lab: the
namespaces have no route out, and the lab is deleted on exit (even after a failure).

    with Lab('t1') as lab:
        body, mind = lab.add_host('body'), lab.add_host('mind')
        lab.start()
        subprocess.run(lab.exec_args(body, ['ip', 'addr']))
        lab.set_link(body, up=False)      # the body's cable is pulled
        lab.set_link(body, up=True)

Two ways to join the hosts (``backend``):

* ``bridge`` (default): a switch namespace with a Linux bridge and one veth pair per host.
  ``impair(delay_ms, loss_pct)`` puts ``tc netem`` on the switch ports, when the kernel
  has netem.
* ``hub``: a TAP device ``eth0`` in each host and a userspace hub (a thread of this
  process) that repeats each Ethernet frame to the other hosts, with an optional delay
  and random loss. It needs only /dev/net/tun: the stand-in for netem on kernels without it.

Multicast is on by default (``multicast=False``: the interfaces have no MULTICAST flag and
no multicast route, as on networks that drop it).
"""

from __future__ import annotations

import ctypes
import fcntl
import heapq
import os
import random
import select
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

PREFIX = 'droidlab'
_counter = 0
_lock = threading.Lock()


class LabError(RuntimeError):
    pass


def _ip(*args, check=True, ns: str | None = None) -> subprocess.CompletedProcess:
    argv = ['ip'] + (['-n', ns] if ns else []) + [str(a) for a in args]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def available() -> tuple:
    """``(True, '')`` when network namespaces can be made here, else ``(False, why)``."""
    if shutil.which('ip') is None:
        return False, "the 'ip' command (iproute2) is not installed"
    if os.geteuid() != 0:
        return False, 'network namespaces need root (or CAP_NET_ADMIN); run the tests as root'
    name = f'{PREFIX}-probe-{os.getpid()}'
    proc = _ip('netns', 'add', name, check=False)
    if proc.returncode != 0:
        return False, f'cannot create a network namespace: {proc.stderr.strip()}'
    try:
        for what, args in (('a veth pair', ('link', 'add', 'name', 'va', 'type', 'veth',
                                            'peer', 'name', 'vb')),
                           ('a bridge', ('link', 'add', 'br0', 'type', 'bridge'))):
            proc = _ip(*args, ns=name, check=False)
            if proc.returncode != 0:
                return False, f'cannot create {what} in a network namespace: ' \
                              f'{proc.stderr.strip()}'
    finally:
        _ip('netns', 'del', name, check=False)
    return True, ''


def netem_available() -> bool:
    """Does this kernel have the netem queueing discipline? (tried in a throwaway netns)"""
    name = f'{PREFIX}-netem-{os.getpid()}'
    if _ip('netns', 'add', name, check=False).returncode != 0:
        return False
    try:
        _ip('link', 'add', 'name', 'va', 'type', 'veth', 'peer', 'name', 'vb', ns=name,
            check=False)
        proc = subprocess.run(['tc', '-n', name, 'qdisc', 'add', 'dev', 'va', 'root', 'netem',
                               'delay', '1ms'], capture_output=True, text=True)
        return proc.returncode == 0
    except FileNotFoundError:
        return False
    finally:
        _ip('netns', 'del', name, check=False)


def remove_stale() -> list:
    """Delete lab namespaces left by processes that no longer exist (a killed test run)."""
    removed = []
    out = _ip('netns', 'list', check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ''
        parts = name.split('-')
        if len(parts) < 3 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        try:
            os.kill(pid, 0)
            continue                     # its owner still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        _ip('netns', 'del', name, check=False)
        removed.append(name)
    return removed


@dataclass
class Host:
    name: str
    ns: str              # network namespace name
    address: str         # IPv4 address of eth0
    index: int


class Lab:
    def __init__(self, tag: str = '', subnet: int | None = None, multicast: bool = True,
                 backend: str = 'bridge', mtu: int = 1500):
        global _counter
        if backend not in ('bridge', 'hub'):
            raise ValueError(f"backend must be 'bridge' or 'hub', not {backend!r}")
        with _lock:
            _counter += 1
            n = _counter
        tag = ''.join(c for c in tag if c.isalnum())[:8]
        self.name = f'{PREFIX}-{os.getpid()}-{n}{tag}'
        self.subnet = subnet if subnet is not None else 1 + (os.getpid() + n) % 250
        self.multicast = multicast
        self.backend = backend
        self.mtu = mtu
        self.hosts: list = []
        self._made: list = []            # namespaces created, deleted on close
        self._hub: _Hub | None = None
        self.started = False

    # -- building -----------------------------------------------------------------------------
    def add_host(self, name: str) -> Host:
        if self.started:
            raise LabError('add hosts before start()')
        index = len(self.hosts)
        host = Host(name, f'{self.name}-{name}'[:60], f'10.213.{self.subnet}.{index + 2}',
                    index)
        self.hosts.append(host)
        return host

    @property
    def switch_ns(self) -> str:
        return f'{self.name}-sw'

    def start(self) -> Lab:
        remove_stale()
        try:
            for host in self.hosts:
                self._netns(host.ns)
                _ip('link', 'set', 'lo', 'up', ns=host.ns)
            if self.backend == 'bridge':
                self._start_bridge()
            else:
                self._hub = _Hub(self)
                self._hub.start()
            for host in self.hosts:
                self._configure(host)
        except BaseException:
            self.close()
            raise
        self.started = True
        return self

    def _netns(self, name: str) -> None:
        _ip('netns', 'add', name)
        self._made.append(name)

    def _start_bridge(self) -> None:
        sw = self.switch_ns
        self._netns(sw)
        _ip('link', 'add', 'br0', 'type', 'bridge', ns=sw)
        # Flood multicast to every port (no IGMP querier in a lab).
        _ip('link', 'set', 'br0', 'type', 'bridge', 'mcast_snooping', '0', ns=sw, check=False)
        _ip('link', 'set', 'br0', 'up', ns=sw)
        for host in self.hosts:
            port = self.port(host)
            _ip('link', 'add', 'eth0', 'netns', host.ns, 'mtu', self.mtu, 'type', 'veth',
                'peer', 'name', port, 'netns', sw, 'mtu', self.mtu)
            _ip('link', 'set', port, 'master', 'br0', ns=sw)
            _ip('link', 'set', port, 'up', ns=sw)

    def _configure(self, host: Host) -> None:
        ns = host.ns
        _ip('addr', 'add', f'{host.address}/24', 'dev', 'eth0', ns=ns)
        _ip('link', 'set', 'dev', 'eth0', 'multicast', 'on' if self.multicast else 'off', ns=ns)
        _ip('link', 'set', 'eth0', 'up', ns=ns)
        if self.multicast:
            _ip('route', 'add', '224.0.0.0/4', 'dev', 'eth0', ns=ns)

    def port(self, host: Host) -> str:
        """The switch-side interface of ``host`` (bridge backend)."""
        return f'p{host.index}'

    # -- using --------------------------------------------------------------------------------
    def exec_args(self, host: Host, argv) -> list:
        """``argv`` run inside ``host`` (``ip netns exec``; the environment is inherited)."""
        return ['ip', 'netns', 'exec', host.ns] + [str(a) for a in argv]

    def set_link(self, host: Host, up: bool) -> None:
        """Connect or disconnect ``host`` from the lab network, as a pulled cable or a lost
        Wi-Fi: its own interface stays configured, nothing gets through."""
        if self.backend == 'bridge':
            _ip('link', 'set', self.port(host), 'up' if up else 'down', ns=self.switch_ns)
        else:
            self._hub.set_link(host.index, up)

    def impair(self, delay_ms: float = 0.0, loss_pct: float = 0.0, seed: int = 1) -> str:
        """Delay and lose frames on their way to each host (so ``delay_ms`` per hop).
        Returns how: ``'netem'`` (kernel) or ``'hub'`` (userspace). A bridge lab whose
        kernel lacks netem raises LabError: use ``backend='hub'`` there."""
        if self.backend == 'hub':
            self._hub.impair(delay_ms / 1000.0, loss_pct / 100.0, seed)
            return 'hub'
        for host in self.hosts:
            args = ['tc', '-n', self.switch_ns, 'qdisc', 'replace', 'dev', self.port(host),
                    'root', 'netem']
            if delay_ms:
                args += ['delay', f'{delay_ms}ms']
            if loss_pct:
                args += ['loss', f'{loss_pct}%']
            if not delay_ms and not loss_pct:
                args = ['tc', '-n', self.switch_ns, 'qdisc', 'del', 'dev', self.port(host),
                        'root']
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0 and (delay_ms or loss_pct):
                raise LabError(f"{' '.join(args)}: {proc.stderr.strip()}")
        return 'netem'

    def counters(self, host: Host) -> dict:
        """Bytes and packets through ``host``'s eth0: {'rx_bytes', 'tx_bytes', ...}."""
        out = {}
        for key in ('rx_bytes', 'tx_bytes', 'rx_packets', 'tx_packets'):
            proc = subprocess.run(self.exec_args(host, ['cat',
                                                        f'/sys/class/net/eth0/statistics/{key}']),
                                  capture_output=True, text=True)
            out[key] = int(proc.stdout.strip() or 0)
        return out

    def close(self) -> None:
        if self._hub is not None:
            self._hub.stop()
            self._hub = None
        for name in reversed(self._made):
            _ip('netns', 'del', name, check=False)
        self._made.clear()
        self.started = False

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


# ---- the userspace hub (TAP devices, frames repeated with delay and loss) ----------------
_TUNSETIFF = 0x400454CA
_IFF_TAP = 0x0002
_IFF_NO_PI = 0x1000
_CLONE_NEWNET = 0x40000000


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise LabError(f'setns({path}): {os.strerror(err)}')
    finally:
        os.close(fd)


class _Hub:
    """One TAP ``eth0`` per host; a thread repeats every frame to the other hosts."""

    def __init__(self, lab: Lab):
        self.lab = lab
        self.fds: list = []
        self.up = [True] * len(lab.hosts)
        self.delay = 0.0
        self.loss = 0.0
        self.rng = random.Random(1)
        self._stop = threading.Event()
        self._thread = None
        self.frames = 0
        self.dropped = 0

    def _open_tap(self, ns: str) -> int:
        # setns applies to the calling thread only: do it in a short-lived thread.
        result = {}

        def work():
            try:
                _setns(f'/var/run/netns/{ns}')
                fd = os.open('/dev/net/tun', os.O_RDWR)
                fcntl.ioctl(fd, _TUNSETIFF, struct.pack('16sH', b'eth0', _IFF_TAP | _IFF_NO_PI))
                result['fd'] = fd
            except Exception as exc:  # noqa: BLE001
                result['error'] = exc

        t = threading.Thread(target=work)
        t.start()
        t.join()
        if 'error' in result:
            raise LabError(f'cannot open a TAP device in {ns}: {result["error"]}')
        return result['fd']

    def start(self) -> None:
        for host in self.lab.hosts:
            fd = self._open_tap(host.ns)
            os.set_blocking(fd, False)
            self.fds.append(fd)
            _ip('link', 'set', 'eth0', 'mtu', self.lab.mtu, ns=host.ns)
        self._thread = threading.Thread(target=self._run, name='lab-hub', daemon=True)
        self._thread.start()

    def set_link(self, index: int, up: bool) -> None:
        self.up[index] = up

    def impair(self, delay_s: float, loss: float, seed: int) -> None:
        self.delay, self.loss, self.rng = delay_s, loss, random.Random(seed)

    def _run(self) -> None:
        queue: list = []          # (due, seq, fd, frame)
        seq = 0
        while not self._stop.is_set():
            timeout = 0.05
            if queue:
                timeout = max(0.0, min(timeout, queue[0][0] - time.monotonic()))
            ready, _, _ = select.select(self.fds, [], [], timeout)
            now = time.monotonic()
            for fd in ready:
                src = self.fds.index(fd)
                while True:
                    try:
                        frame = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        break
                    if not frame:
                        break
                    self.frames += 1
                    if not self.up[src]:
                        continue
                    for dst, out in enumerate(self.fds):
                        if dst == src or not self.up[dst]:
                            continue
                        if self.loss and self.rng.random() < self.loss:
                            self.dropped += 1
                            continue
                        seq += 1
                        heapq.heappush(queue, (now + self.delay, seq, out, frame))
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, out, frame = heapq.heappop(queue)
                try:
                    os.write(out, frame)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

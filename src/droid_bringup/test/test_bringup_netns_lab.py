"""The network-namespace lab the multi-machine tests run on (plain Python; needs root).

It must join the hosts (unicast and multicast), keep multicast out when asked, cut a
host off and reconnect it, delay frames in the userspace hub, and leave nothing behind.
"""

import subprocess
import sys
import textwrap
import time

import pytest

from droid_bringup import netns

OK, WHY = netns.available()
pytestmark = pytest.mark.skipif(not OK, reason=f'network namespaces unavailable: {WHY}')

RECEIVER = textwrap.dedent('''
    import socket, struct, sys
    group, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('', port))
    if group:
        try:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         struct.pack('4s4s', socket.inet_aton(group), socket.inet_aton('0.0.0.0')))
        except OSError as e:          # no multicast-capable interface / route
            print('ready', flush=True)
            print('cannot join', e, flush=True)
            sys.exit(0)
    s.settimeout(timeout)
    print('ready', flush=True)
    try:
        print('got', s.recvfrom(100)[0].decode(), flush=True)
    except socket.timeout:
        print('nothing', flush=True)
''')
SENDER = textwrap.dedent('''
    import socket, sys, time
    dest, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    for i in range(n):
        try:
            s.sendto(b'hello', (dest, port))
        except OSError as e:
            print('send failed', e, flush=True)
        time.sleep(0.05)
''')


def deliver(lab, src, dst, dest_addr, group='', timeout=2.0, port=7400):
    """Send a few datagrams from ``src`` to ``dest_addr``; True if ``dst`` got one."""
    rx = subprocess.Popen(lab.exec_args(dst, [sys.executable, '-c', RECEIVER, group, port,
                                              timeout]), stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout.readline().strip() == 'ready'
        subprocess.run(lab.exec_args(src, [sys.executable, '-c', SENDER, dest_addr, port,
                                           int(timeout / 0.05)]), timeout=60,
                       capture_output=True)
        out = rx.communicate(timeout=60)[0]
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait()
    return 'got hello' in out


def lab_namespaces(lab):
    out = subprocess.run(['ip', 'netns', 'list'], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(lab.name + '-')]


@pytest.mark.parametrize('backend', ['bridge', 'hub'])
def test_hosts_talk_unicast_and_multicast_and_a_pulled_link_cuts_them_off(backend):
    with netns.Lab('t', backend=backend) as lab:
        a, b = lab.add_host('a'), lab.add_host('b')
        lab.start()
        assert len(lab_namespaces(lab)) == (3 if backend == 'bridge' else 2)
        assert deliver(lab, a, b, b.address)
        assert deliver(lab, b, a, '239.255.0.1', group='239.255.0.1')
        lab.set_link(b, up=False)
        assert not deliver(lab, a, b, b.address, timeout=1.0)
        lab.set_link(b, up=True)
        deadline = time.monotonic() + 20
        while not deliver(lab, a, b, b.address) and time.monotonic() < deadline:
            pass
        assert deliver(lab, a, b, b.address)
    assert lab_namespaces(lab) == []


def test_without_multicast_only_unicast_gets_through():
    with netns.Lab('m', multicast=False) as lab:
        a, b = lab.add_host('a'), lab.add_host('b')
        lab.start()
        flags = subprocess.run(lab.exec_args(a, ['ip', 'link', 'show', 'eth0']),
                               capture_output=True, text=True).stdout
        assert 'MULTICAST' not in flags
        assert deliver(lab, a, b, b.address)
        assert not deliver(lab, a, b, '239.255.0.1', group='239.255.0.1', timeout=1.0)


def test_the_hub_delays_and_loses_frames():
    with netns.Lab('d', backend='hub') as lab:
        a, b = lab.add_host('a'), lab.add_host('b')
        lab.start()
        assert lab.impair(delay_ms=50, loss_pct=0) == 'hub'
        code = textwrap.dedent('''
            import socket, sys, time
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(10)
            t = time.monotonic()
            try:
                s.connect((sys.argv[1], 7))
            except ConnectionRefusedError:
                pass
            print(time.monotonic() - t)
        ''')
        # A TCP connect to a closed port is one round trip (SYN -> RST): >= 2 x 50 ms.
        rtt = float(subprocess.run(lab.exec_args(a, [sys.executable, '-c', code, b.address]),
                                   capture_output=True, text=True, timeout=60).stdout)
        assert rtt >= 0.095
        lab.impair(delay_ms=0, loss_pct=100)
        assert not deliver(lab, a, b, b.address, timeout=1.0)
        assert lab._hub.dropped > 0


def test_the_lab_is_removed_even_when_the_test_fails():
    with pytest.raises(RuntimeError, match='boom'):
        with netns.Lab('f') as lab:
            lab.add_host('a')
            lab.add_host('b')
            lab.start()
            assert len(lab_namespaces(lab)) == 3
            raise RuntimeError('boom')
    assert lab_namespaces(lab) == []
    # nothing of the lab ever appears in this (the root) namespace
    root = subprocess.run(['ip', '-o', 'link'], capture_output=True, text=True).stdout
    assert 'droidlab' not in root


def test_namespaces_of_dead_runs_are_removed():
    stale = f'{netns.PREFIX}-999999-1x-a'
    subprocess.run(['ip', 'netns', 'add', stale], check=True)
    try:
        assert stale in netns.remove_stale()
    finally:
        subprocess.run(['ip', 'netns', 'del', stale], capture_output=True)

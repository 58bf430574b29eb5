#!/usr/bin/env python3
"""Benchmark of the eyes link; prints JSON.

- ``latency_link``: SerialLink.set_amplitude() -> AMPLITUDE frame read by the virtual
  device on a pty (the pyserial I/O thread's own latency), p50/p99 [ms];
- ``latency_ros`` (when rclpy is importable): a SpeechAmplitude message published by this
  process -> the frame read by the virtual device, through the real ``eyes`` node run as
  a subprocess (DDS + callback + link thread + pty), p50/p99 [ms]; target <= 10 ms;
- ``throughput``: frames/s and bytes/s actually written while amplitude updates are
  hammered, with the default coalescing rate (60/s) and uncapped (1000/s); the pty has
  no baud limit, so the 115200-baud figures are computed from frame sizes:
  ``utilisation_at_115200`` = bytes/s used / (115200 / 10 bytes/s, 8N1).

    python src/droid_eyes/benchmark/bench_eyes.py [--messages 300] [--rate 50] [--no-ros]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from droid_eyes.link import LinkConfig, SerialLink
from droid_eyes.virtual_device import VirtualEyesDevice

from droid_eyes import protocol as P


def pct(values):
    a = np.asarray(values) * 1000.0
    return {'p50_ms': round(float(np.percentile(a, 50)), 3),
            'p99_ms': round(float(np.percentile(a, 99)), 3),
            'max_ms': round(float(a.max()), 3), 'n': int(a.size)}


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.002)
    return False


def arrivals(dev, start_index):
    with dev._cond:
        return [(v, t) for k, v, t in dev.applied[start_index:] if k == 'amplitude']


def values_sequence(n):
    # distinct consecutive bytes so every update is a new frame: 1..254, never 0
    return [1 + (i * 37) % 254 for i in range(n)]


def bench_link(tmp, messages, rate):
    dev = VirtualEyesDevice(os.path.join(tmp, 'ttyLINK')).plug()
    link = SerialLink(LinkConfig(port=os.path.join(tmp, 'ttyLINK'))).start()
    try:
        assert wait(lambda: link.status().connected, 5), link.status()
        start = len(dev.applied)
        sent = []
        for v in values_sequence(messages):
            t = time.monotonic()
            link.set_amplitude(v / 255.0)
            sent.append((v, t))
            time.sleep(1.0 / rate)
        wait(lambda: len(arrivals(dev, start)) >= messages, 2)
        got = arrivals(dev, start)
        lat = _match(sent, got)
        return {**pct(lat), 'delivered': len(got), 'sent': len(sent)}
    finally:
        link.close()
        dev.close()


def _match(sent, got):
    lat, j = [], 0
    for v, t in sent:
        while j < len(got) and got[j][0] != v:
            j += 1
        if j < len(got):
            lat.append(got[j][1] - t)
            j += 1
    return lat


def bench_throughput(tmp, max_rate, seconds=3.0):
    dev = VirtualEyesDevice(os.path.join(tmp, f'ttyTP{int(max_rate)}')).plug()
    link = SerialLink(LinkConfig(port=dev.link_path, amplitude_max_rate=max_rate)).start()
    try:
        assert wait(lambda: link.status().connected, 5)
        c0 = link.status().counters
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            link.set_amplitude(((i % 200) + 1) / 255.0)
            i += 1
            if i % 50 == 0:
                time.sleep(0.0005)
        elapsed = time.monotonic() - t0
        c1 = link.status().counters
        frames = c1['frames_sent'] - c0['frames_sent']
        amp_frames = c1['amplitude_frames'] - c0['amplitude_frames']
        nbytes = c1['bytes_sent'] - c0['bytes_sent']
        budget = P.wire_bytes_per_second(115200)
        return {'amplitude_max_rate': max_rate, 'updates_offered_per_s': round(i / elapsed),
                'frames_per_s': round(frames / elapsed, 1),
                'amplitude_frames_per_s': round(amp_frames / elapsed, 1),
                'bytes_per_s': round(nbytes / elapsed, 1),
                'utilisation_at_115200': round(nbytes / elapsed / budget, 4),
                'seconds': round(elapsed, 2)}
    finally:
        link.close()
        dev.close()


def bench_ros(tmp, messages, rate):
    import rclpy
    from droid_common import names
    from droid_common.ros import LATCHED_QOS, SENSOR_QOS

    from droid_msgs.msg import SpeechAmplitude, SystemMode
    dev = VirtualEyesDevice(os.path.join(tmp, 'ttyROS')).plug()
    ns = f'/bench_eyes_{os.getpid()}'
    proc = subprocess.Popen([sys.executable, '-m', 'droid_eyes.eyes_node', '--ros-args',
                             '-r', f'__ns:={ns}', '-p', f'port:={dev.link_path}',
                             '-p', 'initial_mode:=interactive'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('bench_eyes', context=context)
    try:
        pub = node.create_publisher(SpeechAmplitude, f'{ns}/{names.AMPLITUDE}', SENSOR_QOS)
        mode = node.create_publisher(SystemMode, f'{ns}/{names.MODE}', LATCHED_QOS)
        mode.publish(SystemMode(mode=SystemMode.INTERACTIVE))
        ok = wait(lambda: pub.get_subscription_count() > 0 and dev.frames_of(P.FULL_STATE), 20)
        if not ok:
            return {'error': 'eyes node did not come up'}
        time.sleep(0.5)
        start = len(dev.applied)
        sent = []
        for v in values_sequence(messages):
            msg = SpeechAmplitude(conversation_id='', amplitude=v / 255.0)
            msg.header.stamp = node.get_clock().now().to_msg()
            t = time.monotonic()
            pub.publish(msg)
            sent.append((v, t))
            time.sleep(1.0 / rate)
        wait(lambda: len(arrivals(dev, start)) >= messages, 2)
        got = arrivals(dev, start)
        lat = _match(sent, got)
        return {**pct(lat), 'delivered': len(got), 'sent': len(sent)}
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        dev.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--messages', type=int, default=300)
    ap.add_argument('--rate', type=float, default=50.0, help='amplitude messages per second')
    ap.add_argument('--no-ros', action='store_true')
    args = ap.parse_args()
    out = {'frame_bytes': {n: P.frame_size(t) for n, t in
                           (('AMPLITUDE', P.AMPLITUDE), ('SET_STATE', P.SET_STATE),
                            ('FULL_STATE', P.FULL_STATE), ('HEARTBEAT', P.HEARTBEAT),
                            ('ACK', P.ACK))},
           'line_bytes_per_s_at_115200': P.wire_bytes_per_second(115200)}
    out['max_amplitude_frames_per_s_at_115200'] = round(
        out['line_bytes_per_s_at_115200'] / P.frame_size(P.AMPLITUDE))
    default_load = 60 * P.frame_size(P.AMPLITUDE) + 2 * P.frame_size(P.HEARTBEAT)
    out['default_load_bytes_per_s'] = default_load
    out['default_load_utilisation_at_115200'] = round(
        default_load / out['line_bytes_per_s_at_115200'], 4)
    with tempfile.TemporaryDirectory(prefix='bench_eyes_') as tmp:
        out['latency_link'] = bench_link(tmp, args.messages, args.rate)
        out['throughput_default'] = bench_throughput(tmp, 60.0)
        out['throughput_uncapped'] = bench_throughput(tmp, 1000.0)
        if not args.no_ros:
            try:
                import rclpy  # noqa: F401
            except ImportError:
                out['latency_ros'] = 'skipped: rclpy not importable'
            else:
                out['latency_ros'] = bench_ros(tmp, args.messages, args.rate)
    out['target_latency_ms'] = 10.0
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()

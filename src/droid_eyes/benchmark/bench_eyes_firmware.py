#!/usr/bin/env python3
"""Benchmark of the eyes firmware on a simulated ATmega328P (simavr, real time); prints JSON.

- ``build``: flash and static RAM of every configuration (avr-size, as the IDE reports);
- ``bursts``: per configuration, bursts of back-to-back SET_STATE frames written at once
  (the line rate, 115200 baud): ACKs received / frames sent, NACKs, UART overruns, the
  longest render() the firmware measured itself;
- ``link``: SerialLink against the board: SET_STATE changes per second with one frame in
  flight, AMPLITUDE frames per second at ``amplitude_max_rate`` 1000 and how many the
  firmware did not receive;
- ``resync``: a board reset (DTR) and an unplug / replug of the pty while SerialLink holds
  the port: seconds until the matrices show the wanted look again (p50 / max).

    python src/droid_eyes/benchmark/bench_eyes_firmware.py [--bursts 10] [--resyncs 5]
    python src/droid_eyes/benchmark/bench_eyes_firmware.py --sketch DIR --configs matrix
        # another sketch folder (e.g. an older version), same measurements

Needs gcc-avr, avr-libc, binutils-avr, arduino-core-avr, gcc, libsimavr-dev (no ROS).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / 'firmware'))
import avr_build  # noqa: E402
import avr_sim  # noqa: E402
import serial  # noqa: E402
from droid_eyes.expression import PATTERNS  # noqa: E402
from droid_eyes.link import LinkConfig, SerialLink  # noqa: E402

from droid_eyes import protocol as P  # noqa: E402

LOOKS = ['happy', 'sad', 'angry', 'listening', 'speaking', 'solid', 'spin', 'thinking']


def wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def counters(board):
    try:
        return board.counters()
    except (RuntimeError, KeyError):
        return {}


def bench_bursts(board, bursts: int, size: int) -> dict:
    ser = serial.Serial(board.link_path, P.BAUD, timeout=0)
    dec, items = P.Decoder(), []

    def pump(until, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            data = ser.read(4096)
            if data:
                items.extend(dec.feed(data))
            else:
                time.sleep(0.002)
        return until()

    def frames(*types):
        return [f for f in items if isinstance(f, P.Frame) and f.type in types]

    try:
        for _ in range(20):
            ser.write(P.encode(P.HELLO, 1, P.hello_payload()))
            if pump(lambda: [f for f in frames(P.DEV_HELLO) if f.seq == 1], 0.3):
                break
        sent, seq = 0, 10
        for b in range(bursts):
            data = []
            for i in range(size):
                state = P.DeviceState.from_floats(PATTERNS[LOOKS[i % len(LOOKS)]],
                                                  (1.0, 0.3, 0.1), 0.3 + 0.7 * (i % 2), 0.0)
                data.append(P.encode(P.SET_STATE, seq & 0xFF, state.pack()))
                seq += 1
            ser.write(b''.join(data))
            sent += size
            # every frame answered (ACK or NACK), or nothing more comes for a while
            last = [len(frames(P.ACK, P.NACK)), time.monotonic()]

            def settled(last=last, sent=sent):
                n = len(frames(P.ACK, P.NACK))
                if n != last[0]:
                    last[:] = [n, time.monotonic()]
                return n >= sent or time.monotonic() - last[1] > 0.5

            pump(settled, 10)
        acks, nacks = len(frames(P.ACK)), len(frames(P.NACK))
        stats = board.stats()
        c = counters(board)
        return {'frames_sent': sent, 'acks': acks, 'nacks': nacks,
                'ack_rate': round(acks / sent, 4), 'lost': sent - acks,
                'uart_overruns': stats['overruns'], 'bad_frames': c.get('bad_frames'),
                'render_max_us': c.get('render_max_us'),
                'sim_lag_max_ms': stats['lag_max_ms']}
    finally:
        ser.close()


def bench_link(board, seconds: float) -> dict:
    link = SerialLink(LinkConfig(port=board.link_path, amplitude_max_rate=1000.0)).start()
    try:
        if not wait(lambda: link.status().connected, 10):
            return {'error': 'no connection'}
        # state changes, one in flight (stop-and-wait)
        acks0 = link.status().counters['acks']
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < seconds:
            link.set_state(P.DeviceState.from_floats(PATTERNS[LOOKS[k % 4]], (1, 1, 1), 1, 0))
            k += 1
            time.sleep(0.0005)
        st = link.status().counters
        state_rate = (st['acks'] - acks0) / (time.monotonic() - t0)
        # amplitude at the full rate
        link.set_state(P.DeviceState.from_floats(PATTERNS['speaking'], (1, 1, 1), 1, 0))
        time.sleep(0.3)
        c0 = counters(board)
        amp0 = link.status().counters['amplitude_frames']
        stop = threading.Event()

        def talk():
            i = 0
            while not stop.is_set():
                link.set_amplitude((i % 97) / 96.0)
                i += 1
                time.sleep(0.0005)

        th = threading.Thread(target=talk, daemon=True)
        t0 = time.monotonic()
        th.start()
        time.sleep(seconds)
        stop.set()
        th.join()
        elapsed = time.monotonic() - t0
        sent = link.status().counters['amplitude_frames'] - amp0
        time.sleep(0.3)
        c1 = counters(board)
        st = link.status().counters
        out = {'state_changes_per_s': round(state_rate, 1),
               'amplitude_frames_per_s': round(sent / elapsed, 1),
               'amplitude_frames_sent': sent, 'nacks': st['nacks'], 'retries': st['retries']}
        if c0 and c1:
            out['amplitude_frames_lost'] = sent - (c1['amplitudes'] - c0['amplitudes'])
        out['uart_overruns'] = board.stats()['overruns']
        return out
    finally:
        link.close()


def show_happy(frame):
    return frame is not None and frame.rows(0) == (0x00, 0x18, 0x3C, 0x66, 0xC3, 0x81, 0, 0)


def bench_resync(board, times: int) -> dict:
    link = SerialLink(LinkConfig(port=board.link_path)).start()
    try:
        if not wait(lambda: link.status().connected, 10):
            return {'error': 'no connection'}
        link.set_state(P.DeviceState.from_floats(PATTERNS['happy'], (0, 1, 0), 1, 0))
        board.wait_display(show_happy, 5)
        out = {}
        for kind in ('reset', 'replug'):
            took = []
            for _ in range(times):
                board.clear()
                t0 = time.monotonic()
                if kind == 'reset':
                    board.reset()
                else:
                    board.unplug()
                    wait(lambda: not link.status().connected, 5)
                    board.clear()
                    t0 = time.monotonic()
                    board.plug()
                ok = board.wait_for(lambda b: any(not show_happy(f) for f in b.max_frames) and
                                    show_happy(b.display()), 10)
                took.append(board.display().wall - t0 if ok else float('inf'))
                time.sleep(0.3)
            out[kind] = {'p50_s': round(statistics.median(took), 3),
                         'max_s': round(max(took), 3), 'n': len(took)}
        return out
    finally:
        link.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sketch', default=str(avr_build.SKETCH_DIR), help='sketch folder')
    ap.add_argument('--configs', default='matrix,matrix_ring,ring,none')
    ap.add_argument('--bursts', type=int, default=10, help='bursts per configuration')
    ap.add_argument('--burst-size', type=int, default=40, help='SET_STATE frames per burst')
    ap.add_argument('--seconds', type=float, default=3.0, help='duration of the link runs')
    ap.add_argument('--resyncs', type=int, default=5)
    args = ap.parse_args(argv)
    missing = avr_build.missing_tools()
    if missing:
        print(json.dumps({'error': 'missing: ' + '; '.join(missing)}))
        return 1
    configs = args.configs.split(',')
    result = {'sketch': args.sketch, 'build': {}, 'bursts': {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sim = avr_build.build_simulator(tmp)
        builds = {c: avr_build.build_firmware(c, tmp, sketch_dir=args.sketch) for c in configs}
        for c, fw in builds.items():
            result['build'][c] = {'flash': fw.flash, 'ram': fw.ram}
        for c, fw in builds.items():
            with avr_sim.SimulatedBoard(fw.elf, tmp / f'tty_{c}', sim) as board:
                result['bursts'][c] = bench_bursts(board, args.bursts, args.burst_size)
        main_cfg = 'matrix_ring' if 'matrix_ring' in builds else configs[0]
        with avr_sim.SimulatedBoard(builds[main_cfg].elf, tmp / 'tty_link', sim) as board:
            result['link'] = {'config': main_cfg, **bench_link(board, args.seconds)}
        if 'matrix' in builds:
            with avr_sim.SimulatedBoard(builds['matrix'].elf, tmp / 'tty_resync', sim) as board:
                result['resync'] = bench_resync(board, args.resyncs)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

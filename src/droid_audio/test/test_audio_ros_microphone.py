"""The real microphone node through PulseAudio: no sound server at start (clear log,
ERROR on /diagnostics, retries), the server appears (back to OK by itself, 80 ms blocks
stamped with the capture time on the node clock), the server goes away (ERROR again)."""

import pytest

rclpy = pytest.importorskip('rclpy')

import os
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from droid_audio.testing import Harness, NodeProcess, pick_domain
from droid_common import names
from droid_common.ros import SENSOR_QOS
from droid_common.testing import PulseAudioServer

from droid_msgs.msg import AudioChunk


def mic_status(h):
    for arr in reversed(h.got(names.DIAGNOSTICS)):
        for s in arr.status:
            if s.name == 'microphone':
                return s
    return None


def level(status):
    return None if status is None else status.level[0] if isinstance(status.level, bytes) \
        else int.from_bytes(status.level, 'little')


def test_microphone_errors_retries_recovers_and_stamps(tmp_path):
    domain = pick_domain()
    link = tmp_path / 'pulse-socket'               # does not exist yet: no sound server
    node = NodeProcess('microphone_node', domain,
                       {'device': 'pulse', 'retry_s': 0.5, 'stall_timeout_s': 1.5},
                       env={'PULSE_SERVER': f'unix:{link}'},
                       log_path=str(tmp_path / 'mic.log'))
    h = Harness(domain)
    stop = threading.Event()
    try:
        h.collect(DiagnosticArray, names.DIAGNOSTICS, 10)
        chunks = h.collect(AudioChunk, names.AUDIO, SENSOR_QOS)
        assert h.wait_for(lambda: level(mic_status(h)) == 2, 30.0), node.log()
        assert 'no input device' in mic_status(h).message
        assert 'no input device' in node.log() and 'retrying' in node.log()
        assert node.alive()

        with PulseAudioServer(pipe_source=True) as pa:
            os.symlink(pa.env['PULSE_SERVER'][len('unix:'):], link)
            tone = (np.sin(2 * np.pi * 300 * np.arange(1280) / 16000) * 8000).astype(np.int16)

            def feed():
                nxt = time.monotonic()
                while not stop.is_set():
                    pa.feed(tone)
                    nxt += 0.08
                    time.sleep(max(0.0, nxt - time.monotonic()))
            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            assert h.wait_for(lambda: level(mic_status(h)) == 0, 30.0), node.log()
            assert 'recovered' in node.log()
            h.clear(names.AUDIO)
            assert h.wait_for(lambda: len(chunks) >= 12, 10.0), node.log()
            msgs = h.got(names.AUDIO)
            now = h.node.get_clock().now().nanoseconds * 1e-9
            stamps = np.array([m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs])
            assert all(len(m.data) == 1280 and m.sample_rate == 16000 for m in msgs)
            assert np.diff([m.seq for m in msgs]).min() >= 1
            diffs = np.diff(stamps)
            assert (diffs > 0).all()                                   # monotonic
            assert np.median(diffs) == pytest.approx(0.08, abs=0.002)  # 80 ms apart
            assert now - 2.0 < stamps[-1] < now                        # capture time, node clock
            data = np.concatenate([np.asarray(m.data) for m in msgs])
            assert np.abs(data).max() > 4000                           # the fed tone
            stop.set()
            feeder.join(2.0)
        os.unlink(link)
        # the server is gone: the device is lost -> ERROR again, and still no crash
        assert h.wait_for(lambda: level(mic_status(h)) == 2, 30.0), node.log()
        assert node.alive()
    finally:
        stop.set()
        h.close()
        log = node.log()
        node.stop()
    assert 'Traceback' not in log, log

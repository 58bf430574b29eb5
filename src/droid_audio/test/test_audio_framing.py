"""Queues, framing, resampling and capture stamps (plain Python)."""

import threading

import numpy as np
import pytest
from droid_audio.framing import (
    CaptureTimeline,
    DropOldestQueue,
    FrameAssembler,
    StreamResampler,
)
from droid_audio.mic import parse_device
from hypothesis import given, settings
from hypothesis import strategies as st


def test_drop_oldest_queue_counts_drops_and_never_blocks():
    q = DropOldestQueue(3)
    assert all(q.put(i) for i in range(3))
    assert q.put(3) is False and q.put(4) is False
    assert q.dropped == 2 and len(q) == 3
    assert [q.get(0) for _ in range(3)] == [2, 3, 4]
    assert q.get(0.01) is None


def test_drop_oldest_queue_wakes_a_waiting_consumer():
    q = DropOldestQueue(2)
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(5.0)))
    t.start()
    q.put('x')
    t.join(2.0)
    assert got == ['x']
    q.close()
    assert q.get(5.0) is None          # closed: returns at once


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=30))
def test_frame_assembler_rechunks_any_sizes_with_exact_stamps(sizes):
    fa = FrameAssembler()
    total = np.arange(sum(sizes), dtype=np.int64) % 32000
    frames, pos, t0 = [], 0, 100.0
    for n in sizes:
        frames += fa.push(total[pos:pos + n].astype(np.int16), t0 + pos / 16000.0)
        pos += n
    assert len(frames) == sum(sizes) // 1280
    for k, f in enumerate(frames):
        assert len(f.samples) == 1280
        assert f.t == pytest.approx(t0 + k * 0.08)
        np.testing.assert_array_equal(f.samples, total[k * 1280:(k + 1) * 1280])


def test_frame_assembler_restarts_after_gap_and_sequence_jump():
    fa = FrameAssembler()
    assert fa.push(np.ones(1000, np.int16), 0.0, seq=0) == []
    frames = fa.push(np.ones(1280, np.int16), 5.0, seq=1)      # stamp jump
    assert fa.gaps == 1 and len(frames) == 1 and frames[0].t == 5.0
    frames = fa.push(np.ones(1280, np.int16), 5.08, seq=7)     # seq jump
    assert fa.gaps == 2 and frames[0].t == pytest.approx(5.08)


def test_frame_assembler_resamples_and_mixes_down():
    fa = FrameAssembler()
    rate = 48000
    t = np.arange(rate) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    stereo = np.stack([tone, tone], axis=1).reshape(-1)          # interleaved
    frames = []
    for i in range(0, len(tone), 3840):
        frames += fa.push(stereo[2 * i:2 * (i + 3840)], i / rate, sample_rate=rate, channels=2)
    out = np.concatenate([f.samples for f in frames]).astype(np.float32)
    assert len(frames) == 12                                     # 1 s = 12.5 frames
    # the 440 Hz tone survives: its level and frequency
    mid = out[2000:14000]
    assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(8000 / np.sqrt(2), rel=0.05)
    spectrum = np.abs(np.fft.rfft(mid))
    assert np.argmax(spectrum) * 16000 / len(mid) == pytest.approx(440, abs=3)


def test_stream_resampler_matches_block_size_independence():
    x = (np.random.default_rng(0).standard_normal(44100) * 3000)
    outs = []
    for block in (441, 1000, 4410):
        r = StreamResampler(44100, 16000)
        outs.append(np.concatenate([r.process(x[i:i + block]) for i in range(0, len(x), block)]))
    n = min(len(o) for o in outs)
    assert abs(n - 16000) < 100
    np.testing.assert_allclose(outs[0][:n], outs[1][:n], atol=1e-2)
    np.testing.assert_allclose(outs[0][:n], outs[2][:n], atol=1e-2)


def test_capture_timeline_smooths_late_arrivals_and_reanchors_on_gaps():
    tl = CaptureTimeline(16000, tolerance=0.04)
    late = [0.03, 0.012, 0.0, 0.02, 0.035]          # arrival delays (never early)
    stamps = [tl.stamp(10.0 + k * 0.08 + d, 1280) for k, d in enumerate(late)]
    # the anchor follows the earliest consistent measurement (block 2: no delay)
    assert stamps[2:] == pytest.approx([10.16, 10.24, 10.32])
    assert stamps[0] == pytest.approx(10.03) and stamps[1] == pytest.approx(10.092)
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert tl.reanchors == 0
    assert tl.stamp(20.0, 1280) == 20.0 and tl.reanchors == 1      # samples were lost
    assert tl.stamp(20.08, 1280) == pytest.approx(20.08)
    # a burst of blocks that sat in a buffer: stamps converge back, always increasing
    tl = CaptureTimeline(16000)
    got = [tl.stamp(m, 1280) for m in (5.3, 5.3, 5.3, 5.3, 5.32, 5.4, 5.48, 5.56, 5.64, 5.72)]
    assert all(b - a >= 0.04 - 1e-9 for a, b in zip(got, got[1:]))
    assert got[-1] == pytest.approx(5.72) and got[-2] == pytest.approx(5.64)


def test_parse_device():
    assert parse_device('') is None
    assert parse_device('3') == 3
    assert parse_device(2) == 2
    assert parse_device('pulse') == 'pulse'
    assert parse_device(' USB Audio ') == 'USB Audio'

"""What a player renders, handed on as the echo reference (plain Python, no rclpy).

:class:`PlaybackTap` wraps an output's ``render(frames, heard_t, written_t)``: every block
with sound in it is copied into a bounded drop-oldest queue (the audio callback does
nothing else), and a thread of its own converts it to 16 kHz mono int16 and hands it to
``publish(t, samples)``, stamped with the time it is heard (:func:`publisher_of` builds
the ``droid_msgs/AudioChunk`` for a ROS publisher). The microphone node cancels
it out of what it captures (``droid_audio.aec``).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
from droid_common.audio import to_int16_mono


REF_RATE = 16000


class PlaybackTap:
    def __init__(self, render, publish, rate: int, queue_blocks: int = 200,
                 resync_s: float = 0.1):
        self.resync_s = float(resync_s)
        self.realigned = 0
        self.jumps: deque = deque(maxlen=8)   # (heard time, jump [s]) of the last re-alignments
        self.hold_s = 1.0
        self._active_until = float('-inf')
        self._next: float | None = None
        self._render = render
        self._publish = publish
        self.rate = int(rate)
        self._queue: deque = deque(maxlen=int(queue_blocks))
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.published = 0
        self._thread = threading.Thread(target=self._loop, name='playback-tap', daemon=True)
        self._thread.start()

    def __call__(self, frames: int, heard_t: float, written_t: float | None = None):
        block = self._render(frames, heard_t, written_t)
        # The device's callback times jitter by milliseconds; the audio itself is
        # continuous. Stamp blocks on a continuous timeline (resynchronised when the
        # callback time is off by more than ``resync_s``), as echo cancellation needs.
        # Only that much later is a real gap (an underrun, a clock jump): a callback that
        # merely runs late (a loaded machine: 15-45 ms seen) measures a later time for
        # audio that is not heard later, and following it would stamp the reference late,
        # i.e. put its echo *before* it, out of the canceller's reach. On the timeline, an
        # error can only put the echo later, which the canceller absorbs.
        t = heard_t
        if self._next is not None and abs(heard_t - self._next) < self.resync_s:
            t = self._next
        elif self._next is not None:
            self.realigned += 1          # a gap in the output (underrun) or a clock jump
            self.jumps.append((heard_t, heard_t - self._next))
        self._next = t + frames / float(self.rate)
        if block is not None:
            b = np.asarray(block)
            if b.size and np.any(b):
                self._active_until = t + self.hold_s
            # silence right after sound goes out too: the microphone then knows the
            # reference is complete up to now, and waits for it when it is late
            if b.size and t < self._active_until:
                with self._cond:
                    if len(self._queue) == self._queue.maxlen:
                        self.dropped += 1
                    self._queue.append((t, b.copy(), self.rate))
                    self._cond.notify()
        return block

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed and not self._queue:
                    return
                items = list(self._queue)
                self._queue.clear()
            # contiguous blocks go out as one message (fewer, larger messages)
            runs: list = []
            for t, block, rate in items:
                last = runs[-1] if runs else None
                if last and last[2] == rate and abs(last[0] + last[3] / rate - t) < 1e-4:
                    last[1].append(block)
                    last[3] += len(block)
                else:
                    runs.append([t, [block], rate, len(block)])
            for t, blocks, rate, _ in runs:
                try:
                    self._publish(t, to_int16_mono(np.concatenate(blocks), rate, REF_RATE))
                    self.published += 1
                except Exception:  # noqa: BLE001, S110 - a shut-down publisher: drop it
                    pass

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


def publisher_of(publisher, frame_id: str):
    """``publish(t, samples)`` for a ROS publisher of ``droid_msgs/AudioChunk``."""
    from array import array

    from droid_common.ros import to_time_msg

    from droid_msgs.msg import AudioChunk
    seq = [0]

    def publish(t: float, samples: np.ndarray) -> None:
        msg = AudioChunk(sample_rate=REF_RATE, channels=1, seq=seq[0])
        msg.header.stamp = to_time_msg(t)
        msg.header.frame_id = frame_id
        msg.data = array('h', np.ascontiguousarray(samples, dtype=np.int16).tobytes())
        seq[0] += 1
        publisher.publish(msg)
    return publish

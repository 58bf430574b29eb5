"""Microphone capture with sounddevice (PortAudio), without rclpy.

The PortAudio callback only copies the block into a bounded drop-oldest queue with its
arrival time; :meth:`MicCapture.read` (called from the node's publisher thread) hands
blocks out with an estimate of the capture time of their first sample on the
``time.monotonic`` clock. Opening re-initialises PortAudio so a device plugged in (or a
sound server started) after the node is found on the next retry.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from droid_audio.framing import DropOldestQueue


class DeviceError(RuntimeError):
    """No usable input device (message is user-facing)."""


def parse_device(value):
    """Parameter value -> sounddevice device: None (default), an index, or a name."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip('-').isdigit():
        return int(text)
    return text


@dataclass
class Block:
    samples: np.ndarray      # (frames, channels) int16
    t_capture: float         # time.monotonic() of the first sample (estimate)
    status: str              # PortAudio status flags, '' if none


class MicCapture:
    """One sounddevice InputStream. Not thread-safe except for the queue hand-off."""

    def __init__(self, device=None, sample_rate: int = 16000, block: int = 1280,
                 channels: int = 1, queue_blocks: int = 50, clock=time.monotonic):
        self.device = parse_device(device)
        self.requested_rate = int(sample_rate)
        self.block_ms = 1000.0 * block / sample_rate
        self.channels = int(channels)
        self._queue = DropOldestQueue(queue_blocks)
        self._clock = clock
        self._stream = None
        self._finished = threading.Event()
        self.rate = self.requested_rate
        self.block = int(block)
        self.name = ''
        self.last_block_time = None
        self.overflows = 0
        self.blocks = 0

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def open(self) -> str:
        """Open the stream; returns a description. Raises :class:`DeviceError`."""
        import sounddevice as sd
        self.close()
        try:
            # Re-enumerate devices (a device or sound server may have appeared).
            sd._terminate()
            sd._initialize()
        except Exception as exc:
            raise DeviceError(f'PortAudio cannot initialise: {exc}') from exc
        try:
            info = sd.query_devices(self.device, 'input')
        except Exception as exc:
            names = self.list_inputs()
            raise DeviceError(f'no input device {self._describe()}: {exc}'
                              f' (inputs: {names or "none"})') from exc
        rate = self.requested_rate
        try:
            sd.check_input_settings(device=self.device, samplerate=rate,
                                    channels=self.channels, dtype='int16')
        except Exception:  # noqa: BLE001 - fall back to the device's own rate
            rate = int(info.get('default_samplerate') or rate)
        self.rate = rate
        self.block = round(rate * self.block_ms / 1000.0)
        self._finished.clear()
        self._queue.clear()
        try:
            stream = sd.InputStream(device=self.device, samplerate=rate,
                                    channels=self.channels, dtype='int16',
                                    blocksize=self.block, callback=self._callback,
                                    finished_callback=self._finished.set)
            stream.start()
        except Exception as exc:
            raise DeviceError(f'cannot open input device {self._describe()}: {exc}') from exc
        self._stream = stream
        self.name = str(info.get('name', self.device))
        self.last_block_time = self._clock()
        return f"'{self.name}' at {rate} Hz, {self.channels} ch, {self.block} frames/block"

    def _describe(self) -> str:
        return 'default' if self.device is None else repr(self.device)

    @staticmethod
    def list_inputs() -> list:
        try:
            import sounddevice as sd
            return [d['name'] for d in sd.query_devices() if d['max_input_channels'] > 0]
        except Exception:  # noqa: BLE001
            return []

    def _callback(self, indata, frames, time_info, status) -> None:
        # PortAudio thread: copy and hand off, nothing else.
        now = self._clock()
        try:
            latency = float(time_info.currentTime - time_info.inputBufferAdcTime)
        except Exception:  # noqa: BLE001
            latency = -1.0
        self._queue.put((indata.copy(), now, latency, frames, str(status) if status else ''))

    def read(self, timeout: float = 0.2):
        """Next captured block (or None after ``timeout``)."""
        item = self._queue.get(timeout)
        if item is None:
            return None
        data, now, latency, frames, status = item
        if not 0.0 <= latency < 1.0:
            latency = frames / float(self.rate)   # the block was just completed
        self.last_block_time = now
        self.blocks += 1
        if 'overflow' in status:
            self.overflows += 1
        return Block(data, now - latency, status)

    def failed(self, stall_timeout: float) -> str:
        """Why the open stream is unusable ('' if it looks fine)."""
        if self._stream is None:
            return 'not open'
        if self._finished.is_set() or not self._stream.active:
            return 'stream stopped (device lost?)'
        if stall_timeout > 0 and self.last_block_time is not None and \
                self._clock() - self.last_block_time > stall_timeout and not len(self._queue):
            return f'no audio for {stall_timeout:.1f} s (device lost?)'
        return ''

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort(ignore_errors=True)
                stream.close(ignore_errors=True)
            except Exception:  # noqa: BLE001 - closing a dead device may fail
                pass

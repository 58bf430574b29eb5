"""Message conversion shared by the droid_audio node shells (imports the droid_msgs
Python types; no node logic here)."""

from __future__ import annotations

import array

import numpy as np
from droid_common.ros import to_sec, to_time_msg

from droid_msgs.msg import AudioChunk


def int16_array(samples) -> array.array:
    """int16 samples -> array.array('h') (the fast path of rclpy sequence fields)."""
    a = array.array('h')
    a.frombytes(np.ascontiguousarray(samples, dtype=np.int16).tobytes())
    return a


def audio_chunk(samples, t: float, seq: int, rate: int = 16000, frame_id: str = '',
                channels: int = 1) -> AudioChunk:
    msg = AudioChunk()
    msg.header.stamp = to_time_msg(t)
    msg.header.frame_id = frame_id
    msg.sample_rate = int(rate)
    msg.channels = int(channels)
    msg.seq = int(seq)
    msg.data = int16_array(samples)
    return msg


def chunk_samples(msg: AudioChunk) -> np.ndarray:
    """AudioChunk.data -> int16 numpy array (no per-element Python loop)."""
    data = msg.data
    if isinstance(data, array.array):
        return np.frombuffer(data, dtype=np.int16).copy()
    return np.asarray(data, dtype=np.int16)


def stamp_sec(header) -> float:
    return to_sec(header.stamp)

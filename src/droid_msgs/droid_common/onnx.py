"""onnxruntime sessions for a small machine (plain Python, no rclpy)."""

from __future__ import annotations


def cpu_session(path, threads: int = 1):
    """An onnxruntime CPU session (``path``: a file, or a model's bytes) with ``threads``
    intra-op threads that sleep, not spin, between runs. The droid's models (wake word, VAD, smart-turn, Piper) share two cores
    with a Whisper decode; spinning threads fight them for the cores (smart-turn on 2
    threads beside a decode: ~150 ms spinning, ~105 ms not; a Piper sentence ~245 ms
    spinning, ~170 ms not). ``import onnxruntime`` happens here, on first use."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
    model = bytes(path) if isinstance(path, (bytes, bytearray)) else str(path)
    return ort.InferenceSession(model, sess_options=opts,
                                providers=['CPUExecutionProvider'])

"""Piper's voice in two halves, so a sentence starts playing before it is all synthesised.

A Piper voice is a VITS model: a text encoder, a duration predictor and a flow turn the
phonemes into a latent (``[1, channels, frames]``, one frame per ``hop`` output samples,
256 at 22.05 kHz); the HiFi-GAN decoder turns the latent into audio, and the decoder is
most of the work (~75 %). The decoder is convolutional with a short receptive field, so a
slice of the latent with ``pad`` frames of context on each side decodes to exactly the
audio of the whole latent for the slice (12 frames give the same samples to 1e-6). The
voice's ONNX file is cut with the ``onnx`` package at the decoder's input (the first input
of ``dec.conv_pre``) into an encoder and a decoder session; a sentence's first audio is out
after the encoder and one small slice (~60 ms here instead of ~150 ms for a whole short
sentence), and the rest is decoded while it plays.

Two differences from Piper's own path, both deliberate: the audio is resampled slice by
slice on a grid aligned with the whole signal (the same samples as resampling the
sentence at once; ``droid_audio.framing.StreamResampler`` would join the slices seamlessly
too, but with its own filter and delay), and it is scaled by one gain per voice
(``target_peak`` over the loudest peak of a few calibration sentences, then clipped)
instead of Piper's per-sentence peak normalisation, which cannot be known before the
sentence ends (and made short replies such as "Oops!" as loud as the loudest sentence).

Plain Python (no rclpy): ``onnx`` and ``onnxruntime`` are imported on first use. A voice
that cannot be split (another architecture, a multi-speaker voice whose decoder needs the
speaker) raises :class:`SplitError`; the caller keeps the whole-sentence path.
"""

from __future__ import annotations

from math import gcd

import numpy as np

from droid_common.onnx import cpu_session

# Sentences whose loudest peak sets a voice's gain (a question, an exclamation, a statement).
CALIBRATION = ('Hello there, friend! Why did the droid cross the road? '
               'Hot, dry and sandy, with two suns beating down on the dunes all day long.')


class SplitError(Exception):
    """The voice's model cannot be split at its decoder."""


def split_model(path: str) -> tuple:
    """``(encoder bytes, decoder bytes, latent name)``: the VITS ONNX model at ``path`` cut
    at the decoder's input. :class:`SplitError` when it has no ``dec.conv_pre`` or its
    decoder needs any graph input besides the latent."""
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:
        raise SplitError('the onnx package is not installed (pip install onnx==1.17.0)') \
            from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - a corrupt file
        raise SplitError(f'cannot read {path}: {exc}') from exc
    g = model.graph
    conv = next((n for n in g.node if n.op_type == 'Conv' and len(n.input) > 1 and
                 n.input[1] == 'dec.conv_pre.weight'), None)
    if conv is None:
        raise SplitError(f'{path}: no VITS decoder (dec.conv_pre) found')
    latent = conv.input[0]
    producer = {out: i for i, n in enumerate(g.node) for out in n.output}

    def upstream(targets, stop):
        """Indexes of the nodes ``targets`` depend on (not past ``stop``), and the names
        they read that no node makes (graph inputs and initializers)."""
        seen, nodes, sources, todo = set(), set(), set(), list(targets)
        while todo:
            name = todo.pop()
            if name in seen or name in stop:
                continue
            seen.add(name)
            i = producer.get(name)
            if i is None:
                sources.add(name)
                continue
            nodes.add(i)
            todo.extend(x for x in g.node[i].input if x)
        return nodes, sources

    outputs = [o.name for o in g.output]
    dec_nodes, dec_sources = upstream(outputs, {latent})
    initializers = {x.name for x in g.initializer}
    extra = sorted(dec_sources - initializers)
    if extra:
        raise SplitError(f'{path}: the decoder also needs {extra}')
    enc_nodes, enc_sources = upstream([latent], set())

    def part(nodes, sources, inputs, outs):
        graph = helper.make_graph([g.node[i] for i in sorted(nodes)], 'part', inputs, outs,
                                  [x for x in g.initializer if x.name in sources])
        return helper.make_model(graph, opset_imports=model.opset_import,
                                 ir_version=model.ir_version).SerializeToString()

    latent_info = helper.make_tensor_value_info(latent, onnx.TensorProto.FLOAT,
                                                [1, None, None])
    encoder = part(enc_nodes, enc_sources, [x for x in g.input if x.name in enc_sources],
                   [latent_info])
    decoder = part(dec_nodes, dec_sources, [latent_info], list(g.output))
    return encoder, decoder, latent


def slices(frames: int, first: int, size: int) -> list:
    """``[(start, end), ...]`` covering ``frames``: the first ``first`` long, then
    doubling up to ``size`` (the first audio soon, then fewer, larger runs)."""
    out, start, n = [], 0, max(1, first)
    while start < frames:
        end = min(frames, start + n)
        out.append((start, end))
        start, n = end, min(max(1, size), n * 2)
    return out


class SliceResampler:
    """Resamples the slices of one signal so that together they are the samples of
    ``scipy.signal.resample_poly`` over the whole signal: each slice is resampled with
    its context from an input index that is a multiple of ``down`` (so its output grid
    is the whole signal's) and only its own outputs are kept."""

    HALF = 16           # input samples the polyphase filter reaches either side (~14)

    def __init__(self, rate_in: int, rate_out: int):
        g = gcd(int(rate_in), int(rate_out))
        self.up, self.down = int(rate_out) // g, int(rate_in) // g

    def out_index(self, i: int) -> int:
        """The first output sample at or after input sample ``i``."""
        return -(-i * self.up // self.down)

    def slice(self, x: np.ndarray, x0: int, start: int, end: int) -> np.ndarray:
        """Output samples for input samples ``[start, end)``; ``x`` holds input samples
        from ``x0`` on with at least ``HALF`` of context around the slice (or the
        signal's own start / end)."""
        if self.up == self.down:
            return np.asarray(x[start - x0:end - x0], np.float32)
        from scipy.signal import resample_poly
        # a multiple of down at least HALF before the slice (0: the signal's start, before
        # which resample_poly reads zeros either way)
        i0 = max(0, (start - self.HALF) // self.down * self.down)
        if i0 < x0:
            raise ValueError(f'not enough context before the slice at {start}')
        y = resample_poly(np.asarray(x[i0 - x0:], np.float32), self.up, self.down)
        o0 = i0 * self.up // self.down
        return y[self.out_index(start) - o0:self.out_index(end) - o0].astype(np.float32)


class SplitVoice:
    """A Piper voice as an encoder and a decoder session (see the module doc)."""

    def __init__(self, model_path: str, threads: int = 2, pad: int = 14,
                 first_frames: int = 16, slice_frames: int = 128):
        encoder, decoder, self.latent_name = split_model(model_path)
        self.encoder = cpu_session(encoder, threads)
        self.decoder = cpu_session(decoder, threads)
        self.inputs = {i.name for i in self.encoder.get_inputs()}
        self.pad, self.first_frames, self.slice_frames = int(pad), int(first_frames), \
            int(slice_frames)
        self.hop = 0           # output samples per latent frame, known after a first run
        self.gain = 1.0

    def latent(self, ids, scales, speaker_id=None) -> np.ndarray:
        ids = np.asarray([ids], dtype=np.int64)
        feed = {'input': ids, 'input_lengths': np.array([ids.shape[1]], np.int64),
                'scales': np.asarray(scales, np.float32)}
        if 'sid' in self.inputs:
            feed['sid'] = np.array([speaker_id or 0], np.int64)
        return self.encoder.run(None, feed)[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Float audio of the latent frames ``z`` (``[1, C, n]``)."""
        y = self.decoder.run(None, {self.latent_name: z})[0].reshape(-1)
        if not self.hop and z.shape[2]:
            self.hop = y.size // z.shape[2]
        return y

    def calibrate(self, sentences, scales, target_peak: float = 0.9) -> float:
        """Set (and return) the gain that brings the loudest peak of ``sentences``
        (phoneme id lists) to ``target_peak`` of full scale; also warms both sessions up."""
        peak = max((float(np.max(np.abs(self.decode(self.latent(ids, scales)))))
                    for ids in sentences), default=0.0)
        self.gain = target_peak / max(peak, 0.05)
        return self.gain

    def stream(self, ids, scales, rate_in: int, rate_out: int, cancel=None,
               speaker_id=None):
        """int16 audio at ``rate_out``, slice by slice."""
        z = self.latent(ids, scales, speaker_id)
        frames = z.shape[2]
        rs = SliceResampler(rate_in, rate_out)
        for start, end in slices(frames, self.first_frames, self.slice_frames):
            if cancel is not None and cancel.is_set():
                return
            a, b = max(0, start - self.pad), min(frames, end + self.pad)
            y = self.decode(np.ascontiguousarray(z[:, :, a:b]))
            hop = self.hop or y.size // max(1, b - a)
            out = rs.slice(y, a * hop, start * hop, end * hop)
            yield np.clip(np.round(out * (self.gain * 32767.0)), -32768, 32767) \
                .astype(np.int16)

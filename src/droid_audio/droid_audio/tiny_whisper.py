"""Build a random-weight Whisper model in the CTranslate2 format, offline.

The droid's tests and benchmark need a faster-whisper model but may not download one.
This module writes one from scratch: the real Whisper architecture (80-bin log-mel
input, two convolutions, sinusoidal encoder positions, pre-norm transformer encoder and
decoder with GELU, learned decoder positions, tied output projection) with small random
weights, a byte-level BPE ``tokenizer.json`` holding the special tokens faster-whisper
looks up by name, and a ``preprocessor_config.json``. No torch, no network::

    from droid_audio.tiny_whisper import build_model
    path = build_model('/tmp/tiny', shape='test')
    faster_whisper.WhisperModel(path, device='cpu', compute_type='int8')

Shapes: ``test`` (very small, for unit tests), ``tiny`` and ``base`` (the real
dimensions of whisper tiny.en / base.en, 51864 tokens, for the benchmark). The words
it produces are meaningless; it exercises the real load/transcribe path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_MELS = 80
N_AUDIO_CTX = 1500          # encoder positions for 30 s of audio
N_TEXT_CTX = 448            # decoder positions
N_TIMESTAMPS = 1501         # <|0.00|> .. <|30.00|>
EN_TEXT_TOKENS = 50256      # text tokens of the English-only Whisper tokenizer


@dataclass(frozen=True)
class Shape:
    d_model: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    ffn: int
    text_tokens: int          # ordinary (non-special) tokens, ids 0..text_tokens-1


SHAPES = {
    'test': Shape(d_model=64, heads=2, encoder_layers=2, decoder_layers=2, ffn=128,
                  text_tokens=1024),
    'tiny': Shape(d_model=384, heads=6, encoder_layers=4, decoder_layers=4, ffn=1536,
                  text_tokens=EN_TEXT_TOKENS),
    'base': Shape(d_model=512, heads=8, encoder_layers=6, decoder_layers=6, ffn=2048,
                  text_tokens=EN_TEXT_TOKENS),
}

# English-only layout (as in tiny.en/base.en): specials right after the text tokens,
# then <|notimestamps|>, then the timestamps (faster-whisper: timestamp_begin =
# notimestamps + 1; decode keeps ids < <|endoftext|>).
SPECIAL_TOKENS = ['<|endoftext|>', '<|startoftranscript|>', '<|translate|>',
                  '<|transcribe|>', '<|startoflm|>', '<|startofprev|>', '<|nocaptions|>',
                  '<|notimestamps|>']


def vocabulary(shape: Shape) -> list:
    """Token strings by id: 256 byte-level symbols, filler words, specials, timestamps."""
    from tokenizers import pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = list(alphabet)
    # Filler "words" (never produced by merges, but decodable: ' w17', ...).
    i = 0
    while len(tokens) < shape.text_tokens:
        tokens.append(f'\u0120w{i}')
        i += 1
    tokens = tokens[:shape.text_tokens]
    tokens += SPECIAL_TOKENS
    tokens += ['<|%.2f|>' % (i * 0.02) for i in range(N_TIMESTAMPS)]
    return tokens


def write_tokenizer(path: Path, tokens: list, text_tokens: int) -> None:
    """A byte-level BPE tokenizer.json whose ids match ``tokens``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    vocab = {tok: idx for idx, tok in enumerate(tokens[:text_tokens])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in tokens[text_tokens:]])
    for idx, t in enumerate(tokens[text_tokens:], start=text_tokens):
        got = tok.token_to_id(t)
        if got != idx:
            raise RuntimeError(f'tokenizer id mismatch for {t}: {got} != {idx}')
    tok.save(str(path))


def _sinusoids(length: int, channels: int) -> np.ndarray:
    """Whisper's encoder position embedding."""
    log_timescale_increment = np.log(10000) / (channels // 2 - 1)
    inv = np.exp(-log_timescale_increment * np.arange(channels // 2))
    scaled = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def build_spec(shape: Shape, seed: int = 0):
    """A ctranslate2 WhisperSpec with random weights of ``shape``."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    d, f = shape.d_model, shape.ffn

    def w(*dims, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(dims[-1])
        return (rng.standard_normal(dims) * scale).astype(np.float32)

    def zeros(*dims):
        return np.zeros(dims, dtype=np.float32)

    def norm(spec):
        spec.gamma = np.ones(d, dtype=np.float32)
        spec.beta = zeros(d)

    def linear(spec, out_dim, in_dim, bias=True):
        spec.weight = w(out_dim, in_dim)
        if bias:
            spec.bias = zeros(out_dim)

    def self_attention(spec):
        norm(spec.layer_norm)
        linear(spec.linear[0], 3 * d, d)      # fused q, k, v
        linear(spec.linear[1], d, d)

    def ffn(spec):
        norm(spec.layer_norm)
        linear(spec.linear_0, f, d)
        linear(spec.linear_1, d, f)

    spec = whisper_spec.WhisperSpec(shape.encoder_layers, shape.heads,
                                    shape.decoder_layers, shape.heads)
    enc = spec.encoder
    enc.conv1.weight = w(d, N_MELS, 3, scale=1.0 / np.sqrt(N_MELS * 3))
    enc.conv1.bias = zeros(d)
    enc.conv2.weight = w(d, d, 3, scale=1.0 / np.sqrt(d * 3))
    enc.conv2.bias = zeros(d)
    enc.position_encodings.encodings = _sinusoids(N_AUDIO_CTX, d)
    norm(enc.layer_norm)
    for layer in enc.layer:
        self_attention(layer.self_attention)
        ffn(layer.ffn)

    vocab = vocabulary(shape)
    dec = spec.decoder
    embeddings = w(len(vocab), d, scale=0.02)
    dec.embeddings.weight = embeddings
    dec.position_encodings.encodings = w(N_TEXT_CTX, d, scale=0.01)
    norm(dec.layer_norm)
    for layer in dec.layer:
        self_attention(layer.self_attention)
        norm(layer.attention.layer_norm)
        linear(layer.attention.linear[0], d, d)        # q
        linear(layer.attention.linear[1], 2 * d, d)    # fused k, v
        linear(layer.attention.linear[2], d, d)
        ffn(layer.ffn)
    dec.projection.weight = embeddings                 # tied, as in Whisper

    spec.register_vocabulary(vocab)
    cfg = spec.config
    eot = shape.text_tokens
    cfg.suppress_ids = []
    cfg.suppress_ids_begin = [eot]
    cfg.lang_ids = []
    cfg.alignment_heads = [(layer, head) for layer in range(shape.decoder_layers // 2,
                                                           shape.decoder_layers)
                           for head in range(shape.heads)]
    return spec, vocab


def build_model(output_dir, shape: str = 'test', seed: int = 0,
                quantization: str = 'int8') -> str:
    """Write a loadable faster-whisper model directory; returns its path.

    Skips the work when the directory already holds a complete model of this shape.
    """
    out = Path(output_dir)
    marker = out / 'droid_tiny_whisper.json'
    meta = {'shape': shape, 'seed': seed, 'quantization': quantization}
    if marker.is_file() and json.loads(marker.read_text()) == meta:
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ('model.bin', 'config.json', 'vocabulary.json', 'tokenizer.json',
                 'preprocessor_config.json', marker.name):
        try:
            os.remove(out / name)
        except FileNotFoundError:
            pass
    dims = SHAPES[shape]
    spec, vocab = build_spec(dims, seed)
    spec.validate()
    spec.optimize(quantization=quantization)
    spec.save(str(out))
    write_tokenizer(out / 'tokenizer.json', vocab, dims.text_tokens)
    (out / 'preprocessor_config.json').write_text(json.dumps({
        'chunk_length': 30, 'feature_size': N_MELS, 'hop_length': 160, 'n_fft': 400,
        'n_samples': 480000, 'nb_max_frames': 3000, 'sampling_rate': 16000,
        'feature_extractor_type': 'WhisperFeatureExtractor'}, indent=2))
    marker.write_text(json.dumps(meta))
    return str(out)


if __name__ == '__main__':  # pragma: no cover - manual use
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('output_dir')
    p.add_argument('--shape', default='test', choices=sorted(SHAPES))
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    print(build_model(a.output_dir, a.shape, a.seed))

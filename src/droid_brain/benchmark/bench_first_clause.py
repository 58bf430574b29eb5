#!/usr/bin/env python3
"""Starting to speak sooner: time to the first audio chunk of a reply whose first sentence
is long, before (whole first sentence, Piper's first piece >= 40 characters) and now (the
brain cuts the first sentence at a clause after ``brain.first_clause_chars``, and Piper's
first piece may be as short as ``tts.piper_first_clause_chars``). Prints JSON.

    PYTHONPATH=$(printf '%s:' $PWD/src/*) python3 src/droid_brain/benchmark/bench_first_clause.py \
        [--token-ms 25] [--reps 5]

For each reply: the LLM streams pieces of 4 characters, one per ``--token-ms`` (after its
first token); the brain's chunker publishes the first sentence when it is complete (or,
with the cut, its first clause after 60 characters); the offline voice (Piper, clause by
clause as in the tts) synthesises it. Time to first audio = when the chunker releases the
first sentence + Piper's time to its first chunk (measured, runs alternated).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from droid_brain.chunker import SentenceChunker

REPLIES = [
    'Hot, dry and sandy, with two suns beating down on the dunes all day long, so bring '
    'water. And a hat.',
    'The cantina band, of course, played loud enough to rattle every glass in the place, '
    'twice a night. Nothing beats it.',
    'Well, my friend, the cantina band plays every single night from eight until late, and '
    'the drinks are cheap. Come by later.',
]


def first_sentence(reply: str, first_clause_chars: int, piece: int = 4):
    c = SentenceChunker(max_chars=200, first_clause_chars=first_clause_chars)
    pieces = [reply[i:i + piece] for i in range(0, len(reply), piece)]
    for j, p in enumerate(pieces):
        out = c.feed(p)
        if out:
            return out[0], j + 1
    return c.flush()[0], len(pieces) + 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--token-ms', type=float, default=25.0,
                    help='the LLM streams one piece of 4 characters per this long')
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--cut', type=int, default=60, help='brain.first_clause_chars now')
    ap.add_argument('--piper-first', type=int, default=15,
                    help='tts.piper_first_clause_chars now')
    args = ap.parse_args()
    from droid_voice.synth import PiperBackend, VoiceSpec
    before = PiperBackend()
    before.load()
    now = PiperBackend(first_clause_chars=args.piper_first)
    now._voices = before._voices                     # the same loaded voice
    voices = {args.cut: now, 0: before}
    for _ in before.stream('Warming up the voice.', VoiceSpec()):
        pass
    rows = []
    for reply in REPLIES:
        res = {}
        for mode in (args.cut, 0):
            text, pieces = first_sentence(reply, mode)
            res[mode] = {'first_sentence': text, 'pieces': pieces, 'synth': []}
        for _ in range(args.reps):
            for mode in (args.cut, 0):
                t0 = time.perf_counter()
                for _chunk in voices[mode].stream(res[mode]['first_sentence'], VoiceSpec()):
                    break
                res[mode]['synth'].append(time.perf_counter() - t0)
        row = {'reply': reply[:40] + '...'}
        for mode in (args.cut, 0):
            r = res[mode]
            synth = float(np.median(r['synth'])) * 1000.0
            released = r['pieces'] * args.token_ms
            row['now' if mode else 'before'] = {
                'first_sentence_chars': len(r['first_sentence']),
                'released_after_ms': round(released, 1),
                'piper_first_chunk_ms_p50': round(synth, 1),
                'first_audio_ms': round(released + synth, 1)}
        row['saved_ms'] = round(row['before']['first_audio_ms'] - row['now']['first_audio_ms'],
                                1)
        rows.append(row)
    print(json.dumps({'benchmark': 'first sentence cut at a clause',
                      'token_ms_per_4_chars': args.token_ms, 'first_clause_chars': args.cut,
                      'piper_first_clause_chars': args.piper_first,
                      'reps': args.reps, 'replies': rows,
                      'saved_ms_p50': float(np.median([r['saved_ms'] for r in rows]))},
                     indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

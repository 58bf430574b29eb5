#!/usr/bin/env python3
"""droid_voice benchmark: prints JSON.

- time from a sentence arriving (Speaker.submit) to its first audio frame written to the
  device, per backend: mock, offline espeak-ng, offline Piper (joe-us), local fake ElevenLabs (websocket with the
  connection opened ahead, and HTTP stream) -- the fake answers with no artificial delay,
  so the figure is the droid's own overhead on top of the provider's time to first byte;
- Piper alone: voice load time, time to its first chunk and real-time factor;
- barge-in that forgives: coughs (voice, no words) resumed rate, voice -> silence time,
  confirmed barge-ins stop;
- echo cancellation (WebRTC AEC): ERLE in a synthetic room, voiced fractions before/after;
- filler line timing for a slow tool;
- barge-in stop latency p50/p99 (stop request -> last audible sample recorded from the
  PulseAudio null sink's monitor; target <= 150 ms);
- amplitude message rate and lag: release time behind the stamp (the time the samples
  are heard), and the lag of the amplitude curve behind the recorded audio envelope.

Runs without a sound card on a private PulseAudio daemon (droid_common.testing).

    PYTHONPATH=$(printf '%s:' $PWD/src/*) python src/droid_voice/benchmark/bench_voice.py [--n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time

import numpy as np
from droid_common.testing import PulseAudioServer
from droid_voice.amplitude import rms_norm
from droid_voice.fake_elevenlabs import FakeElevenLabs
from droid_voice.output import SoundDeviceOutput
from droid_voice.speaker import COMPLETED, INTERRUPTED, Speaker, Utterance
from droid_voice.testing import MonitorRecorder, ToneBackend
from droid_voice.synth import (
    RATE,
    ElevenLabsBackend,
    EspeakBackend,
    MockBackend,
    PiperBackend,
    VoiceSpec,
)

clock = time.monotonic
SENTENCES = ['Hello there, I am the droid.', 'The cantina is open tonight.',
             'Shall I play some music for you?', 'That is a very good question.',
             'My circuits are warm and ready.']






class Rig:
    def __init__(self, backend, **kw):
        self.sp = Speaker(backend, clock=clock, **kw)
        self.out = SoundDeviceOutput(self.sp.render, clock, sample_rate=RATE, device='pulse',
                                     blocksize=160, latency=0.06)
        self.out.start()
        deadline = clock() + 8
        while clock() < deadline:
            n0 = self.out.callbacks
            time.sleep(0.1)
            if self.out.callbacks - n0 >= 5:
                break
        self.events = []
        self.release_lag = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._pump, daemon=True)
        self._th.start()

    def _pump(self):
        while not self._stop.is_set():
            now = clock()
            for e in self.sp.pop_due(now):
                self.events.append(e)
                if e.kind == 'amplitude':
                    self.release_lag.append(now - e.t)
            time.sleep(0.003)

    def close(self):
        self._stop.set()
        self._th.join()
        self.out.close()
        self.sp.close()


def pct(values, q):
    return round(float(np.percentile(values, q)) * 1000.0, 1) if values else None


def first_audio(backend, n, prepare=None) -> dict:
    rig = Rig(backend)
    times = []
    try:
        for i in range(n):
            if prepare:
                prepare()
            time.sleep(0.15)
            u = Utterance(SENTENCES[i % len(SENTENCES)], conversation_id=f'b{i}')
            t0 = clock()
            rig.sp.submit(u)
            deadline = clock() + 20
            while u.written_at is None and clock() < deadline and not u.done.is_set():
                time.sleep(0.001)
            if u.written_at is not None:
                times.append(u.written_at - t0)
            rig.sp.stop(u, 'bench')
            u.done.wait(2)
    finally:
        rig.close()
    return {'n': len(times), 'p50_ms': pct(times, 50), 'p90_ms': pct(times, 90),
            'max_ms': pct(times, 100)}


def piper_rtf(n) -> dict:
    """Piper alone (no device): time to the first chunk and real-time factor per sentence."""
    piper = PiperBackend()
    t0 = clock()
    piper.load()
    load_s = clock() - t0
    first, rtf = [], []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        t0 = clock()
        samples = 0
        for chunk in piper.stream(text, VoiceSpec()):
            if not samples:
                first.append(clock() - t0)
            samples += chunk.size
        rtf.append((clock() - t0) / (samples / RATE))
    return {'voice': piper.default_voice, 'load_s': round(load_s, 3), 'n': n,
            'first_chunk_p50_ms': pct(first, 50), 'first_chunk_p90_ms': pct(first, 90),
            'rtf_p50': round(float(np.median(rtf)), 3), 'rtf_max': round(max(rtf), 3)}


def barge_in(rec, n) -> dict:
    rig = Rig(ToneBackend(), fade_s=0.03)
    heard_ms, stamp_ms = [], []
    try:
        for i in range(n):
            u = Utterance('a b c d', conversation_id=f'bi{i}')
            rig.sp.submit(u)
            while u.started_at is None:
                time.sleep(0.002)
            while clock() < u.started_at + 0.3 + random.random() * 0.5:
                time.sleep(0.002)
            t_stop = clock()
            rig.sp.stop(u, 'barge-in')
            u.done.wait(2)
            time.sleep(0.35)
            x, t0 = rec.between(t_stop - 0.1, t_stop + 0.35)
            loud = np.nonzero(np.abs(x) > 0.01)[0]
            if len(loud):
                heard_ms.append(t0 + loud[-1] / RATE - t_stop)
            stamp_ms.append(u.ended_at - t_stop)
    finally:
        rig.close()
    return {'n': len(heard_ms), 'target_ms': 150, 'heard_p50_ms': pct(heard_ms, 50),
            'heard_p99_ms': pct(heard_ms, 99), 'heard_max_ms': pct(heard_ms, 100),
            'interrupted_stamp_p50_ms': pct(stamp_ms, 50),
            'interrupted_stamp_p99_ms': pct(stamp_ms, 99),
            'fade_ms': 30, 'output_latency_ms': 60, 'block_ms': 10}


def false_barge_in(rec, n) -> dict:
    """Coughs over the droid (voice 150-400 ms, no words) through the arbiter and the
    speaker on the sound card: resumed (not interrupted) rate; pause time heard; and
    confirmed barge-ins (real words): the sentence ends interrupted."""
    from droid_voice.barge_in import PAUSE, RESUME, STOP, BargeInArbiter, BargeInConfig
    rig = Rig(ToneBackend(), fade_s=0.03)
    resumed, interrupted, pause_heard = 0, 0, []
    confirmed_ok = 0
    try:
        for i in range(2 * n):
            cough = i < n
            arb = BargeInArbiter(BargeInConfig(resume_s=0.6))
            u = Utterance('a b c d e f g h i j', conversation_id=f'fb{i}')   # ~3.75 s
            rig.sp.submit(u)
            while u.started_at is None:
                time.sleep(0.002)
            time.sleep(0.3 + random.random() * 0.3)
            t_voice = clock()
            assert arb.voice(True, t_voice, True) == PAUSE
            rig.sp.pause(u)
            time.sleep(0.15 + random.random() * 0.25)
            arb.voice(False, clock(), False)
            if not cough:
                if arb.transcription('what time is it', clock()) == STOP:
                    rig.sp.stop(u, 'barge-in')
            deadline = clock() + 2.0
            while clock() < deadline and arb.paused:
                if arb.tick(clock()) == RESUME:
                    rig.sp.resume(u)
                time.sleep(0.01)
            x, t0 = rec.between(t_voice - 0.1, t_voice + 0.3)
            loud = np.nonzero(np.abs(x) > 0.01)[0]
            if len(loud):
                pause_heard.append(t0 + loud[-1] / RATE - t_voice)
            if not cough:
                rig.sp.stop(u, 'bench')
            u.done.wait(10)
            if cough:
                resumed += u.status == COMPLETED and u.pauses == 1
            else:
                confirmed_ok += u.status == INTERRUPTED
                interrupted += 1
    finally:
        rig.close()
    return {'coughs': n, 'false_barge_in_resume_rate': round(resumed / max(1, n), 3),
            'confirmed': interrupted,
            'confirmed_stop_rate': round(confirmed_ok / max(1, interrupted), 3),
            'voice_to_silence_p50_ms': pct(pause_heard, 50),
            'voice_to_silence_p99_ms': pct(pause_heard, 99),
            'resume_after_ms': 600}


def echo_cancellation() -> dict:
    """ERLE of WebRTC AEC in a synthetic room (40 ms delay, -6 dB), and whether the user's
    speech over the droid's voice is still voiced (Silero VAD) after cancellation."""
    from droid_audio.aec import FRAME, EchoCanceller, ReferenceBuffer, erle_db
    from droid_audio.detectors import SileroVad
    from droid_common.testing import speech
    droid = speech(' '.join(SENTENCES), 'en-us+m3').astype(np.float32)
    user = speech('hey jarvis, what time is it', 'en-gb').astype(np.float32)
    n = (len(droid) // 1280) * 1280
    delay = int(0.04 * RATE)
    echo = np.zeros(n)
    echo[delay:] = 0.5 * droid[:n - delay]
    u0 = n // 2
    mic = echo.copy()
    mic[u0:u0 + len(user)] += 0.6 * user[:max(0, min(len(user), n - u0))]
    ref = ReferenceBuffer(seconds=n / RATE + 1)
    ref.add(100.0, droid[:n])
    aec = EchoCanceller(ref)
    if not aec.available:
        return {'error': aec.error}
    t0 = clock()
    out = np.concatenate([aec.process(np.clip(mic[i:i + 1280], -32768, 32767),
                                      100.0 + i / RATE) for i in range(0, n, 1280)])
    cpu = clock() - t0
    a = RATE                                           # after 1 s of convergence
    vad = SileroVad()

    def voiced(x):
        vad.reset()
        probs = [vad.predict(np.asarray(x[i:i + 1280], dtype=np.int16))
                 for i in range(0, len(x) - 1280, 1280)]
        return float(np.mean(np.array(probs) >= 0.85)) if probs else 0.0
    user_end = min(n, u0 + len(user))
    return {'erle_db': round(erle_db(mic[a:u0], out[a:u0]), 1),
            'rtf': round(cpu / (n / RATE), 4), 'frame_ms': 1000 * FRAME // RATE,
            'echo_voiced_fraction_raw': round(voiced(mic[a:u0]), 3),
            'echo_voiced_fraction_cancelled': round(voiced(out[a:u0]), 3),
            'user_voiced_fraction_cancelled': round(voiced(out[u0:user_end]), 3)}


def filler_timing(n) -> dict:
    """A slow tool (2 s): time from its goal to the persona's filler line (1.5 s set)."""
    from types import SimpleNamespace

    from droid_brain import tools
    from droid_brain.engine import Engine, RecordingSink, Turn
    from droid_brain.fake_openai import FakeOpenAI, Reply
    from droid_brain.llm_openai import OpenAIBackend
    from droid_brain.memory import SessionMemory
    from droid_brain.stream import ToolResult
    delays = []
    with FakeOpenAI() as srv:
        for i in range(n):
            srv.push(Reply.tools([('t', 'get_time', '{}')]), Reply.text('Done.'))
            sink = RecordingSink()

            def slow(turn, calls):
                time.sleep(2.0)
                return [ToolResult(True, '{}') for _ in calls]
            eng = Engine(OpenAIBackend(srv.base_url, 'm'), SessionMemory('s'), sink, slow,
                         tools_schema=tools.openai_tools(), persona=SimpleNamespace(name='rex', fallback_line='x',
                                                 filler_line='One moment.'),
                         filler_after_s=1.5)
            eng.run_turn(Turn('f', i, 'time?'))
            goal = next(e[0] for e in sink.of('trace') if e[3] == 'TOOL_GOAL')
            filler = next(e[0] for e in sink.of('sentence') if e[4] == 'One moment.')
            delays.append(filler - goal)
    return {'n': n, 'filler_after_s': 1.5, 'tool_s': 2.0, 'goal_to_filler_p50_ms':
            pct(delays, 50), 'goal_to_filler_max_ms': pct(delays, 100)}


def amplitude(rec) -> dict:
    rig = Rig(EspeakBackend('en-us', 160), amplitude_hz=50)
    try:
        u = Utterance('The eyes follow the loudness of the voice, syllable by syllable, '
                      'while the droid is talking.', conversation_id='amp')
        rig.sp.submit(u)
        u.done.wait(30)
        time.sleep(0.4)
        amps = [e for e in rig.events if e.kind == 'amplitude']
        speech = [e for e in amps if u.started_at <= e.t <= u.ended_at]
        rate = len(speech) / (u.ended_at - u.started_at)
        # Lag of the amplitude curve behind the recorded audio: cross-correlate the
        # amplitude series with the recorded RMS envelope at 50 Hz.
        x, t0 = rec.between(u.started_at - 0.5, u.ended_at + 0.5)
        hop = RATE // 50
        env_t = t0 + (np.arange(len(x) // hop) + 0.5) * hop / RATE
        env = np.array([rms_norm(x[i * hop:(i + 1) * hop]) for i in range(len(x) // hop)])
        amp_on_grid = np.interp(env_t, [e.t for e in amps], [e.amplitude for e in amps],
                                left=0.0, right=0.0)
        lags = range(-10, 11)                     # +-200 ms in 20 ms steps
        scores = [np.corrcoef(np.roll(amp_on_grid, -k), env)[0, 1] for k in lags]
        best = list(lags)[int(np.nanargmax(scores))]
        fine = np.linspace(-0.03, 0.03, 61)
        fine_scores = [np.corrcoef(np.interp(env_t, [e.t + d for e in amps],
                                             [e.amplitude for e in amps], left=0, right=0),
                                   env)[0, 1] for d in fine]
        return {'rate_hz': round(rate, 1), 'messages': len(amps),
                'release_lag_p50_ms': pct(rig.release_lag, 50),
                'release_lag_p99_ms': pct(rig.release_lag, 99),
                'lag_vs_recorded_audio_ms': round(float(fine[int(np.nanargmax(fine_scores))])
                                                  * 1000.0, 1),
                'coarse_lag_steps_20ms': best,
                'correlation_with_recorded_envelope': round(float(np.nanmax(fine_scores)), 3),
                'ends_with_zero': amps[-1].amplitude == 0.0}
    finally:
        rig.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=20, help='repetitions per measurement')
    args = ap.parse_args()
    out = {}
    with PulseAudioServer() as pa:
        os.environ['PULSE_SOURCE'] = pa.SINK + '.monitor'
        import sounddevice as sd
        sd._terminate()
        sd._initialize()
        rec = MonitorRecorder()
        rec.wait_flowing()
        try:
            ttfa = {'mock': first_audio(MockBackend(), args.n),
                    'espeak': first_audio(EspeakBackend('en-us', 175), args.n)}
            piper = PiperBackend()
            piper.load()
            ttfa['piper'] = first_audio(piper, args.n)
            out['piper'] = piper_rtf(args.n)
            with FakeElevenLabs(api_key='bench', first_chunk_delay=0.0) as fake:
                ws = ElevenLabsBackend('bench', use_websocket=True, base_url=fake.base_url,
                                       ws_base_url=fake.ws_base_url)
                ttfa['fake_elevenlabs_websocket_prepared'] = first_audio(
                    ws, args.n, prepare=lambda: ws.prepare(VoiceSpec()))
                ws_cold = ElevenLabsBackend('bench', use_websocket=True,
                                            base_url=fake.base_url,
                                            ws_base_url=fake.ws_base_url)
                ws_cold.prepare = lambda voice: None
                ttfa['fake_elevenlabs_websocket_cold'] = first_audio(ws_cold, args.n)
                ttfa['fake_elevenlabs_http'] = first_audio(
                    ElevenLabsBackend('bench', use_websocket=False, base_url=fake.base_url),
                    args.n)
            out['sentence_to_first_audio_written'] = ttfa
            out['barge_in_stop'] = barge_in(rec, args.n)
            out['false_barge_in'] = false_barge_in(rec, args.n)
            out['amplitude'] = amplitude(rec)
        finally:
            rec.close()
    out['echo_cancellation'] = echo_cancellation()
    out['filler'] = filler_timing(min(args.n, 5))
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()

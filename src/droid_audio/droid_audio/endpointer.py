"""The listener's decisions, as plain Python: wake word gating (threshold, refractory),
voice activity with the self-hearing guard, and utterance endpointing with pre-roll.

:class:`ListenerCore` is fed one 80 ms frame at a time with the frame's capture time
(node clock, seconds), the wake-word scores and the voice-activity probability already
computed for it, and returns the events the node publishes. It never reads a clock, so
tests drive it with synthetic frames and a fake timeline.

Rules (all times are audio capture times):

* **Mode** (``SystemMode``): SLEEP ignores audio (no wake, no VAD; an open utterance is
  cancelled); IDLE and AMBIENT allow the wake word only; INTERACTIVE also allows
  follow-ups and barge-in utterances.
* **Wake word**: a score >= ``threshold`` starts a new conversation (fresh id) and an
  utterance (``TRIGGER_WAKE_WORD``, utterance 1). The wake phrase is cut out of the
  audio: openwakeword's score starts rising (>= 0.1) as the phrase ends and crosses the
  threshold up to ~500 ms later, so the utterance starts at the end of the pause after
  "hey jarvis": the longest quiet run after speech (>= 60 ms of 30 ms windows within
  6 dB of the quietest, in 10 ms steps) from 160 ms before the rise (looked for up to
  640 ms back) to 160 ms after the wake frame; with no such pause, at the start of the
  wake frame. STARTED is
  published two frames later, carrying the audio from the cut on. Another wake within
  ``refractory_s`` of the last one is ignored; a later one cancels an open utterance
  and starts over.
* **Endpoint** (once at least ``min_speech_ms`` of voiced audio has been seen after the
  trigger; silence is counted from the end of the last voiced VAD window): with a turn
  model (smart-turn), ``turn_silence_ms`` of unvoiced audio ends the utterance if the
  model finds the turn complete (probability >= ``turn_threshold``; it is asked one
  frame before, on the audio so far, so its run overlaps the wait, and asked again
  after every further ``turn_silence_ms`` of silence, since more trailing silence
  makes it surer);
  otherwise the user may pause up to ``incomplete_silence_ms`` ("play the, um, ...
  cantina song" stays one utterance). The words are a second opinion (as LiveKit's
  transcript-based end-of-utterance model): when speech-to-text's partial transcript
  covers all the voiced audio and reads as a finished sentence (:func:`reads_complete`:
  it ends in . ? or ! and its last word is not a filler, article, preposition,
  conjunction or auxiliary), ``words_silence_ms`` of silence ends the turn even when
  the turn model is unsure (smart-turn hears some synthetic or noisy questions as
  unfinished). Over background noise the VAD's probability decays slowly after the last
  word (0.5-0.9 for up to 300 ms, while the level is back at the noise's): for the end
  of speech, a VAD window that is not sure (below ``noise_gate_prob``) counts as voiced
  only if it is ``noise_gate_db`` louder than the background (:class:`NoiseFloor`, the
  median level of recent windows the VAD calls non-speech). Without a turn model,
  ``silence_ms`` of unvoiced audio ends it. Either way ``END_SILENCE``;
  ``max_utterance_s`` ends it anyway (``END_MAX_LENGTH``). A wake followed by no speech
  for ``wake_timeout_s`` ends it as silence.
* **Voiced so far**: STARTED and AUDIO messages carry, as ``audio_end``, the capture
  time just after the last voiced frame so far (0 before any), so speech-to-text can
  decode as soon as the user pauses, before the endpoint is decided.
* **Follow-up**: after the droid's reply ends (SpeechEvent ENDED with ``last_in_reply``,
  or INTERRUPTED), for ``follow_up_s``, in INTERACTIVE mode, voice onset
  (``onset_ms`` of voiced frames) starts an utterance of the same conversation
  (``TRIGGER_FOLLOW_UP``, next utterance id) without the wake word. A follow-up does
  not end while the wake score has risen (>= 0.1) in the last ``wake_hold_ms`` without
  firing: "hey jarvis, what time is it" said in the window is a new wake, not a turn
  "hey jarvis" ended at the pause after the phrase (the wake fires up to ~500 ms late).
* **Self-hearing guard**: while the droid speaks (STARTED .. ENDED/INTERRUPTED, plus
  ``echo_tail_ms`` after) neither the wake word nor ordinary voice activity starts
  anything; voice activity only turns on above ``barge_in_threshold`` held for
  ``barge_in_ms`` (``during_droid_speech`` true), and in INTERACTIVE mode that starts a
  ``TRIGGER_BARGE_IN`` utterance in the droid's current conversation.
"""

from __future__ import annotations

import collections
import math
import re
from dataclasses import dataclass, field

import numpy as np
from droid_common.audio import FRAME_SAMPLES, MIC_RATE
from droid_common.contract import constants
from droid_common.ids import new_conversation_id

MODE = constants('SystemMode')
UTT = constants('Utterance')
SPEECH = constants('SpeechEvent')
STAGE = {k: v for k, v in constants('TraceEvent').items() if k.startswith('STAGE_')}
MODE_NAMES = {v: k for k, v in MODE.items()}


def parse_mode(value) -> int:
    """A mode given as name ('idle') or number -> SystemMode constant."""
    if isinstance(value, int):
        if value not in MODE_NAMES:
            raise ValueError(f'unknown system mode {value}')
        return value
    key = str(value).strip().upper()
    if key.isdigit():
        return parse_mode(int(key))
    if key not in MODE:
        raise ValueError(f'unknown system mode {value!r}; expected one of {sorted(MODE)}')
    return MODE[key]


@dataclass
class ListenerConfig:
    threshold: float = 0.5            # wake-word score threshold
    refractory_s: float = 2.0         # ignore further wakes this long after one
    vad_threshold: float = 0.5        # speech probability for "voiced"
    barge_in_threshold: float = 0.85  # stricter threshold while the droid speaks
    barge_in_ms: float = 240.0        # voiced this long (strict) = barge-in
    onset_ms: float = 160.0           # voiced this long = voice onset (follow-up)
    hangover_ms: float = 320.0        # voice activity stays on this long after speech
    silence_ms: float = 600.0         # trailing silence that ends an utterance (no turn model)
    turn_silence_ms: float = 160.0    # short silence that ends a turn the model finds complete
    incomplete_silence_ms: float = 1500.0  # silence that ends a turn the model finds incomplete
    turn_threshold: float = 0.5       # turn-complete probability
    words_silence_ms: float = 240.0   # silence that ends a turn whose words read complete (0: off)
    noise_gate_db: float = 10.0       # an unsure window must be this far above the noise (0: off)
    noise_gate_prob: float = 0.95     # ... a window at least this sure is voiced anyway
    min_speech_ms: float = 160.0      # voiced audio needed before silence can end it
    max_utterance_s: float = 15.0
    wake_timeout_s: float = 4.0       # wake with no speech after it: end after this
    preroll_ms: float = 400.0
    follow_up_s: float = 6.0          # follow-up window after the reply ended
    echo_tail_ms: float = 300.0       # guard stays on this long after the droid stops
    wake_hold_ms: float = 600.0       # a follow-up does not end this long after the wake score
    #                                   rose (the user may be saying the wake phrase; 0: off)
    vad_period_s: float = 0.5         # steady VoiceActivity rate
    frame_s: float = FRAME_SAMPLES / MIC_RATE

    def frames(self, ms: float) -> int:
        return max(1, int(math.ceil(ms / 1000.0 / self.frame_s - 1e-9)))


# ---- events ------------------------------------------------------------------------

@dataclass
class WakeEvent:
    t: float
    conversation_id: str
    model: str
    score: float
    threshold: float


@dataclass
class VoiceActivityEvent:
    t: float
    conversation_id: str
    speaking: bool
    probability: float
    during_droid_speech: bool


@dataclass
class UtteranceEvent:
    state: int                     # UTT['STARTED'|'AUDIO'|'ENDED'|'CANCELLED']
    conversation_id: str
    utterance_id: int
    trigger: int
    t: float                       # capture time of audio[0] (or end time if no audio)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    audio_start: float = 0.0
    audio_end: float = 0.0         # end of speech (ENDED); voiced so far (STARTED/AUDIO)
    end_reason: int = 0


@dataclass
class TraceMark:
    stage: int
    conversation_id: str
    utterance_id: int
    t: float                       # capture time the stage refers to
    detail: str = ''


@dataclass
class _Utterance:
    cid: str
    uid: int
    trigger: int
    t_start: float                 # audio_start (pre-roll included)
    t_trigger: float               # start of the frame that triggered it
    voiced_ms: float = 0.0
    speech_confirmed: bool = False
    pending: list | None = None     # wake word: frames held until the cut is chosen
    audio: list = field(default_factory=list)   # recent audio (for the turn model)
    audio_samples: int = 0
    turn_key: float | None = None   # last_voiced_end the turn probability was computed for
    turn_prob: float | None = None
    turn_asked_ms: float = 0.0      # silence when the turn model was last asked
    words_key: float | None = None  # last_voiced_end a complete-reading transcript covered
    run_start: float | None = None  # start of the current voiced run
    last_voiced_end: float | None = None
    unvoiced_ms: float = 0.0


VAD_WINDOW = 512                      # samples in one VAD window (32 ms at 16 kHz)


def level_db(samples) -> float:
    """Mean power of int16 samples in dB (0 dB = 1 LSB RMS; digital silence -30 dB)."""
    x = np.asarray(samples, dtype=np.float64)
    return 10.0 * math.log10(float(np.mean(x * x)) + 1e-3) if x.size else -30.0


class NoiseFloor:
    """The background level: the median (dB) of the last ``history`` VAD windows with a
    speech probability below ``speech_below``; None until ``min_windows`` were seen."""

    def __init__(self, history: int = 24, min_windows: int = 8, speech_below: float = 0.5):
        self._levels: collections.deque = collections.deque(maxlen=int(history))
        self.min_windows = int(min_windows)
        self.speech_below = float(speech_below)
        self._level: float | None = None

    def add(self, prob: float, db: float) -> None:
        if prob < self.speech_below and math.isfinite(db):
            self._levels.append(db)
            self._level = None                      # recomputed when asked

    @property
    def level(self) -> float | None:
        if len(self._levels) < self.min_windows:
            return None
        if self._level is None:
            self._level = float(np.median(self._levels))
        return self._level


class ListenerCore:
    """Wake/VAD/endpoint state machine. Feed frames with :meth:`process`."""

    def __init__(self, config: ListenerConfig | None = None, initial_mode: int = MODE['IDLE'],
                 id_factory=new_conversation_id, turn_model=None):
        """``turn_model``: callable(int16 samples) -> probability that the turn is
        complete (e.g. :class:`droid_audio.turn.SmartTurn.predict`), or None for
        silence-only endpointing."""
        self.cfg = config or ListenerConfig()
        self.turn_model = turn_model
        self.last_turn_prob: float | None = None
        self.last_end_detail = ''
        # callable(events) or None: a frame's utterance audio is handed to it before the
        # turn model runs instead of being returned (the node publishes it at once)
        self.emit_early = None
        self.mode = initial_mode
        self._new_id = id_factory
        # pre-roll for voice onsets; the wake cut may look further back
        self._preroll_n = self.cfg.frames(self.cfg.preroll_ms) if self.cfg.preroll_ms > 0 else 0
        self._preroll = collections.deque(maxlen=max(
            self._preroll_n,
            self.cfg.frames(self.WAKE_RISE_LOOKBACK_MS + self.WAKE_CUT_BEFORE_S * 1000)))
        self._wake_hist = collections.deque(maxlen=self.cfg.frames(self.WAKE_RISE_LOOKBACK_MS))
        self._utt: _Utterance | None = None
        self._last_wake_t = -math.inf
        self._uids: collections.OrderedDict = collections.OrderedDict()  # cid -> last uid
        self.conversation_id = ''
        # droid speech
        self._droid_speaking = False
        self._droid_cid = ''
        self._droid_stopped_t = -math.inf
        self._follow_up_until = -math.inf
        self._follow_up_cid = ''
        # voice activity
        self._speaking = False
        self._voiced_run = 0           # consecutive voiced frames (at the active threshold)
        self._unvoiced_run = 0
        self._last_vad_pub = -math.inf
        self._last_prob = 0.0
        self._last_t = 0.0             # capture time of the last frame processed
        self.noise = NoiseFloor()
        self._tail = np.zeros(0, dtype=np.int16)   # the previous frame's last VAD window
        self.stats = collections.Counter()

    # ---- inputs other than audio -------------------------------------------------------

    def set_mode(self, mode: int, t: float) -> list:
        """Apply a SystemMode; returns events (a cancelled utterance on SLEEP)."""
        events = []
        if mode not in MODE_NAMES:       # unknown mode: ignored
            return events
        old, self.mode = self.mode, mode
        if mode == MODE['SLEEP'] and old != mode:
            if self._utt is not None:
                events += self._end(t, UTT['CANCELLED'], UTT['END_CANCELLED'], t)
            if self._speaking:
                self._speaking = False
                events.append(VoiceActivityEvent(t, self.conversation_id, False, 0.0,
                                                 self._droid_speaking))
            self._preroll.clear()
            self._voiced_run = self._unvoiced_run = 0
            self._follow_up_until = -math.inf
        return events

    def on_speech_event(self, event: int, t: float, conversation_id: str = '',
                        last_in_reply: bool = False) -> None:
        """The droid's own speech lifecycle (SpeechEvent)."""
        if not math.isfinite(t):          # no usable time: the last frame's
            t = self._last_t
        if event == SPEECH['STARTED']:
            self._droid_speaking = True
            self._droid_cid = conversation_id
            self._follow_up_until = -math.inf
            self._voiced_run = 0
        elif event in (SPEECH['ENDED'], SPEECH['INTERRUPTED']):
            self._droid_speaking = False
            self._droid_stopped_t = t
            self._voiced_run = 0
            if conversation_id and (last_in_reply or event == SPEECH['INTERRUPTED']):
                self._follow_up_until = t + self.cfg.follow_up_s
                self._follow_up_cid = conversation_id

    def on_transcript(self, conversation_id: str, utterance_id: int, text: str,
                      audio_end: float) -> list:
        """A partial transcript of the open utterance (speech-to-text decodes when the
        user pauses). If it covers all the voiced audio so far (``audio_end``: capture
        time just after the last sample it transcribed) and :func:`reads_complete`, the
        turn may end after ``words_silence_ms``; if that much silence has already passed
        (at the last frame), it ends now. Returns the events."""
        u = self._utt
        if u is None or self.turn_model is None or self.cfg.words_silence_ms <= 0 or \
                u.pending is not None or \
                (u.cid, u.uid) != (conversation_id, int(utterance_id)) or \
                u.last_voiced_end is None or not math.isfinite(audio_end) or \
                audio_end + 1e-3 < u.last_voiced_end:
            return []
        u.words_key = u.last_voiced_end if reads_complete(text) else None
        self.stats['transcripts_seen'] += 1
        if not u.speech_confirmed or u.run_start is not None or \
                not self._words_end(u, u.unvoiced_ms + 1e-6) or self._wake_rising(u, self._last_t):
            return []
        t_end = self._last_t + self.cfg.frame_s
        return self._end(t_end, UTT['ENDED'], UTT['END_SILENCE'], u.last_voiced_end, 'words')

    def droid_speaking(self, t: float) -> bool:
        """True while the self-hearing guard applies at capture time ``t``."""
        return self._droid_speaking or \
            t < self._droid_stopped_t + self.cfg.echo_tail_ms / 1000.0

    @property
    def in_utterance(self) -> bool:
        return self._utt is not None

    def reset_audio(self) -> None:
        """Forget audio context (after a gap in the stream)."""
        self._preroll.clear()
        self._voiced_run = self._unvoiced_run = 0

    # ---- audio ---------------------------------------------------------------------------

    def process(self, t: float, samples: np.ndarray, wake_scores: dict | None,
                vad_prob: float, vad_windows=None) -> list:
        """One frame captured at ``t``. ``wake_scores``: {model: score} (None = no
        wake model); ``vad_prob``: speech probability of the frame in [0, 1];
        ``vad_windows``: optionally the VAD's windows that ended in this frame as
        [(probability, end offset in samples from the frame start)], so the end of
        speech is known to the window rather than to the frame."""
        if self.mode == MODE['SLEEP']:
            self.stats['frames_sleep'] += 1
            return []
        if not math.isfinite(t):          # a frame without a usable time: dropped
            self.stats['frames_bad_time'] += 1
            return []
        self._last_t = t
        vad_prob = float(vad_prob) if math.isfinite(vad_prob) else 0.0
        vad_windows = self._loudness(samples, vad_windows)
        if wake_scores:
            wake_scores = {k: v for k, v in wake_scores.items() if math.isfinite(v)}
        cfg = self.cfg
        events: list = []
        t_end = t + cfg.frame_s
        guard = self.droid_speaking(t)
        self._last_prob = float(vad_prob)

        # -- voice activity (with the self-hearing guard) --
        thr = cfg.barge_in_threshold if guard else cfg.vad_threshold
        voiced_strict = vad_prob >= thr
        if voiced_strict:
            self._voiced_run += 1
            self._unvoiced_run = 0
        else:
            self._unvoiced_run += 1
            self._voiced_run = 0
        need_on = cfg.frames(cfg.barge_in_ms if guard else cfg.onset_ms)
        onset = False
        changed = False
        if not self._speaking and self._voiced_run >= need_on:
            self._speaking = True
            onset = True
            changed = True
        elif self._speaking and self._unvoiced_run >= cfg.frames(cfg.hangover_ms):
            self._speaking = False
            changed = True

        # -- wake word --
        wake = None
        if wake_scores:
            model, score = max(wake_scores.items(), key=lambda kv: kv[1])
            self._wake_hist.append((t, float(score)))
            if score >= cfg.threshold:
                if guard:
                    self.stats['wake_guarded'] += 1
                elif t - self._last_wake_t < cfg.refractory_s:
                    self.stats['wake_refractory'] += 1
                else:
                    wake = (model, float(score))

        if wake is not None:
            if self._utt is not None:
                events += self._end(t, UTT['CANCELLED'], UTT['END_CANCELLED'], t)
            self._last_wake_t = t
            cid = self._new_id()
            self.conversation_id = cid
            events.append(WakeEvent(t, cid, wake[0], wake[1], cfg.threshold))
            events.append(TraceMark(STAGE['STAGE_WAKE'], cid, 1, t, wake[0]))
            self._uids[cid] = 0
            events += self._start(cid, UTT['TRIGGER_WAKE_WORD'], t, samples, cut=True)
            self.stats['wakes'] += 1
        elif self._utt is None and onset and self.mode == MODE['INTERACTIVE']:
            run_start = t - (need_on - 1) * cfg.frame_s
            if guard:
                cid = self._droid_cid or self.conversation_id or self._new_id()
                trigger = UTT['TRIGGER_BARGE_IN']
            elif t <= self._follow_up_until and self._follow_up_cid:
                cid = self._follow_up_cid
                trigger = UTT['TRIGGER_FOLLOW_UP']
                self._follow_up_until = -math.inf
            else:
                cid, trigger = None, None
            if cid is not None:
                self.conversation_id = cid
                events += self._start(cid, trigger, t, samples)
                self._utt.speech_confirmed = True
                self._utt.voiced_ms = need_on * cfg.frame_s * 1000.0
                self._utt.last_voiced_end = t_end
                events.append(TraceMark(STAGE['STAGE_SPEECH_START'], cid, self._utt.uid,
                                        run_start, 'barge_in' if guard else 'follow_up'))
                self.stats['barge_ins' if guard else 'follow_ups'] += 1
        elif self._utt is not None:
            events += self._continue(t, samples, vad_prob, vad_windows)

        if self._utt is None:
            self._preroll.append((t, samples))

        if changed or t - self._last_vad_pub >= cfg.vad_period_s - 1e-9:
            self._last_vad_pub = t
            events.append(VoiceActivityEvent(t, self.conversation_id, self._speaking,
                                             float(vad_prob), guard))
        return events

    def _loudness(self, samples: np.ndarray, vad_windows) -> list | None:
        """The VAD windows as (probability, end offset, counts as voiced for the end of
        speech); the noise floor learns from the unvoiced ones."""
        if not vad_windows:
            self._tail = np.asarray(samples)[-VAD_WINDOW:]
            return vad_windows
        cfg = self.cfg
        x = np.concatenate([self._tail, np.asarray(samples)])
        off = len(self._tail)
        out = []
        for p, e in vad_windows:
            end = off + min(max(int(e), 0), len(samples))
            db = level_db(x[max(0, end - VAD_WINDOW):end])
            floor = self.noise.level
            loud = cfg.noise_gate_db <= 0 or floor is None or p >= cfg.noise_gate_prob or \
                db >= floor + cfg.noise_gate_db
            if p >= cfg.vad_threshold and not loud:
                self.stats['windows_noise_gated'] += 1
            self.noise.add(p, db)
            out.append((p, e, loud))
        self._tail = x[-VAD_WINDOW:]
        return out

    # ---- utterance lifecycle ---------------------------------------------------------------

    def _start(self, cid: str, trigger: int, t: float, samples: np.ndarray,
               cut: bool = False) -> list:
        uid = self._uids.get(cid, 0) + 1
        self.last_turn_prob = None
        self._uids[cid] = uid
        self._uids.move_to_end(cid)
        while len(self._uids) > 64:
            self._uids.popitem(last=False)
        pre = list(self._preroll)
        self._preroll.clear()
        # keep only contiguous pre-roll frames ending right before t
        contiguous = []
        expect = t
        for ft, fs in reversed(pre):
            if abs(ft + len(fs) / MIC_RATE - expect) > 0.02:
                break
            contiguous.append((ft, fs))
            expect = ft
        contiguous.reverse()
        if not cut:
            contiguous = contiguous[len(contiguous) - self._preroll_n:] if self._preroll_n \
                else []
        chunks = [fs for _, fs in contiguous] + [samples]
        t0 = contiguous[0][0] if contiguous else t
        self._utt = _Utterance(cid, uid, trigger, t0, t)
        audio = np.concatenate(chunks).astype(np.int16)
        if cut:
            # wake word: hold the audio until two more frames show where the phrase ends
            self._utt.pending = [(t0, audio)]
            return []
        self._keep(self._utt, audio)
        return [UtteranceEvent(UTT['STARTED'], cid, uid, trigger, t0, audio, audio_start=t0)]

    WAKE_RISE = 0.1              # the wake score starts rising above this as the phrase ends
    WAKE_RISE_LOOKBACK_MS = 640  # ... looked for this far back from the wake frame
    WAKE_CUT_BEFORE_S = 0.16     # the cut is searched from this long before the rise
    WAKE_CUT_AFTER_FRAMES = 2    # ... to the end of this many frames after the wake frame

    def _finish_cut(self) -> list:
        """Cut the wake phrase off the held audio; the STARTED event from the cut on."""
        u = self._utt
        t0 = u.pending[0][0]
        audio = np.concatenate([a for _, a in u.pending])
        u.pending = None
        rise = min([ft for ft, sc in self._wake_hist if sc >= self.WAKE_RISE and
                    ft <= u.t_trigger] or [u.t_trigger])
        lo = max(0, int(round((rise - self.WAKE_CUT_BEFORE_S - t0) * MIC_RATE)))
        at = pause_end(audio[lo:])
        # no pause after the phrase: the score crosses the threshold as it ends
        cut = lo + at if at is not None else int(round((u.t_trigger - t0) * MIC_RATE))
        u.t_start = t0 + cut / MIC_RATE
        audio = audio[cut:]
        self._keep(u, audio)
        self.stats['wake_cut_ms'] = int(round((u.t_start - u.t_trigger) * 1000))
        return [UtteranceEvent(UTT['STARTED'], u.cid, u.uid, u.trigger, u.t_start, audio,
                               audio_start=u.t_start, audio_end=u.last_voiced_end or 0.0)]

    def _wake_rising(self, u: _Utterance, t: float) -> bool:
        """A follow-up is not ended while the wake score has risen (>= ``WAKE_RISE``) in the
        last ``wake_hold_ms`` without firing: "hey jarvis, what time is it" said in the
        follow-up window would otherwise end as a turn of its own at the pause after the
        wake phrase, before the wake word fires (up to ~500 ms after the phrase ends)."""
        hold = self.cfg.wake_hold_ms / 1000.0
        if hold <= 0 or u.trigger != UTT['TRIGGER_FOLLOW_UP'] or \
                not any(sc >= self.WAKE_RISE and t - hold < ft <= t for ft, sc in self._wake_hist):
            return False
        self.stats['endpoints_held_for_wake'] += 1
        return True

    def _keep(self, u: _Utterance, audio: np.ndarray) -> None:
        """Recent utterance audio for the turn model (the last 8 s)."""
        if self.turn_model is None:
            return
        u.audio.append(audio)
        u.audio_samples += len(audio)
        while len(u.audio) > 1 and u.audio_samples - len(u.audio[0]) >= 8 * MIC_RATE:
            u.audio_samples -= len(u.audio.pop(0))

    def _continue(self, t: float, samples: np.ndarray, vad_prob: float,
                  vad_windows=None) -> list:
        cfg = self.cfg
        u = self._utt
        t_end = t + cfg.frame_s
        events = []
        voiced = vad_prob >= cfg.vad_threshold
        sure = [w for w in (vad_windows or ()) if w[0] >= cfg.vad_threshold]
        ends = [e for p, e, loud in sure if loud]
        if voiced and sure and not ends:
            voiced = False     # only the noise's level left: the VAD's slow decay
        if voiced:
            if u.run_start is None:
                u.run_start = t
            u.voiced_ms += cfg.frame_s * 1000.0
            u.last_voiced_end = t_end
            if ends:           # the end of the last voiced window, not of the frame
                u.last_voiced_end = t + min(max(ends), len(samples)) / MIC_RATE
            u.unvoiced_ms = (t_end - u.last_voiced_end) * 1000.0
            if not u.speech_confirmed and u.voiced_ms >= cfg.min_speech_ms - 1e-6:
                u.speech_confirmed = True
                events.append(TraceMark(STAGE['STAGE_SPEECH_START'], u.cid, u.uid,
                                        u.run_start, 'wake_word'))
        else:
            u.run_start = None
            u.unvoiced_ms = (t_end - u.last_voiced_end) * 1000.0 if u.last_voiced_end \
                else u.unvoiced_ms + cfg.frame_s * 1000.0
        if u.pending is not None:
            u.pending.append((t, samples.astype(np.int16)))
            if len(u.pending) > self.WAKE_CUT_AFTER_FRAMES:
                events[:0] = self._finish_cut()
        else:
            self._keep(u, samples)
            events.insert(0, UtteranceEvent(UTT['AUDIO'], u.cid, u.uid, u.trigger, t,
                                            samples.astype(np.int16), audio_start=u.t_start,
                                            audio_end=u.last_voiced_end or 0.0))
        if self.emit_early is not None and events:
            # the audio goes out before the turn model runs: speech-to-text can start
            # decoding the pause while the endpoint is being decided
            self.emit_early(events)
            events = []
        end = self._endpoint(u) if u.speech_confirmed and not voiced else None
        if end is not None and self._wake_rising(u, t):
            end = None
        if end is not None:
            if u.pending is not None:
                events += self._finish_cut()
            events += self._end(t_end, UTT['ENDED'], UTT['END_SILENCE'],
                                u.last_voiced_end or t_end, end)
        elif t_end - u.t_trigger >= cfg.max_utterance_s - 1e-6:
            if u.pending is not None:
                events += self._finish_cut()
            events += self._end(t_end, UTT['ENDED'], UTT['END_MAX_LENGTH'],
                                u.last_voiced_end if not voiced and u.last_voiced_end else t_end)
        elif not u.speech_confirmed and t_end - u.t_trigger >= cfg.wake_timeout_s - 1e-6:
            if u.pending is not None:
                events += self._finish_cut()
            events += self._end(t_end, UTT['ENDED'], UTT['END_SILENCE'],
                                u.last_voiced_end or u.t_trigger)
        return events

    def _endpoint(self, u: _Utterance) -> str | None:
        """After an unvoiced frame of a confirmed utterance: 'turn' or 'silence' when
        the trailing silence ends it, else None. Asks the turn model one frame before
        the short silence is reached (its answer is kept for this end of speech)."""
        cfg = self.cfg
        frame_ms = cfg.frame_s * 1000.0
        silence = u.unvoiced_ms + 1e-6
        if self.turn_model is None:
            return 'silence' if silence >= cfg.silence_ms else None
        short = cfg.turn_silence_ms
        if silence >= short - frame_ms and (u.turn_key != u.last_voiced_end or
                                            silence >= u.turn_asked_ms + short):
            # first ask one frame before the short silence is reached; again after every
            # further turn_silence_ms of silence (more trailing silence, surer answer)
            u.turn_key, u.turn_asked_ms = u.last_voiced_end, silence
            try:
                u.turn_prob = float(self.turn_model(np.concatenate(u.audio)))
            except Exception:  # noqa: BLE001 - a failing model must not stop listening
                u.turn_prob = None
                self.stats['turn_errors'] += 1
            self.last_turn_prob = u.turn_prob
            self.stats['turn_checks'] += 1
        if silence >= short and u.turn_prob is not None and \
                u.turn_prob >= cfg.turn_threshold:
            self.stats['turn_complete'] += 1
            return 'turn'
        if self._words_end(u, silence):
            return 'words'
        if silence >= cfg.incomplete_silence_ms:
            self.stats['turn_incomplete'] += 1
            return 'silence'
        return None

    def _words_end(self, u: _Utterance, silence: float) -> bool:
        """Whether a transcript that reads complete covers all the speech and
        ``words_silence_ms`` of silence have passed (counted in the stats)."""
        cfg = self.cfg
        done = cfg.words_silence_ms > 0 and silence >= cfg.words_silence_ms and \
            u.words_key is not None and u.words_key == u.last_voiced_end
        if done:
            self.stats['turn_words'] += 1
        return done

    def _end(self, t: float, state: int, reason: int, audio_end: float,
             detail: str = '') -> list:
        u = self._utt
        self._utt = None
        if u.pending is not None:
            # cancelled before STARTED went out: nothing was published for it
            self.stats['cancelled_unstarted'] += 1
            return []
        self.stats['ended' if state == UTT['ENDED'] else 'cancelled'] += 1
        self.last_end_detail = detail
        events = [UtteranceEvent(state, u.cid, u.uid, u.trigger, t, audio_start=u.t_start,
                                 audio_end=audio_end, end_reason=reason)]
        if state == UTT['ENDED']:
            detail = detail or {UTT['END_SILENCE']: 'silence',
                                UTT['END_MAX_LENGTH']: 'max_length'}.get(reason, '')
            events.append(TraceMark(STAGE['STAGE_SPEECH_END'], u.cid, u.uid, audio_end, detail))
        return events


# Last words after which a sentence is not finished ("play the, um," / "set a timer
# for"): fillers, articles, determiners, prepositions, conjunctions, auxiliaries.
UNFINISHED_LAST_WORDS = frozenset('''
    um umm uh uhh er erm ah hmm mm a an the my your his her our their its some any every
    each no this these those to of for in on at with from about into onto by as and or
    but so because if than then when while where which who whose whether is are was were
    be been am do does did can could would will should shall may might must have has had
    not very just let
'''.split())


def reads_complete(text: str) -> bool:
    """Whether a transcript reads as a finished sentence: it ends in '.', '?' or '!'
    (not '...'), and its last word is not one after which speech goes on
    (:data:`UNFINISHED_LAST_WORDS`). Whisper leaves an unfinished clause unpunctuated
    or trails it off ("set a timer for", "turn the light to... uh...")."""
    t = text.strip().rstrip('"\')\u00bb ')
    if not t or t[-1] not in '.?!' or t.endswith('..') or t.endswith('\u2026'):
        return False
    words = re.findall(r"[a-z']+", t.lower())
    return bool(words) and words[-1] not in UNFINISHED_LAST_WORDS


def pause_end(audio: np.ndarray, window: int = 480, hop: int = 160,
              min_pause: int = 960, range_db: float = 15.0) -> int | None:
    """Where to cut ``audio`` at a pause: the end of its longest quiet run (30 ms mean
    square ``window`` in ``hop`` steps, at most 6 dB above the quietest), at the centre
    of the run's last window so the cut lands right before what follows; only runs after
    loud audio (within 20 dB of the loudest) count. None when no run lasts ``min_pause`` samples or nothing is ``range_db`` quieter than the loudest
    window (no pause to cut at)."""
    x = np.asarray(audio, dtype=np.float64)
    if len(x) <= window:
        return None
    starts = np.arange(0, len(x) - window + 1, hop)
    c = np.concatenate([[0.0], np.cumsum(x ** 2)])
    energy = (c[starts + window] - c[starts]) / window
    floor = energy.min()
    if floor * 10 ** (range_db / 10) > energy.max():
        return None
    quiet = energy <= floor * 4.0 + 1.0
    loud = energy >= energy.max() * 0.01
    best, best_len, run, spoken = None, 0, 0, False
    for i, q in enumerate(quiet):
        run = run + 1 if q and spoken else 0     # only pauses that follow speech
        spoken = spoken or bool(loud[i])
        if run and run >= best_len:
            best, best_len = i, run
    if best is None or (best_len - 1) * hop + window < min_pause:
        return None
    return int(starts[best] + window // 2)

"""The speaker core (plain Python, no rclpy): synthesis ahead of playback, a playlist
rendered block by block by the audio output, lifecycle and amplitude events stamped
with the time they are heard.

- :meth:`Speaker.submit` queues an :class:`Utterance` (a reply sentence or a Speak goal);
  a worker thread synthesises queued utterances in order, streaming their chunks into
  the playlist while earlier ones play (sentence n+1 synthesises while n plays). When
  the primary backend fails, that sentence is re-synthesised by the fallback backend
  (audio already heard stays heard; the rest of the provider audio is dropped).
- :meth:`Speaker.render` is called by the output (sounddevice callback or the mock
  pacer) with the time the block will be *heard*; it never blocks on I/O.
- :meth:`Speaker.stop` fades the playing utterance out over ``fade_s`` (barge-in) or
  drops a queued one.
- :meth:`Speaker.pause` fades it out the same way but keeps its place: the faded samples
  go back in front of the rest, so :meth:`Speaker.resume` goes on from exactly where the
  fade began (with a short fade-in); nothing after it plays while it is paused. Events
  ``paused`` (when the fade ends) and ``resumed``.
- :attr:`Speaker.on_audio` (optional, no arguments) is called when audio becomes playable
  at the head of the playlist (first chunk of the next utterance, or after an underrun,
  or a resume): an output that paces itself (the mock) starts it at once instead of
  polling. :meth:`Speaker.wait_due` sleeps until the next event is due or a new one comes.
- :meth:`Speaker.pop_due` returns the events whose time has come: ``started``,
  ``ended``, ``interrupted``, ``failed``, ``dropped``, ``written`` (first samples handed to
  the device) and ``amplitude`` (RMS of the samples heard at that time, >= the meter
  rate while speaking, one 0.0 when speech stops).
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from droid_common.activity import REALTIME
from droid_common.secrets import redact

from droid_voice.amplitude import AmplitudeMeter, DueQueue
from droid_voice.envelope import FadeOut
from droid_voice.synth import RATE, Backend, VoiceSpec, estimate_duration, trim_lead

DEFAULT_VOICE = VoiceSpec()

QUEUED, PLAYING, STOPPING, FINISHED = 'queued', 'playing', 'stopping', 'finished'
PAUSING, PAUSED = 'pausing', 'paused'         # a barge-in not yet confirmed: fade, hold
AUDIBLE = (PLAYING, STOPPING, PAUSING)
COMPLETED, INTERRUPTED, FAILED = 'completed', 'interrupted', 'failed'
_ids = itertools.count(1)


class Utterance:
    """One thing to say: a reply sentence or a Speak goal."""

    def __init__(self, text: str, *, conversation_id: str = '', utterance_id: int = 0,
                 index: int = 0, goal: bool = False, voice: VoiceSpec = DEFAULT_VOICE,
                 input_stamp: float = 0.0, received: float = 0.0,
                 last_in_reply: bool = False, words_per_minute: float = 160.0):
        self.id = next(_ids)
        self.text = text                  # as written (logs, records)
        self.spoken = text                # as synthesised (see Speaker.normalize)
        self.conversation_id = conversation_id
        self.utterance_id = int(utterance_id)
        self.index = int(index)
        self.goal = goal
        self.voice = voice
        self.input_stamp = float(input_stamp)
        self.received = float(received)
        self.last_in_reply = bool(last_in_reply)
        self._wpm = words_per_minute
        self.chunks: deque = deque()
        self.synth_done = False
        self.synthesized = 0          # samples synthesised so far
        self.played = 0               # samples rendered to the output
        self.backend = ''
        self.error = ''
        self.state = QUEUED
        self.status = ''              # COMPLETED / INTERRUPTED / FAILED once finished
        self.stop_reason = ''
        self.fade: FadeOut | None = None
        self.kept: list = []              # samples taken while pausing (played again)
        self.faded = 0                    # of which were played, faded out
        self.pauses = 0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.written_at: float | None = None
        self.cancel = threading.Event()   # tells the synthesis to stop
        self.done = threading.Event()     # set when the end event is released

    @property
    def key(self) -> tuple:
        return (self.conversation_id, self.utterance_id)

    @property
    def played_s(self) -> float:
        return self.played / RATE

    @property
    def duration_estimate(self) -> float:
        if self.synth_done and not self.error:
            return self.synthesized / RATE
        return max(self.synthesized / RATE, estimate_duration(self.text, self._wpm))

    def __repr__(self) -> str:
        return (f'Utterance({self.text[:30]!r}, cid={self.conversation_id!r}, '
                f'utt={self.utterance_id}, index={self.index}, state={self.state})')


@dataclass
class SpeakerEvent:
    kind: str                     # started ended interrupted failed dropped written amplitude
    t: float                      # when it is heard (amplitude, lifecycle) or written
    utt: Utterance | None = None
    amplitude: float = 0.0
    conversation_id: str = ''
    played: float | None = None   # seconds of the utterance played when this happened

    def __post_init__(self):
        # Taken now, not when the event is published: the output thread may have played
        # another block by then (a replay must see the same figure every time).
        if self.played is None and self.utt is not None:
            self.played = self.utt.played_s


FINISH_KINDS = ('ended', 'interrupted', 'failed', 'dropped')


class Speaker:
    """Playlist + synthesis worker + timed events. Thread-safe."""

    def __init__(self, backend: Backend, fallback: Backend | None = None, *,
                 clock=time.monotonic, fade_s: float = 0.03, amplitude_hz: float = 50.0,
                 queue_size: int = 32, default_voice=lambda: VoiceSpec(),
                 on_warning=None, fallback_cooldown: float = 0.0, normalize=None,
                 activity=None, on_audio=None, trim_lead: bool = True):
        self.backend = backend
        self.trim_lead = bool(trim_lead)  # drop the silence a voice puts before a sentence
        self.on_audio = on_audio          # audio playable at the head: wake the output
        self.normalize = normalize or (lambda text: text)   # text -> words to synthesise
        # droid_common.activity: the synthesis thread is idle only while nothing is queued
        self.activity = activity or REALTIME
        self.fallback = fallback
        self.clock = clock
        self.fade_samples = max(1, round(fade_s * RATE))
        self.meter = AmplitudeMeter(RATE, amplitude_hz)
        self.default_voice = default_voice
        self.on_warning = on_warning or (lambda msg, utt: None)
        self.fallback_cooldown = float(fallback_cooldown)
        self._cooldown_until = 0.0
        self._lock = threading.RLock()
        self._playlist: deque = deque()
        self._queue: queue.Queue = queue.Queue(maxsize=int(queue_size))
        self._due = DueQueue()
        self._speaking = False
        self._amp_cid = ''
        self._closed = threading.Event()
        self._worker = self.activity.spawn(self._work, 'tts-synthesis')

    # -- control (any thread) ---------------------------------------------------------
    def submit(self, utt: Utterance) -> bool:
        """Queue an utterance for synthesis and playback; False if the queue is full."""
        with self._lock:
            try:
                self._queue.put_nowait(utt)
            except queue.Full:
                utt.error = 'synthesis queue full'
                self._finish(utt, 'failed', self.clock())
                return False
            self._playlist.append(utt)
        self.activity.notify()
        return True

    def stop(self, utt: Utterance, reason: str = '') -> bool:
        """Stop one utterance: fade out if playing, drop if queued. True if it was heard."""
        with self._lock:
            if utt.state in (FINISHED, STOPPING):
                return utt.state == STOPPING
            utt.cancel.set()
            utt.stop_reason = reason
            if utt.state == PLAYING:
                utt.state = STOPPING
                utt.fade = FadeOut(self.fade_samples)
                return True
            if utt.state == PAUSING:          # the fade already running goes on
                utt.state = STOPPING
                utt.kept.clear()
                return True
            if utt.state == PAUSED:           # silent already: it ends here
                try:
                    self._playlist.remove(utt)
                except ValueError:
                    pass
                utt.chunks.clear()
                self._finish(utt, 'interrupted', self.clock())
                return True
            try:
                self._playlist.remove(utt)
            except ValueError:
                pass
            self._finish(utt, 'dropped', self.clock())
            return False

    def pause(self, utt: Utterance) -> bool:
        """Fade the playing utterance out and hold it (see :meth:`resume`)."""
        with self._lock:
            if utt.state != PLAYING:
                return False
            utt.state = PAUSING
            utt.fade = FadeOut(self.fade_samples)
            utt.kept, utt.faded = [], 0
            utt.pauses += 1
            return True

    def resume(self, utt: Utterance) -> bool:
        """Play a paused utterance on from where its fade began."""
        with self._lock:
            if utt.state == PAUSING:          # resumed before the fade ended
                self._hold(utt, self.clock(), event=False)
            if utt.state != PAUSED:
                return False
            utt.state = PLAYING
            if utt.chunks:                    # fade in, no click
                first = utt.chunks[0].astype(np.float32)
                n = min(first.size, self.fade_samples)
                first[:n] *= np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
                utt.chunks[0] = np.round(first).astype(np.int16)
            t = self.clock()
            self._push_event(t, SpeakerEvent('resumed', t, utt))
        self._audio_ready()
        return True

    def paused(self) -> Utterance | None:
        """The utterance holding the playlist in a pause (pausing or paused), if any."""
        with self._lock:
            if self._playlist and self._playlist[0].state in (PAUSING, PAUSED):
                return self._playlist[0]
        return None

    def _hold(self, utt: Utterance, t: float, event: bool = True) -> None:
        """End of a pause fade: put the samples taken back, hold the utterance."""
        if utt.kept:
            utt.chunks.appendleft(np.concatenate(utt.kept))
        utt.played -= utt.faded
        utt.kept, utt.faded = [], 0
        utt.state = PAUSED
        if event:
            self._push_event(t, SpeakerEvent('paused', t, utt))

    def stop_turn(self, key: tuple, reason: str = '') -> list:
        """Stop every utterance of a turn; returns those that were audible."""
        with self._lock:
            victims = [u for u in self._playlist if u.key == key and not u.goal]
        return [u for u in victims if self.stop(u, reason)]

    def stop_all(self, reason: str = '') -> list:
        with self._lock:
            victims = list(self._playlist)
        return [u for u in victims if self.stop(u, reason)]

    def current(self) -> Utterance | None:
        """The utterance being heard (playing or fading out), if any."""
        with self._lock:
            if self._playlist and self._playlist[0].state in AUDIBLE:
                return self._playlist[0]
        return None

    def speaking(self) -> bool:
        return self.current() is not None

    def pending(self, key: tuple | None = None) -> list:
        with self._lock:
            return [u for u in self._playlist if key is None or u.key == key]

    def set_last(self, key: tuple, last_index: int) -> bool:
        """Mark sentence ``last_index`` of a turn as the reply's last; True if queued/playing."""
        with self._lock:
            found = False
            for u in self._playlist:
                if u.key == key and not u.goal and u.index == last_index:
                    u.last_in_reply = True
                    found = True
            return found

    def pop_due(self, now: float, resolve: bool = True) -> list:
        """Events whose time has come, in time order; finishing ones resolve ``utt.done``
        (with ``resolve=False`` the caller does, with :meth:`resolve`, once it has
        published them: whoever waits on ``done`` then finds the end already said)."""
        events = self._due.pop_due(now)
        if resolve:
            self.resolve(events)
        return events

    def resolve(self, events) -> None:
        for e in events:
            if e.kind in FINISH_KINDS and e.utt is not None:
                e.utt.done.set()
        if events:
            self.activity.notify()

    def next_due(self) -> float | None:
        return self._due.next_due()

    def wait_due(self, now: float, max_wait: float) -> None:
        """Sleep until the next event is due (``now`` read on this speaker's clock just
        before), a new event is pushed, or ``max_wait`` wall seconds pass. Call after
        :meth:`pop_due`: an event pushed in between is not missed."""
        nd = self._due.next_due()
        timeout = max_wait if nd is None else min(max(nd - now, 0.0), max_wait)
        if timeout > 0.0:
            self._due.wait(timeout)

    def wake(self) -> None:
        """Wake a thread sleeping in :meth:`wait_due` (shutdown)."""
        self._due.wake()

    def _push_event(self, t: float, event) -> None:
        """An event due at ``t``; one due before all the others wakes the thread waiting
        for the first (the events publisher waits until then, it does not poll)."""
        if self._due.push(t, event):
            self.activity.notify()

    def _audio_ready(self) -> None:
        cb = self.on_audio
        if cb is not None:
            try:
                cb()
            except Exception:  # noqa: BLE001, S110 - a wake-up hint only
                pass

    def close(self) -> None:
        self._closed.set()
        self.stop_all('shutdown')
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self.activity.notify()
        self._worker.join(timeout=5.0)
        for b in (self.backend, self.fallback):
            if b is not None:
                b.close()

    # -- the audio path (output thread) -----------------------------------------------
    def render(self, frames: int, heard_t: float, written_t: float | None = None) -> np.ndarray:
        """The next ``frames`` samples (float32 mono, [-1, 1]), heard from ``heard_t``."""
        written_t = heard_t if written_t is None else written_t
        out = np.zeros(frames, dtype=np.float32)
        pos = 0
        had_speech = False
        speech_end = heard_t
        with self._lock:
            while pos < frames:
                if not self._playlist:
                    break
                utt = self._playlist[0]
                t_here = heard_t + pos / RATE
                if utt.state == PAUSED:
                    break                                    # held: silence
                if utt.state == QUEUED:
                    if not utt.chunks:
                        if utt.synth_done:
                            self._playlist.popleft()
                            self._finish(utt, 'failed' if utt.error else 'ended', t_here)
                            continue
                        break                                # waiting for synthesis
                    utt.state = PLAYING
                    utt.started_at = t_here
                    utt.written_at = written_t
                    self._push_event(t_here, SpeakerEvent('started', t_here, utt))
                    self._push_event(written_t, SpeakerEvent('written', written_t, utt))
                block = self._take(utt, frames - pos)
                if utt.state == PAUSING:
                    if block.size:
                        utt.kept.append(np.round(block * 32768.0).astype(np.int16))
                    if block.size == 0 or utt.fade.finished:
                        self._hold(utt, t_here)
                        speech_end = t_here
                        continue
                if block.size == 0:
                    if utt.synth_done or utt.state == STOPPING:
                        self._playlist.popleft()
                        self._finish(utt, 'interrupted' if utt.state == STOPPING else 'ended',
                                     t_here)
                        speech_end = t_here
                        continue
                    break                                    # underrun: silence
                if utt.state in (STOPPING, PAUSING):
                    block = utt.fade.apply(block)
                n = block.size
                if utt.state == PAUSING:
                    utt.faded += n
                out[pos:pos + n] = block
                pos += n
                utt.played += n
                had_speech = True
                self._amp_cid = utt.conversation_id
                speech_end = heard_t + pos / RATE
                if utt.state == STOPPING and utt.fade.finished:
                    utt.chunks.clear()
                    self._playlist.popleft()
                    self._finish(utt, 'interrupted', speech_end)
                elif utt.state == PAUSING and utt.fade.finished:
                    self._hold(utt, speech_end)
            speaking_now = bool(self._playlist) and self._playlist[0].state in AUDIBLE
            if had_speech or speaking_now:
                self._speaking = True
                for t, a in self.meter.feed(out if speaking_now else out[:pos], heard_t):
                    self._push_event(t, SpeakerEvent('amplitude', t, amplitude=a,
                                                   conversation_id=self._amp_cid))
            if self._speaking and not speaking_now:
                for t, a in self.meter.flush():
                    self._push_event(t, SpeakerEvent('amplitude', t, amplitude=a,
                                                   conversation_id=self._amp_cid))
                self._push_event(speech_end, SpeakerEvent('amplitude', speech_end, amplitude=0.0,
                                                        conversation_id=self._amp_cid))
                self._speaking = False
        return out

    def _take(self, utt: Utterance, n: int) -> np.ndarray:
        parts, got = [], 0
        while got < n and utt.chunks:
            c = utt.chunks[0]
            if c.size <= n - got:
                utt.chunks.popleft()
                parts.append(c)
                got += c.size
            else:
                parts.append(c[:n - got])
                utt.chunks[0] = c[n - got:]
                got = n
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32) / 32768.0

    def _finish(self, utt: Utterance, kind: str, t: float) -> None:
        utt.state = FINISHED
        utt.ended_at = t
        utt.cancel.set()
        if kind == 'ended':
            utt.status = FAILED if (utt.error and utt.played == 0) else COMPLETED
        elif kind in ('interrupted', 'dropped'):
            utt.status = INTERRUPTED
        else:
            utt.status = FAILED
        self._push_event(t, SpeakerEvent(kind, t, utt))

    # -- synthesis worker ---------------------------------------------------------------
    def _work(self) -> None:
        self._prepare()
        while not self._closed.is_set():
            self.activity.wait(lambda: self._closed.is_set() or not self._queue.empty(),
                               poll=0.05, what='sentences')
            try:
                utt = self._queue.get_nowait()
            except queue.Empty:
                continue
            if utt is None:
                return
            if not utt.cancel.is_set():
                self._synthesize(utt)
            with self._lock:
                utt.synth_done = True
            if self._queue.empty() and not self._closed.is_set():
                self._prepare()

    def _prepare(self) -> None:
        try:
            self.backend.prepare(self.default_voice())
        except Exception:  # noqa: BLE001, S110 - prepare is an optimisation only
            pass

    def _push(self, utt: Utterance, chunk: np.ndarray, backend: str) -> None:
        with self._lock:
            if utt.state == FINISHED or utt.cancel.is_set():
                return
            starved = not utt.chunks and bool(self._playlist) and self._playlist[0] is utt
            utt.chunks.append(np.asarray(chunk, dtype=np.int16))
            utt.synthesized += int(chunk.size)
            utt.backend = backend
        if starved:
            self._audio_ready()

    def _stream(self, backend: Backend, utt: Utterance):
        chunks = backend.stream(utt.spoken, utt.voice, utt.cancel)
        return trim_lead(chunks) if self.trim_lead else chunks

    def _synthesize(self, utt: Utterance) -> None:
        try:
            utt.spoken = self.normalize(utt.text) or utt.text
        except Exception:  # noqa: BLE001 - never lose a sentence to normalisation
            utt.spoken = utt.text
        backend = self.backend
        if self.fallback is not None and time.monotonic() < self._cooldown_until:
            backend = self.fallback
        utt.backend = backend.name
        try:
            for chunk in self._stream(backend, utt):
                if utt.cancel.is_set():
                    return
                self._push(utt, chunk, backend.name)
            return
        except Exception as exc:  # noqa: BLE001 - any backend failure
            error = redact(exc)
        if backend is self.fallback or self.fallback is None or utt.cancel.is_set():
            utt.error = error
            return
        self._cooldown_until = time.monotonic() + self.fallback_cooldown
        self.on_warning(f'{backend.name} failed ({error}); this sentence falls back to '
                        f'{self.fallback.name}', utt)
        with self._lock:
            utt.chunks.clear()                 # unplayed provider audio is dropped
            utt.synthesized = utt.played
        utt.backend = self.fallback.name
        try:
            for chunk in self._stream(self.fallback, utt):
                if utt.cancel.is_set():
                    return
                self._push(utt, chunk, self.fallback.name)
        except Exception as exc:  # noqa: BLE001
            utt.error = redact(exc)

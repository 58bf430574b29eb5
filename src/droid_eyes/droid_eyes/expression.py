"""What the eyes should show, from the droid's events (plain Python, no rclpy).

:class:`Expression` turns sentiment, the speech lifecycle, transcriptions (the user's
turn), wake words, the system mode, the persona and explicit eye commands into one
:class:`EyeLook` (pattern, colour, brightness, speed, source). Time is passed in (seconds
on the node clock) so everything is testable with a fake clock.

Priority, highest first:

1. an explicit ``EyeCommand`` for its duration (0 = until the next command; entering
   SLEEP cancels it);
2. SLEEP mode: the ``mode.sleep`` look (off by default);
3. the droid speaking (a sentence STARTED and not yet ENDED/INTERRUPTED, plus
   ``speaking.gap_hold`` s between sentences): ``speaking`` look in the reply's mood colour;
4. listening (wake word, or partial transcriptions of a follow-up), for at most
   ``listening.timeout`` s;
5. thinking (final transcription until the reply is heard), at most ``thinking.timeout`` s;
6. the mood of the current reply (``Sentiment``): before speech starts (at most
   ``sentiment.timeout`` s) and for ``sentiment.hold`` s after the reply was spoken;
7. the ambient look of the system mode.

Stale events (the seed's rule): the current conversation id is kept; events of older
conversations (seen before, or stamped before the current one started) are ignored; an
event of a new conversation stamped after the current one started makes it current.
Within a conversation an event older (by stamp) than the newest already processed of
its kind is ignored, and so are turn messages of an older utterance than the newest
seen (except the ENDED/INTERRUPTED of the sentence being spoken, which always ends it).

Hostile input: a stamp that is zero, negative or not finite counts as "now"; one further
in the future than :data:`FUTURE_TOLERANCE_S` counts as that much ahead (a bogus stamp must
not make every later event look stale); a clock reading that is not finite is replaced by
the last good one, and a clock that jumps back (``/clock`` restarted) makes the stamps
seen so far stop ordering anything; numbers are clamped to their ranges (speed to the protocol's
:data:`MAX_SPEED_HZ`), unknown patterns, modes, labels and events are ignored.

Colours come from persona themes (``themes.<name>.<key>``, keys :data:`THEME_KEYS`),
selected by ``Persona.eye_theme``; an unknown or empty theme uses ``default_theme``
with the persona's ``eye_color`` as the ambient and speaking colour.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from droid_common.contract import constants, constants_with_prefix

PATTERNS = constants_with_prefix('EyeCommand', 'PATTERN_')      # {'off': 0, ...}
PATTERN_NAMES = {v: k for k, v in PATTERNS.items()}
SOURCES = constants_with_prefix('EyeState', 'SOURCE_')          # {'ambient': 0, ...}
SOURCE_NAMES = {v: k for k, v in SOURCES.items()}
MODES = {k.lower(): v for k, v in constants('SystemMode').items()}  # {'sleep': 0, ...}
MODE_NAMES = {v: k for k, v in MODES.items()}
LABELS = {k.lower(): v for k, v in constants('Sentiment').items()}  # {'positive': 1, ...}
LABEL_NAMES = {v: k for k, v in LABELS.items()}
SPEECH = constants('SpeechEvent')                                # STARTED, ENDED, INTERRUPTED

FUTURE_TOLERANCE_S = 1.0      # stamps further ahead of the node clock count as this far
MAX_SPEED_HZ = 655.35         # the serial protocol's largest speed

THEME_KEYS = ('ambient', 'listening', 'thinking', 'speaking', 'positive', 'neutral', 'negative')
LOOK_KEYS = ('sentiment.positive', 'sentiment.neutral', 'sentiment.negative',
             'mode.sleep', 'mode.idle', 'mode.ambient', 'mode.interactive',
             'listening', 'thinking', 'speaking')

BUILTIN_THEMES = {
    # A cool blue droid.
    'default': {'ambient': [0.0, 0.35, 1.0], 'listening': [0.0, 0.8, 1.0],
                'thinking': [0.6, 0.3, 1.0], 'speaking': [0.0, 0.6, 1.0],
                'positive': [0.1, 1.0, 0.3], 'neutral': [0.0, 0.6, 1.0],
                'negative': [1.0, 0.15, 0.05]},
    # DJ R3X: cantina amber and magenta.
    'rex': {'ambient': [1.0, 0.45, 0.0], 'listening': [0.0, 0.9, 1.0],
            'thinking': [1.0, 0.0, 0.8], 'speaking': [1.0, 0.6, 0.0],
            'positive': [1.0, 0.85, 0.0], 'neutral': [1.0, 0.5, 0.1],
            'negative': [1.0, 0.0, 0.1]},
}

# Every expression parameter with its default, flat, as the node declares them.
DEFAULTS = {
    'default_theme': 'default',
    'theme_names': ['default', 'rex'],
    'initial_mode': 'idle',
    'history': 32,
    'sentiment.positive.pattern': 'happy',
    'sentiment.positive.brightness': 1.0,
    'sentiment.positive.speed': 0.0,
    'sentiment.neutral.pattern': 'solid',
    'sentiment.neutral.brightness': 0.8,
    'sentiment.neutral.speed': 0.0,
    'sentiment.negative.pattern': 'sad',
    'sentiment.negative.brightness': 0.7,
    'sentiment.negative.speed': 0.0,
    'sentiment.hold': 3.0,
    'sentiment.timeout': 20.0,
    'mode.sleep.pattern': 'off',
    'mode.sleep.brightness': 0.0,
    'mode.sleep.speed': 0.0,
    'mode.idle.pattern': 'solid',
    'mode.idle.brightness': 0.15,
    'mode.idle.speed': 0.0,
    'mode.ambient.pattern': 'pulse',
    'mode.ambient.brightness': 0.4,
    'mode.ambient.speed': 0.25,
    'mode.interactive.pattern': 'solid',
    'mode.interactive.brightness': 0.6,
    'mode.interactive.speed': 0.0,
    'listening.pattern': 'listening',
    'listening.brightness': 1.0,
    'listening.speed': 0.0,
    'listening.timeout': 8.0,
    'thinking.pattern': 'thinking',
    'thinking.brightness': 0.8,
    'thinking.speed': 1.5,
    'thinking.timeout': 20.0,
    'speaking.pattern': 'speaking',
    'speaking.brightness': 1.0,
    'speaking.speed': 0.0,
    'speaking.gap_hold': 0.6,
}

DESCRIPTIONS = {
    'default_theme': 'colour theme used when the persona names none or an unknown one',
    'theme_names': 'names of the colour themes defined under themes.<name>.<key>',
    'initial_mode': 'mode assumed until a SystemMode arrives (sleep|idle|ambient|interactive)',
    'history': 'how many past conversation ids are remembered (their late events are ignored)',
    'sentiment.hold': 'seconds the reply mood stays after the reply was spoken',
    'sentiment.timeout': 'seconds the mood is shown before speech starts, at most',
    'listening.timeout': 'seconds the listening look lasts without further events',
    'thinking.timeout': 'seconds the thinking look lasts without a reply being heard',
    'speaking.gap_hold': 'seconds the speaking look is held between two sentences',
}


def parse_pattern(value) -> int:
    """A pattern name ('happy', 'PATTERN_HAPPY') or number -> EyeCommand.PATTERN_* value."""
    if isinstance(value, bool):
        raise ValueError(f'bad pattern {value!r}')
    if isinstance(value, int):
        if value in PATTERN_NAMES:
            return value
        raise ValueError(f'unknown pattern number {value}')
    name = str(value).strip().lower()
    name = name.removeprefix('pattern_')
    if name.isdigit():
        return parse_pattern(int(name))
    if name not in PATTERNS:
        raise ValueError(f'unknown pattern {value!r}; expected one of {sorted(PATTERNS)}')
    return PATTERNS[name]


def _rgb(value, what: str) -> tuple:
    vals = [float(v) for v in value]
    if len(vals) < 3:
        raise ValueError(f'{what}: colour needs [r, g, b], got {value!r}')
    return tuple(_unit(v) for v in vals[:3])


def _unit(x) -> float:
    """A number clamped to [0, 1]; NaN (or not a number) is 0."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if x != x else min(1.0, max(0.0, x))


def _speed(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if x != x else min(MAX_SPEED_HZ, max(0.0, x))


@dataclass(frozen=True)
class Look:
    pattern: int
    brightness: float
    speed: float


@dataclass
class ExpressionConfig:
    looks: dict
    themes: dict
    default_theme: str = 'default'
    initial_mode: int = 1
    history: int = 32
    sentiment_hold: float = 3.0
    sentiment_timeout: float = 20.0
    listening_timeout: float = 8.0
    thinking_timeout: float = 20.0
    gap_hold: float = 0.6

    @classmethod
    def from_flat(cls, flat: dict | None = None) -> ExpressionConfig:
        """Build from dotted keys (``sentiment.positive.pattern``, ``themes.rex.ambient``);
        missing keys take :data:`DEFAULTS` / :data:`BUILTIN_THEMES`. ValueError if invalid."""
        p = dict(DEFAULTS)
        p.update(flat or {})
        looks = {}
        for key in LOOK_KEYS:
            looks[key] = Look(parse_pattern(p[f'{key}.pattern']),
                              min(1.0, max(0.0, float(p[f'{key}.brightness']))),
                              max(0.0, float(p[f'{key}.speed'])))
        names = list(p['theme_names']) or ['default']
        default = str(p['default_theme'])
        if default not in names:
            names.append(default)
        base = BUILTIN_THEMES['default']
        themes = {}
        for name in names:
            builtin = BUILTIN_THEMES.get(name, BUILTIN_THEMES.get(default, base))
            themes[name] = {k: _rgb(p.get(f'themes.{name}.{k}', builtin.get(k, base[k])),
                                    f'themes.{name}.{k}') for k in THEME_KEYS}
        mode = p['initial_mode']
        mode = MODES[str(mode).lower()] if not isinstance(mode, int) else int(mode)
        return cls(looks=looks, themes=themes, default_theme=default, initial_mode=mode,
                   history=max(1, int(p['history'])),
                   sentiment_hold=max(0.0, float(p['sentiment.hold'])),
                   sentiment_timeout=max(0.0, float(p['sentiment.timeout'])),
                   listening_timeout=max(0.0, float(p['listening.timeout'])),
                   thinking_timeout=max(0.0, float(p['thinking.timeout'])),
                   gap_hold=max(0.0, float(p['speaking.gap_hold'])))


@dataclass(frozen=True)
class EyeLook:
    """The output: what the eyes show (mirrors droid_msgs/EyeState)."""
    pattern: int
    color: tuple
    brightness: float
    speed: float
    source: int
    conversation_id: str = ''

    def describe(self) -> str:
        return f'{SOURCE_NAMES.get(self.source, self.source)}:' \
               f'{PATTERN_NAMES.get(self.pattern, self.pattern)}'


@dataclass(frozen=True)
class Change:
    """A visible change. ``trace`` is (conversation_id, utterance_id, input_stamp) when
    this is the first change of that turn caused by its reply (Sentiment, SpeechEvent or
    ReplySentence; -> TraceEvent STAGE_EYES_REACTED). The user's side (wake word,
    transcriptions) changes the eyes too, but is not what the latency report measures."""
    look: EyeLook
    trace: tuple | None = None


@dataclass
class _Command:
    look: EyeLook
    until: float | None


@dataclass
class _Phase:
    name: str          # 'listening' | 'thinking' | 'mood'
    until: float
    stamp: float


@dataclass
class _Turn:
    cid: str = ''
    start: float = float('-inf')
    utterance: int = 0
    mood: int | None = None
    mood_score: float = 0.0
    speaking: tuple | None = None     # (cid, utterance, sentence index) being spoken
    speak_mood: int | None = None     # mood of the reply being spoken
    gap_until: float | None = None
    phase: _Phase | None = None
    stamps: dict = field(default_factory=dict)


class Expression:
    """The eyes' expression state machine. Every ``on_*`` returns a :class:`Change` when
    the look changed, else None; :attr:`last_ignored` says why an event was dropped."""

    def __init__(self, config: ExpressionConfig | None = None, now: float = 0.0):
        self.config = config or ExpressionConfig.from_flat()
        self.mode = self.config.initial_mode
        self._mode_stamp = float('-inf')
        self._persona_stamp = float('-inf')
        self.theme_name = self.config.default_theme
        self.persona_color: tuple | None = None
        self._turn = _Turn()
        self._old: collections.OrderedDict = collections.OrderedDict()
        self._traced: collections.OrderedDict = collections.OrderedDict()
        self._stamps: dict = {}
        self._command: _Command | None = None
        self._command_stamp = float('-inf')
        self.last_ignored = ''
        self.ignored = 0
        self._now = now if isinstance(now, (int, float)) and math.isfinite(now) else 0.0
        self.look = self._resolve(self._now)

    # ---- public state -------------------------------------------------------------------
    @property
    def conversation_id(self) -> str:
        return self._turn.cid

    @property
    def speaking(self) -> bool:
        return self._turn.speaking is not None

    def theme(self) -> dict:
        t = self.config.themes.get(self.theme_name)
        if t is not None:
            return t
        t = dict(self.config.themes[self.config.default_theme])
        if self.persona_color is not None:
            t['ambient'] = t['speaking'] = self.persona_color
        return t

    # ---- inputs -------------------------------------------------------------------------
    def on_wake(self, cid: str, stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        if not self._admit('wake', cid, stamp):
            return None
        t = self._turn
        if cid:
            # A wake word opens utterance 1 of its conversation.
            t.utterance = max(t.utterance, 1)
        t.mood = None
        t.phase = _Phase('listening', now + self.config.listening_timeout, stamp)
        return self._update(now, None)

    def on_transcription(self, cid: str, utterance: int, is_final: bool, stamp: float,
                         now: float):
        stamp, now = self._times(stamp, now)
        if not self._admit('transcription', cid, stamp) or not self._admit_turn(cid, utterance):
            return None
        t = self._turn
        if is_final:
            t.phase = _Phase('thinking', now + self.config.thinking_timeout, stamp)
        else:
            t.phase = _Phase('listening', now + self.config.listening_timeout, stamp)
        return self._update(now, None)

    def on_reply(self, cid: str, utterance: int, is_final: bool, interrupted: bool,
                 stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        if not self._admit('reply', cid, stamp) or not self._admit_turn(cid, utterance):
            return None
        t = self._turn
        if is_final and interrupted and t.phase is not None and t.phase.name != 'listening':
            self._end_of_reply(now, stamp)
        return self._update(now, (cid, utterance, stamp))

    def on_sentiment(self, cid: str, utterance: int, label: int, score: float, stamp: float,
                     now: float):
        stamp, now = self._times(stamp, now)
        if label not in LABEL_NAMES:
            return self._ignore(f'sentiment: unknown label {label}')
        if not self._admit('sentiment', cid, stamp) or not self._admit_turn(cid, utterance):
            return None
        t = self._turn
        t.mood, t.mood_score = label, float(score)
        if t.speaking is not None and t.speaking[1] == utterance:
            t.speak_mood = label
        t.phase = _Phase('mood', now + self.config.sentiment_timeout, stamp)
        return self._update(now, (cid, utterance, stamp))

    def on_speech(self, cid: str, utterance: int, sentence: int, event: int,
                  last_in_reply: bool, stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        key = (cid, utterance, sentence)
        if event == SPEECH['STARTED']:
            if not self._admit('speech', cid, stamp) or not self._admit_turn(cid, utterance):
                return None
            t = self._turn          # (admission may have started a new conversation)
            t.speaking = key
            t.speak_mood = t.mood
            t.gap_until = None
            if t.phase is not None and t.phase.name == 'thinking':
                t.phase = None
            return self._update(now, (cid, utterance, stamp))
        t = self._turn
        if event not in (SPEECH['ENDED'], SPEECH['INTERRUPTED']):
            return self._ignore(f'speech: unknown event {event}')
        if t.speaking != key:
            return self._ignore('speech: end of a sentence that is not being spoken')
        last = t.stamps.get(('speech', cid), float('-inf'))
        if stamp < last:
            return self._ignore('speech: superseded')
        t.stamps[('speech', cid)] = stamp
        t.speaking = None
        if event == SPEECH['INTERRUPTED'] or last_in_reply:
            t.gap_until = None
            if t.phase is None or t.phase.name == 'mood':
                self._end_of_reply(now, stamp)
        else:
            t.gap_until = now + self.config.gap_hold
        return self._update(now, (cid, utterance, stamp))

    def on_amplitude(self, cid: str, amplitude: float, stamp: float):
        """Returns the amplitude to show (0..1), or None if the message is stale."""
        stamp, _ = self._times(stamp, self._now)
        if not self._admit('amplitude', cid, stamp, adopt=False):
            return None
        try:
            a = float(amplitude)
        except (TypeError, ValueError):
            return None
        return 0.0 if a != a else min(1.0, max(0.0, a))

    def on_mode(self, mode: int, stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        if mode not in MODE_NAMES:
            return self._ignore(f'mode: unknown mode {mode}')
        if stamp < self._mode_stamp:
            return self._ignore('mode: superseded')
        self._mode_stamp = stamp
        self.mode = mode = int(mode)
        t = self._turn
        if mode == MODES['sleep']:
            self._command = None
            t.phase, t.speaking, t.gap_until, t.mood = None, None, None, None
        elif mode != MODES['interactive'] and t.phase is not None and \
                t.phase.name in ('listening', 'thinking') and t.phase.stamp <= stamp:
            t.phase = None   # the conversation is over
        return self._update(now, None)

    def on_persona(self, eye_theme: str, eye_color, stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        if stamp < self._persona_stamp:
            return self._ignore('persona: superseded')
        self._persona_stamp = stamp
        self.theme_name = eye_theme or self.config.default_theme
        try:
            color = _rgb(eye_color, 'persona eye_color') if eye_color is not None else None
        except (TypeError, ValueError):
            color = None
        self.persona_color = color if color and any(color) else None
        return self._update(now, None)

    def on_command(self, cid: str, pattern: int, color, brightness: float, speed: float,
                   duration: float, stamp: float, now: float):
        stamp, now = self._times(stamp, now)
        if pattern not in PATTERN_NAMES:
            return self._ignore(f'command: unknown pattern {pattern}')
        if cid and (cid in self._old or (cid != self._turn.cid and stamp < self._turn.start)):
            return self._ignore('command: old conversation')
        if stamp < self._command_stamp:
            return self._ignore('command: superseded')
        self._command_stamp = stamp
        try:
            rgb = _rgb(color, 'command colour')
        except (TypeError, ValueError):
            rgb = (0.0, 0.0, 0.0)
        look = EyeLook(int(pattern), rgb, _unit(brightness), _speed(speed), SOURCES['command'], cid)
        try:
            duration = float(duration)
        except (TypeError, ValueError):
            duration = 0.0
        until = now + duration if duration > 0 else None     # NaN, <= 0: until the next
        self._command = _Command(look, until)
        return self._update(now, None)

    def tick(self, now: float):
        """Call periodically: expires timed looks. Returns a Change or None."""
        _, now = self._times(0.0, now)
        return self._update(now, None)

    def _clock_went_back(self, jump: float) -> None:
        """The node clock jumped back by ``-jump`` s (``/clock`` restarted): the stamps seen
        so far are of another timeline, so they no longer order anything; timed looks keep
        the time they had left."""
        self._mode_stamp = self._persona_stamp = self._command_stamp = float('-inf')
        t = self._turn
        t.start = float('-inf')
        t.stamps.clear()
        if t.phase is not None:
            t.phase.stamp = float('-inf')
            t.phase.until += jump
        if t.gap_until is not None:
            t.gap_until += jump
        if self._command is not None and self._command.until is not None:
            self._command.until += jump

    def _times(self, stamp, now) -> tuple:
        """(stamp, now) made safe: see the module docstring."""
        try:
            now = float(now)
        except (TypeError, ValueError):
            now = self._now
        if not math.isfinite(now):
            now = self._now
        if now < self._now - FUTURE_TOLERANCE_S:
            self._clock_went_back(now - self._now)
        self._now = now
        try:
            stamp = float(stamp)
        except (TypeError, ValueError):
            stamp = now
        if not math.isfinite(stamp) or stamp <= 0.0:
            stamp = now
        return min(stamp, now + FUTURE_TOLERANCE_S), now

    # ---- internals ----------------------------------------------------------------------
    def _ignore(self, why: str):
        self.last_ignored = why
        self.ignored += 1

    def _admit(self, kind: str, cid: str, stamp: float, adopt: bool = True) -> bool:
        t = self._turn
        if cid and cid != t.cid:
            if cid in self._old:
                self._ignore(f'{kind}: event of an older conversation {cid}')
                return False
            if t.cid and stamp < t.start:
                self._ignore(f'{kind}: stamped before the current conversation started')
                return False
            if not adopt:
                self._ignore(f'{kind}: not of the current conversation')
                return False
            self._adopt(cid, stamp)
            t = self._turn
        key = (kind, cid)
        if stamp < t.stamps.get(key, float('-inf')):
            self._ignore(f'{kind}: superseded by a newer event')
            return False
        t.stamps[key] = stamp
        return True

    def _admit_turn(self, cid: str, utterance: int) -> bool:
        if not cid:
            return True
        t = self._turn
        if utterance < t.utterance:
            self._ignore(f'utterance {utterance} is older than the current one ({t.utterance})')
            return False
        if utterance > t.utterance:
            t.utterance = utterance
            t.mood = None
        return True

    def _adopt(self, cid: str, stamp: float) -> None:
        old = self._turn.cid
        if old:
            self._old[old] = True
            while len(self._old) > self.config.history:
                self._old.popitem(last=False)
        self._turn = _Turn(cid=cid, start=stamp)

    def _end_of_reply(self, now: float, stamp: float) -> None:
        t = self._turn
        if t.mood is not None and self.config.sentiment_hold > 0:
            t.phase = _Phase('mood', now + self.config.sentiment_hold, stamp)
        else:
            t.phase = None

    def _expire(self, now: float) -> None:
        if self._command is not None and self._command.until is not None and \
                now >= self._command.until:
            self._command = None
        t = self._turn
        if t.phase is not None and now >= t.phase.until:
            t.phase = None
        if t.gap_until is not None and now >= t.gap_until:
            t.gap_until = None

    def _resolve(self, now: float) -> EyeLook:
        self._expire(now)
        if self._command is not None:
            return self._command.look
        cfg, t, theme = self.config, self._turn, self.theme()
        if self.mode == MODES['sleep']:
            lk = cfg.looks['mode.sleep']
            return EyeLook(lk.pattern, theme['ambient'], lk.brightness, lk.speed,
                           SOURCES['ambient'])
        mood = LABEL_NAMES.get(t.mood) if t.mood is not None else None
        if t.speaking is not None or t.gap_until is not None:
            lk = cfg.looks['speaking']
            smood = LABEL_NAMES.get(t.speak_mood) if t.speak_mood is not None else None
            color = theme[smood] if smood else theme['speaking']
            cid = t.speaking[0] if t.speaking is not None else t.cid
            return EyeLook(lk.pattern, color, lk.brightness, lk.speed, SOURCES['speech'], cid)
        if t.phase is not None:
            if t.phase.name == 'listening':
                lk = cfg.looks['listening']
                return EyeLook(lk.pattern, theme['listening'], lk.brightness, lk.speed,
                               SOURCES['listening'], t.cid)
            if t.phase.name == 'thinking':
                # EyeState has no SOURCE_THINKING: thinking is the end of the user's turn.
                lk = cfg.looks['thinking']
                return EyeLook(lk.pattern, theme['thinking'], lk.brightness, lk.speed,
                               SOURCES['listening'], t.cid)
            if t.phase.name == 'mood' and mood:
                lk = cfg.looks[f'sentiment.{mood}']
                return EyeLook(lk.pattern, theme[mood], lk.brightness, lk.speed,
                               SOURCES['sentiment'], t.cid)
        lk = cfg.looks[f'mode.{MODE_NAMES.get(self.mode, "idle")}']
        return EyeLook(lk.pattern, theme['ambient'], lk.brightness, lk.speed, SOURCES['ambient'])

    def _update(self, now: float, cause):
        look = self._resolve(now)
        if look == self.look:
            return None
        self.look = look
        trace = None
        if cause is not None and cause[0] and cause[1] >= 1:
            key = (cause[0], cause[1])
            if key not in self._traced:
                self._traced[key] = True
                while len(self._traced) > 4 * self.config.history:
                    self._traced.popitem(last=False)
                trace = cause
        return Change(look, trace)

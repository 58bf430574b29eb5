"""How the terminal chat shows what the droid does (plain Python, no rclpy)."""

from __future__ import annotations

from droid_common.contract import constants, constants_with_prefix

SENTIMENT_LABEL = {v: k.lower() for k, v in constants('Sentiment').items()}
SPEECH_EVENT = {v: k.lower() for k, v in constants('SpeechEvent').items()
                if k in ('STARTED', 'ENDED', 'INTERRUPTED')}
MODE = {v: k.lower() for k, v in constants('SystemMode').items()}
PATTERN = {v: k for k, v in constants_with_prefix('EyeCommand', 'PATTERN_').items()}
EYE_SOURCE = {v: k for k, v in constants_with_prefix('EyeState', 'SOURCE_').items()}
STAGE = {v: k for k, v in constants_with_prefix('TraceEvent', 'STAGE_').items()}


def short(cid: str) -> str:
    return cid[:6] if cid else '-'


def reply(cid: str, index: int, text: str, is_final: bool, interrupted: bool,
          persona: str) -> str:
    if is_final:
        return f'[{short(cid)}] {persona or "droid"}: (end of reply' + \
            (', interrupted)' if interrupted else ')')
    return f'[{short(cid)}] {persona or "droid"}: {text}'


def sentiment(cid: str, label: int, score: float) -> str:
    return f'[{short(cid)}] mood: {SENTIMENT_LABEL.get(label, label)} ({score:+.2f})'


def speech(cid: str, event: int, text: str, played: float, backend: str) -> str:
    name = SPEECH_EVENT.get(event, str(event))
    if name == 'started':
        return f'[{short(cid)}] speaking ({backend}): {text}'
    return f'[{short(cid)}] speech {name} after {played:.2f} s'


def eyes(cid: str, pattern: int, rgb: tuple, brightness: float, source: int) -> str:
    r, g, b = (int(round(max(0.0, min(1.0, c)) * 255)) for c in rgb)
    return (f'[{short(cid)}] eyes: {PATTERN.get(pattern, pattern)} #{r:02x}{g:02x}{b:02x} '
            f'brightness {brightness:.2f} ({EYE_SOURCE.get(source, source)})')


def trace(cid: str, stage: int, detail: str):
    """Only tool calls are worth a line in the chat; other stages return None."""
    name = STAGE.get(stage)
    if name == 'tool_goal':
        return f'[{short(cid)}] tool call: {detail}'
    if name == 'tool_result':
        return f'[{short(cid)}] tool result: {detail}'
    return None


def mode(m: int, reason: str) -> str:
    return f'mode: {MODE.get(m, m)}' + (f' ({reason})' if reason else '')


HELP = """Type a line and press Enter: it enters the graph as a final transcription.
Commands: /new (next line starts a new conversation; default: every line does),
          /follow (next lines continue the current conversation),
          /mode sleep|idle|ambient|interactive, /help, /quit"""

"""The tool registry: every tool the LLM may call, each defined ONCE as a pydantic model.

The same model gives the JSON schema sent to the LLM (:func:`openai_tools`) and the
validation of the arguments the LLM sends back (:func:`validate`). The brain imports this
module for the schemas; the tool executor node imports it to validate and then acts by
sending the droid's own ROS messages, services and actions. There are no shell, file or
network tools.

Plain Python (no rclpy); constants come from the droid_msgs contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from droid_common.contract import constants, constants_with_prefix
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from droid_brain.colours import parse_colour

EYE_PATTERNS = constants_with_prefix('EyeCommand', 'PATTERN_')   # {'off': 0, 'solid': 1, ...}
MODES = {k.lower(): v for k, v in constants('SystemMode').items()}  # {'sleep': 0, ...}
MAX_ARGUMENTS_CHARS = 4000


class ToolError(Exception):
    """A tool call that cannot run; the message is returned to the LLM."""


class _Args(BaseModel):
    model_config = ConfigDict(extra='forbid', str_strip_whitespace=True)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    model: type
    description: str
    long_running: bool = False
    must_finish: bool = False     # a barge-in lets it complete instead of cancelling it


REGISTRY: dict = {}


def tool(name: str, long_running: bool = False, must_finish: bool = False):
    """Class decorator: register a pydantic argument model as the tool ``name``.

    ``must_finish``: the user interrupting the reply does not cancel this tool (the music
    keeps starting, the eyes still change); tools without it are cancelled with the reply.
    """
    def register(model):
        doc = ' '.join((model.__doc__ or '').split())
        REGISTRY[name] = ToolSpec(name, model, doc, long_running, must_finish)
        return model
    return register


def must_finish(name: str) -> bool:
    spec = REGISTRY.get(name)
    return bool(spec and spec.must_finish)


@tool('play_music', long_running=True, must_finish=True)
class PlayMusic(_Args):
    """Play music from the droid's local music library. Returns the track that started."""

    query: str = Field(min_length=1, max_length=200,
                       description='What to play, matched against track titles, e.g. "cantina".')


@tool('stop_music', must_finish=True)
class StopMusic(_Args):
    """Stop the music that is playing."""


@tool('set_volume', must_finish=True)
class SetVolume(_Args):
    """Set the music volume."""

    level: float = Field(ge=0.0, le=1.0, description='Volume from 0.0 (silent) to 1.0 (full).')


@tool('set_eyes', must_finish=True)
class SetEyes(_Args):
    """Change the droid's eye LEDs: an animation pattern and a colour."""

    pattern: Literal[tuple(EYE_PATTERNS)] = Field(description='Animation pattern.')
    colour: str = Field(max_length=32,
                        description='Colour name (e.g. "red", "ice blue") or hex code "#rrggbb".')
    brightness: float = Field(default=1.0, ge=0.0, le=1.0, description='Brightness 0..1.')
    duration: float = Field(default=0.0, ge=0.0, le=600.0,
                            description='Seconds the command lasts; 0 = until the next one.')

    @field_validator('colour')
    @classmethod
    def _colour(cls, value: str) -> str:
        parse_colour(value)  # raises ValueError with the accepted forms
        return value

    @property
    def rgb(self) -> tuple:
        return parse_colour(self.colour)


@tool('set_mode', must_finish=True)
class SetMode(_Args):
    """Change the droid's system mode (sleep, idle, ambient music, interactive)."""

    mode: Literal[tuple(MODES)] = Field(description='The new mode.')


@tool('set_persona', must_finish=True)
class SetPersona(_Args):
    """Switch the droid's persona (its personality, voice and eye colours)."""

    name: str = Field(min_length=1, max_length=64, description='Persona name, e.g. "tars".')


@tool('get_time')
class GetTime(_Args):
    """Get the current date and time."""


def _strip_titles(schema):
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != 'title'}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def parameters_schema(name: str) -> dict:
    """JSON schema of the tool's arguments (an object schema)."""
    schema = _strip_titles(REGISTRY[name].model.model_json_schema())
    schema.pop('description', None)   # already the function's description
    schema.setdefault('properties', {})
    schema['additionalProperties'] = False
    return schema


def openai_tools(names=None) -> list:
    """The ``tools`` list for chat completions (all tools, or those in ``names``)."""
    out = []
    for name, spec in REGISTRY.items():
        if names is not None and name not in names:
            continue
        out.append({'type': 'function', 'function': {
            'name': name, 'description': spec.description,
            'parameters': parameters_schema(name)}})
    return out


def _format_error(name: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = '.'.join(str(p) for p in err.get('loc', ())) or '(arguments)'
        msg = err.get('msg', 'invalid')
        if err.get('type') == 'value_error':
            msg = msg.removeprefix('Value error, ')
        if err.get('type') == 'extra_forbidden':
            msg = 'unknown argument'
        got = err.get('input')
        if err.get('type') not in ('missing', 'extra_forbidden') and not isinstance(got, dict):
            msg += f' (got {json.dumps(got, default=str)})'
        parts.append(f'{loc}: {msg}')
    return f'invalid arguments for {name}: ' + '; '.join(parts)


def parse_arguments(arguments_json: str) -> dict:
    text = (arguments_json or '').strip()
    if not text:
        return {}
    if len(text) > MAX_ARGUMENTS_CHARS:
        raise ToolError(f'arguments too long ({len(text)} characters)')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(f'arguments are not valid JSON: {exc.msg} at position {exc.pos}') from None
    except (RecursionError, ValueError) as exc:     # nested too deeply, huge numbers, ...
        raise ToolError(f'arguments are not usable JSON ({type(exc).__name__})') from None
    if not isinstance(value, dict):
        raise ToolError(f'arguments must be a JSON object, got {type(value).__name__}')
    return value


def validate(name: str, arguments_json: str):
    """Validate a tool call; return the argument model instance or raise ToolError."""
    spec = REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + '...'
        raise ToolError(f'unknown tool {shown}; available tools: {", ".join(REGISTRY)}')
    args = parse_arguments(arguments_json)
    try:
        return spec.model.model_validate(args)
    except ValidationError as exc:
        raise ToolError(_format_error(name, exc)) from None

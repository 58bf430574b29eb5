"""Personas and the user state file (plain Python).

Layering (lowest to highest): built-in :data:`DEFAULTS` -> the user's ``overrides`` from
the state file -> the active persona's own fields. A persona file only needs ``name`` and
``system_prompt``; whatever it leaves out comes from the user's overrides, then from the
defaults.

Persona file (YAML, one per persona, ``<persona_dir>/<name>.yaml``)::

    name: rex                      # key used by `ros2 param set /brain persona rex`
    display_name: DJ R3X
    system_prompt: ...
    elevenlabs_voice_id: ''        # '' = backend default
    offline_voice: en-us+m3        # espeak-ng voice
    piper_voice: joe-us            # Piper voice: packaged name or path of a .onnx voice
    offline_rate_wpm: 185
    eye_theme: cantina             # a key of the eyes node's themes
    eye_color: '#ff8000'           # name, hex or [r, g, b] in [0, 1]
    fallback_line: ...             # spoken when the LLM cannot be reached
    filler_line: ...               # spoken when a tool keeps the user waiting

User state file (YAML, written by the brain, atomically: temp file + ``os.replace``)::

    active_persona: tars
    overrides:                     # optional, any persona field except name/system_prompt
      offline_rate_wpm: 160

A missing state file is normal on a first run (it is created on the first switch). A
corrupt one (bad YAML, wrong types, unknown keys) is a clear error: the defaults stay
active and the file is left exactly as it is, never overwritten, until it is fixed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from droid_brain.colours import parse_colour

DEFAULTS = {
    'display_name': '',
    'system_prompt': ('You are a friendly hobby droid. Answer in one to three short, '
                      'spoken-style sentences. Use your tools when asked to act.'),
    'elevenlabs_voice_id': '',
    'offline_voice': 'en-us',
    'piper_voice': '',
    'offline_rate_wpm': 175.0,
    'eye_theme': '',
    'eye_color': 'white',
    'fallback_line': "Sorry, my thinking circuits are offline. Please try again in a moment.",
    'filler_line': 'One moment.',
}
OVERRIDABLE = frozenset(DEFAULTS) - {'system_prompt', 'display_name'}
BUILTIN_NAME = 'default'


class PersonaError(Exception):
    """A persona or state file problem, with a message fit for logs and the user."""


def _check_colour(value):
    if value is None:
        return value
    parse_colour(value)
    return value


class Overrides(BaseModel):
    """The user's overrides of a persona (and the optional fields of a persona file)."""

    model_config = ConfigDict(extra='forbid')
    elevenlabs_voice_id: str | None = None
    offline_voice: str | None = None
    piper_voice: str | None = None
    offline_rate_wpm: float | None = Field(default=None, gt=0, le=1000)
    eye_theme: str | None = None
    eye_color: str | list | None = None
    fallback_line: str | None = Field(default=None, min_length=1)
    filler_line: str | None = Field(default=None, min_length=1)

    @field_validator('eye_color')
    @classmethod
    def check_colour(cls, value):
        return _check_colour(value)


class PersonaFile(Overrides):
    """Schema of a persona YAML file (unknown keys are an error: typos are caught)."""

    name: str = Field(pattern=r'^[A-Za-z0-9_\-]{1,64}$')
    display_name: str | None = None
    system_prompt: str = Field(min_length=1)


class StateFile(BaseModel):
    model_config = ConfigDict(extra='forbid')
    active_persona: str | None = None
    overrides: Overrides = Field(default_factory=Overrides)


@dataclass(frozen=True)
class Persona:
    name: str
    display_name: str
    system_prompt: str
    elevenlabs_voice_id: str
    offline_voice: str
    offline_rate_wpm: float
    eye_theme: str
    eye_color: tuple
    fallback_line: str
    filler_line: str = DEFAULTS['filler_line']
    piper_voice: str = ''
    source: str = ''          # the file it came from ('' = built-in)


def _short(exc: ValidationError) -> str:
    return '; '.join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}"
                     for e in exc.errors(include_url=False))


def load_persona_file(path) -> dict:
    """Read and validate one persona file; return its fields (unset ones omitted)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding='utf-8'))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PersonaError(f'persona file {path}: cannot read: {exc}') from None
    if not isinstance(raw, dict):
        raise PersonaError(f'persona file {path}: expected a mapping of fields')
    try:
        model = PersonaFile.model_validate(raw)
    except ValidationError as exc:
        raise PersonaError(f'persona file {path}: {_short(exc)}') from None
    data = model.model_dump(exclude_none=True)
    data['name'] = data['name'].lower()
    data['source'] = str(path)
    return data


def load_persona_dir(directory) -> tuple:
    """All personas of a directory: ``({name: fields}, [error messages])``."""
    personas, errors = {}, []
    directory = Path(directory)
    if not directory.is_dir():
        return personas, [f'persona directory {directory} does not exist']
    for path in sorted(directory.glob('*.yaml')) + sorted(directory.glob('*.yml')):
        try:
            data = load_persona_file(path)
        except PersonaError as exc:
            errors.append(str(exc))
            continue
        if data['name'] in personas:
            errors.append(f'persona file {path}: duplicate persona name {data["name"]!r}')
            continue
        personas[data['name']] = data
    return personas, errors


def resolve(fields: dict | None, overrides: dict | None = None) -> Persona:
    """Layer defaults -> user overrides -> persona fields into a :class:`Persona`."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = fields or {'name': BUILTIN_NAME}
    merged.update({k: v for k, v in fields.items() if v is not None})
    name = merged['name']
    return Persona(
        name=name,
        display_name=merged.get('display_name') or name,
        system_prompt=merged['system_prompt'],
        elevenlabs_voice_id=merged['elevenlabs_voice_id'],
        offline_voice=merged['offline_voice'],
        offline_rate_wpm=float(merged['offline_rate_wpm']),
        eye_theme=merged['eye_theme'],
        eye_color=parse_colour(merged['eye_color']),
        fallback_line=merged['fallback_line'],
        filler_line=merged['filler_line'],
        piper_voice=merged['piper_voice'],
        source=merged.get('source', ''),
    )


def atomic_write(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class UserState:
    """The user state file: the active persona and the user's overrides."""

    path: Path
    active_persona: str | None = None
    overrides: dict = field(default_factory=dict)
    error: str = ''           # non-empty: the file is corrupt/unreadable; never written
    exists: bool = False

    @property
    def writable(self) -> bool:
        return not self.error

    @classmethod
    def load(cls, path) -> UserState:
        path = Path(path).expanduser()
        state = cls(path=path)
        if not path.exists():
            return state
        state.exists = True
        try:
            raw = yaml.safe_load(path.read_text(encoding='utf-8'))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            state.error = (f'user state file {path} is unreadable ({detail}); using the '
                           'defaults; the file is left untouched: fix or delete it')
            return state
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            state.error = (f'user state file {path} is corrupt (expected a mapping, got '
                           f'{type(raw).__name__}); using the defaults; the file is left '
                           'untouched: fix or delete it')
            return state
        try:
            model = StateFile.model_validate(raw)
        except ValidationError as exc:
            state.error = (f'user state file {path} is invalid ({_short(exc)}); using the '
                           'defaults; the file is left untouched: fix or delete it')
            return state
        state.active_persona = model.active_persona.lower() if model.active_persona else None
        state.overrides = model.overrides.model_dump(exclude_none=True)
        return state

    def save_active(self, name: str) -> None:
        """Persist the active persona (keeps the overrides). Raises PersonaError."""
        if self.error:
            raise PersonaError('not saving the persona: ' + self.error)
        data = {'active_persona': name}
        if self.overrides:
            data['overrides'] = self.overrides
        text = ('# droid user state, written by the brain node (droid_brain).\n'
                + yaml.safe_dump(data, sort_keys=False))
        try:
            atomic_write(self.path, text)
        except OSError as exc:
            raise PersonaError(f'cannot write user state file {self.path}: {exc}') from None
        self.active_persona = name
        self.exists = True


class PersonaStore:
    """Available personas, the active one, and its persistence in the user state."""

    def __init__(self, persona_dir, state_file, default_name: str = 'rex'):
        self.persona_dir = Path(persona_dir)
        self.personas, self.errors = load_persona_dir(self.persona_dir)
        self.state = UserState.load(state_file)
        if self.state.error:
            self.errors.append(self.state.error)
        self.default_name = default_name.lower()
        self.active: Persona = self.get(None)

    @property
    def names(self) -> list:
        return sorted(self.personas)

    def get(self, name: str | None) -> Persona:
        """Resolve a persona by name (case-insensitive); ``None``: the built-in default."""
        overrides = self.state.overrides if not self.state.error else {}
        if name is None:
            return resolve(None, overrides)
        key = name.strip().lower()
        if key not in self.personas:
            raise PersonaError(f'unknown persona {name!r}; available: '
                               f'{", ".join(self.names) or "(none)"}')
        return resolve(self.personas[key], overrides)

    def startup(self, requested: str = '') -> tuple:
        """Pick the persona at startup: ``requested`` (a parameter), else the saved one,
        else ``default_name``, else the first available, else the built-in default.
        Returns ``(persona, [warnings])``."""
        warnings = []
        candidates = []
        if requested:
            candidates.append((requested, 'parameter'))
        if self.state.active_persona:
            candidates.append((self.state.active_persona, 'state file'))
        candidates.append((self.default_name, 'default_persona'))
        candidates += [(n, 'first available') for n in self.names[:1]]
        for name, origin in candidates:
            try:
                self.active = self.get(name)
                return self.active, warnings
            except PersonaError as exc:
                warnings.append(f'{origin}: {exc}')
        self.active = self.get(None)
        warnings.append('no persona files found; using the built-in default persona')
        return self.active, warnings

    def switch(self, name: str, persist: bool = True) -> tuple:
        """Make ``name`` active; returns ``(persona, warning or '')``.

        Raises PersonaError for an unknown name. A persistence problem is not fatal: the
        switch happens and the warning says why it was not saved.
        """
        persona = self.get(name)
        self.active = persona
        warning = ''
        if persist and self.state.active_persona != persona.name:
            try:
                self.state.save_active(persona.name)
            except PersonaError as exc:
                warning = str(exc)
        return persona, warning


def default_persona_dir() -> Path:
    """The installed share/droid_brain/personas, else the source tree's personas/."""
    src = Path(__file__).resolve().parent.parent / 'personas'
    if src.is_dir():
        return src
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('droid_brain')) / 'personas'
    except Exception:  # noqa: BLE001
        return src


def default_state_file(namespace: str = '') -> Path:
    """``$XDG_CONFIG_HOME/droid/brain_state.yaml`` for a droid without a namespace, and
    ``$XDG_CONFIG_HOME/droid/<namespace>/brain_state.yaml`` for one in a namespace, so that
    the brains of a fleet on one mind host each keep their own persona choice."""
    base = os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config')
    parts = [p for p in namespace.split('/') if p]
    return Path(base, 'droid', *parts, 'brain_state.yaml')

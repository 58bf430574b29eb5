"""The droid_msgs contract, read from the interface files themselves.

Plain-Python logic that needs a constant of the contract (a mode, a pattern, a
lifecycle event) takes it from here instead of hand-copying it::

    from droid_common.contract import constants
    MODE = constants('SystemMode')          # {'SLEEP': 0, 'IDLE': 1, ...}

The files are found in the installed share directory (``ament_index``) when ROS is
sourced, else next to this module in the source tree (``src/droid_msgs``), or where the
``DROID_MSGS_DIR`` environment variable points.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

_KINDS = {'msg': '.msg', 'srv': '.srv', 'action': '.action'}
_CONST_RE = re.compile(r'^\s*([A-Za-z0-9_/]+)\s+([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*$')
_FIELD_RE = re.compile(r'^\s*([A-Za-z0-9_/]+(?:\[[<=0-9]*\])?)\s+([a-z][a-z0-9_]*)(?:\s+(.*))?$')
_INT_TYPES = {'byte', 'char', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32', 'int64', 'uint64'}
_FLOAT_TYPES = {'float32', 'float64'}


@dataclass(frozen=True)
class Constant:
    type: str
    name: str
    value: object


@dataclass(frozen=True)
class Field:
    type: str
    name: str


@dataclass(frozen=True)
class Section:
    """One message body: a .msg, or one part (request, goal, ...) of a .srv/.action."""

    constants: tuple
    fields: tuple

    def constant_map(self) -> dict:
        return {c.name: c.value for c in self.constants}


@functools.lru_cache(maxsize=1)
def interface_dir() -> Path:
    """Directory holding msg/, srv/ and action/ of droid_msgs."""
    env = os.environ.get('DROID_MSGS_DIR')
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    if (here / 'msg').is_dir() and (here / 'CMakeLists.txt').is_file():
        return here  # source tree: src/droid_msgs/droid_common/contract.py
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('droid_msgs'))
    except Exception as exc:  # noqa: BLE001 - any failure means "not found"
        raise FileNotFoundError(
            'droid_msgs interface files not found: source ROS 2 and the workspace, '
            'or set DROID_MSGS_DIR') from exc


def interface_names(kind: str = 'msg') -> list:
    """Names (without extension) of every interface of one kind, sorted."""
    ext = _KINDS[kind]
    return sorted(p.stem for p in (interface_dir() / kind).glob('*' + ext))


def _parse_value(type_: str, raw: str):
    base = type_.split('/')[-1]
    if base in _INT_TYPES:
        return int(raw, 0)
    if base in _FLOAT_TYPES:
        return float(raw)
    if base == 'bool':
        return raw.strip().lower() in ('true', '1')
    return raw.strip().strip('"\'')


def parse_section(text: str) -> Section:
    consts, fields = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        m = _CONST_RE.match(line)
        if m:
            type_, name, raw = m.groups()
            if not type_.startswith('string'):
                raw = raw.split('#', 1)[0].strip()
            consts.append(Constant(type_, name, _parse_value(type_, raw)))
            continue
        code = line.split('#', 1)[0]
        m = _FIELD_RE.match(code.strip())
        if not m:
            raise ValueError(f'cannot parse interface line: {line!r}')
        fields.append(Field(m.group(1), m.group(2)))
    return Section(tuple(consts), tuple(fields))


@functools.lru_cache(maxsize=None)
def sections(name: str, kind: str | None = None) -> tuple:
    """Parsed sections of one interface: 1 for a msg, 2 for a srv, 3 for an action."""
    kinds = [kind] if kind else list(_KINDS)
    for k in kinds:
        path = interface_dir() / k / (name + _KINDS[k])
        if path.is_file():
            parts = re.split(r'^---\s*$', path.read_text(), flags=re.MULTILINE)
            return tuple(parse_section(p) for p in parts)
    raise KeyError(f'no droid_msgs interface named {name!r}')


def constants(name: str, part: int = 0) -> dict:
    """Constants of a message (or of one part of a srv/action) as {NAME: value}."""
    return sections(name)[part].constant_map()


def constants_with_prefix(name: str, prefix: str, part: int = 0) -> dict:
    """Constants whose name starts with ``prefix``, keyed without it (lower case)."""
    return {k[len(prefix):].lower(): v for k, v in constants(name, part).items()
            if k.startswith(prefix)}


def field_names(name: str, part: int = 0) -> list:
    return [f.name for f in sections(name)[part].fields]

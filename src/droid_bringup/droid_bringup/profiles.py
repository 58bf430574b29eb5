"""Which nodes make up the droid, per profile, and with which parameters (plain Python).

``droid.launch.py`` is a thin shell over :func:`plan`: it turns the launch arguments into
a list of :class:`NodeSpec` and starts them. Keeping the decision here makes it testable
without ROS.

Parameters are layered: the profile's YAML file (``config/<profile>.yaml``), then the
user's ``params_file`` (only what it overrides), then the per-part launch overrides
(``stt:=``, ``llm:=``, ``tts:=``, ``eyes_port:=``).

``dashboard:=true|false`` adds the web dashboard (:func:`dashboard_specs`; on by default in
the mock profile only); its ``web_bridge`` parameters come from the ``params_file``.
``role`` splits the droid across hosts (README "Many machines"): ``body`` runs the parts
that touch the room (microphone, listener, mode manager, tts, music, eyes) plus the
``mind_monitor`` that watches the link to the mind; ``mind`` runs the heavy parts (stt,
brain, tool executor); ``all`` (the default) runs everything on one host. Every other
argument composes with it: per-part overrides and ``disable`` of parts another host runs
are simply not needed here.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from droid_bringup.web_protocol import is_loopback

PROFILES = ('real', 'mock')
STT_BACKENDS = ('whisper', 'mock')
LLM_BACKENDS = ('openai', 'mock')
TTS_BACKENDS = ('elevenlabs', 'espeak', 'mock')
DASHBOARD_DEFAULT = {'real': False, 'mock': True}
ROLES = ('all', 'body', 'mind')
BODY, MIND = ('all', 'body'), ('all', 'mind')


@dataclass(frozen=True)
class Part:
    """One node of the droid: its package, the executable per profile, its node name."""

    package: str
    real: str
    mock: str
    name: str
    roles: tuple                # the launch roles that start it
    hardware: bool = False      # talks to a device: respawned in the real profile


PARTS = (
    Part('droid_audio', 'microphone', 'mock_microphone', 'microphone', BODY, hardware=True),
    Part('droid_audio', 'listener', 'listener', 'listener', BODY),
    Part('droid_audio', 'stt', 'mock_stt', 'stt', MIND),
    Part('droid_brain', 'mode_manager', 'mode_manager', 'mode_manager', BODY),
    Part('droid_brain', 'brain', 'brain', 'brain', MIND),
    Part('droid_brain', 'tool_executor', 'tool_executor', 'tool_executor', MIND),
    Part('droid_voice', 'tts', 'tts', 'tts', BODY, hardware=True),
    Part('droid_voice', 'music', 'music', 'music', BODY, hardware=True),
    Part('droid_eyes', 'eyes', 'mock_eyes', 'eyes', BODY, hardware=True),
    # Only on a body whose mind is elsewhere: pings the mind, says on /diagnostics and
    # with the eyes when it is unreachable, and answers with the persona's fallback line.
    Part('droid_brain', 'mind_monitor', 'mind_monitor', 'mind_monitor', ('body',)),
)


def check_role(role: str) -> str:
    """``role`` if it is one of :data:`ROLES`, else a clear ProfileError."""
    if role not in ROLES:
        raise ProfileError(f"launch argument role:={role!r} must be one of {', '.join(ROLES)} "
                           "(body: the parts in the droid; mind: stt, brain, tool executor; "
                           "all: both on this host)")
    return role


def parts_of(role: str) -> list:
    """Names of the parts a host with ``role`` starts (before ``disable``)."""
    check_role(role)
    return [p.name for p in PARTS if role in p.roles]


@dataclass
class NodeSpec:
    package: str
    executable: str
    name: str
    parameters: dict = field(default_factory=dict)
    respawn: bool = False


class ProfileError(ValueError):
    """A launch argument or parameter file is wrong; the message says how."""


def load_params(path: str | Path) -> dict:
    """Read a ROS 2 parameter file -> {node_name: {param: value}} (nested keys kept)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ProfileError(f'parameter file not found: {path}') from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f'parameter file {path} is not valid YAML: {exc}') from exc
    if not isinstance(data, dict):
        raise ProfileError(f'parameter file {path}: top level must be a mapping of node names')
    out = {}
    for node, block in data.items():
        name = str(node).rsplit('/', 1)[-1]
        if not isinstance(block, dict) or 'ros__parameters' not in block:
            raise ProfileError(f"parameter file {path}: '{node}' needs a 'ros__parameters' block")
        out[name] = block['ros__parameters'] or {}
    return out


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check(name: str, value: str, choices) -> None:
    if value and value not in choices:
        raise ProfileError(f"launch argument {name}:={value!r} must be one of {', '.join(choices)}")


def dashboard_on(profile: str, dashboard: str) -> bool:
    """``dashboard:=`` -> whether to start the web dashboard ('' = the profile's default)."""
    value = dashboard.strip().lower()
    if not value:
        return DASHBOARD_DEFAULT.get(profile, False)
    if value in ('true', '1', 'yes', 'on'):
        return True
    if value in ('false', '0', 'no', 'off'):
        return False
    raise ProfileError(f'launch argument dashboard:={dashboard!r} must be true or false')


def dashboard_specs(web_params: dict, rosbridge_installed: bool = False) -> list:
    """The dashboard's nodes. Our ``web_bridge`` serves the page and speaks rosbridge on
    ``port``. Where ``rosbridge_suite`` is installed and the dashboard stays on this machine,
    its ``rosbridge_websocket`` takes ``port`` and ``web_bridge`` serves the page one port
    up (rosbridge_suite has no access token: off this machine, ours is used)."""
    web = dict(web_params)
    host = str(web.get('host', '127.0.0.1'))
    port = int(web.get('port', 9090))
    if rosbridge_installed and is_loopback(host) and port and not web.get('rosbridge_port'):
        return [NodeSpec('rosbridge_server', 'rosbridge_websocket', 'rosbridge_websocket',
                         {'address': host, 'port': port}),
                NodeSpec('droid_bringup', 'web_bridge', 'web_bridge',
                         dict(web, port=port + 1, rosbridge_port=port))]
    return [NodeSpec('droid_bringup', 'web_bridge', 'web_bridge', web)]
# A ROS namespace: tokens of letters, digits and underscores, not starting with a digit,
# separated by single slashes; no '__' (reserved), optional leading '/'.
_NS_TOKEN = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')


def check_namespace(namespace: str) -> str:
    """Validate a launch ``namespace`` (``''``, ``r3x``, ``/fleet/r3x``); returns it
    stripped, or raises a clear ProfileError."""
    ns = namespace.strip()
    if not ns or ns == '/':
        return ''
    tokens = ns[1:].split('/') if ns.startswith('/') else ns.split('/')
    bad = [t for t in tokens if not _NS_TOKEN.fullmatch(t) or '__' in t]
    if bad:
        raise ProfileError(
            f'launch argument namespace:={namespace!r} is not a valid ROS namespace: each '
            'part between slashes must be letters, digits or underscores, must not start '
            "with a digit and must not contain '__' (e.g. r3x or fleet/r3x)")
    return ns


# What the droid asks of the BLAS library numpy links (OpenBLAS) is small matrix products:
# mel filterbanks, resampling. Its worker threads do not speed those up, and after each
# product they spin, beside the models' own threads (onnxruntime, CTranslate2): on a
# 2-core machine, smart-turn took 124 ms with them and 74 ms without, a Whisper decode 214
# and 166 ms, a Piper sentence 134 and 108 ms. So every node gets one BLAS thread unless
# the user's environment says otherwise.
NODE_ENVIRONMENT = {'OPENBLAS_NUM_THREADS': '1'}


def node_environment(environ=None) -> dict:
    """The variables to add to each node's environment: :data:`NODE_ENVIRONMENT` without
    those the user's environment (``environ``, default ``os.environ``) already sets."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in NODE_ENVIRONMENT.items() if not environ.get(k)}


def plan(profile: str, config_dir: str | Path, params_file: str = '', stt: str = '',
         llm: str = '', tts: str = '', eyes_port: str = '', disable: str = '',
         role: str = 'all', namespace: str = '', dashboard: str = '',
         rosbridge_installed: bool = False) -> list:
    """The nodes to start for ``profile`` and ``role`` with their merged parameters.

    ``disable`` is a comma-separated list of node names not to start (e.g. ``microphone``
    when a bag replay feeds the audio). ``role`` is ``all``, ``body`` or ``mind`` (see the
    module doc). ``namespace`` is only validated here (the launch file pushes it).
    ``dashboard`` ('' / true / false) adds the web dashboard's nodes.
    """
    _check('profile', profile, PROFILES)
    if not profile:
        raise ProfileError('launch argument profile must be one of real, mock')
    check_namespace(namespace)
    wanted = set(parts_of(role))
    _check('stt', stt, STT_BACKENDS)
    _check('llm', llm, LLM_BACKENDS)
    _check('tts', tts, TTS_BACKENDS)
    with_dashboard = dashboard_on(profile, dashboard)
    params = load_params(Path(config_dir) / f'{profile}.yaml')
    if params_file:
        params = _merge(params, load_params(params_file))
    skipped = {n.strip() for n in disable.split(',') if n.strip()}
    unknown = skipped - {p.name for p in PARTS}
    if unknown:
        raise ProfileError(f"launch argument disable: unknown node(s) {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(p.name for p in PARTS)}")
    specs = []
    for part in PARTS:
        if part.name in skipped or part.name not in wanted:
            continue
        executable = part.real if profile == 'real' else part.mock
        node_params = dict(params.get(part.name, {}))
        if part.name == 'stt' and stt:
            executable = 'stt' if stt == 'whisper' else 'mock_stt'
        if part.name == 'brain' and llm:
            node_params['backend'] = llm
        if part.name == 'tts' and tts:
            node_params['backend'] = tts
        if part.name == 'eyes' and eyes_port:
            if eyes_port == 'mock':
                executable = 'mock_eyes'
            else:
                executable = 'eyes'
                node_params['port'] = eyes_port
        specs.append(NodeSpec(part.package, executable, part.name, node_params,
                              respawn=part.hardware and profile == 'real'))
    if with_dashboard and role.strip() != 'mind':      # the dashboard goes with the body
        specs.extend(dashboard_specs(params.get('web_bridge', {}), rosbridge_installed))
    return specs

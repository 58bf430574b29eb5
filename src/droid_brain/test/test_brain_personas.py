"""Personas: layering (defaults -> user overrides -> persona), shipped examples, persistence."""

import os
from pathlib import Path

import pytest
import yaml

from droid_brain import personas as P
from droid_brain.personas import PersonaError, PersonaStore, UserState

SHIPPED = Path(__file__).resolve().parent.parent / 'personas'


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_shipped_personas_are_valid_and_complete():
    found, errors = P.load_persona_dir(SHIPPED)
    assert errors == []
    assert {'rex', 'tars', 'chopper'} <= set(found)
    for name, fields in found.items():
        for key in ('display_name', 'system_prompt', 'offline_voice', 'offline_rate_wpm',
                    'eye_theme', 'eye_color', 'fallback_line', 'elevenlabs_voice_id'):
            assert key in fields, (name, key)
        p = P.resolve(fields)
        assert len(p.system_prompt) > 200 and p.offline_rate_wpm > 0
        assert all(0.0 <= c <= 1.0 for c in p.eye_color)


def test_layering_defaults_then_overrides_then_persona(tmp_path):
    fields = {'name': 'bob', 'system_prompt': 'You are Bob.', 'offline_voice': 'en-gb'}
    overrides = {'offline_voice': 'en-us+m3', 'offline_rate_wpm': 150.0, 'eye_color': 'green'}
    p = P.resolve(fields, overrides)
    assert p.offline_voice == 'en-gb'                      # persona beats user override
    assert p.offline_rate_wpm == 150.0                     # user override beats default
    assert p.eye_color == (0.0, 1.0, 0.0)
    assert p.fallback_line == P.DEFAULTS['fallback_line']  # default
    assert p.display_name == 'bob'
    assert P.resolve(None).name == P.BUILTIN_NAME


def test_bad_persona_file_is_reported_others_load(tmp_path):
    write(tmp_path / 'good.yaml', {'name': 'good', 'system_prompt': 'hi'})
    write(tmp_path / 'typo.yaml', {'name': 'typo', 'system_promt': 'hi'})
    write(tmp_path / 'colour.yaml', {'name': 'colour', 'system_prompt': 'x', 'eye_color': 'mauve'})
    write(tmp_path / 'broken.yaml', 'name: [unclosed')
    found, errors = P.load_persona_dir(tmp_path)
    assert set(found) == {'good'}
    assert len(errors) == 3
    assert any('system_promt' in e for e in errors)
    assert any("unknown colour 'mauve'" in e for e in errors)


def test_switch_persists_atomically_and_survives_restart(tmp_path):
    state = tmp_path / 'cfg' / 'state.yaml'
    store = PersonaStore(SHIPPED, state)
    p, warnings = store.startup()
    assert p.name == 'rex' and not state.exists()       # missing file: defaults, no error
    assert store.errors == []
    p, warn = store.switch('TARS')                        # case-insensitive
    assert p.name == 'tars' and warn == ''
    assert yaml.safe_load(state.read_text()) == {'active_persona': 'tars'}
    assert [f for f in os.listdir(state.parent) if f != 'state.yaml'] == []   # no temp left
    again = PersonaStore(SHIPPED, state)
    assert again.startup()[0].name == 'tars'
    assert again.startup('chopper')[0].name == 'chopper'  # an explicit parameter wins


def test_overrides_in_state_file_are_kept_on_save(tmp_path):
    state = write(tmp_path / 'state.yaml', {'active_persona': 'rex',
                                            'overrides': {'offline_rate_wpm': 120}})
    store = PersonaStore(SHIPPED, state)
    assert store.startup()[0].offline_rate_wpm == 185.0    # rex sets its own rate
    store.switch('chopper')
    assert yaml.safe_load(state.read_text()) == {'active_persona': 'chopper',
                                                 'overrides': {'offline_rate_wpm': 120.0}}


def test_unknown_persona_is_a_clear_error(tmp_path):
    store = PersonaStore(SHIPPED, tmp_path / 's.yaml')
    with pytest.raises(PersonaError, match="unknown persona 'Case'; available: chopper, rex, tars"):
        store.switch('Case')
    assert store.active.name == P.BUILTIN_NAME   # unchanged (startup() not called yet)


@pytest.mark.parametrize('content', [
    'active_persona: [tars\n',                # bad YAML
    '- just\n- a list\n',                     # not a mapping
    'active_persona: tars\ncolour: red\n',    # unknown key
    'overrides:\n  offline_rate_wpm: -5\n',   # invalid value
    b'\xff\xfe\x00garbage',                   # not text
])
def test_corrupt_state_file_keeps_defaults_and_is_never_clobbered(tmp_path, content):
    state = tmp_path / 'state.yaml'
    if isinstance(content, bytes):
        state.write_bytes(content)
    else:
        state.write_text(content)
    before = state.read_bytes()
    store = PersonaStore(SHIPPED, state)
    assert store.state.error and str(state) in store.state.error
    assert 'left untouched' in store.state.error
    p, _ = store.startup()
    assert p.name == 'rex'                                # the default stays
    p, warning = store.switch('tars')                     # the switch works ...
    assert p.name == 'tars'
    assert 'not saving' in warning                        # ... but is not saved
    assert state.read_bytes() == before                   # file never clobbered
    assert sorted(os.listdir(tmp_path)) == ['state.yaml']


def test_unknown_saved_persona_falls_back_with_warning(tmp_path):
    state = write(tmp_path / 'state.yaml', {'active_persona': 'ghost'})
    store = PersonaStore(SHIPPED, state)
    p, warnings = store.startup()
    assert p.name == 'rex' and any("unknown persona 'ghost'" in w for w in warnings)


def test_no_persona_files_uses_builtin(tmp_path):
    store = PersonaStore(tmp_path / 'none', tmp_path / 's.yaml')
    p, warnings = store.startup()
    assert p.name == P.BUILTIN_NAME and p.system_prompt == P.DEFAULTS['system_prompt']
    assert any('no persona files' in w for w in warnings)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / 'f.yaml'
    target.write_text('old content that is longer than the new one\n')
    P.atomic_write(target, 'new\n')
    assert target.read_text() == 'new\n'


def test_user_state_missing_is_not_an_error(tmp_path):
    s = UserState.load(tmp_path / 'nope.yaml')
    assert s.error == '' and not s.exists and s.writable


def test_default_state_file_is_per_namespace(tmp_path, monkeypatch):
    """A mind host serving a fleet keeps one persona choice per droid namespace."""
    from droid_brain.personas import default_state_file
    monkeypatch.setenv('XDG_CONFIG_HOME', str(tmp_path))
    root = default_state_file()
    assert root == default_state_file('/') == tmp_path / 'droid' / 'brain_state.yaml'
    r3x, tars = default_state_file('/r3x'), default_state_file('/fleet/tars')
    assert r3x == tmp_path / 'droid' / 'r3x' / 'brain_state.yaml'
    assert tars == tmp_path / 'droid' / 'fleet' / 'tars' / 'brain_state.yaml'
    # Switching one droid's persona leaves the other's choice alone.
    d = tmp_path / 'personas'
    d.mkdir()
    for n in ('rex', 'tars'):
        (d / f'{n}.yaml').write_text(f'name: {n}\nsystem_prompt: I am {n}.\n')
    PersonaStore(d, r3x, 'rex').switch('tars')
    assert PersonaStore(d, r3x, 'rex').startup()[0].name == 'tars'
    assert PersonaStore(d, default_state_file('/fleet/tars'), 'rex').startup()[0].name == 'rex'
    assert PersonaStore(d, root, 'rex').startup()[0].name == 'rex'

"""The launch plan (plain Python): which node runs with which parameters, per profile."""

from pathlib import Path

import pytest

from droid_bringup.profiles import PARTS, ProfileError, load_params, plan

CONFIG = Path(__file__).resolve().parent.parent / 'config'


def by_name(specs):
    return {s.name: s for s in specs}


def test_every_profile_file_has_one_block_per_node_and_nothing_else():
    for profile in ('real', 'mock'):
        params = load_params(CONFIG / f'{profile}.yaml')
        assert set(params) == {p.name for p in PARTS}, profile


def test_mock_profile_uses_mock_nodes_and_backends_and_no_respawn():
    specs = by_name(plan('mock', CONFIG))
    assert specs['microphone'].executable == 'mock_microphone'
    assert specs['stt'].executable == 'mock_stt'
    assert specs['eyes'].executable == 'mock_eyes'
    assert specs['brain'].parameters['backend'] == 'mock'
    assert specs['tts'].parameters['backend'] == 'mock'
    assert specs['tts'].parameters['output'] == 'mock'
    assert specs['music'].parameters['output'] == 'mock'
    assert not any(s.respawn for s in specs.values())


def test_real_profile_uses_hardware_nodes_which_respawn():
    specs = by_name(plan('real', CONFIG))
    assert specs['microphone'].executable == 'microphone'
    assert specs['stt'].executable == 'stt'
    assert specs['eyes'].executable == 'eyes'
    assert {n for n, s in specs.items() if s.respawn} == {'microphone', 'tts', 'music', 'eyes'}


def test_per_part_overrides_win_over_the_profile():
    specs = by_name(plan('real', CONFIG, stt='mock', llm='mock', tts='espeak',
                         eyes_port='/dev/ttyACM3'))
    assert specs['stt'].executable == 'mock_stt'
    assert specs['brain'].parameters['backend'] == 'mock'
    assert specs['tts'].parameters['backend'] == 'espeak'
    assert specs['eyes'].executable == 'eyes'
    assert specs['eyes'].parameters['port'] == '/dev/ttyACM3'
    assert by_name(plan('real', CONFIG, eyes_port='mock'))['eyes'].executable == 'mock_eyes'
    assert by_name(plan('mock', CONFIG, stt='whisper'))['stt'].executable == 'stt'


def test_user_params_file_is_layered_over_the_profile(tmp_path):
    user = tmp_path / 'mine.yaml'
    user.write_text('brain:\n  ros__parameters:\n    persona: tars\n'
                    '/r3x/tts:\n  ros__parameters:\n    backend: espeak\n')
    specs = by_name(plan('mock', CONFIG, params_file=str(user)))
    assert specs['brain'].parameters == {'backend': 'mock', 'persona': 'tars'}
    assert specs['tts'].parameters['backend'] == 'espeak'
    assert specs['tts'].parameters['output'] == 'mock'   # kept from the profile


def test_disable_leaves_nodes_out():
    names = [s.name for s in plan('mock', CONFIG, disable='microphone, eyes')]
    assert 'microphone' not in names and 'eyes' not in names and 'brain' in names


@pytest.mark.parametrize('kwargs,needle', [
    ({'profile': 'fake'}, 'profile'),
    ({'profile': 'mock', 'stt': 'deepgram'}, 'stt'),
    ({'profile': 'mock', 'llm': 'claude'}, 'llm'),
    ({'profile': 'mock', 'tts': 'polly'}, 'tts'),
    ({'profile': 'mock', 'disable': 'toaster'}, 'toaster'),
    ({'profile': 'mock', 'params_file': '/nonexistent/p.yaml'}, 'not found'),
])
def test_bad_arguments_are_clear_errors(kwargs, needle):
    profile = kwargs.pop('profile')
    with pytest.raises(ProfileError, match=needle):
        plan(profile, CONFIG, **kwargs)


def test_bad_params_files_are_clear_errors(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('brain: [1, 2\n')
    with pytest.raises(ProfileError, match='not valid YAML'):
        plan('mock', CONFIG, params_file=str(bad))
    bad.write_text('brain:\n  backend: mock\n')
    with pytest.raises(ProfileError, match='ros__parameters'):
        plan('mock', CONFIG, params_file=str(bad))

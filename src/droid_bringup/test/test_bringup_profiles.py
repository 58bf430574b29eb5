"""The launch plan (plain Python): which node runs with which parameters, per profile."""

from pathlib import Path

import pytest

from droid_bringup.profiles import (PARTS, ProfileError, check_namespace, load_params,
                                    node_environment, parts_of, plan)

CONFIG = Path(__file__).resolve().parent.parent / 'config'


def by_name(specs):
    return {s.name: s for s in specs}


def test_every_profile_file_has_one_block_per_node_and_nothing_else():
    for profile in ('real', 'mock'):
        params = load_params(CONFIG / f'{profile}.yaml')
        assert set(params) == {p.name for p in PARTS}, profile


def test_role_all_is_the_whole_droid_on_one_host():
    names = {s.name for s in plan('mock', CONFIG, dashboard='false')}
    assert names == {s.name for s in plan('mock', CONFIG, role='all', dashboard='false')}
    assert names == {'microphone', 'listener', 'stt', 'mode_manager', 'brain', 'tool_executor',
                     'tts', 'music', 'eyes'}


def test_body_and_mind_split_the_droid_and_the_body_watches_the_mind():
    body = {s.name for s in plan('mock', CONFIG, role='body', dashboard='false')}
    mind = {s.name for s in plan('mock', CONFIG, role='mind', dashboard='false')}
    assert body == {'microphone', 'listener', 'mode_manager', 'tts', 'music', 'eyes',
                    'mind_monitor'}
    assert mind == {'stt', 'brain', 'tool_executor'}
    assert body - {'mind_monitor'} | mind == {s.name for s in plan('mock', CONFIG,
                                                                  dashboard='false')}
    # the dashboard (on by default in mock) goes with the body, next to the phone
    assert 'web_bridge' in {s.name for s in plan('mock', CONFIG, role='body')}
    assert 'web_bridge' not in {s.name for s in plan('mock', CONFIG, role='mind')}
    assert not body & mind
    assert set(parts_of('body')) == body and set(parts_of('mind')) == mind


def test_role_composes_with_profile_overrides_and_disable(tmp_path):
    body = by_name(plan('real', CONFIG, role='body', eyes_port='mock', tts='espeak',
                        disable='music', stt='mock', llm='mock'))
    assert set(body) == {'microphone', 'listener', 'mode_manager', 'tts', 'eyes',
                         'mind_monitor'}
    assert body['microphone'].executable == 'microphone' and body['microphone'].respawn
    assert body['eyes'].executable == 'mock_eyes'
    assert body['tts'].parameters['backend'] == 'espeak'
    assert body['mind_monitor'].parameters['mind_nodes'] == ['stt', 'brain', 'tool_executor']
    mind = by_name(plan('real', CONFIG, role='mind', stt='mock', llm='mock', tts='espeak',
                        disable='eyes,tool_executor'))
    assert set(mind) == {'stt', 'brain'}
    assert mind['stt'].executable == 'mock_stt'
    assert mind['brain'].parameters['backend'] == 'mock'
    user = tmp_path / 'mine.yaml'
    user.write_text('mind_monitor:\n  ros__parameters:\n    lost_after_s: 3.0\n')
    body = by_name(plan('mock', CONFIG, role='body', params_file=str(user)))
    assert body['mind_monitor'].parameters['lost_after_s'] == 3.0
    assert body['mind_monitor'].parameters['ping_period_s'] == 0.5


@pytest.mark.parametrize('ns', ['', '/', 'r3x', '/r3x', 'fleet/tars', '/fleet/tars_2', '_x'])
def test_good_namespaces_pass(ns):
    assert {s.name for s in plan('mock', CONFIG, namespace=ns)}
    check_namespace(ns)


@pytest.mark.parametrize('ns', ['3po', 'r3x droid', 'r3-x', 'fleet//r3x', 'a__b', 'r3x/',
                                'ünï'])
def test_bad_namespaces_are_clear_errors(ns):
    with pytest.raises(ProfileError, match='not a valid ROS namespace'):
        plan('mock', CONFIG, namespace=ns)


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
    ({'profile': 'mock', 'role': 'brain'}, "role:='brain' must be one of all, body, mind"),
    ({'profile': 'mock', 'role': ''}, 'role'),
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


def test_every_node_gets_one_blas_thread_unless_the_user_says_otherwise():
    assert node_environment({}) == {'OPENBLAS_NUM_THREADS': '1'}
    assert node_environment({'OPENBLAS_NUM_THREADS': ''}) == {'OPENBLAS_NUM_THREADS': '1'}
    assert node_environment({'OPENBLAS_NUM_THREADS': '4'}) == {}

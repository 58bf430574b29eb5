"""audio.launch.py picks the right executables per profile (node names fixed: microphone,
listener, stt) and the example parameter files parse and match the nodes' parameters."""

import pytest

rclpy = pytest.importorskip('rclpy')

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402
from launch import LaunchContext  # noqa: E402

PKG = Path(__file__).resolve().parent.parent


def load_launch(monkeypatch):
    spec = importlib.util.spec_from_file_location('audio_launch', PKG / 'launch' / 'audio.launch.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, 'get_package_share_directory', lambda pkg: str(PKG))
    return mod


def nodes_for(mod, **args):
    ctx = LaunchContext()
    defaults = {'profile': 'mock', 'params_file': '', 'namespace': '', 'use_sim_time': 'false',
                'stt': '', 'stt_model': ''}
    defaults.update(args)
    for k, v in defaults.items():
        ctx.launch_configurations[k] = v
    return mod._nodes(ctx)


@pytest.mark.parametrize('profile,expected', [
    ('mock', ['mock_microphone', 'listener', 'mock_stt']),
    ('real', ['microphone', 'listener', 'stt']),
])
def test_profiles_choose_executables(monkeypatch, profile, expected):
    mod = load_launch(monkeypatch)
    nodes = nodes_for(mod, profile=profile)
    assert [n.node_executable for n in nodes] == expected
    assert [n._Node__node_name for n in nodes] == ['microphone', 'listener', 'stt']
    ctx = LaunchContext()
    files = [''.join(x.perform(ctx) for x in p.param_file) for p in nodes[0]._Node__parameters
             if hasattr(p, 'param_file')]
    assert files == [str(PKG / 'config' / f'audio_{profile}.yaml')]
    nodes = nodes_for(mod, profile=profile, stt='whisper', stt_model='/models/tiny')
    assert nodes[2].node_executable == 'stt'
    assert len(nodes[2]._Node__parameters) == 3         # file, use_sim_time, model
    with pytest.raises(RuntimeError, match='profile'):
        nodes_for(mod, profile='party')
    assert len(mod.generate_launch_description().entities) == 7


def test_example_configs_name_real_parameters():
    import ast
    declared = {}
    for module in ('microphone_node', 'mock_microphone_node', 'listener_node', 'stt_node',
                   'mock_stt_node'):
        tree = ast.parse((PKG / 'droid_audio' / f'{module}.py').read_text())
        declared[module] = {n.args[1].value for n in ast.walk(tree)
                            if isinstance(n, ast.Call) and getattr(n.func, 'id', '') == 'declare'}
    nodes = {'mock': {'microphone': 'mock_microphone_node', 'listener': 'listener_node',
                      'stt': 'mock_stt_node'},
             'real': {'microphone': 'microphone_node', 'listener': 'listener_node',
                      'stt': 'stt_node'}}
    for profile, mapping in nodes.items():
        data = yaml.safe_load((PKG / 'config' / f'audio_{profile}.yaml').read_text())
        for key, params in data.items():
            node = key.split('/')[-1]
            unknown = set(params['ros__parameters']) - declared[mapping[node]]
            assert not unknown, f'{profile} {node}: {unknown}'

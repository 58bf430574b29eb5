"""The example parameter files are valid and name only real parameters (no ROS)."""

from dataclasses import fields
from pathlib import Path

import yaml

from droid_eyes.expression import (BUILTIN_THEMES, DEFAULTS, THEME_KEYS, ExpressionConfig)
from droid_eyes.link import LinkConfig

CONFIG = Path(__file__).resolve().parent.parent / 'config'
NODE_PARAMS = {f.name for f in fields(LinkConfig)} | {'publish_frames', 'update_period',
                                                      'render', 'render_path'}


def flatten(d, prefix=''):
    out = {}
    for k, v in d.items():
        key = f'{prefix}{k}'
        if isinstance(v, dict):
            out.update(flatten(v, key + '.'))
        else:
            out[key] = v
    return out


def params(name):
    doc = yaml.safe_load((CONFIG / name).read_text())
    (node_key,) = doc
    assert node_key.endswith('eyes')
    return flatten(doc[node_key]['ros__parameters'])


def test_eyes_yaml_is_the_documented_defaults():
    flat = params('eyes.yaml')
    themes = {f'themes.{t}.{k}' for t in flat['theme_names'] for k in THEME_KEYS}
    unknown = set(flat) - set(DEFAULTS) - themes - NODE_PARAMS
    assert not unknown
    assert set(DEFAULTS) <= set(flat)                   # every expression parameter documented
    for key, value in DEFAULTS.items():
        assert flat[key] == value, key
    for t in flat['theme_names']:
        for k in THEME_KEYS:
            assert flat[f'themes.{t}.{k}'] == BUILTIN_THEMES[t][k]
    cfg = ExpressionConfig.from_flat({k: v for k, v in flat.items() if k not in NODE_PARAMS})
    assert set(cfg.themes) == {'default', 'rex'}
    assert flat['port'] == LinkConfig().port and flat['baud'] == 115200


def test_mock_yaml():
    flat = params('mock_eyes.yaml')
    assert set(flat) <= NODE_PARAMS and flat['render'] in ('none', 'terminal', 'png')

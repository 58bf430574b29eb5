"""Tool registry: one pydantic model per tool -> schema for the LLM + argument validation."""

import json

import pytest
from droid_brain.tools import ToolError, validate
from droid_common.contract import constants

from droid_brain import tools


def test_every_required_tool_is_registered_with_a_schema():
    expected = {'play_music', 'stop_music', 'set_volume', 'set_eyes', 'set_mode',
                'set_persona', 'get_time'}
    assert expected <= set(tools.REGISTRY)
    schema = {t['function']['name']: t['function'] for t in tools.openai_tools()}
    assert set(schema) == set(tools.REGISTRY)
    for fn in schema.values():
        assert fn['description']
        assert fn['parameters']['type'] == 'object'
        assert fn['parameters']['additionalProperties'] is False
        json.dumps(fn)    # serialisable
    vol = schema['set_volume']['parameters']['properties']['level']
    assert (vol['minimum'], vol['maximum']) == (0.0, 1.0)
    assert schema['set_volume']['parameters']['required'] == ['level']
    # Enumerations come from the contract, not hand-copied lists.
    patterns = schema['set_eyes']['parameters']['properties']['pattern']['enum']
    assert patterns == [k[len('PATTERN_'):].lower() for k in constants('EyeCommand')
                        if k.startswith('PATTERN_')]
    modes = schema['set_mode']['parameters']['properties']['mode']['enum']
    assert set(modes) == {k.lower() for k in constants('SystemMode')}


def test_valid_calls():
    assert validate('play_music', '{"query": "cantina"}').query == 'cantina'
    eyes = validate('set_eyes', '{"pattern": "pulse", "colour": "#ff8000", "brightness": 0.5}')
    assert eyes.rgb == pytest.approx((1.0, 128 / 255, 0.0))
    assert validate('set_eyes', '{"pattern": "solid", "colour": "Ice Blue"}').rgb == (0.6, 0.85, 1.0)
    assert validate('set_volume', '{"level": 0.25}').level == 0.25
    assert validate('get_time', '').__class__.__name__ == 'GetTime'
    assert validate('stop_music', '{}')
    assert validate('set_mode', '{"mode": "ambient"}').mode == 'ambient'


@pytest.mark.parametrize('name,args,needle', [
    ('fly_away', '{}', "unknown tool 'fly_away'"),
    ('set_volume', '{"level": 5}', 'level: Input should be less than or equal to 1 (got 5)'),
    ('set_volume', '{"level": -0.1}', 'greater than or equal to 0'),
    ('set_volume', '{}', 'level: Field required'),
    ('set_volume', '{"level": 0.5', 'arguments are not valid JSON'),
    ('set_volume', '[0.5]', 'must be a JSON object'),
    ('set_eyes', '{"pattern": "disco", "colour": "red"}', "pattern: Input should be 'off'"),
    ('set_eyes', '{"pattern": "solid", "colour": "mauve"}', "unknown colour 'mauve'"),
    ('set_eyes', '{"pattern": "solid", "colour": "red", "brightness": 2}', 'brightness'),
    ('set_mode', '{"mode": "party"}', 'mode: Input should be'),
    ('play_music', '{"query": ""}', 'query'),
    ('play_music', '{"query": "x", "shell": "rm -rf /"}', 'shell: unknown argument'),
])
def test_invalid_calls_give_clear_errors(name, args, needle):
    with pytest.raises(ToolError) as exc:
        validate(name, args)
    assert needle in str(exc.value)


def test_no_shell_file_or_network_tools():
    for name in tools.REGISTRY:
        assert not any(w in name for w in ('shell', 'exec', 'file', 'http', 'url', 'fetch'))

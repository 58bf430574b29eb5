"""What the terminal chat prints (plain Python)."""

from droid_bringup import chat_format as fmt
from droid_common.contract import constants


def test_lines_name_the_conversation_and_the_content():
    assert fmt.reply('0123456789ab', 0, 'Hello there.', False, False, 'rex') == \
        '[012345] rex: Hello there.'
    assert 'interrupted' in fmt.reply('c', 3, '', True, True, 'rex')
    assert fmt.sentiment('c', constants('Sentiment')['POSITIVE'], 0.62) == \
        '[c] mood: positive (+0.62)'
    ev = constants('SpeechEvent')
    assert fmt.speech('c', ev['STARTED'], 'Hi.', 0.0, 'mock') == '[c] speaking (mock): Hi.'
    assert fmt.speech('c', ev['INTERRUPTED'], 'Hi.', 0.5, 'mock') == \
        '[c] speech interrupted after 0.50 s'


def test_eyes_tools_and_mode():
    solid = constants('EyeCommand')['PATTERN_SOLID']
    cmd = constants('EyeState')['SOURCE_COMMAND']
    assert fmt.eyes('c', solid, (1.0, 0.0, 0.0), 0.8, cmd) == \
        '[c] eyes: solid #ff0000 brightness 0.80 (command)'
    stage = constants('TraceEvent')
    assert fmt.trace('c', stage['STAGE_TOOL_GOAL'], 'set_eyes {}') == '[c] tool call: set_eyes {}'
    assert fmt.trace('c', stage['STAGE_FIRST_AUDIO'], '') is None
    assert fmt.mode(constants('SystemMode')['AMBIENT'], 'chat') == 'mode: ambient (chat)'

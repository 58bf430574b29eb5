"""The droid_msgs contract itself: every interface parses, is documented, is consistent,
and its messages survive a trip through a rosbag2 file. No ROS needed."""

import re

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from droid_common import contract, names
from droid_common.bagtypes import typestore

KINDS = {'msg': 1, 'srv': 2, 'action': 3}
ALL = [(kind, name) for kind in KINDS for name in contract.interface_names(kind)]


def _text(kind, name):
    return (contract.interface_dir() / kind / f'{name}.{kind}').read_text()


def _parts(kind, name):
    return re.split(r'^---\s*$', _text(kind, name), flags=re.MULTILINE)


def test_the_contract_has_every_interface_the_issues_need():
    msgs = set(contract.interface_names('msg'))
    assert {'AudioChunk', 'WakeWord', 'VoiceActivity', 'Utterance', 'Transcription',
            'ReplySentence', 'Sentiment', 'SpeechEvent', 'SpeechAmplitude', 'MusicState',
            'EyeCommand', 'EyeState', 'SystemMode', 'Persona', 'TraceEvent'} <= msgs
    assert {'Speak', 'ToolCall', 'PlayMusic'} <= set(contract.interface_names('action'))
    assert {'SetMode', 'MusicControl', 'InjectUtterance'} <= set(contract.interface_names('srv'))


@pytest.mark.parametrize('kind,name', ALL)
def test_every_part_parses_with_the_rosbags_parser(kind, name):
    parts = _parts(kind, name)
    assert len(parts) == KINDS[kind]
    for i, part in enumerate(parts):
        typename = f'droid_msgs/msg/{name}_{kind}{i}'
        consts, fields = get_types_from_msg(part, typename)[typename][:2]
        ours = contract.sections(name, kind)[i]
        # contract.py (what plain-Python logic uses) agrees with the reference parser
        assert {c[0]: c[2] for c in consts} == ours.constant_map()
        assert [f[0] for f in fields] == [f.name for f in ours.fields]
        if kind == 'msg':
            assert fields, f'{name} has no fields'


@pytest.mark.parametrize('kind,name', ALL)
def test_every_field_and_constant_is_commented(kind, name):
    for part in _parts(kind, name):
        # Each line of code is commented inline, or sits in a block (no blank line) that
        # a comment opens: e.g. '# Conversation and turn.' over conversation_id and
        # utterance_id, or a field followed by its constants.
        block_documented = False
        for line in part.splitlines():
            stripped = line.strip()
            if not stripped:
                block_documented = False
                continue
            if stripped.startswith('#'):
                block_documented = True
                continue
            assert '#' in line or block_documented, f'{name}: undocumented line {line!r}'


@pytest.mark.parametrize('name', contract.interface_names('msg'))
def test_header_comes_first_where_present(name):
    fields = contract.field_names(name)
    if 'header' in fields:
        assert fields[0] == 'header'
        assert contract.sections(name)[0].fields[0].type == 'std_msgs/Header'


def test_messages_with_a_time_carry_a_header():
    for name in contract.interface_names('msg'):
        assert contract.field_names(name)[0] == 'header', name


@pytest.mark.parametrize('kind,name', ALL)
def test_constants_are_unique(kind, name):
    for section in contract.sections(name, kind):
        seen_names = [c.name for c in section.constants]
        assert len(seen_names) == len(set(seen_names))
        groups = {}
        for c in section.constants:
            prefix = c.name.split('_')[0] if '_' in c.name else ''
            groups.setdefault(prefix, []).append(c.value)
        for prefix, values in groups.items():
            assert len(values) == len(set(values)), f'{name}: duplicate values in {prefix}*'


def test_conversation_stream_messages_carry_conversation_and_turn():
    for name in ('Utterance', 'Transcription', 'ReplySentence', 'Sentiment', 'SpeechEvent',
                 'TraceEvent'):
        fields = contract.field_names(name)
        assert 'conversation_id' in fields and 'utterance_id' in fields, name
    for name in ('Speak', 'ToolCall'):
        assert 'conversation_id' in contract.field_names(name, 0)


def test_mode_and_sentiment_constants_are_what_the_droid_uses():
    assert contract.constants('SystemMode') == {'SLEEP': 0, 'IDLE': 1, 'AMBIENT': 2,
                                                'INTERACTIVE': 3}
    assert contract.constants('Sentiment') == {'NEGATIVE': -1, 'NEUTRAL': 0, 'POSITIVE': 1}
    assert contract.constants_with_prefix('SpeechEvent', '') == {
        'started': 0, 'ended': 1, 'interrupted': 2, 'paused': 3, 'resumed': 4}
    patterns = contract.constants_with_prefix('EyeCommand', 'PATTERN_')
    assert patterns['off'] == 0 and len(patterns) >= 8


def test_topic_names_are_relative_except_diagnostics():
    values = {k: v for k, v in vars(names).items() if k.isupper()}
    assert values['DIAGNOSTICS'] == '/diagnostics'
    for key, value in values.items():
        if key != 'DIAGNOSTICS':
            assert not value.startswith('/') and value == value.strip(), key
    assert len(set(values.values())) == len(values)


def test_messages_round_trip_through_a_rosbag2_file(tmp_path):
    store = typestore()
    T = store.types
    Time = T['builtin_interfaces/msg/Time']
    Header = T['std_msgs/msg/Header']
    samples = (np.arange(1280, dtype=np.int16) * 7 - 4000).astype(np.int16)
    chunk = T['droid_msgs/msg/AudioChunk'](
        header=Header(stamp=Time(sec=12, nanosec=500), frame_id='mock'),
        sample_rate=16000, channels=1, seq=42, data=samples)
    text = T['droid_msgs/msg/Transcription'](
        header=Header(stamp=Time(sec=13, nanosec=0), frame_id=''),
        conversation_id='abc123', utterance_id=1, text='play some cantina music',
        is_final=True, confidence=0.9, language='en', audio_start=Time(sec=11, nanosec=0),
        audio_end=Time(sec=12, nanosec=900_000_000), source='mock')
    bag = tmp_path / 'bag'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        c1 = writer.add_connection(names.AUDIO, 'droid_msgs/msg/AudioChunk', typestore=store)
        c2 = writer.add_connection(names.TRANSCRIPTION, 'droid_msgs/msg/Transcription',
                                   typestore=store)
        writer.write(c1, 12_000_000_500, store.serialize_cdr(chunk, 'droid_msgs/msg/AudioChunk'))
        writer.write(c2, 13_000_000_000,
                     store.serialize_cdr(text, 'droid_msgs/msg/Transcription'))
    with Reader(bag) as reader:
        got = [(c.topic, t, store.deserialize_cdr(raw, c.msgtype))
               for c, t, raw in reader.messages()]
    assert [g[0] for g in got] == [names.AUDIO, names.TRANSCRIPTION]
    assert got[0][1] == 12_000_000_500
    assert np.array_equal(got[0][2].data, samples) and got[0][2].seq == 42
    assert got[1][2].text == 'play some cantina music' and got[1][2].is_final
    assert got[1][2].audio_end.nanosec == 900_000_000

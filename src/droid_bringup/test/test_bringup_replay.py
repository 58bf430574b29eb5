"""Deterministic sim-time replay of recorded conversations through the mock droid.

The bags (test/replay/bags/, made by ``python3 -m droid_bringup.make_replay_bags``) hold
microphone audio (espeak-ng speech) and the mock STT's script. The replay node drives /clock
and records everything the graph publishes; it must match test/replay/expected/ byte for
byte, timestamps included, however loaded the machine and however fast the replay runs (it
advances only when every node says it is done: droid_common.activity). Set
DROID_UPDATE_EXPECTED=1 to rewrite the expected files after an intended change (then
review the diff).
"""

import os
import subprocess
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_bringup.replay import diff, read_events, write_events  # noqa: E402
from droid_common.contract import constants, constants_with_prefix  # noqa: E402
from droid_common.testing import Process, free_domain, ros_test_env  # noqa: E402

HERE = Path(__file__).resolve().parent / 'replay'
SPEECH = constants('SpeechEvent')
STAGE = constants_with_prefix('TraceEvent', 'STAGE_')
DOMAIN = free_domain()               # a graph of its own


def replay(name: str, out: Path, *args: str) -> list:
    env = ros_test_env(ROS_DOMAIN_ID=DOMAIN)
    launch = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=mock',
              'use_sim_time:=true', 'disable:=microphone']
    with Process(launch, env=env) as graph:
        run = subprocess.run(['ros2', 'run', 'droid_bringup', 'replay', '--bag',
                              str(HERE / 'bags' / name), '--out', str(out), *args],
                             capture_output=True, text=True, timeout=900, env=env)
        assert run.returncode == 0, run.stdout + run.stderr + graph.output()[-4000:]
    return read_events(out)


def check_expected(name: str, events: list, out: Path) -> None:
    expected_path = HERE / 'expected' / f'{name}.jsonl'
    if os.environ.get('DROID_UPDATE_EXPECTED'):
        expected_path.parent.mkdir(exist_ok=True)
        write_events(events, expected_path)
    problems = diff(read_events(expected_path), events)
    assert not problems, f'{name} replay differs from {expected_path}:\n' + '\n'.join(problems)
    assert out.read_bytes() == expected_path.read_bytes()      # byte for byte


def of(events, topic, **fields):
    return [e for e in events if e['topic'] == topic
            and all(e.get(k) == v for k, v in fields.items())]


def test_cantina_replay_plays_music_and_turns_the_eyes_red(tmp_path):
    events = replay('cantina', tmp_path / 'out.jsonl')
    finals = of(events, 'speech/transcription', is_final=True)
    assert [f['text'] for f in finals] == ['play the cantina song and make your eyes red']
    tools = [e['detail'] for e in of(events, 'trace', stage=STAGE['tool_goal'])]
    assert any(t.startswith('play_music') for t in tools)
    assert any(t.startswith('set_eyes') for t in tools)
    assert of(events, 'brain/sentiment')
    assert of(events, 'voice/speech_event', event=SPEECH['ENDED'], last_in_reply=True)
    assert any(e['color']['r'] > 0.9 and e['color']['g'] < 0.1 for e in of(events, 'eyes/state'))
    check_expected('cantina', events, tmp_path / 'out.jsonl')


def test_barge_in_replay_interrupts_the_droid(tmp_path):
    events = replay('barge_in', tmp_path / 'out.jsonl')
    interrupted = of(events, 'voice/speech_event', event=SPEECH['INTERRUPTED'])
    assert interrupted and interrupted[0]['utterance_id'] == 1
    # the story was never finished...
    assert not of(events, 'voice/speech_event', event=SPEECH['ENDED'], utterance_id=1,
                  last_in_reply=True)
    # ...and what the person said over it became the next turn of the same conversation
    finals = of(events, 'speech/transcription', is_final=True)
    assert [(f['conversation_id'], f['utterance_id'], f['text']) for f in finals] == [
        ('c1', 1, 'tell me a story'), ('c1', 2, 'stop')]
    check_expected('barge_in', events, tmp_path / 'out.jsonl')


def test_failing_tool_replay_reports_the_error_and_apologises(tmp_path):
    events = replay('failing_tool', tmp_path / 'out.jsonl')
    results = [e['detail'] for e in of(events, 'trace', stage=STAGE['tool_result'])]
    assert results and any('invalid arguments' in r for r in results)
    assert of(events, 'brain/reply', is_final=False)
    check_expected('failing_tool', events, tmp_path / 'out.jsonl')


def test_a_slower_replay_gives_the_same_bytes(tmp_path):
    """At any speed: held back to 25 ms of wall time per 20 ms tick, the same bytes."""
    out = tmp_path / 'slow.jsonl'
    events = replay('cantina', out, '--min-wall-ms', '25')
    assert events
    assert out.read_bytes() == (HERE / 'expected' / 'cantina.jsonl').read_bytes()

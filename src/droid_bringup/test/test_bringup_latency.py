"""Per-turn latency breakdowns (plain Python) and the bag mode of latency_report."""

import json

import pytest

from rosbags.rosbag2 import StoragePlugin, Writer

from droid_bringup.latency import STAGE, LatencyTracker, Trace, breakdown, format_turn, percentile
from droid_bringup.latency_report_node import report_bag
from droid_common import names
from droid_common.bagtypes import typestore

TURN = [  # (stage, stamp s, input stamp s, detail)
    ('wake', 10.00, 0.0, ''), ('speech_start', 10.00, 0.0, ''),
    ('speech_end', 12.00, 0.0, ''), ('final_transcript', 12.30, 12.0, ''),
    ('llm_request', 12.302, 12.30, ''), ('first_token', 12.50, 0.0, ''),
    ('tool_goal', 12.60, 0.0, 'play_music {"query": "cantina"}'),
    ('first_sentence', 12.70, 0.0, ''), ('eyes_reacted', 12.705, 12.70, ''),
    ('first_audio', 12.90, 12.70, ''), ('reply_done', 13.00, 0.0, ''),
    ('speech_done', 15.00, 0.0, ''),
]


def traces(cid='c1', utt=1):
    # a wake may carry utterance 0: it belongs to the conversation's first utterance
    return [Trace(STAGE[s], t, cid, 0 if (s == 'wake' and utt == 1) else utt, i, '/n', d)
            for s, t, i, d in TURN]


def test_breakdown_of_one_turn():
    tracker = LatencyTracker()
    for t in traces():
        tracker.add(t)
    assert len(tracker.turns) == 1      # the wake (utterance 0) joins utterance 1
    b = breakdown(tracker.turns[('c1', 1)])
    ms = b['ms']
    assert ms['stt'] == 300.0
    assert ms['llm_first_token'] == 198.0
    assert ms['llm_first_sentence'] == 400.0
    assert ms['tts_first_audio'] == 200.0
    assert ms['end_of_speech_to_first_audio'] == 900.0
    assert ms['eyes_after_first_sentence'] == 5.0
    assert ms['graph_overhead'] == 7.0          # 2 ms brain hand-off + 5 ms eyes hand-off
    assert b['tools'] == ['play_music {"query": "cantina"}']
    text = format_turn(b)
    assert 'c1#1' in text and 'stt' in text and 'tool: play_music' in text


def test_turns_are_kept_apart_and_bounded():
    tracker = LatencyTracker(max_turns=3)
    for utt in range(1, 6):
        for t in traces('c9', utt):
            tracker.add(t)
    assert list(tracker.turns) == [('c9', 3), ('c9', 4), ('c9', 5)]


def test_percentile_nearest_rank():
    xs = list(range(1, 101))
    assert percentile(xs, 50) == 50 and percentile(xs, 99) == 99 and percentile(xs, 100) == 100


def test_report_from_a_bag(tmp_path, capsys):
    store = typestore()
    T = store.types
    bag = tmp_path / 'trace_bag'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection('/' + names.TRACE, 'droid_msgs/msg/TraceEvent',
                                     typestore=store)
        for t in traces('abc', 2):
            sec, nsec = int(t.stamp), int(round((t.stamp % 1) * 1e9))
            isec, insec = int(t.input_stamp), int(round((t.input_stamp % 1) * 1e9))
            msg = T['droid_msgs/msg/TraceEvent'](
                header=T['std_msgs/msg/Header'](
                    stamp=T['builtin_interfaces/msg/Time'](sec=sec, nanosec=nsec), frame_id=''),
                conversation_id=t.conversation_id, utterance_id=t.utterance_id, stage=t.stage,
                input_stamp=T['builtin_interfaces/msg/Time'](sec=isec, nanosec=insec),
                node=t.node, detail=t.detail)
            writer.write(conn, int(t.stamp * 1e9),
                         store.serialize_cdr(msg, 'droid_msgs/msg/TraceEvent'))
    assert report_bag(str(bag), '/' + names.TRACE, as_json=True) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o['conversation_id'], o['utterance_id']) for o in out] == [('abc', 2)]
    assert abs(out[0]['ms']['final_transcript_to_first_audio'] - 600.0) < 0.01


def test_marks_are_counted_from_the_end_of_speech_the_listener_reported():
    tracker = LatencyTracker()
    for t in traces():
        tracker.add(t)
    turn = tracker.turns[('c1', 1)]
    turn.first['speech_end'].input_stamp = 11.40        # voiced audio ended here
    b = breakdown(turn)
    assert b['from_end_of_speech_ms'] == {
        'speech_end': 600.0, 'final_transcript': 900.0, 'llm_request': 902.0,
        'first_token': 1100.0, 'first_sentence': 1300.0, 'first_audio': 1500.0}
    assert 'after the end of speech' in format_turn(b) and 'first audio' in format_turn(b)


def test_waterfall_plot_is_written(tmp_path):
    pytest.importorskip('matplotlib')
    from droid_bringup.latency import plot_waterfall
    from droid_bringup.latency_report_node import write_plot
    rows = [('t1', {'speech_end': 600.0, 'final_transcript': 900.0, 'first_audio': 1400.0,
                    'audible': 1460.0}),
            ('t2', {'speech_end': 600.0, 'llm_request': 610.0, 'final_transcript': 950.0})]
    out = tmp_path / 'turns.png'
    plot_waterfall(rows, out, 'test')
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # From latency_report's breakdowns: turns without an end of speech are left out.
    tracker = LatencyTracker()
    for t in traces():
        tracker.add(t)
    out2 = tmp_path / 'report.svg'
    assert write_plot(str(out2), [breakdown(tracker.turns[('c1', 1)])])
    assert b'<svg' in out2.read_bytes()[:400]
    assert not write_plot(str(tmp_path / 'none.png'), [{'conversation_id': 'x',
                                                         'utterance_id': 1, 'ms': {}}])

"""Replay bags and the normalised comparison (plain Python; the ROS replay is elsewhere)."""

from pathlib import Path

import numpy as np

from droid_bringup.make_replay_bags import START_S, write_bag
from droid_bringup.replay import Normaliser, diff, read_bag, read_events, sort_events, \
    write_events
from droid_common.bagtypes import typestore

SPEC = {'duration_s': 3.0, 'utterances': [
    {'at_s': 0.5, 'say': 'hey jarvis, what time is it', 'transcript': 'what time is it'}]}


def test_a_scenario_becomes_a_bag_of_contiguous_chunks_and_a_script(tmp_path):
    info = write_bag(tmp_path / 'bag', SPEC)
    msgs = read_bag(tmp_path / 'bag')
    store = typestore()
    chunks = [store.deserialize_cdr(m.raw, m.msgtype) for m in msgs if m.topic == 'audio/mic']
    scripts = [store.deserialize_cdr(m.raw, m.msgtype) for m in msgs
               if m.topic == 'audio/mock_transcript']
    assert len(chunks) == info['chunks'] == int(3.0 * 16000) // 1280
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    stamps = [c.header.stamp.sec * 10**9 + c.header.stamp.nanosec for c in chunks]
    assert stamps[0] == START_S * 10**9
    assert set(np.diff(stamps)) == {80_000_000}
    audio = np.concatenate([c.data for c in chunks]).astype(np.float64)
    # speech where the utterance is, quiet noise before it
    assert np.sqrt(np.mean(audio[:4000] ** 2)) < 100
    assert np.sqrt(np.mean(audio[8000:24000] ** 2)) > 1000
    assert [s.text for s in scripts] == ['what time is it']
    # chunks are published when complete: log time = stamp + 80 ms
    first = next(m for m in msgs if m.topic == 'audio/mic')
    assert first.t_ns == START_S * 10**9 + 80_000_000


def test_the_same_scenario_gives_the_same_bag_content(tmp_path):
    write_bag(tmp_path / 'a', SPEC)
    write_bag(tmp_path / 'b', SPEC)
    a = [(m.t_ns, m.topic, m.raw) for m in read_bag(tmp_path / 'a')]
    b = [(m.t_ns, m.topic, m.raw) for m in read_bag(tmp_path / 'b')]
    assert a == b


def test_normalised_events_hide_random_ids_but_keep_stamps(tmp_path):
    n = Normaliser()
    events = [n.event(5, 'brain/reply', {'conversation_id': 'f00d', 'index': 0, 'text': 'Hi.',
                                         'is_final': False, 'interrupted': False,
                                         'persona': 'rex', 'utterance_id': 1, 'header': {}}),
              n.event(3, 'brain/sentiment', {'conversation_id': 'beef', 'label': 1,
                                             'score': 0.123456, 'utterance_id': 1}),
              n.event(5, 'brain/reply', {'conversation_id': 'beef', 'index': 1, 'text': 'x',
                                         'is_final': True, 'interrupted': False,
                                         'persona': 'rex', 'utterance_id': 1})]
    assert [e['conversation_id'] for e in events] == ['c1', 'c2', 'c2']
    assert 'header' not in events[0] and events[1]['score'] == 0.123
    ordered = sort_events(events)
    assert [e['t'] for e in ordered] == [3, 5, 5]
    path = Path(tmp_path / 'ev.jsonl')
    write_events(ordered, path)
    assert read_events(path) == ordered
    assert diff(ordered, ordered) == []
    changed = [dict(e) for e in ordered]
    changed[1]['t'] = 6
    assert len(diff(ordered, changed)) == 1 and '#1' in diff(ordered, changed)[0]

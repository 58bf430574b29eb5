"""Replay bags and the normalised comparison (plain Python; the ROS replay is elsewhere)."""

from pathlib import Path

import numpy as np

from droid_bringup.make_replay_bags import START_S, write_bag
from droid_bringup.replay import (RECEIVER, SENDER, SUBSCRIBER, PUBLISHER, Normaliser,
                                  Quiescence, Report, deficits, describe_key, diff, read_bag,
                                  read_events, report_from_msg, sort_events, startup_problems,
                                  write_events)
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


# ---- Quiescence: when a tick is over ----------------------------------------------------------

P, S, SND, RCV = PUBLISHER, SUBSCRIBER, SENDER, RECEIVER


def rep(node, probe, chans, now=100, idle=True):
    return Report(node=node, probe=probe, idle=idle, now_ns=now, channels=chans)


def test_deficits_per_subscription_and_per_point_to_point_channel():
    chans = {
        '/a': [(P, '/x', 3, 2, False), (SND, '/srv#request', 2, 1, False)],
        '/b': [(S, '/x', 3, 1, False), (S, '/y', 5, 0, False)],      # /y: nobody publishes
        '/c': [(S, '/x', 2, 1, False), (S, '/x', 3, 1, False), (RCV, '/srv#request', 1, -1, False)],
    }
    d = deficits(chans)
    assert d == {('sub', '/b', '/x', 0): 0, ('sub', '/c', '/x', 0): 1,
                 ('sub', '/c', '/x', 1): 0, ('p2p', '/srv#request'): 1}
    assert describe_key(('sub', '/c', '/x', 0)) == '/x -> /c'


def test_startup_waits_for_matching_and_latched_messages():
    assert startup_problems({'/a': [(P, '/x', 1, 1, False)],
                             '/b': [(S, '/x', 0, 1, False)],
                             '/c': [(S, '/x', 0, 1, False)]}) == [
        '/a publishes /x to 1 of 2 subscribers']
    assert startup_problems({'/a': [(P, '/m', 2, 1, True)], '/b': [(S, '/m', 0, 1, True)]}) \
        == ['/b has not received the latched /m yet']
    assert startup_problems({'/a': [(SND, '/s#request', 0, 0, False)],
                             '/b': [(RCV, '/s#request', 0, -1, False)]}) == [
        '/a: no server for /s#request yet']
    # a latched topic delivered once to a late subscriber (publisher sent 2) is fine
    assert startup_problems({'/a': [(P, '/m', 2, 1, True)], '/b': [(S, '/m', 1, 1, True)]}) == []


def test_a_tick_is_over_only_when_everything_sent_was_handled_and_confirmed():
    q = Quiescence(['/a', '/b'], own_name='/replay')
    own = [(P, '/in', 0, 1, False)]

    def answer(probe, a, b, now=100, idle_b=True):
        q.receive(rep('/a', probe, a, now))
        q.receive(rep('/b', probe, b, now, idle=idle_b))

    # start: latched /m sent twice before /b joined; /b got the last one
    answer(1, [(S, '/in', 0, 1, False), (P, '/m', 2, 1, True)], [(S, '/m', 1, 1, True)])
    assert q.answered(1)
    assert q.start(1, own) == ['confirming']
    answer(2, [(S, '/in', 0, 1, False), (P, '/m', 2, 1, True)], [(S, '/m', 1, 1, True)])
    assert q.start(2, own) == []                     # the late-join offset is the baseline
    # tick 120: the replay published one input; /a handled it and published /m once more,
    # which /b has not handled yet -> not over
    own = [(P, '/in', 1, 1, False)]
    answer(3, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 1, 1, True)],
           now=120)
    assert q.settled(3, own, 120) == ['/m -> /b: 1 message(s) not handled yet']
    # /b still busy with it: not answered
    answer(4, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 2, 1, True)],
           now=120, idle_b=False)
    assert not q.answered(4) and q.waiting_for(4) == ['/b: busy ()']
    answer(5, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 2, 1, True)],
           now=120)
    assert q.settled(5, own, 120) == ['confirming']   # balanced: once more, same counts
    answer(6, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 2, 1, True)],
           now=120)
    assert q.settled(6, own, 120) == []
    # next tick, nothing happens: one round with the same counts is enough
    answer(7, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 2, 1, True)],
           now=140)
    assert q.settled(7, own, 140) == []
    # a node that has not seen the tick's clock yet is not finished with it
    answer(8, [(S, '/in', 1, 1, False), (P, '/m', 3, 1, True)], [(S, '/m', 2, 1, True)],
           now=140)
    assert q.settled(8, own, 160) == ['/a: clock 140 ns, tick 160 ns',
                                      '/b: clock 140 ns, tick 160 ns']


def test_a_message_from_before_the_start_arriving_late_is_absorbed():
    q = Quiescence(['/a', '/b'])
    chans_a = [(P, '/x', 1, 1, False)]
    for probe, expected in ((1, ['confirming']), (2, [])):
        q.receive(rep('/a', probe, chans_a))
        q.receive(rep('/b', probe, [(S, '/x', 0, 1, False)]))
        assert q.start(probe, []) == expected        # /x in flight at the start: baseline 1
    q.receive(rep('/a', 3, chans_a))
    q.receive(rep('/b', 3, [(S, '/x', 1, 1, False)]))
    assert q.settled(3, [], 100) == ['confirming']
    assert not q.notes                               # only once settled
    q.receive(rep('/a', 4, chans_a))
    q.receive(rep('/b', 4, [(S, '/x', 1, 1, False)]))
    assert q.settled(4, [], 100) == []
    assert q.notes == ['/x -> /b: 1 message(s) from before the start arrived late']
    q.receive(rep('/a', 5, [(P, '/x', 2, 1, False)]))
    q.receive(rep('/b', 5, [(S, '/x', 1, 1, False)]))
    assert q.settled(5, [], 100) == ['/x -> /b: 1 message(s) not handled yet']


def test_a_report_message_becomes_plain_data():
    from types import SimpleNamespace as NS
    msg = NS(node='/eyes', probe=7, idle=True, busy='',
             header=NS(stamp=NS(sec=101, nanosec=20_000_000)),
             next_due=NS(sec=0, nanosec=0), channel_roles=[0, 1], channel_names=['/a', '/b'],
             channel_counts=[3, 4], channel_matched=[1, -1], channel_latched=[True, False])
    r = report_from_msg(msg)
    assert r.now_ns == 101_020_000_000 and r.probe == 7
    assert r.channels == [(0, '/a', 3, 1, True), (1, '/b', 4, -1, False)]


def test_a_stale_report_is_not_taken_for_a_late_message():
    """/a answered before it published (it was woken after its answer by /u, which /a has
    not handled in that round): /b's count is ahead of /a's. Not settled, nothing absorbed."""
    q = Quiescence(['/a', '/b', '/c'])
    for probe, expected in ((1, ['confirming']), (2, [])):
        q.receive(rep('/a', probe, [(P, '/x', 0, 1, False), (S, '/u', 0, 1, False)]))
        q.receive(rep('/b', probe, [(S, '/x', 0, 1, False)]))
        q.receive(rep('/c', probe, [(P, '/u', 0, 1, False)]))
        assert q.start(probe, []) == expected
    # round 3: /c published /u; /a's answer predates it; /b already handled /a's /x
    q.receive(rep('/a', 3, [(P, '/x', 0, 1, False), (S, '/u', 0, 1, False)]))
    q.receive(rep('/b', 3, [(S, '/x', 1, 1, False)]))
    q.receive(rep('/c', 3, [(P, '/u', 1, 1, False)]))
    assert q.settled(3, [], 100) == ['/u -> /a: 1 message(s) not handled yet']
    assert not q.notes
    for probe, expected in ((4, ['confirming']), (5, [])):
        q.receive(rep('/a', probe, [(P, '/x', 1, 1, False), (S, '/u', 1, 1, False)]))
        q.receive(rep('/b', probe, [(S, '/x', 1, 1, False)]))
        q.receive(rep('/c', probe, [(P, '/u', 1, 1, False)]))
        assert q.settled(probe, [], 100) == expected
    assert not q.notes


def test_a_channel_that_appears_later_gets_its_baseline_once_settled():
    q = Quiescence(['/a', '/b'])
    for probe in (1, 2):
        q.receive(rep('/a', probe, [(P, '/x', 2, 1, False)]))
        q.receive(rep('/b', probe, []))
        q.start(probe, [])
    # /b subscribes late: it never gets the 2 messages from before
    for probe, expected in ((3, ['confirming']), (4, [])):
        q.receive(rep('/a', probe, [(P, '/x', 2, 1, False)]))
        q.receive(rep('/b', probe, [(S, '/x', 0, 1, False)]))
        assert q.settled(probe, [], 100) == expected
    q.receive(rep('/a', 5, [(P, '/x', 3, 1, False)]))
    q.receive(rep('/b', 5, [(S, '/x', 0, 1, False)]))
    assert q.settled(5, [], 100) == ['/x -> /b: 1 message(s) not handled yet']

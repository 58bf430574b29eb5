"""Sentence ordering and dropping per turn (plain Python)."""

from droid_voice.sentences import (
    Drop,
    ReplyEnd,
    Sentence,
    Speak,
    Supersede,
    TurnTracker,
)


def s(cid, utt, idx, text='x', final=False, received=0.0):
    return Sentence(cid, utt, idx, '' if final else text or f'{cid}{idx}', is_final=final,
                    received=received)


def spoken(actions):
    return [a.sentence.index for a in actions if isinstance(a, Speak)]


def test_in_order_and_last_in_reply_when_marker_comes_first():
    t = TurnTracker()
    assert spoken(t.add(s('a', 1, 0))) == [0]
    assert spoken(t.add(s('a', 1, 2))) == []            # waits for 1
    acts = t.add(s('a', 1, 3, final=True))              # marker before sentence 1 arrives
    assert spoken(acts) == [] and not any(isinstance(a, ReplyEnd) for a in acts)
    acts = t.add(s('a', 1, 1))
    assert spoken(acts) == [1, 2]
    speaks = [a for a in acts if isinstance(a, Speak)]
    assert [a.last_in_reply for a in speaks] == [False, True]
    assert acts[-1] == ReplyEnd(('a', 1), 2, False)


def test_marker_after_last_sentence_reports_end():
    t = TurnTracker()
    t.add(s('a', 1, 0))
    t.add(s('a', 1, 1))
    acts = t.add(s('a', 1, 2, final=True))
    assert acts == [ReplyEnd(('a', 1), 1, False)]


def test_duplicates_and_after_end_are_dropped():
    t = TurnTracker()
    t.add(s('a', 1, 0))
    assert isinstance(t.add(s('a', 1, 0))[0], Drop)
    t.add(s('a', 1, 1, final=True))
    assert isinstance(t.add(s('a', 1, 5))[0], Drop)


def test_new_conversation_supersedes_and_old_one_is_dropped_afterwards():
    t = TurnTracker()
    t.add(s('a', 1, 0))
    acts = t.add(s('b', 1, 0))
    assert acts[0] == Supersede(('a', 1), ('b', 1)) and spoken(acts) == [0]
    late = t.add(s('a', 1, 1))
    assert len(late) == 1 and isinstance(late[0], Drop) and late[0].reason == 'older turn'
    assert t.current == ('b', 1)


def test_newer_utterance_same_conversation_supersedes_older_is_dropped():
    t = TurnTracker()
    t.add(s('a', 2, 0))
    assert isinstance(t.add(s('a', 1, 0))[0], Drop)
    acts = t.add(s('a', 3, 0))
    assert acts[0] == Supersede(('a', 2), ('a', 3)) and spoken(acts) == [0]


def test_interrupt_drops_the_rest_of_the_turn_but_not_the_next_turn():
    t = TurnTracker()
    t.add(s('a', 1, 0))
    assert t.interrupt() == ('a', 1)
    assert all(isinstance(a, Drop) for a in t.add(s('a', 1, 1)))
    assert all(isinstance(a, Drop) for a in t.add(s('a', 1, 2, final=True)))
    acts = t.add(s('a', 2, 0))
    assert isinstance(acts[0], Supersede) and spoken(acts) == [0]


def test_gap_is_skipped_after_timeout():
    t = TurnTracker(reorder_timeout=1.0)
    t.add(s('a', 1, 0, received=0.0))
    assert spoken(t.add(s('a', 1, 2, received=0.5))) == []
    assert t.poll(1.0) == []
    assert spoken(t.poll(1.6)) == [2]
    assert spoken(t.add(s('a', 1, 1))) == []            # too late: dropped as duplicate


def test_marker_only_reply():
    t = TurnTracker()
    acts = t.add(s('z', 0, 0, final=True))
    assert acts == [ReplyEnd(('z', 0), -1, False)]

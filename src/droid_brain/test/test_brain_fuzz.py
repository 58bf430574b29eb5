"""Fuzz: the brain's logic cores against hostile messages (no ROS).

Turn tracker (speech/transcription -> turns), mode machine (set_mode service, wake word,
speech events, the timer) and tool argument validation (what the LLM sends back): no
exception escapes, and the state stays valid.
"""

import json
import math

import pytest
from droid_brain.modes import MODES, SPEAKING_MAX_S, ModeMachine
from droid_brain.turns import TurnTracker
from droid_common import fuzz as F
from hypothesis import given
from hypothesis import strategies as st

from droid_brain import tools

VALID_MODES = set(MODES.values())

# ---- turn tracker ---------------------------------------------------------------------------

transcription = st.tuples(F.ids(), F.ints(), F.texts(), st.booleans(), F.stamps(),
                          st.floats(900.0, 1100.0) | F.floats())


@F.fuzz(300)
@given(st.lists(transcription, max_size=60), st.integers(1, 4000))
def test_turn_tracker_survives_hostile_transcriptions(messages, max_chars):
    tracker = TurnTracker(history=64, max_chars=max_chars)
    answered = []
    for cid, uid, text, final, stamp, now in messages:
        d = tracker.admit(cid, uid, text, final, stamp, now)
        assert isinstance(d.reason, str) and math.isfinite(d.stamp)
        if d.text is None:
            continue
        assert final and d.text.strip() and d.text == d.text.strip() or d.truncated
        assert 0 < len(d.text) <= max_chars
        answered.append((cid, int(uid)))
    # each (conversation, utterance) answered once
    assert len(answered) == len(set(answered))
    # within a conversation, answered utterances only go forward ...
    last = {}
    for cid, uid in answered:
        if cid:
            assert uid > last.get(cid, -math.inf), (cid, uid, last)
            last[cid] = uid
    # ... and a superseded conversation never comes back
    order = [cid for cid, _ in answered if cid]
    for i, cid in enumerate(order):
        later = order[i + 1:]
        if cid in later:
            other = [c for c in later[:later.index(cid)] if c != cid]
            assert not other, f'{cid} answered again after {other[0]}'


def test_turn_tracker_rules():
    t = TurnTracker()
    assert t.admit('a', 1, ' hello ', True, 10.0, 10.0).text == 'hello'
    assert t.admit('a', 1, 'hello', True, 10.0, 10.0).reason.startswith('duplicate')
    assert t.admit('a', 3, 'next', True, 11.0, 11.0).text == 'next'
    assert t.admit('a', 2, 'late', True, 10.5, 12.0).reason.startswith('stale')
    assert t.admit('b', 1, 'new', True, 12.0, 12.0).text == 'new'
    assert t.admit('a', 4, 'old conversation', True, 13.0, 13.0).reason.startswith('stale')
    assert t.admit('c', 1, 'before b started', True, 11.5, 13.0).reason.startswith('stale')
    assert t.admit('c', 1, 'partial', False, 14.0, 14.0).text is None
    assert t.admit('d', 1, '   ', True, 14.0, 14.0).text is None
    d = t.admit('d', 1, 'x' * 5000, True, float('nan'), 14.0)        # NaN stamp = now
    assert d.truncated and len(d.text) == 2000 and d.stamp == 14.0
    assert t.admit('', 1, 'chat without id', True, 0.0, 15.0).text
    assert t.admit('', 1, 'chat without id', True, 0.0, 15.0).text is None


# ---- mode machine -----------------------------------------------------------------------------

mode_op = st.one_of(
    st.tuples(st.just('set'), st.one_of(F.ints(), st.sampled_from(sorted(VALID_MODES)),
                                        F.floats(), st.none(), st.booleans(), F.texts(100))),
    st.tuples(st.just('wake'), st.none()),
    st.tuples(st.just('activity'), st.none()),
    st.tuples(st.just('speech'), st.booleans()),
    st.tuples(st.just('tick'), st.none()),
)
times = st.floats(0.0, 500.0) | F.floats()


def check_mode_state(m: ModeMachine):
    assert type(m.mode) is int and m.mode in VALID_MODES
    if m.return_mode is not None:
        assert type(m.return_mode) is int and m.return_mode in VALID_MODES
        assert m.mode == MODES['interactive'] and m.return_mode != MODES['interactive']
    assert math.isfinite(m.last_activity)
    assert m.last_change.mode == m.mode and math.isfinite(m.last_change.stamp)


@F.fuzz(300)
@given(st.sampled_from(sorted(VALID_MODES)), F.durations(),
       st.lists(st.tuples(mode_op, times), max_size=80))
def test_mode_machine_survives_hostile_inputs(initial, timeout, ops):
    m = ModeMachine(initial, timeout, 0.0)
    for (op, arg), now in ops:
        if op == 'set':
            change, error = m.set(arg, 'fuzz', now)
            if error:
                assert change is None and 'invalid mode' in error
        elif op == 'wake':
            m.wake(now)
        elif op == 'activity':
            m.activity(now)
        elif op == 'speech':
            m.speech(arg, now)
        else:
            m.tick(now)
        check_mode_state(m)
    # a wake-word INTERACTIVE always ends: after the timeout (and the longest a stuck
    # STARTED can hold it), the next tick goes back
    if m.return_mode is not None and F.finite(m.timeout) and 0 < m.timeout < 1e6 and \
            abs(m.last_activity) < 1e12:          # (beyond, + timeout is lost to rounding)
        later = m.last_activity + m.timeout + SPEAKING_MAX_S + 1.0
        change = m.tick(later)
        assert change is not None and m.mode != MODES['interactive']
        check_mode_state(m)


def test_mode_machine_clock_going_back_restarts_the_timeout():
    m = ModeMachine(MODES['idle'], 20.0, 1000.0)
    assert m.wake(1000.0) is not None
    assert m.tick(5.0) is None                 # /clock restarted (a replay from the top)
    assert m.mode == MODES['interactive']
    assert m.tick(26.0) is not None and m.mode == MODES['idle']   # 20 s after the jump


# ---- tool argument validation ----------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), F.ints(), F.floats(), F.texts(6000),
                      st.sampled_from(['red', '#ff8800', 'fff', 'happy', 'sleep', 'cantina']))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.text(max_size=12), inner, max_size=4),
                          max_leaves=12)
arg_names = st.sampled_from(['query', 'level', 'pattern', 'colour', 'brightness', 'duration',
                             'mode', 'name', 'extra', '']) | st.text(max_size=20)
tool_names = st.sampled_from(sorted(tools.REGISTRY)) | F.texts(5000)


def raw_arguments():
    """What an LLM (or an attacker through it) could put in arguments_json."""
    as_json = st.dictionaries(arg_names, json_value, max_size=6).map(
        lambda d: json.dumps(d, allow_nan=True))
    hostile = st.one_of(
        F.texts(20_000),
        st.sampled_from(['null', '[]', '1e999', '-1e999', 'NaN', '"x"', '{"level": NaN}',
                         '{"level": Infinity}', '{"duration": -Infinity}', '{', '{}}',
                         '{"a": 1, "a": 2}', '\ufeff{}']),
        st.integers(1, 10_000).map(lambda n: '[' * n + ']' * n),
        st.integers(1, 10_000).map(lambda n: '{"a":' * n + '1' + '}' * n),
        json_value.map(lambda v: json.dumps(v, allow_nan=True)))
    return as_json | hostile


def check_valid_arguments(name, model):
    spec = tools.REGISTRY[name]
    assert isinstance(model, spec.model)
    for field, value in model.model_dump().items():
        if isinstance(value, float):
            assert math.isfinite(value), (name, field, value)
    if name == 'set_volume':
        assert 0.0 <= model.level <= 1.0
    elif name == 'set_eyes':
        assert 0.0 <= model.brightness <= 1.0 and 0.0 <= model.duration <= 600.0
        assert model.pattern in tools.EYE_PATTERNS
        assert all(0.0 <= c <= 1.0 for c in model.rgb)
    elif name == 'set_mode':
        assert model.mode in tools.MODES
    elif name == 'play_music':
        assert 1 <= len(model.query) <= 200
    elif name == 'set_persona':
        assert 1 <= len(model.name) <= 64


@F.fuzz(500)
@given(tool_names, raw_arguments())
def test_tool_validation_raises_only_tool_errors(name, arguments_json):
    try:
        model = tools.validate(name, arguments_json)
    except tools.ToolError as exc:
        message = str(exc)
        assert message and len(message) <= 3 * tools.MAX_ARGUMENTS_CHARS + 5000
        return
    check_valid_arguments(name, model)


@F.fuzz(300)
@given(st.sampled_from(sorted(tools.REGISTRY)), st.data())
def test_tool_validation_of_well_formed_but_hostile_values(name, data):
    fields = list(tools.REGISTRY[name].model.model_fields)
    args = {f: data.draw(json_value, label=f) for f in fields if data.draw(st.booleans())}
    try:
        model = tools.validate(name, json.dumps(args, allow_nan=True))
    except tools.ToolError:
        return
    check_valid_arguments(name, model)


def test_deeply_nested_arguments_are_a_clear_error():
    text = '[' * 1999 + ']' * 1999             # within the length limit, beyond recursion
    assert len(text) <= tools.MAX_ARGUMENTS_CHARS
    with pytest.raises(tools.ToolError, match='JSON'):
        tools.validate('set_volume', text)


def test_an_unknown_tool_name_is_not_echoed_in_full():
    with pytest.raises(tools.ToolError) as exc:
        tools.validate('x' * 100_000, '{}')
    assert len(str(exc.value)) < 400 and 'set_volume' in str(exc.value)

"""Fuzz: the listener's endpointer against hostile input (plain Python).

Capture times out of order, NaN or infinite; speech probabilities and wake scores that are
NaN, infinite or out of [0, 1]; unknown modes and speech events; odd frame sizes; hostile
conversation ids: no exception escapes, and the utterance streams stay well formed.
"""

import itertools
import math

import numpy as np
from droid_audio.endpointer import (
    MODE,
    SPEECH,
    UTT,
    ListenerConfig,
    ListenerCore,
    UtteranceEvent,
)
from droid_common import fuzz as F
from hypothesis import given
from hypothesis import strategies as st

FRAME = 0.08

frame = st.tuples(
    st.one_of(st.just('next'), st.just('next'), st.just('next'), F.floats(),
              st.floats(-5.0, 60.0)),                                 # capture time
    st.one_of(st.floats(0.0, 1.0), F.floats()),                       # VAD probability
    st.one_of(st.none(), st.dictionaries(st.sampled_from(['hey_jarvis', '', 'x' * 300]),
                                         st.one_of(st.sampled_from([0.0, 0.97]), F.floats()),
                                         max_size=3)),
    st.sampled_from([1280, 1280, 1280, 0, 1, 4000]))                 # frame size
control = st.one_of(
    st.none(), st.none(), st.none(),
    st.tuples(st.just('mode'), st.one_of(st.sampled_from(sorted(MODE.values())), F.ints())),
    st.tuples(st.just('speech'), st.one_of(st.sampled_from(sorted(SPEECH.values())),
                                           F.ints()),
              F.ids(), st.booleans(), st.one_of(st.just('next'), F.floats())))


@F.fuzz(200)
@given(st.lists(st.tuples(frame, control), min_size=1, max_size=200))
def test_endpointer_survives_hostile_input(steps):
    ids = (f'conv{i}' for i in itertools.count(1))
    core = ListenerCore(ListenerConfig(refractory_s=0.5, max_utterance_s=3.0),
                        initial_mode=MODE['INTERACTIVE'], id_factory=lambda: next(ids))
    events = []
    i = 0
    for (t, prob, scores, n), ctl in steps:
        t = i * FRAME if t == 'next' else t
        i += 1
        if ctl is not None and ctl[0] == 'mode':
            events += core.set_mode(ctl[1], i * FRAME)
        elif ctl is not None:
            _, event, cid, last, when = ctl
            core.on_speech_event(event, i * FRAME if when == 'next' else when, cid, last)
        events += core.process(t, np.full(n, i % 30000, dtype=np.int16), scores, prob)
        assert core.mode in MODE.values()
    open_key, last_uid = None, {}
    for e in events:
        assert math.isfinite(getattr(e, 't', 0.0)), e
        if not isinstance(e, UtteranceEvent):
            continue
        key = (e.conversation_id, e.utterance_id)
        assert math.isfinite(e.audio_start) and math.isfinite(e.audio_end)
        if e.state == UTT['STARTED']:
            assert open_key is None, 'two utterances open at once'
            assert e.utterance_id == last_uid.get(e.conversation_id, 0) + 1
            last_uid[e.conversation_id] = e.utterance_id
            open_key = key
        else:
            assert key == open_key
            if e.state != UTT['AUDIO']:
                open_key = None

"""Real words vs backchannels over the droid's voice."""

import pytest
from droid_common.turn_taking import confirms_barge_in, real_words


@pytest.mark.parametrize('text, confirmed', [
    ('', False), ('   ', False), ('Uh-huh.', False), ('mm hmm', False), ('Yeah, ok.', False),
    ('*cough*', False), ('um... right', False), ('Hmm.', False),
    ('Stop!', True), ('wait', True), ('No.', True),
    ('What time is it?', True), ('play music', True), ('yeah but why', True),
])
def test_confirms_barge_in(text, confirmed):
    assert confirms_barge_in(text) is confirmed


def test_min_words_parameter():
    assert not confirms_barge_in('hello there', min_words=3)
    assert confirms_barge_in('hello there friend', min_words=3)
    assert confirms_barge_in('hello', min_words=1)
    assert confirms_barge_in('hello', min_words=0)        # clamped to 1


def test_real_words_drop_fillers():
    assert real_words("Um, uh-huh, what's the time?") == ["what's", 'the', 'time']

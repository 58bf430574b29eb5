"""What the user heard of an interrupted sentence."""

import pytest
from droid_voice.heard import heard_text
from hypothesis import given
from hypothesis import strategies as st

TEXT = 'I am the extraordinary droid of the cantina.'


@pytest.mark.parametrize('played, heard', [
    (0.0, ''),
    (0.05, ''),                                   # not even the first word ended
    (0.25, 'I'),                                  # 'I' is short ...
    (0.4, 'I am'),
    (1.5, 'I am the'),                            # ... 'extraordinary' is long
    (1.6, 'I am the extraordinary'),
    (2.9, 'I am the extraordinary droid of the'),
    (3.0, TEXT),
    (9.0, TEXT),
])
def test_heard_up_to_the_last_word_played(played, heard):
    assert heard_text(TEXT, played, 3.0) == heard


def test_backend_word_timings_win():
    ends = [0.1, 0.2, 0.3, 2.5, 2.6, 2.7, 2.8, 2.9]
    assert heard_text(TEXT, 1.5, 3.0, ends) == 'I am the'


@given(st.text(max_size=80), st.floats(-5, 20), st.floats(-5, 20))
def test_heard_is_always_a_prefix_of_the_words(text, played, duration):
    heard = heard_text(text, played, duration)
    words = text.split()
    assert heard.split() == words[:len(heard.split())]

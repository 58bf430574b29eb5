"""Sentence chunker: unit cases and hypothesis properties.

Equality notion of the properties (precise): ``normalize(s)`` replaces every run of
whitespace characters (``str.split()`` whitespace) by one space and strips both ends;
for every input, ``normalize(" ".join(chunks)) == normalize(input)``.
"""

import pytest
from droid_brain.chunker import SentenceChunker, normalize
from hypothesis import given, settings
from hypothesis import strategies as st


def run(text, pieces=None, **kw):
    c = SentenceChunker(**kw)
    out = []
    if pieces is None:
        pieces = list(text)
    for p in pieces:
        out += c.feed(p)
    return out + c.flush()


@pytest.mark.parametrize('text,expected', [
    ('Hello there. How are you? I am fine!', ['Hello there.', 'How are you?', 'I am fine!']),
    ('Pi is 3.14 roughly. It costs $3.50 today.', ['Pi is 3.14 roughly.', 'It costs $3.50 today.']),
    ('Dr. Smith met Mr. Jones at St. Mary. They talked.',
     ['Dr. Smith met Mr. Jones at St. Mary.', 'They talked.']),
    ('Bring snacks, e.g. chips, i.e. crunchy ones. Thanks.',
     ['Bring snacks, e.g. chips, i.e. crunchy ones.', 'Thanks.']),
    ('Wait... what? Well... OK then.', ['Wait... what?', 'Well...', 'OK then.']),
    ('Hmm… let me think. Yes!', ['Hmm… let me think.', 'Yes!']),
    ('"Really?" she asked. He said "go." Then left.',
     ['"Really?" she asked.', 'He said "go."', 'Then left.']),
    ('J. R. R. Tolkien wrote it. The U.S. Army read it.',
     ['J. R. R. Tolkien wrote it.', 'The U.S. Army read it.']),
    ('What?! No way!! Fine.', ['What?!', 'No way!!', 'Fine.']),
    ('First paragraph\n\nSecond one', ['First paragraph', 'Second one']),
    ('No stop at all', ['No stop at all']),
    ('', []),
    ('   ', []),
])
def test_sentences(text, expected):
    assert run(text) == expected
    assert run(text, [text]) == expected


def test_each_sentence_is_emitted_as_soon_as_it_is_complete():
    c = SentenceChunker()
    assert c.feed('Hello there') == []
    assert c.feed('.') == []                 # could still be "there.5" or an abbreviation
    assert c.feed(' How') == ['Hello there.']  # the next word decides: emitted at once
    assert c.feed(' are you?') == []
    assert c.feed(' I') == ['How are you?']
    assert c.flush() == ['I']
    assert c.pending == ''


def test_number_does_not_split_across_pieces():
    assert run('It is 3', ['It is 3', '.', '5 degrees. ', 'Cold.']) == ['It is 3.5 degrees.', 'Cold.']


def test_long_sentence_is_cut_at_a_clause_boundary():
    text = ('one two three four five six seven eight nine ten, eleven twelve thirteen fourteen '
            'fifteen; sixteen seventeen eighteen nineteen twenty')
    out = run(text, max_chars=60, min_chars=10)
    assert out == ['one two three four five six seven eight nine ten,',
                   'eleven twelve thirteen fourteen fifteen;',
                   'sixteen seventeen eighteen nineteen twenty']
    assert all(len(s) <= 60 for s in out)


def test_long_sentence_without_clause_is_cut_at_whitespace():
    text = ' '.join(['word'] * 40)
    out = run(text, max_chars=50, min_chars=10)
    assert len(out) > 1 and all(len(s) <= 50 for s in out)
    assert normalize(' '.join(out)) == text


def test_dash_is_a_clause_boundary():
    text = 'alpha beta gamma delta - epsilon zeta eta theta iota kappa lambda mu'
    out = run(text, max_chars=40, min_chars=5)
    assert out[0] == 'alpha beta gamma delta -'


def test_invalid_limits():
    with pytest.raises(ValueError):
        SentenceChunker(max_chars=10, min_chars=10)


alphabet = st.sampled_from(list('abcXYZ019 .,;:!?…"\'-—\n\t') + ['Dr.', 'e.g.', '3.5', '...',
                                                               ' The', ' the'])
texts = st.lists(alphabet, max_size=120).map(''.join)


@settings(max_examples=300, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(0, 400), max_size=12),
       max_chars=st.integers(20, 120))
def test_property_concatenation_and_split_invariance(text, cuts, max_chars):
    whole = run(text, [text], max_chars=max_chars, min_chars=5)
    bounds = sorted({c for c in cuts if c < len(text)} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    streamed = run(text, pieces, max_chars=max_chars, min_chars=5)
    # Concatenated chunks equal the input, modulo whitespace normalisation.
    assert normalize(' '.join(whole)) == normalize(text)
    # The split of the stream into pieces never changes the sentences.
    assert streamed == whole
    # Chunks are stripped and non-empty.
    assert all(s and s == s.strip() for s in whole)


@settings(max_examples=200, deadline=None)
@given(words=st.lists(st.text(alphabet='abcdefghij', min_size=1, max_size=12), min_size=1,
                      max_size=80), max_chars=st.integers(20, 80))
def test_property_long_text_without_stops_respects_max_chars(words, max_chars):
    text = ' '.join(words)
    out = run(text, [text], max_chars=max_chars, min_chars=5)
    assert normalize(' '.join(out)) == normalize(text)
    # Words are at most 12 chars, so a cut at whitespace is always possible.
    assert all(len(s) <= max_chars for s in out)


# -- the first sentence cut at a clause, so speech starts sooner ---------------------------
LONG = ('Well, my friend, the cantina band plays every single night from eight until late, '
        'and the drinks are cheap. Come by later, okay?')


def test_first_long_sentence_is_cut_at_the_first_clause_after_the_threshold():
    out = run(LONG, first_clause_chars=60)
    assert out == ['Well, my friend, the cantina band plays every single night from eight '
                   'until late,', 'and the drinks are cheap.', 'Come by later, okay?']
    assert run(LONG) == run(LONG, first_clause_chars=0) == [
        LONG.split(' Come')[0], 'Come by later, okay?']


def test_only_the_first_sentence_is_cut_and_numbers_never_are():
    text = 'One thing, 1,000 times over. Then, later on, another thing, and more.'
    assert run(text, first_clause_chars=5) == ['One thing,', '1,000 times over.',
                                              'Then, later on, another thing, and more.']
    short = 'Hello, friend. How are you?'
    assert run(short, first_clause_chars=60) == ['Hello, friend.', 'How are you?']


def test_first_clause_waits_for_the_space_after_the_comma():
    c = SentenceChunker(first_clause_chars=10)
    assert c.feed('Twelve chars,') == []             # "1,000" or ", ": not known yet
    assert c.feed('000 and on') == []
    assert c.feed(', more') == ['Twelve chars,000 and on,']
    assert c.flush() == ['more']


@settings(max_examples=200, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(0, 400), max_size=12),
       first=st.integers(0, 60))
def test_property_first_clause_cut_keeps_text_and_split_invariance(text, cuts, first):
    whole = run(text, [text], first_clause_chars=first)
    bounds = sorted({c for c in cuts if c < len(text)} | {0, len(text)})
    pieces = [text[a:b] for a, b in zip(bounds, bounds[1:])]
    assert run(text, pieces, first_clause_chars=first) == whole
    assert normalize(' '.join(whole)) == normalize(text)

"""Reply text made for speaking: markdown, URLs, emoji, numbers, dates, units, abbreviations."""

import threading

import numpy as np
import pytest
from droid_voice.speakable import speakable
from droid_voice.speaker import Speaker, Utterance
from droid_voice.synth import Backend
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.mark.parametrize('text, said', [
    ('Here is **bold**, _soft_ and `code`.', 'Here is bold, soft and code.'),
    ('Read [the docs](https://example.com/a/b).', 'Read the docs.'),
    ('Visit https://www.starwars.com/news for more!', 'Visit starwars dot com for more!'),
    ('- one\n- two\n- three', 'one, two, three'),
    ('# Title\n\nSome text.', 'Title, Some text.'),
    ('```python\nprint(1)\n```\nDone.', '(code omitted) Done.'),
    ('Party time 🎉🚀!', 'Party time!'),
    ('It is 20°C and 5 km away.', 'It is twenty degrees Celsius and five kilometres away.'),
    ('In 1977 it made $775,400,000.',
     'In nineteen seventy-seven it made seven hundred and seventy-five million, four '
     'hundred thousand dollars.'),
    ('It costs $5.25.', 'It costs five dollars, twenty-five cents.'),
    ('Meet Dr. Who at 10:30 on 2026-12-01.',
     'Meet doctor Who at ten thirty on December first, twenty twenty-six.'),
    ('The 3rd droid, e.g. R2, weighs 2.5 kg.',
     'The third droid, for example R2, weighs two point five kilograms.'),
    ('50% of 1/2 is 1/4.', 'fifty percent of one half is one quarter.'),
    ('Room 101, at 7:05 p.m.', 'Room one hundred and one, at seven oh five p m.'),
    ('Call at 9 am or 25:99.', 'Call at nine a m or 25:99.'),
    ('He ran -3 m in 1 s.', 'He ran minus three metres in one second.'),
    ('Plain words stay as they are.', 'Plain words stay as they are.'),
])
def test_speakable(text, said):
    assert speakable(text) == said


def test_empty_and_blank():
    assert speakable('') == '' and speakable('   \n') == ''


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_and_never_loses_all_the_words(text):
    out = speakable(text)
    assert isinstance(out, str)
    letters = [c for c in text if c.isalpha() and c.isascii()]
    if len(letters) >= 3 and '`' not in text and '<' not in text and '](' not in text:
        assert any(c.isalpha() for c in out), (text, out)


class Recording(Backend):
    name = 'rec'

    def __init__(self):
        self.texts = []
        self.done = threading.Event()

    def stream(self, text, voice=None, cancel=None):
        self.texts.append(text)
        self.done.set()
        yield np.zeros(160, dtype=np.int16)


def test_speaker_synthesises_the_speakable_words_and_keeps_the_text():
    rec = Recording()
    spk = Speaker(rec, normalize=speakable)
    try:
        utt = Utterance('It is **3.5** km.')
        assert spk.submit(utt)
        assert rec.done.wait(5)
        assert rec.texts == ['It is three point five kilometres.']
        assert utt.text == 'It is **3.5** km.' and utt.spoken == rec.texts[0]
    finally:
        spk.close()

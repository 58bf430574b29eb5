"""Reply text made for speaking (plain Python, no rclpy).

The brain publishes what the model wrote (``brain/reply`` keeps markdown, URLs, digits);
the tts speaks :func:`speakable` of it:

* markdown is parsed (mistune's AST) and only the words are kept: emphasis, headings,
  list bullets, tables and link syntax go; a link is read as its text; a bare URL as its
  host ("example dot com"); a code block as "(code omitted)"; inline code as its words;
* emoji are removed (the ``emoji`` package knows them all);
* numbers become words with num2words: cardinals, decimals, negatives, thousands
  separators, ordinals (``3rd``), years (``in 1977``), percentages, currency (``$5.25``),
  times (``10:30``), ISO dates (``2026-12-01``) and ``1/2``-style fractions as words;
* units after a number (``5 km``, ``20°C``, ``3 kg``) and common abbreviations
  (``Dr.``, ``e.g.``) are spelled out from the small tables below.

Whatever cannot be parsed is spoken as it came, never dropped: normalisation must not lose
words. ``speakable`` is pure and cheap (< 1 ms for a sentence): it runs on the speaker's
synthesis thread, never in a ROS callback.
"""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import urlparse

import emoji
import mistune
from num2words import num2words

_MARKDOWN = mistune.create_markdown(renderer=None, plugins=['strikethrough', 'table', 'url'])

UNITS = {
    'km': ('kilometre', 'kilometres'), 'm': ('metre', 'metres'),
    'cm': ('centimetre', 'centimetres'), 'mm': ('millimetre', 'millimetres'),
    'kg': ('kilogram', 'kilograms'), 'g': ('gram', 'grams'), 'mg': ('milligram', 'milligrams'),
    'lb': ('pound', 'pounds'), 'lbs': ('pound', 'pounds'), 'oz': ('ounce', 'ounces'),
    'mi': ('mile', 'miles'), 'ft': ('foot', 'feet'), 'in': ('inch', 'inches'),
    'km/h': ('kilometre per hour', 'kilometres per hour'), 'kph': ('kilometre per hour',
                                                                  'kilometres per hour'),
    'mph': ('mile per hour', 'miles per hour'), 'm/s': ('metre per second',
                                                        'metres per second'),
    'l': ('litre', 'litres'), 'ml': ('millilitre', 'millilitres'),
    'ms': ('millisecond', 'milliseconds'), 's': ('second', 'seconds'),
    'min': ('minute', 'minutes'), 'h': ('hour', 'hours'), 'hz': ('hertz', 'hertz'),
    'khz': ('kilohertz', 'kilohertz'), 'mhz': ('megahertz', 'megahertz'),
    'ghz': ('gigahertz', 'gigahertz'), 'kb': ('kilobyte', 'kilobytes'),
    'mb': ('megabyte', 'megabytes'), 'gb': ('gigabyte', 'gigabytes'),
    'tb': ('terabyte', 'terabytes'), 'w': ('watt', 'watts'), 'kw': ('kilowatt', 'kilowatts'),
    'v': ('volt', 'volts'), 'ma': ('milliamp', 'milliamps'), 'mah': ('milliamp hour',
                                                                   'milliamp hours'),
    '°c': ('degree Celsius', 'degrees Celsius'), '°f': ('degree Fahrenheit',
                                                       'degrees Fahrenheit'),
    '°': ('degree', 'degrees'), '%': ('percent', 'percent'),
}

ABBREVIATIONS = {
    'dr.': 'doctor', 'mr.': 'mister', 'mrs.': 'missus', 'ms.': 'miz', 'st.': 'saint',
    'prof.': 'professor', 'e.g.': 'for example', 'i.e.': 'that is', 'etc.': 'et cetera',
    'vs.': 'versus', 'approx.': 'approximately', 'no.': 'number',
}

CURRENCIES = {'$': ('USD', 'dollar', 'dollars'), '€': ('EUR', 'euro', 'euros'),
              '£': ('GBP', 'pound', 'pounds')}

# Tokens: a URL, a date, a time, a currency amount, a number with an optional unit or
# ordinal suffix, an abbreviation. Each is converted by one function below.
_URL = r'(?P<url>\b(?:https?://|www\.)[^\s<>()]+[^\s<>().,;:!?\'"])'
_DATE = r'(?P<date>\b\d{4}-\d{2}-\d{2}\b)'
_DIGITS = r'(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?'      # 1,234,567.89 -- not "101,"
_AMPM = r'(?:\s?(?P<ampm>[ap]m\b|[ap]\.m\.))'
_TIME = (r'(?P<time>\b(?P<hh>\d{1,2})(?::(?P<mm>\d{2})\b' + _AMPM + '?|' + _AMPM.replace(
    '?P<ampm>', '?P<ampm2>') + '))')
_MONEY = r'(?P<money>(?P<cur>[$€£])\s?(?P<amount>' + _DIGITS + '))'
_NUM = (r'(?P<num>(?<![\w.])-?' + _DIGITS + r')(?:(?P<ord>st|nd|rd|th)\b|'
        r'(?:\s?(?P<unit>' + '|'.join(sorted((re.escape(u) for u in UNITS), key=len,
                                              reverse=True)) + r')(?![\w/])))?')
_FRACTION = r'(?P<frac>\b\d+/\d+\b)'
_ABBR = r'(?P<abbr>(?<!\w)(?:' + '|'.join(re.escape(a) for a in ABBREVIATIONS) + r'))'
_TOKENS = re.compile('|'.join([_URL, _DATE, _TIME, _MONEY, _FRACTION, _NUM, _ABBR]),
                     re.IGNORECASE)
_YEAR_CONTEXT = re.compile(r'\b(?:in|since|from|by|of|year|until|before|after)\s*$',
                           re.IGNORECASE)


def speakable(text: str) -> str:
    """``text`` as a voice should say it (see the module docstring)."""
    if not text or not text.strip():
        return ''
    try:
        words = _markdown_words(text)
    except Exception:  # noqa: BLE001 - never lose a sentence to the parser
        words = text
    words = emoji.replace_emoji(words, replace='')
    words = _TOKENS.sub(_token, words)
    words = re.sub(r'\s+([.,;:!?])', r'\1', re.sub(r'\s+', ' ', words))
    return words.strip().rstrip(',').strip()


# -- markdown ---------------------------------------------------------------------------
def _markdown_words(text: str) -> str:
    return _join(_walk(_MARKDOWN(text)))


def _join(parts: list) -> str:
    return ''.join(parts)


def _walk(nodes) -> list:
    out: list = []
    for node in nodes or []:
        kind = node.get('type')
        children = node.get('children')
        if kind in ('text', 'codespan'):
            out.append(node.get('raw', ''))
        elif kind == 'block_code':
            out.append(' (code omitted) ')
        elif kind in ('softbreak', 'linebreak', 'blank_line', 'thematic_break'):
            out.append(' ')
        elif kind == 'link':
            label = _join(_walk(children)).strip()
            url = (node.get('attrs') or {}).get('url', '')
            out.append(label if label and label != url else _url_words(url))
        elif kind == 'image':
            alt = _join(_walk(children)).strip()
            out.append(f'(image: {alt})' if alt else '')
        elif kind in ('block_html', 'inline_html'):
            out.append(re.sub(r'<[^>]*>', ' ', node.get('raw', '')))
        elif kind in ('paragraph', 'heading', 'block_text', 'list_item', 'table_cell'):
            body = _join(_walk(children)).strip()
            out.append(_end_clause(body) + ' ' if body else '')
        else:
            out.extend(_walk(children))
            if kind in ('table_row', 'table_head'):
                out.append(' ')
    return out


def _end_clause(body: str) -> str:
    """Blocks (a list item, a heading) end with a pause even without punctuation."""
    return body if body[-1:] in '.!?,;:' else body + ','


# -- tokens -----------------------------------------------------------------------------
def _token(m: re.Match) -> str:
    try:
        if m.group('url'):
            return _url_words(m.group('url'))
        if m.group('date'):
            return _date_words(m.group('date')) or m.group(0)
        if m.group('time'):
            return _time_words(m)
        if m.group('money'):
            return _money_words(m.group('cur'), m.group('amount'))
        if m.group('frac'):
            return _fraction_words(m.group('frac'))
        if m.group('num'):
            return _number_words(m)
        if m.group('abbr'):
            return ABBREVIATIONS[m.group('abbr').lower()]
    except (ValueError, OverflowError, ArithmeticError, KeyError, NotImplementedError):
        pass
    return m.group(0)


def _url_words(url: str) -> str:
    parsed = urlparse(url if '://' in url else 'http://' + url)
    host = (parsed.hostname or url).removeprefix('www.')
    return ' dot '.join(p for p in host.split('.') if p)


def _date_words(text: str) -> str:
    try:
        d = date.fromisoformat(text)
    except ValueError:
        return ''
    return (f"{d.strftime('%B')} {num2words(d.day, to='ordinal')}, "
            f"{num2words(d.year, to='year')}")


def _time_words(m: re.Match) -> str:
    hours, minutes = int(m.group('hh')), int(m.group('mm') or 0)
    ampm = (m.group('ampm') or m.group('ampm2') or '').lower()
    if hours > 23 or minutes > 59 or (ampm and not 1 <= hours <= 12):
        return m.group(0)
    out = num2words(hours)
    if minutes:
        out += (' oh ' if minutes < 10 else ' ') + num2words(minutes)
    elif not ampm:
        out += " o'clock"
    if ampm:
        out += (' a m' if ampm.startswith('a') else ' p m') + ('.' if ampm.endswith('.') else '')
    return out


def _money_words(cur: str, amount: str) -> str:
    code, one, many = CURRENCIES[cur]
    raw = amount.replace(',', '')
    if '.' not in raw or not raw.split('.')[1].strip('0'):
        value = int(float(raw))
        return f'{num2words(value)} {one if value == 1 else many}'
    return num2words(float(raw), to='currency', currency=code)


def _fraction_words(text: str) -> str:
    num, den = (int(x) for x in text.split('/'))
    if den == 0:
        return text
    if den == 2:
        return f"{num2words(num)} {'half' if num == 1 else 'halves'}"
    if den == 4:
        return f"{num2words(num)} {'quarter' if num == 1 else 'quarters'}"
    ordinal = num2words(den, to='ordinal')
    return f'{num2words(num)} {ordinal}' + ('' if num == 1 else 's')


def _number_words(m: re.Match) -> str:
    raw = m.group('num').replace(',', '')
    if m.group('ord'):
        return num2words(int(raw), to='ordinal')
    value = float(raw) if '.' in raw else int(raw)
    unit = (m.group('unit') or '').lower()
    if (not unit and isinstance(value, int) and 1100 <= value <= 2099
            and ',' not in m.group('num')
            and _YEAR_CONTEXT.search(m.string[:m.start()])):
        return num2words(value, to='year')
    words = num2words(value)
    if not unit:
        return words
    one, many = UNITS[unit]
    return f'{words} {one if value in (1, -1) else many}'

"""Colour names and hex codes -> (r, g, b) in [0, 1] (plain Python)."""

from __future__ import annotations

import re

NAMED = {
    'red': (1.0, 0.0, 0.0), 'green': (0.0, 1.0, 0.0), 'blue': (0.0, 0.0, 1.0),
    'white': (1.0, 1.0, 1.0), 'black': (0.0, 0.0, 0.0), 'yellow': (1.0, 0.85, 0.0),
    'orange': (1.0, 0.5, 0.0), 'amber': (1.0, 0.75, 0.0), 'purple': (0.6, 0.0, 1.0),
    'violet': (0.55, 0.0, 1.0), 'pink': (1.0, 0.4, 0.7), 'magenta': (1.0, 0.0, 1.0),
    'cyan': (0.0, 1.0, 1.0), 'teal': (0.0, 0.6, 0.6), 'gold': (1.0, 0.84, 0.0),
    'warm white': (1.0, 0.8, 0.6), 'ice blue': (0.6, 0.85, 1.0),
}
_HEX_RE = re.compile(r'^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$')


def parse_colour(value) -> tuple:
    """A colour name, ``#rrggbb``/``#rgb`` hex, or an [r, g, b] list in [0, 1] -> tuple.

    Raises ValueError with the accepted forms.
    """
    if isinstance(value, (list, tuple)):
        if len(value) != 3 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0
                                      for v in value):
            raise ValueError(f'colour list must be [r, g, b] with each in [0, 1], got {value!r}')
        return tuple(float(v) for v in value)
    text = str(value).strip().lower().replace('_', ' ').replace('-', ' ')
    text = ' '.join(text.split())
    if text in NAMED:
        return NAMED[text]
    m = _HEX_RE.match(str(value).strip())
    if m:
        h = m.group(1)
        if len(h) == 3:
            h = ''.join(c * 2 for c in h)
        return tuple(int(h[k:k + 2], 16) / 255.0 for k in (0, 2, 4))
    raise ValueError(f'unknown colour {value!r}: use a name ({", ".join(sorted(NAMED))}) '
                     f'or a hex code like #ff8800')

"""Sentence chunker for a streamed reply (plain Python).

Text arrives in arbitrary pieces (LLM deltas); :meth:`SentenceChunker.feed` returns every
sentence that became complete, :meth:`SentenceChunker.flush` returns the rest at the end
of the stream.

Rules (all decisions depend only on the text, never on how it was split into pieces):

* A sentence ends after a run of terminators (``.``, ``!``, ``?``, ``…``), optionally
  followed by closing quotes/brackets, when whitespace follows and the next non-space
  character is *not* a lower-case letter (``"Really?" she asked`` and ``wait... what``
  stay one sentence). The decision therefore waits for the first character of the next
  word (LLM tokens usually carry it with the space) or for the end of the stream.
* A single ``.`` after an abbreviation (``Dr.``, ``Mr.``, ``e.g.``, ``i.e.``, ...), an
  initial (``J.``) or a dotted word (``U.S.``) does not end a sentence. ``3.5`` never
  splits (no whitespace after the dot).
* A blank line (paragraph break) ends a sentence.
* The first sentence of a stream may be cut short so that speech starts sooner: with
  ``first_clause_chars`` > 0, it ends at the first clause boundary (``,`` ``;`` ``:`` or a
  dash, followed by whitespace) once it has at least that many characters. Later
  sentences are not affected.
* A sentence with no stop that grows beyond ``max_chars`` is cut at the last clause
  boundary (``,`` ``;`` ``:`` or a dash, followed by whitespace) at or after ``min_chars``;
  failing that at the last whitespace; failing that (one giant word) at the next
  whitespace.

Sentences are returned stripped of surrounding whitespace and are never empty. Cuts are
always made at whitespace, so for any input ``normalize(" ".join(chunks)) ==
normalize(text)`` where :func:`normalize` collapses every whitespace run to one space and
strips both ends.
"""

from __future__ import annotations

import re

TERMINATORS = '.!?…'
CLOSERS = '"\'”’»)]}'
# Words after which a single "." does not end a sentence (compared lower-case, without
# the final dot). Titles precede a (capitalised) name; the Latin ones are mid-sentence.
ABBREVIATIONS = frozenset({
    'mr', 'mrs', 'ms', 'mx', 'dr', 'prof', 'sr', 'jr', 'st', 'mt', 'ft', 'capt', 'cpt',
    'gen', 'sgt', 'lt', 'col', 'cmdr', 'adm', 'rev', 'hon', 'gov', 'sen', 'rep', 'pres',
    'e.g', 'i.e', 'eg', 'ie', 'vs', 'cf', 'approx', 'no', 'nos', 'fig', 'figs', 'vol',
    'ca', 'inc', 'ltd', 'co', 'corp', 'dept', 'est', 'jan', 'feb', 'mar', 'apr', 'jun',
    'jul', 'aug', 'sep', 'sept', 'oct', 'nov', 'dec', 'mon', 'tue', 'wed', 'thu', 'fri',
    'sat', 'sun', 'a.m', 'p.m', 'al', 'op', 'min', 'max', 'tel',
})
CLAUSE_RE = re.compile(r'(?:[,;:]|\s[-–—]|[–—])(?=\s)')
_WS_RE = re.compile(r'\s+')


def normalize(text: str) -> str:
    """Collapse whitespace runs to one space and strip: the chunker's equality notion."""
    return _WS_RE.sub(' ', text).strip()


class SentenceChunker:
    """Incremental sentence splitter; see the module docstring for the rules."""

    def __init__(self, max_chars: int = 200, min_chars: int = 20, first_clause_chars: int = 0):
        if max_chars < 2 or not 0 <= min_chars < max_chars:
            raise ValueError('need max_chars >= 2 and 0 <= min_chars < max_chars')
        if first_clause_chars < 0:
            raise ValueError('need first_clause_chars >= 0')
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.first_clause_chars = first_clause_chars
        self._buf = ''     # text not yet emitted
        self._pos = 0      # scan position in _buf (everything before it is decided)
        self._emitted = 0  # sentences emitted since the start of the stream

    @property
    def pending(self) -> str:
        """Text received but not yet emitted."""
        return self._buf

    def reset(self) -> None:
        self._buf = ''
        self._pos = 0
        self._emitted = 0

    def feed(self, text: str) -> list:
        """Add streamed text; return the sentences completed by it (maybe none)."""
        if not text:
            return []
        self._buf += text
        return self._scan(final=False)

    def flush(self) -> list:
        """End of stream: return every remaining sentence."""
        out = self._scan(final=True)
        rest = self._buf.strip()
        if rest:
            out.append(rest)
        self.reset()
        return out

    # -- scanning -----------------------------------------------------------------------
    def _emit(self, out: list, end: int) -> None:
        sentence = self._buf[:end].strip()
        if sentence:
            out.append(sentence)
            self._emitted += 1
        self._buf = self._buf[end:]
        self._pos = 0

    def _sentence_start(self) -> int:
        """Index of the first non-space character of the pending sentence."""
        n = len(self._buf) - len(self._buf.lstrip())
        return n

    def _scan(self, final: bool) -> list:
        out: list = []
        while True:
            buf = self._buf
            n = len(buf)
            start = self._sentence_start()
            i = self._pos
            progressed = False
            while i < n:
                # Long sentence without a stop: cut once it reaches max_chars.
                if i - start >= self.max_chars:
                    cut = self._long_cut(start, i, final)
                    if cut is None:
                        self._pos = i
                        return out
                    self._emit(out, cut)
                    progressed = True
                    break
                ch = buf[i]
                if self.first_clause_chars and not self._emitted and \
                        i + 1 - start >= self.first_clause_chars and self._clause_end(i):
                    if i + 1 >= n:
                        if not final:
                            self._pos = i      # need the next character: a space?
                            return out
                    elif buf[i + 1].isspace():
                        self._emit(out, i + 1)
                        progressed = True
                        break
                if ch in TERMINATORS:
                    j = i
                    while j < n and buf[j] in TERMINATORS:
                        j += 1
                    while j < n and buf[j] in CLOSERS:
                        j += 1
                    if j >= n:
                        if final:
                            i = j
                            continue
                        self._pos = i      # the run may continue: wait
                        return out
                    if not buf[j].isspace():
                        i = j              # "3.5", "a.b", "?!x": no boundary here
                        continue
                    k = j
                    while k < n and buf[k].isspace():
                        k += 1
                    if k >= n and not final:
                        self._pos = i      # need the next word's first character
                        return out
                    nxt = buf[k] if k < n else ''
                    if self._is_boundary(start, i, j, nxt):
                        self._emit(out, j)
                        progressed = True
                        break
                    i = j
                    continue
                if ch == '\n':
                    k = i + 1
                    while k < n and buf[k] in ' \t\r\f\v':
                        k += 1
                    if k >= n and not final:
                        self._pos = i
                        return out
                    if k < n and buf[k] == '\n' and buf[start:i].strip():
                        self._emit(out, i)
                        progressed = True
                        break
                i += 1
            if not progressed:
                self._pos = i
                return out

    def _clause_end(self, i: int) -> bool:
        """buf[i] ends a clause when followed by whitespace: , ; : or a dash (an em or en
        dash, or a hyphen with a space before it)."""
        ch = self._buf[i]
        if ch in ',;:–—':
            return True
        return ch == '-' and i > 0 and self._buf[i - 1].isspace()

    def _is_boundary(self, start: int, i: int, j: int, nxt: str) -> bool:
        """Terminator run at buf[i:j] (closers included), followed by whitespace."""
        if nxt and nxt.islower():
            return False
        run = self._buf[i:j].rstrip(CLOSERS)
        if run == '.':
            word = self._buf[start:i].split()[-1] if self._buf[start:i].split() else ''
            word = word.lstrip('"\'“‘«([{').lower()
            if word in ABBREVIATIONS:
                return False
            if len(word) == 1 and word.isalpha():
                return False       # an initial: "J. R. R. Tolkien"
            if '.' in word and not word.endswith('..'):
                return False       # dotted abbreviation: "U.S."
        return True

    def _long_cut(self, start: int, i: int, final: bool):
        """Cut position for an over-long sentence spanning buf[start:i] (or None: wait)."""
        buf = self._buf
        lo = start + self.min_chars
        window = buf[:i]
        best = None
        for m in CLAUSE_RE.finditer(window, lo):
            end = m.end()
            if end <= i and end < len(buf) and buf[end].isspace():
                best = end
        if best is not None:
            return best
        ws = [m.start() for m in re.finditer(r'\s', window[lo:])]
        if ws:
            return lo + ws[-1]
        # One giant word: cut at the next whitespace.
        m = re.search(r'\s', buf[i:])
        if m:
            return i + m.start()
        return len(buf) if final else None

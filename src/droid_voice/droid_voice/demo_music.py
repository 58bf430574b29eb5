"""A tiny synthesised demo library, so the mock droid can play "the cantina song" with no
music files at all (plain Python; numpy + soundfile).

    make_demo_library(Path('~/.cache/droid/demo_music').expanduser())

Three short chiptune-style tunes are written as WAV files once; later calls reuse them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATE = 22050
_NOTE = {'C': -9, 'C#': -8, 'D': -7, 'D#': -6, 'Eb': -6, 'E': -5, 'F': -4, 'F#': -3, 'G': -2,
         'G#': -1, 'Ab': -1, 'A': 0, 'A#': 1, 'Bb': 1, 'B': 2}

# (title, beats per minute, [(note+octave or '-', beats), ...])
TUNES = (
    ('Cantina Band (demo)', 220, [
        ('A4', 1), ('D5', 1), ('A4', 1), ('D5', 1), ('A4', .5), ('D5', 1), ('A4', .5), ('-', .5),
        ('G#4', .5), ('A4', 1), ('A4', .5), ('G#4', .5), ('A4', .5), ('G4', .5), ('-', .5),
        ('F#4', .5), ('G4', .5), ('F#4', .5), ('F4', 1.5), ('D4', 2)] * 2),
    ('Imperial March (demo)', 100, [
        ('G4', 1), ('G4', 1), ('G4', 1), ('Eb4', .75), ('Bb4', .25), ('G4', 1), ('Eb4', .75),
        ('Bb4', .25), ('G4', 2), ('D5', 1), ('D5', 1), ('D5', 1), ('Eb5', .75), ('Bb4', .25),
        ('F#4', 1), ('Eb4', .75), ('Bb4', .25), ('G4', 2)]),
    ('Binary Sunset (demo)', 70, [
        ('D4', 1), ('G4', 1), ('A4', .5), ('Bb4', .5), ('A4', 1), ('G4', 1), ('D5', 2),
        ('C5', 1), ('Bb4', .5), ('A4', .5), ('G4', 2), ('-', 1)]),
)


def _freq(note: str) -> float:
    name, octave = note[:-1], int(note[-1])
    return 440.0 * 2.0 ** ((_NOTE[name] + 12 * (octave - 4)) / 12.0)


def render(bpm: float, notes) -> np.ndarray:
    """A square-ish lead with a soft decay per note, float32 in [-1, 1]."""
    beat = 60.0 / bpm
    out = []
    for note, beats in notes:
        n = int(RATE * beats * beat)
        t = np.arange(n) / RATE
        if note == '-':
            out.append(np.zeros(n, dtype=np.float32))
            continue
        f = _freq(note)
        wave = np.sign(np.sin(2 * np.pi * f * t)) * 0.5 + np.sin(2 * np.pi * f * t) * 0.5
        env = np.minimum(1.0, t / 0.01) * np.exp(-2.5 * t)
        out.append((0.3 * wave * env).astype(np.float32))
    return np.concatenate(out)


def make_demo_library(directory: Path) -> Path:
    """Write the demo tunes into ``directory`` (if not there yet) and return it."""
    import soundfile
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    for title, bpm, notes in TUNES:
        path = directory / f'{title}.wav'
        if not path.exists():
            tmp = path.with_suffix('.tmp.wav')
            soundfile.write(str(tmp), render(bpm, notes), RATE, subtype='PCM_16')
            tmp.replace(path)
    return directory

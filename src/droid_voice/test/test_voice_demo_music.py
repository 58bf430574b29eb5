"""The synthesised demo library the mock profile plays."""

import numpy as np
import soundfile

from droid_voice.demo_music import TUNES, make_demo_library
from droid_voice.music import MusicLibrary


def test_demo_library_is_written_once_and_matches_queries(tmp_path):
    lib_dir = make_demo_library(tmp_path / 'demo')
    files = sorted(lib_dir.glob('*.wav'))
    assert len(files) == len(TUNES)
    data, rate = soundfile.read(str(files[0]))
    assert rate == 22050 and 2.0 < len(data) / rate < 30.0
    assert 0.05 < float(np.max(np.abs(data))) <= 1.0
    mtime = files[0].stat().st_mtime_ns
    make_demo_library(tmp_path / 'demo')
    assert files[0].stat().st_mtime_ns == mtime      # reused, not rewritten
    library = MusicLibrary(str(lib_dir))
    assert library.match('the cantina song').title == 'Cantina Band (demo)'
    assert library.match('imperial march').title == 'Imperial March (demo)'

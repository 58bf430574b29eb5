"""Music player logic (plain Python, no rclpy): library, fuzzy matching, decoding off the
audio callback, volume with ducking.

- :class:`MusicLibrary` lists the audio files of a directory (WAV, FLAC, OGG, MP3, ... as
  far as libsndfile reads them) and matches a query fuzzily against their titles
  (RapidFuzz ``WRatio``).
- :class:`TrackReader` decodes a file with soundfile in its own thread into a bounded queue.
- :class:`MusicPlayer` renders the current track block by block for an output
  (``render(frames, heard_t, written_t)``), applying user volume x ducking gain.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from droid_voice.envelope import DuckingEnvelope

MAX_QUERY_CHARS = 200          # longer queries are refused (a title is never that long)
AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3', '.aiff', '.aif')
STOPPED, PLAYING, PAUSED = 'stopped', 'playing', 'paused'


class MusicError(RuntimeError):
    """A clear, user-facing music error (missing library, no match, unreadable file)."""


@dataclass(frozen=True)
class Track:
    title: str
    path: str


def title_of(path: Path) -> str:
    return path.stem.replace('_', ' ').replace('-', ' ').strip()


class MusicLibrary:
    def __init__(self, directory: str):
        self.directory = Path(directory).expanduser() if directory else None

    def tracks(self) -> list:
        """Every audio file under the directory, sorted by title. Raises MusicError."""
        if self.directory is None or not str(self.directory):
            raise MusicError('no music library configured (parameter library_dir is empty)')
        if not self.directory.is_dir():
            raise MusicError(f'music library {self.directory} does not exist or is not a '
                             'directory')
        files = [p for p in self.directory.rglob('*')
                 if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
        return sorted((Track(title_of(p), str(p)) for p in files),
                      key=lambda t: (t.title.lower(), t.path))

    def match(self, query: str, cutoff: float = 60.0) -> Track:
        """The track whose title matches ``query`` best; empty query = first track."""
        tracks = self.tracks()
        if not tracks:
            raise MusicError(f'music library {self.directory} has no audio files '
                             f'({", ".join(AUDIO_EXTENSIONS)})')
        query = query if isinstance(query, str) else str(query or '')
        if not query.strip():
            return tracks[0]
        if len(query) > MAX_QUERY_CHARS:
            raise MusicError(f'query too long ({len(query)} characters, at most '
                             f'{MAX_QUERY_CHARS})')
        try:
            cutoff = float(cutoff)
        except (TypeError, ValueError):
            cutoff = 60.0
        cutoff = 60.0 if cutoff != cutoff else min(100.0, max(0.0, cutoff))
        from rapidfuzz import fuzz, process, utils
        best = process.extractOne(query, [t.title for t in tracks], scorer=fuzz.WRatio,
                                  processor=utils.default_process, score_cutoff=cutoff)
        if best is None:
            raise MusicError(f'no track matches {query!r} '
                             f'(library has {len(tracks)} tracks)')
        return tracks[best[2]]

    def next_after(self, track: Track | None) -> Track:
        tracks = self.tracks()
        if not tracks:
            raise MusicError(f'music library {self.directory} has no audio files')
        if track is None:
            return tracks[0]
        paths = [t.path for t in tracks]
        i = paths.index(track.path) + 1 if track.path in paths else 0
        return tracks[i % len(tracks)]


class TrackReader:
    """Decodes a file block by block in a thread into a bounded queue (float32 frames)."""

    def __init__(self, path: str, *, block_frames: int = 4096, max_blocks: int = 16,
                 loop: bool = False):
        import soundfile
        try:
            self._file = soundfile.SoundFile(path)
        except Exception as exc:  # noqa: BLE001 - LibsndfileError, OSError, ...
            why = 'not a readable audio file' if Path(path).is_file() else 'missing file'
            raise MusicError(f'cannot read {Path(path).name}: {why} ({exc})') from None
        self.path = path
        self.sample_rate = int(self._file.samplerate)
        self.file_channels = int(self._file.channels)
        self.channels = min(2, self.file_channels)
        self.frames = int(self._file.frames) if self._file.frames > 0 else 0
        self.loop = loop
        self.error = ''
        self._block = int(block_frames)
        self._q: queue.Queue = queue.Queue(maxsize=int(max_blocks))
        self._left = np.zeros((0, self.channels), dtype=np.float32)
        self._eof = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='music-reader', daemon=True)
        self._thread.start()

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._file.read(self._block, dtype='float32', always_2d=True)
                if len(data) == 0:
                    if self.loop and self.frames > 0:
                        self._file.seek(0)
                        if not self._put('loop'):
                            return
                        continue
                    break
                if not self._put(np.ascontiguousarray(data[:, :self.channels])):
                    return
        except Exception as exc:  # noqa: BLE001 - a corrupt file mid-way
            self.error = f'cannot decode {Path(self.path).name}: {exc}'
        self._put(None)

    def read(self, n: int) -> tuple:
        """Up to ``n`` frames available now (never blocks) -> (frames, looped, eof)."""
        parts = [self._left] if len(self._left) else []
        have = len(self._left)
        looped = False
        while have < n and not self._eof:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._eof = True
            elif isinstance(item, str):
                looped = True
            else:
                parts.append(item)
                have += len(item)
        data = (np.concatenate(parts) if parts
                else np.zeros((0, self.channels), dtype=np.float32))
        self._left = data[n:]
        return data[:n], looped, self._eof and len(self._left) == 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        try:
            self._file.close()
        except Exception:  # noqa: BLE001, S110
            pass


class MusicPlayer:
    """Current track, state, volume and ducking; ``render`` is called by the output."""

    def __init__(self, duck: DuckingEnvelope | None = None, volume: float = 0.6,
                 on_end=None):
        self.duck = duck or DuckingEnvelope()
        self.volume = float(np.clip(volume, 0.0, 1.0))
        self.on_end = on_end or (lambda track, error, played: None)
        self._lock = threading.RLock()
        self.state = STOPPED
        self.track: Track | None = None
        self.reader: TrackReader | None = None
        self.loop = False
        self.position_frames = 0
        self.underruns = 0

    # -- control ----------------------------------------------------------------------
    def open(self, track: Track, loop: bool = False) -> TrackReader:
        """Open (decode-check) a track without switching to it; raises MusicError."""
        return TrackReader(track.path, loop=loop)

    def play(self, track: Track, reader: TrackReader, loop: bool = False) -> None:
        with self._lock:
            old = self.reader
            self.track, self.reader, self.loop = track, reader, loop
            self.position_frames = 0
            self.state = PLAYING
        if old is not None:
            old.close()

    def stop(self) -> None:
        with self._lock:
            old = self.reader
            self.reader, self.track, self.state = None, None, STOPPED
            self.position_frames = 0
        if old is not None:
            old.close()

    def pause(self) -> bool:
        with self._lock:
            if self.state != PLAYING:
                return False
            self.state = PAUSED
            return True

    def resume(self) -> bool:
        with self._lock:
            if self.state != PAUSED:
                return False
            self.state = PLAYING
            return True

    def set_volume(self, volume: float) -> None:
        """Clamped to [0, 1]; a value that is not a number leaves the volume as it is."""
        try:
            volume = float(volume)
        except (TypeError, ValueError):
            return
        if volume == volume:
            self.volume = float(np.clip(volume, 0.0, 1.0))

    def set_ducked(self, ducked: bool, t: float) -> None:
        with self._lock:
            self.duck.set_ducked(ducked, t)

    # -- state --------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        r = self.reader
        return r.sample_rate if r is not None else 0

    def position(self) -> float:
        r = self.reader
        return self.position_frames / r.sample_rate if r is not None else 0.0

    def snapshot(self, t: float) -> dict:
        with self._lock:
            r = self.reader
            gain = self.duck.gain(t)
            return {'state': self.state,
                    'track_title': self.track.title if self.track else '',
                    'track_path': self.track.path if self.track else '',
                    'position': self.position(),
                    'duration': r.duration if r is not None else 0.0,
                    'volume': self.volume,
                    'effective_volume': self.volume * gain,
                    'ducked': self.duck.ducked,
                    'ramping': self.duck.ramping(t)}

    # -- the audio path ------------------------------------------------------------------
    def render(self, frames: int, heard_t: float, written_t: float | None = None) -> np.ndarray:
        ended = None
        with self._lock:
            r = self.reader
            channels = r.channels if r is not None else 1
            out = np.zeros((frames, channels), dtype=np.float32)
            if r is None or self.state != PLAYING:
                return out
            data, looped, eof = r.read(frames)
            if looped:
                self.position_frames = 0
            n = len(data)
            if n:
                gains = self.duck.gains(heard_t, n, r.sample_rate) * self.volume
                out[:n] = data * gains[:, None]
                self.position_frames += n
            if n < frames and not eof:
                self.underruns += 1
            if eof:
                ended = self.track
                played = self.position_frames / r.sample_rate
                self.reader, self.track, self.state = None, None, STOPPED
                self.position_frames = 0
        if ended is not None:
            r.close()                       # its thread has finished: cheap
            self.on_end(ended, r.error, played)
        return out

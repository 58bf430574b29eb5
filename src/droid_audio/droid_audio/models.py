"""Whisper models the droid gets for itself (plain Python, no rclpy).

:func:`resolve_model` turns the ``stt`` node's ``model`` parameter into the local directory
of a CTranslate2 Whisper model:

* a **directory** (``/models/tiny``, ``~/whisper``, ``./m``) is used as it is;
* a **size name** that faster-whisper knows (``tiny.en``, ``base.en``, ``small.en``,
  ``distil-small.en``, ... see :func:`known_sizes`) or a hub **repository id**
  (``Systran/faster-whisper-tiny.en``) is looked up, without any network, in
  ``cache_dir`` (as ``<dir>/<name>``, ``<dir>/faster-whisper-<name>`` or a Hugging Face hub
  cache) or, when ``cache_dir`` is empty, in the usual Hugging Face cache
  (``~/.cache/huggingface/hub``; ``HF_HOME`` / ``HF_HUB_CACHE`` move it);
* a size name that is not cached is **downloaded** (``allow_download``) with
  ``huggingface_hub.snapshot_download`` — the files faster-whisper's own
  ``download_model`` fetches — into that cache, with progress (:class:`DownloadProgress`).

huggingface_hub does the transfer: ``HF_ENDPOINT`` (a mirror, or a stand-in hub in the
tests) and ``HF_HUB_OFFLINE`` are honoured; a file is written under a temporary name and
renamed into the cache only once its size checks out, a dropped connection is resumed with
an HTTP Range request, and a cached model is used with ``local_files_only`` (no network at
all). A snapshot missing any model file is never returned.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# The files faster_whisper.utils.download_model fetches (faster-whisper 1.2.1).
ALLOW_PATTERNS = ['config.json', 'preprocessor_config.json', 'model.bin', 'tokenizer.json',
                  'vocabulary.*']
REQUIRED_FILES = ('model.bin', 'config.json', 'tokenizer.json')
CHUNK_BYTES = 1 << 20             # progress step and resume point (huggingface_hub: 10 MiB)
_REPO_ID = re.compile(r'^[A-Za-z0-9][\w.-]*/[\w.-]+$')
_active = [0]                     # downloads running in this process
_active_lock = threading.Lock()


class SttModelError(RuntimeError):
    """The Whisper model is missing or cannot be loaded (message is user-facing)."""


class ModelNotFound(SttModelError):
    """Not cached and not downloadable (bad name, downloads off, offline): permanent."""


class DownloadError(SttModelError):
    """The download failed (network, hub, disk): worth retrying later."""


class DownloadCancelled(DownloadError):
    """The download was cancelled (shutdown); its partial file is removed."""


# ---- names ---------------------------------------------------------------------------------

def _models() -> dict:
    from faster_whisper.utils import _MODELS
    return dict(_MODELS)


def known_sizes() -> list:
    """The size names faster-whisper can download (tiny.en, base.en, ...)."""
    return list(_models())


def repo_for(name: str) -> str | None:
    """Hub repository of a size name or repository id (None if neither)."""
    name = (name or '').strip()
    if _REPO_ID.match(name):
        return name
    return _models().get(name)


def names_for(repo_id: str) -> list:
    """Size names that map to ``repo_id`` (``large``, ``large-v3`` -> one repo)."""
    return [n for n, r in _models().items() if r == repo_id]


def _looks_like_path(model: str) -> bool:
    return model.startswith(('/', '.', '~')) or (os.sep in model and not _REPO_ID.match(model))


# ---- the cache -----------------------------------------------------------------------------

def hub_cache(cache_dir: str = '') -> str:
    """The hub cache used: ``cache_dir`` (expanded) or huggingface_hub's default."""
    if cache_dir:
        return str(Path(os.path.expanduser(cache_dir)))
    from huggingface_hub import constants
    return str(Path(constants.HF_HUB_CACHE))


def offline() -> bool:
    """HF_HUB_OFFLINE (read now, and as huggingface_hub read it at import)."""
    from huggingface_hub import constants
    env = os.environ.get('HF_HUB_OFFLINE', '').strip().upper() in ('1', 'ON', 'YES', 'TRUE')
    return env or constants.is_offline_mode()


def endpoint() -> str:
    """The hub endpoint: HF_ENDPOINT (read now) or huggingface_hub's default."""
    from huggingface_hub import constants
    return (os.environ.get('HF_ENDPOINT') or constants.ENDPOINT).rstrip('/')


def is_model_dir(path) -> bool:
    """A complete CTranslate2 Whisper model directory (model.bin, config.json, tokenizer.json)."""
    p = Path(path)
    return all((p / f).is_file() for f in REQUIRED_FILES)


def _storage(repo_id: str, cache: str) -> Path:
    return Path(cache) / ('models--' + repo_id.replace('/', '--'))


def find_cached(name: str, cache_dir: str = '') -> str | None:
    """Local directory of a cached, complete model ``name`` (no network); None if absent."""
    name = (name or '').strip()
    cache = hub_cache(cache_dir)
    candidates = []
    if cache_dir:                         # hand-made layouts next to the hub layout
        candidates += [Path(cache) / name, Path(cache) / f'faster-whisper-{name}']
    repo = repo_for(name)
    if repo:
        path = _hub_cached(repo, cache)
        if path:
            candidates.append(Path(path))
        snaps = sorted((_storage(repo, cache) / 'snapshots').glob('*'),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        candidates += snaps              # snapshots copied by hand (no refs/main)
    for c in candidates:
        if c.is_dir() and is_model_dir(c):
            return str(c)
    return None


def _hub_cached(repo_id: str, cache: str) -> str | None:
    """snapshot_download(local_files_only=True): None unless the snapshot is complete."""
    from huggingface_hub import snapshot_download
    try:
        return snapshot_download(repo_id, cache_dir=cache, allow_patterns=ALLOW_PATTERNS,
                                 local_files_only=True)
    except Exception:                    # not cached, or known to be incomplete
        return None


@dataclass
class CachedModel:
    name: str          # size name(s), comma-separated, or the repo id / directory name
    repo: str
    size: int          # bytes on disk
    path: str
    complete: bool


def _dir_size(path: Path) -> int:
    total = 0
    for f in path.rglob('*'):
        try:
            if f.is_file():
                total += f.stat().st_size          # follows the snapshot's symlinks
        except OSError:
            pass
    return total


def list_cached(cache_dir: str = '') -> list:
    """Whisper models in the cache: hub snapshots of known repos (and any repo holding a
    model.bin), plus hand-made ``<dir>/<name>`` model directories."""
    cache = Path(hub_cache(cache_dir))
    out = []
    if not cache.is_dir():
        return out
    known = set(_models().values())
    for storage in sorted(cache.glob('models--*')):
        repo = storage.name[len('models--'):].replace('--', '/')
        for snap in sorted((storage / 'snapshots').glob('*')):
            if repo not in known and not (snap / 'model.bin').exists():
                continue
            out.append(CachedModel(', '.join(names_for(repo)) or repo, repo, _dir_size(snap),
                                   str(snap), is_model_dir(snap)))
    for d in sorted(cache.iterdir()):
        if d.is_dir() and not d.name.startswith(('models--', '.')) and \
                (d / 'model.bin').exists():
            out.append(CachedModel(d.name, '', _dir_size(d), str(d), is_model_dir(d)))
    return out


# ---- progress ------------------------------------------------------------------------------

@dataclass
class ProgressInfo:
    name: str
    percent: int
    done: int          # bytes
    total: int         # bytes (0 = unknown yet)
    elapsed: float     # seconds since the download started

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        mb = 1e6
        return (f'{self.name}: {self.percent}% ({self.done / mb:.1f}/{self.total / mb:.1f} MB, '
                f'{self.rate / mb:.1f} MB/s)')


class DownloadProgress:
    """Bytes of one model download -> a whole percentage that only goes up, reaches 100
    exactly when the download is complete, and is handed to ``callback`` on each change.

    ``total`` is the size of the files still to fetch (known before the first byte from the
    hub's file list) or, failing that, what huggingface_hub's byte bar announces.
    :meth:`cancel` makes the next byte update raise :class:`DownloadCancelled`.
    """

    def __init__(self, name: str = '', callback=None):
        self.name = name
        self.callback = callback
        self.done = 0
        self.total = 0
        self.percent = -1
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def info(self) -> ProgressInfo:
        return ProgressInfo(self.name, max(self.percent, 0), self.done, self.total,
                            time.monotonic() - self._t0)

    def start(self, total: int = 0) -> None:
        with self._lock:
            self._t0 = time.monotonic()
            self.total = max(self.total, int(total or 0))
        self._emit(0)

    def announce(self, total) -> None:
        """The byte bar's total (grows as each file starts)."""
        with self._lock:
            self.total = max(self.total, int(total or 0))

    def advance(self, n) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled(f'download of {self.name} cancelled')
        with self._lock:
            self.done += int(n or 0)        # negative when a file restarts from zero
            pct = int(100 * self.done / self.total) if self.total > 0 else 0
        self._emit(min(pct, 99))            # 100 only once every file is in place

    def finish(self) -> None:
        with self._lock:
            self.total = max(self.total, self.done)
            self.done = self.total
        self._emit(100)

    def _emit(self, pct: int) -> None:
        with self._emit_lock:             # download threads: callbacks in order, one by one
            if pct <= self.percent:
                return
            self.percent = pct
            if self.callback is not None:
                self.callback(self.info())


def progress_tqdm(progress: DownloadProgress, show: bool = False, file=None):
    """A tqdm class for ``snapshot_download(tqdm_class=...)`` feeding ``progress``.

    snapshot_download makes three bars with it: files done (``unit='it'``), bytes received
    (``desc='Downloading bytes'``) and bytes written (the one followed here). With ``show``
    that one bar is drawn (to ``file``, default stderr); the others are silent.
    """
    from tqdm.auto import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kwargs):
            desc = str(kwargs.get('desc') or '')
            self._follow = kwargs.get('unit') == 'B' and not desc.startswith('Downloading bytes')
            kwargs.pop('name', None)
            if self._follow and show:
                kwargs['desc'] = progress.name
                kwargs['file'] = file or sys.stderr
                kwargs['bar_format'] = '{l_bar}{bar}| {n_fmt}B/{total_fmt}B [{elapsed}<' \
                                       '{remaining}, {rate_fmt}]'
                kwargs['dynamic_ncols'] = True
            else:
                kwargs['disable'] = True
            super().__init__(*args, **kwargs)

        # The bar's own total stays what huggingface_hub adds up (it does total += size);
        # the drawn one is at least the expected total known before the first byte.
        @property
        def total(self):
            return self.__dict__.get('_droid_total')

        @total.setter
        def total(self, value):
            self.__dict__['_droid_total'] = value
            if getattr(self, '_follow', False):
                progress.announce(value)

        @property
        def format_dict(self):
            d = super().format_dict
            if self._follow:
                d['total'] = max(d.get('total') or 0, progress.total) or d.get('total')
            return d

        def update(self, n=1):
            if self._follow:
                progress.advance(n)
            return super().update(n)

        def set_description(self, desc=None, refresh=True):
            if not self._follow:
                super().set_description(desc, refresh)

    return _Bar


# ---- download ------------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = ' '.join(str(exc).split())
    return text[:300] or type(exc).__name__


def _remaining_bytes(repo_id: str, cache: str, ep: str) -> int:
    """Bytes still to download (hub file list with sizes, minus files already cached)."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects
    info = HfApi(endpoint=ep).model_info(repo_id, files_metadata=True)
    snap = _storage(repo_id, cache) / 'snapshots' / str(info.sha)
    sizes = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    wanted = filter_repo_objects(list(sizes), allow_patterns=ALLOW_PATTERNS)
    return sum(sizes[f] for f in wanted if not (snap / f).is_file())


def _hub_settings() -> None:
    """huggingface_hub reads these module settings at each download:

    * bytes are handed over (progress, and the point a dropped connection resumes from) in
      :data:`CHUNK_BYTES` pieces rather than 10 MiB ones;
    * the droid fetches model files and nothing else: huggingface_hub's telemetry (and the
      registry its user-agent string fetches) stays off unless HF_HUB_DISABLE_TELEMETRY=0.
    """
    from huggingface_hub import constants
    constants.DOWNLOAD_CHUNK_SIZE = CHUNK_BYTES
    flag = os.environ.get('HF_HUB_DISABLE_TELEMETRY', '').strip().upper()
    if flag not in ('0', 'OFF', 'NO', 'FALSE'):
        constants.HF_HUB_DISABLE_TELEMETRY = True


def _drop_abandoned_partials(repo_id: str, cache: str) -> None:
    """Remove partial files a killed download left behind (never used, only disk): those
    whose download lock (huggingface_hub's ``.locks/<repo>/<etag>.lock``) nobody holds."""
    from filelock import FileLock, Timeout
    storage = _storage(repo_id, cache)
    for f in (storage / 'blobs').glob('*.incomplete'):
        etag = f.name.split('.', 1)[0]
        lock = FileLock(str(Path(cache) / '.locks' / storage.name / f'{etag}.lock'),
                        timeout=0)
        try:
            with lock:
                f.unlink(missing_ok=True)
        except (Timeout, OSError):
            pass                          # a download in progress (or not ours to remove)


def downloads_running() -> int:
    """Downloads running in this process. huggingface_hub's download threads are not
    daemons: a process that must stop during one (Ctrl-C) cancels it and, if a thread is
    still blocked on the network, leaves with ``os._exit`` (the partial file is removed by
    the next download)."""
    with _active_lock:
        return _active[0]


def download(name: str, cache_dir: str = '', progress: DownloadProgress | None = None,
             show: bool = False) -> str:
    """Download model ``name`` (size name or repo id) into the hub cache; its directory.

    Raises :class:`ModelNotFound` (unknown name or repository) or :class:`DownloadError`
    (network, hub, disk; nothing incomplete is left where a model is looked for).
    """
    repo = repo_for(name)
    if repo is None:
        raise ModelNotFound(f"'{name}' is not a Whisper size name faster-whisper knows "
                            f"({', '.join(known_sizes())}) nor a hub repository id")
    cache = hub_cache(cache_dir)
    ep = endpoint()
    progress = progress or DownloadProgress(name)
    progress.name = progress.name or name
    if offline():
        raise ModelNotFound(f"Whisper model '{name}' is not in the cache {cache} and "
                            'HF_HUB_OFFLINE is set (fetch it where there is network: '
                            f'ros2 run droid_audio fetch_models {name})')
    _hub_settings()
    with _active_lock:
        _active[0] += 1
    try:
        return _download(name, repo, cache, ep, progress, show)
    finally:
        with _active_lock:
            _active[0] -= 1


def _download(name: str, repo: str, cache: str, ep: str, progress: DownloadProgress,
              show: bool) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    try:
        os.makedirs(cache, exist_ok=True)
        _drop_abandoned_partials(repo, cache)
        try:
            total = _remaining_bytes(repo, cache, ep)
        except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError):
            raise
        except Exception:                 # sizes unknown: the byte bar's total is used
            total = 0
        progress.start(total)
        path = snapshot_download(repo, cache_dir=cache, allow_patterns=ALLOW_PATTERNS,
                                 endpoint=ep, tqdm_class=progress_tqdm(progress, show))
    except DownloadCancelled:
        raise
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as exc:
        raise ModelNotFound(f"no model '{repo}' on {ep} ({type(exc).__name__})") from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        raise DownloadError(f'download of {name} ({repo}) from {ep} failed: '
                            f'{_one_line(exc)}') from exc
    except Exception as exc:              # noqa: BLE001 - network errors: one line
        raise DownloadError(f'download of {name} ({repo}) from {ep} failed: '
                            f'{type(exc).__name__}: {_one_line(exc)}') from exc
    if not is_model_dir(path):
        missing = [f for f in REQUIRED_FILES if not (Path(path) / f).is_file()]
        raise DownloadError(f'{repo} on {ep} is not a CTranslate2 Whisper model '
                            f"({', '.join(missing)} missing)")
    progress.finish()
    return path


# ---- resolution ----------------------------------------------------------------------------

def resolve_model(model: str, cache_dir: str = '', allow_download: bool = False,
                  progress: DownloadProgress | None = None, on_download=None) -> str:
    """Local directory of the CTranslate2 Whisper model ``model`` (see module docstring).

    A cached model is found without network. Otherwise, with ``allow_download``, it is
    downloaded (``on_download(name, repo, cache)`` is called first; ``progress`` follows
    it). Raises :class:`ModelNotFound` or :class:`DownloadError` with a one-line message.
    """
    model = (model or '').strip()
    if not model:
        raise ModelNotFound('no Whisper model configured (parameter model)')
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        if not is_model_dir(path):
            missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
            raise ModelNotFound(f'{path} is not a CTranslate2 Whisper model directory '
                                f"({', '.join(missing)} missing)")
        return str(path)
    if _looks_like_path(model):
        raise ModelNotFound(f'Whisper model directory not found: {model}')
    found = find_cached(model, cache_dir)
    if found:
        return found
    cache = hub_cache(cache_dir)
    repo = repo_for(model)
    if repo is None:
        raise ModelNotFound(f"Whisper model '{model}' is not a local directory, not in "
                            f"{cache}, and not a size name faster-whisper knows "
                            f"({', '.join(known_sizes())})")
    if not allow_download:
        raise ModelNotFound(f"Whisper model '{model}' not found in {cache} and downloads are "
                            'off (allow_download: false); fetch it with: '
                            f'ros2 run droid_audio fetch_models {model}')
    if on_download is not None:
        on_download(model, repo, cache)
    return download(model, cache_dir, progress)

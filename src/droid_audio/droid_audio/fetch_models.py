"""``fetch_models``: put faster-whisper models in the cache, for a droid that will be offline.

    ros2 run droid_audio fetch_models tiny.en base.en   # download (progress bar), once
    ros2 run droid_audio fetch_models --list            # what is cached: name, size, path

Models go where the ``stt`` node looks for them: the Hugging Face cache
(``~/.cache/huggingface/hub``; ``HF_HOME`` / ``HF_HUB_CACHE`` move it), or ``--cache-dir``
(the node's ``model_cache_dir``). ``HF_ENDPOINT`` (a mirror) and ``HF_HUB_OFFLINE`` are
honoured. A model already cached is not fetched again (no network at all). Plain Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from droid_audio import models


def _mb(n: int) -> str:
    return f'{n / 1e6:.1f} MB'


def _size(path: str) -> int:
    from pathlib import Path
    return models._dir_size(Path(path))


def list_models(cache_dir: str, out=sys.stdout) -> int:
    cache = models.hub_cache(cache_dir)
    found = models.list_cached(cache_dir)
    if not found:
        print(f'no Whisper models in {cache}', file=out)
        return 0
    rows = [(m.name, _mb(m.size), m.path + ('' if m.complete else '  (incomplete: not used)'))
            for m in found]
    w0 = max(len('name'), *(len(r[0]) for r in rows))
    w1 = max(len('size'), *(len(r[1]) for r in rows))
    print(f"{'name':<{w0}}  {'size':>{w1}}  path", file=out)
    for name, size, path in rows:
        print(f'{name:<{w0}}  {size:>{w1}}  {path}', file=out)
    return 0


def _download(name: str, cache_dir: str, quiet: bool) -> str:
    """models.download in a thread, so that Ctrl-C cancels it (its partial file removed)."""
    progress = models.DownloadProgress(name)
    box = {}

    def run():
        try:
            box['path'] = models.download(name, cache_dir, progress, show=not quiet)
        except BaseException as exc:          # handed to the main thread
            box['error'] = exc
    t = threading.Thread(target=run, name=f'fetch-{name}', daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(0.2)
    except KeyboardInterrupt:
        progress.cancel()                  # stops at the next chunk, partial file removed
        t.join(5.0)
        if t.is_alive() or models.downloads_running():   # blocked on the network: the
            sys.stdout.flush()
            print('\nfetch_models: interrupted', file=sys.stderr, flush=True)
            os._exit(130)                  # partial file is removed by the next download
        raise
    if 'error' in box:
        raise box['error']
    return box['path']


def fetch(names, cache_dir: str, quiet: bool = False, out=sys.stdout) -> int:
    failed = 0
    for name in names:
        cached = models.find_cached(name, cache_dir)
        if cached:
            print(f'{name}: cached at {cached} ({_mb(_size(cached))})', file=out)
            continue
        t0 = time.monotonic()
        try:
            path = _download(name, cache_dir, quiet)
        except models.SttModelError as exc:
            print(f'fetch_models: {name}: {exc}', file=sys.stderr)
            failed += 1
            continue
        print(f'{name}: downloaded to {path} ({_mb(_size(path))} in '
              f'{time.monotonic() - t0:.1f} s)', file=out)
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog='fetch_models',
        description='Download faster-whisper models into the cache the stt node reads, so '
                    'the droid works offline. Honours HF_ENDPOINT and HF_HUB_OFFLINE.',
        epilog='size names: ' + ', '.join(models.known_sizes()) +
               ' (or a hub repository id such as Systran/faster-whisper-tiny.en)')
    p.add_argument('models', nargs='*', metavar='MODEL', help='size name, e.g. tiny.en')
    p.add_argument('--list', action='store_true', help='show the cached models and exit')
    p.add_argument('--cache-dir', default='', help='cache directory (the stt node\'s '
                   "model_cache_dir; default: the Hugging Face cache, "
                   f'{models.hub_cache()})')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar')
    a = p.parse_args(argv)
    if a.list:
        return list_models(a.cache_dir)
    if not a.models:
        p.print_usage(sys.stderr)
        print('fetch_models: give at least one model (e.g. tiny.en), or --list',
              file=sys.stderr)
        return 2
    try:
        return fetch(a.models, a.cache_dir, a.quiet)
    except KeyboardInterrupt:
        print('\nfetch_models: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())

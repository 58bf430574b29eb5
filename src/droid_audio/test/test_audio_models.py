"""Whisper models the droid gets for itself (droid_audio.models, fetch_models), tested
against a stand-in hub on 127.0.0.1 (droid_audio.fake_hub, through HF_ENDPOINT) that
serves the random-weight Whisper the tests build (droid_audio.tiny_whisper) as
Systran/faster-whisper-tiny.en. Nothing comes from the real hub."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from droid_audio import models
from droid_audio.fake_hub import FakeHub
from droid_audio.models import (
    DownloadCancelled,
    DownloadError,
    DownloadProgress,
    ModelNotFound,
    resolve_model,
)
from droid_audio.stt_engine import WhisperEngine
from droid_audio.tiny_whisper import build_model

REPO = 'Systran/faster-whisper-tiny.en'
PKG_SRC = str(Path(models.__file__).resolve().parent.parent)
MODEL_FILES = ['config.json', 'model.bin', 'preprocessor_config.json', 'tokenizer.json',
               'vocabulary.json']


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp('whisper') / 'test', shape='test')


def repo_files(model_dir) -> dict:
    files = {p.name: p.read_bytes() for p in Path(model_dir).iterdir()
             if p.name in MODEL_FILES}
    # like the real repositories: files faster-whisper does not fetch
    files['README.md'] = b'# faster-whisper tiny.en (random weights for tests)\n'
    files['.gitattributes'] = b'*.bin filter=lfs diff=lfs merge=lfs -text\n'
    return files


@pytest.fixture
def hub(model_dir, monkeypatch, tmp_path):
    """The stand-in hub, HF_ENDPOINT pointing at it, HF_HOME private, online, and
    64 KiB download chunks (several progress steps and resume points per file)."""
    import huggingface_hub.constants as hf_constants
    with FakeHub({REPO: repo_files(model_dir)}) as h:
        monkeypatch.setenv('HF_ENDPOINT', h.url)
        monkeypatch.setenv('HF_HOME', str(tmp_path / 'hf_home'))
        monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)
        monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', False)
        # safety net: huggingface_hub was imported before HF_ENDPOINT was set here, so its
        # telemetry would go to the real hub (models turns it off; the fetch_models test
        # checks that in a fresh process)
        monkeypatch.setattr(hf_constants, 'HF_HUB_DISABLE_TELEMETRY', True)
        monkeypatch.setattr(models, 'CHUNK_BYTES', 64 * 1024)
        yield h


def go_offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_only_hub_paths(hub):
    """The client spoke only the hub API the stand-in implements (no telemetry etc.)."""
    for r in hub.requests:
        assert r.path.startswith(('/api/models/' + REPO, '/' + REPO + '/resolve/')), r


def partials(cache) -> list:
    return sorted(Path(cache).rglob('*.incomplete'))


# ---- names and local models ------------------------------------------------------------------

def test_size_names_are_faster_whispers():
    sizes = models.known_sizes()
    for name in ('tiny.en', 'base.en', 'small.en', 'distil-small.en', 'large-v3'):
        assert name in sizes
    assert models.repo_for('tiny.en') == REPO
    assert models.repo_for('distil-small.en') == 'Systran/faster-distil-whisper-small.en'
    assert models.repo_for('someone/whisper-ct2') == 'someone/whisper-ct2'
    assert models.repo_for('huge.en') is None
    assert set(models.names_for('Systran/faster-whisper-large-v3')) == {'large-v3', 'large'}


def test_local_directories_and_clear_errors(model_dir, tmp_path):
    assert resolve_model(model_dir) == model_dir
    with pytest.raises(ModelNotFound, match='no Whisper model configured'):
        resolve_model('  ')
    with pytest.raises(ModelNotFound, match='directory not found'):
        resolve_model(str(tmp_path / 'missing'))
    with pytest.raises(ModelNotFound, match='directory not found'):
        resolve_model('./missing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ModelNotFound, match=r'not a CTranslate2 Whisper model directory '
                                            r'\(model.bin, config.json, tokenizer.json'):
        resolve_model(str(tmp_path / 'empty'))
    with pytest.raises(ModelNotFound, match="not a size name faster-whisper knows") as info:
        resolve_model('huge.en', str(tmp_path), allow_download=True)
    assert 'tiny.en' in str(info.value) and '\n' not in str(info.value)


def test_hand_made_cache_layouts_are_found_without_network(model_dir, tmp_path):
    import shutil
    cache = tmp_path / 'cache'
    shutil.copytree(model_dir, cache / 'tiny.en')
    assert resolve_model('tiny.en', str(cache)) == str(cache / 'tiny.en')
    shutil.copytree(model_dir, cache / 'faster-whisper-small.en')
    assert resolve_model('small.en', str(cache)) == str(cache / 'faster-whisper-small.en')
    # a hub snapshot copied by hand (no refs/main)
    snap = cache / 'models--Systran--faster-whisper-base.en' / 'snapshots' / 'abc123'
    shutil.copytree(model_dir, snap)
    assert resolve_model('base.en', str(cache)) == str(snap)
    # ... but never one missing a file
    part = cache / 'models--Systran--faster-whisper-medium.en' / 'snapshots' / 'abc123'
    shutil.copytree(model_dir, part)
    (part / 'model.bin').unlink()
    with pytest.raises(ModelNotFound, match='downloads are off'):
        resolve_model('medium.en', str(cache))


def test_default_cache_is_huggingface_hubs():
    import huggingface_hub.constants as hf_constants
    assert models.hub_cache('') == str(Path(hf_constants.HF_HUB_CACHE))
    assert models.hub_cache('~/x') == os.path.expanduser('~/x')


# ---- progress ----------------------------------------------------------------------------------

def test_progress_is_monotone_and_reaches_100_only_when_done():
    seen = []
    p = DownloadProgress('tiny.en', lambda info: seen.append(info.percent))
    p.start(1000)
    p.advance(250)
    p.advance(-250)                  # a file restarted from zero: no going back
    p.advance(500)
    p.announce(2000)                 # more than expected: the percentage waits
    p.advance(1000)
    p.advance(500)                   # everything, but not yet in place: 99 at most
    assert seen == [0, 25, 50, 75, 99] and p.info().total == 2000
    p.finish()
    assert seen[-1] == 100 and p.info().done == 2000
    p.cancel()
    with pytest.raises(DownloadCancelled):
        p.advance(1)


def test_progress_bar_is_drawn_for_the_byte_bar_only():
    out = io.StringIO()
    p = DownloadProgress('tiny.en')
    p.start(4096)
    bar_class = models.progress_tqdm(p, show=True, file=out)
    files = bar_class(total=3, desc='Fetching 3 files')                     # silent
    wire = bar_class(total=0, unit='B', unit_scale=True, desc='Downloading bytes')  # silent
    data = bar_class(total=0, unit='B', unit_scale=True, desc='Reconstructing')
    data.total = (data.total or 0) + 4096          # what huggingface_hub does per file
    for bar in (data, wire):
        bar.update(1024)
    files.update(1)
    data.close()
    wire.close()
    files.close()
    text = out.getvalue()
    assert 'tiny.en' in text and '25%' in text and 'Fetching' not in text
    assert p.done == 1024 and p.percent == 25


# ---- downloads from the stand-in hub --------------------------------------------------------------

def test_download_reports_progress_caches_and_loads(hub, model_dir, tmp_path):
    cache = tmp_path / 'cache'
    seen = []
    announced = []
    progress = DownloadProgress('tiny.en', lambda info: seen.append(info.percent))
    path = resolve_model('tiny.en', str(cache), allow_download=True, progress=progress,
                         on_download=lambda *a: announced.append(a))
    assert announced == [('tiny.en', REPO, str(cache))]
    # progress: starts at 0, only goes up, several steps, ends at 100
    assert seen[0] == 0 and seen[-1] == 100 and len(seen) >= 5, seen
    assert seen == sorted(set(seen)), seen
    expected = sum(len(hub.file(REPO, f)) for f in MODEL_FILES)
    assert progress.info().total == expected
    # the files faster-whisper needs, byte for byte, in the hub cache layout; nothing else
    assert Path(path).parent.parent.name == 'models--Systran--faster-whisper-tiny.en'
    assert sorted(p.name for p in Path(path).iterdir()) == MODEL_FILES
    for f in MODEL_FILES:
        assert sha((Path(path) / f).read_bytes()) == sha(hub.file(REPO, f))
    assert sorted(hub.file_gets()) == MODEL_FILES            # README.md etc. never fetched
    assert_only_hub_paths(hub)
    assert not partials(cache)
    # it is a model faster-whisper loads and runs
    eng = WhisperEngine(path, 'int8', 1, 'en')
    eng.load()
    res = eng.transcribe(np.zeros(16000, np.int16), check_silence=False)
    assert isinstance(res.text, str)
    # listed as cached
    listed = models.list_cached(str(cache))
    assert [(m.name, m.repo, m.path, m.complete) for m in listed] == \
        [('tiny.en', REPO, path, True)]
    assert listed[0].size == expected


def test_cached_model_needs_no_network(hub, tmp_path, monkeypatch):
    cache = str(tmp_path / 'cache')
    path = models.download('tiny.en', cache)
    hub.reset_log()
    assert resolve_model('tiny.en', cache, allow_download=True) == path
    assert hub.requests == []                           # not even the file list
    go_offline(monkeypatch)
    assert resolve_model('tiny.en', cache, allow_download=True) == path
    hub.stop()                                          # and with no hub at all
    assert resolve_model('tiny.en', cache) == path
    assert hub.requests == []


def test_not_cached_and_offline_or_downloads_off_are_clear_errors(hub, tmp_path, monkeypatch):
    cache = str(tmp_path / 'cache')
    with pytest.raises(ModelNotFound) as info:
        resolve_model('tiny.en', cache, allow_download=False)
    msg = str(info.value)
    assert 'allow_download: false' in msg and 'fetch_models tiny.en' in msg and cache in msg
    go_offline(monkeypatch)
    with pytest.raises(ModelNotFound, match='HF_HUB_OFFLINE is set') as info:
        resolve_model('tiny.en', cache, allow_download=True)
    assert 'fetch_models tiny.en' in str(info.value)
    assert hub.requests == []


def test_unknown_repository_and_unreachable_hub(hub, tmp_path, monkeypatch):
    with pytest.raises(ModelNotFound, match='no model .Systran/faster-whisper-base.en. on'):
        resolve_model('base.en', str(tmp_path / 'cache'), allow_download=True)
    hub.stop()
    with pytest.raises(DownloadError, match='download of tiny.en .* failed') as info:
        resolve_model('tiny.en', str(tmp_path / 'cache'), allow_download=True)
    assert '\n' not in str(info.value)
    assert models.find_cached('tiny.en', str(tmp_path / 'cache')) is None


def test_dropped_connection_resumes_with_a_range_request(hub, tmp_path):
    hub.fail('model.bin', drop_after=200_000)
    path = models.download('tiny.en', str(tmp_path / 'cache'))
    gets = [r for r in hub.requests if r.method == 'GET' and r.file == 'model.bin']
    assert len(gets) == 2 and gets[0].range == ''
    start = int(gets[1].range.removeprefix('bytes=').rstrip('-'))
    assert 0 < start <= 200_000                          # resumed, not restarted
    assert sha((Path(path) / 'model.bin').read_bytes()) == sha(hub.file(REPO, 'model.bin'))
    assert not partials(tmp_path / 'cache')


def test_failed_download_is_clear_and_nothing_half_written_is_used(hub, tmp_path,
                                                                   monkeypatch):
    cache = str(tmp_path / 'cache')
    hub.fail('model.bin', drop_after=200_000)
    hub.fail('model.bin', status=503, times=10)          # ... and then the hub is down
    seen = []
    with pytest.raises(DownloadError, match='download of tiny.en .* failed:.*503') as info:
        models.download('tiny.en', cache, DownloadProgress('tiny.en',
                                                           lambda i: seen.append(i.percent)))
    assert '\n' not in str(info.value)
    assert seen and seen[-1] < 100
    assert not partials(cache)
    snaps = list(Path(cache).glob('models--*/snapshots/*'))
    assert len(snaps) == 1 and not (snaps[0] / 'model.bin').exists()   # the rest is there
    assert models.find_cached('tiny.en', cache) is None
    with pytest.raises(ModelNotFound):
        resolve_model('tiny.en', cache, allow_download=False)
    assert [m.complete for m in models.list_cached(cache)] == [False]
    # the hub is back: only the missing file is fetched
    hub.clear_faults()
    hub.reset_log()
    path = resolve_model('tiny.en', cache, allow_download=True)
    assert hub.file_gets() == ['model.bin']
    assert models.is_model_dir(path)
    WhisperEngine(path, 'int8', 1, 'en').load(warm_up=False)


def test_cancelled_download_leaves_nothing(hub, tmp_path):
    cache = str(tmp_path / 'cache')
    hub.rate = 200_000
    progress = DownloadProgress('tiny.en')
    progress.callback = lambda info: progress.cancel() if info.percent > 0 else None
    with pytest.raises(DownloadCancelled):
        models.download('tiny.en', cache, progress)
    assert not partials(cache)
    assert models.find_cached('tiny.en', cache) is None


def start_fetch(cache, env_extra=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PKG_SRC, os.environ.get(
        'PYTHONPATH', '')]), **(env_extra or {}))
    # Ctrl-C as in a terminal, even when the test run itself was started in the background
    # of a non-interactive shell (which leaves SIGINT ignored for every child)
    return subprocess.Popen([sys.executable, '-m', 'droid_audio.fetch_models', '-q',
                             '--cache-dir', str(cache), 'tiny.en'], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_killed_download_is_never_used_and_its_partial_file_is_cleaned(hub, tmp_path):
    """A download killed mid-file (power cut, SIGKILL) leaves a partial file behind: it is
    never taken for a model; the next download removes it and completes."""
    cache = tmp_path / 'cache'
    hub.fail('model.bin', stall_after=300_000)       # mid-file, the hub goes quiet
    proc = start_fetch(cache)
    others = set(MODEL_FILES) - {'model.bin'}

    def others_done():
        return any(others <= {p.name for p in snap.iterdir()}
                   for snap in cache.glob('models--*/snapshots/*'))
    try:
        assert hub.stalled.wait(120.0), proc.communicate(timeout=60)
        deadline = time.monotonic() + 120.0
        while not others_done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert others_done()
    finally:
        os.kill(proc.pid, signal.SIGKILL)            # our own child, by pid
        proc.communicate(timeout=60)
        hub.release()
    assert partials(cache)
    assert models.find_cached('tiny.en', str(cache)) is None
    with pytest.raises(ModelNotFound):
        resolve_model('tiny.en', str(cache))
    hub.reset_log()
    path = resolve_model('tiny.en', str(cache), allow_download=True)
    assert not partials(cache)
    assert hub.file_gets() == ['model.bin']          # the finished files were kept
    assert sha((Path(path) / 'model.bin').read_bytes()) == sha(hub.file(REPO, 'model.bin'))


def test_partial_file_of_a_running_download_is_left_alone(hub, tmp_path):
    from filelock import FileLock
    cache = tmp_path / 'cache'
    storage = cache / 'models--Systran--faster-whisper-tiny.en'
    (storage / 'blobs').mkdir(parents=True)
    etag = sha(hub.file(REPO, 'model.bin'))
    busy = storage / 'blobs' / f'{etag}.0123abcd.incomplete'
    stale = storage / 'blobs' / 'feedbeef.89abcdef.incomplete'
    busy.write_bytes(b'x' * 10)
    stale.write_bytes(b'y' * 10)
    lock = FileLock(str(cache / '.locks' / storage.name / f'{etag}.lock'))
    with lock:                    # someone else is downloading model.bin right now
        models._drop_abandoned_partials(REPO, str(cache))
    assert busy.exists() and not stale.exists()


# ---- fetch_models ------------------------------------------------------------------------------

def run_fetch(args, env_extra, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PKG_SRC, os.environ.get(
        'PYTHONPATH', '')]), **env_extra)
    return subprocess.run([sys.executable, '-m', 'droid_audio.fetch_models', *args],
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_fetch_models_prefetches_lists_and_honours_hf_env(hub, tmp_path):
    """HF_ENDPOINT / HF_HUB_OFFLINE / HF_HOME as a droid builder sets them, read by
    huggingface_hub at start-up (a fresh process)."""
    home = tmp_path / 'hf_home'
    env = {'HF_ENDPOINT': hub.url, 'HF_HOME': str(home)}
    proc = run_fetch(['tiny.en'], env)
    assert proc.returncode == 0, proc.stderr
    default_cache = home / 'hub'                         # HF_HOME moves the default cache
    snap = next(default_cache.glob('models--Systran--faster-whisper-tiny.en/snapshots/*'))
    assert f'tiny.en: downloaded to {snap}' in proc.stdout
    assert '100%' in proc.stderr and 'tiny.en' in proc.stderr      # the progress bar
    assert sorted(hub.file_gets()) == MODEL_FILES
    assert_only_hub_paths(hub)
    hub.reset_log()
    again = run_fetch(['tiny.en'], env)
    assert again.returncode == 0 and f'tiny.en: cached at {snap}' in again.stdout
    offline = run_fetch(['tiny.en'], dict(env, HF_HUB_OFFLINE='1'))
    assert offline.returncode == 0 and 'cached at' in offline.stdout
    assert hub.requests == []
    missing = run_fetch(['base.en'], dict(env, HF_HUB_OFFLINE='1'))
    assert missing.returncode == 1 and 'HF_HUB_OFFLINE is set' in missing.stderr
    assert 'Traceback' not in missing.stderr
    assert hub.requests == []
    listed = run_fetch(['--list'], env)
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ['name', 'size', 'path']
    assert lines[1].split()[0] == 'tiny.en' and lines[1].endswith(str(snap))
    assert lines[1].split()[1:3] == [f'{models._dir_size(snap) / 1e6:.1f}', 'MB']
    empty = run_fetch(['--list', '--cache-dir', str(tmp_path / 'none')], env)
    assert empty.returncode == 0 and 'no Whisper models in' in empty.stdout
    bad = run_fetch(['huge.en', '--cache-dir', str(tmp_path / 'c2')], env)
    assert bad.returncode == 1 and 'not a Whisper size name' in bad.stderr
    usage = run_fetch([], env)
    assert usage.returncode == 2 and '--list' in usage.stderr


def test_fetch_models_ctrl_c_stops_cleanly(hub, tmp_path):
    cache = tmp_path / 'cache'
    hub.fail('model.bin', stall_after=300_000)
    proc = start_fetch(cache, {'HF_ENDPOINT': hub.url, 'HF_HOME': str(tmp_path / 'h')})
    try:
        assert hub.stalled.wait(120.0), proc.communicate(timeout=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        hub.release()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert 'fetch_models: interrupted' in err and 'Traceback' not in err
    assert models.find_cached('tiny.en', str(cache)) is None
    path = resolve_model('tiny.en', str(cache), allow_download=True)
    assert not partials(cache) and models.is_model_dir(path)

"""The stt node gets its model itself. With allow_download and HF_ENDPOINT pointing at a
stand-in hub on 127.0.0.1 (droid_audio.fake_hub, serving the random-weight Whisper the
tests build as Systran/faster-whisper-tiny.en), it says "downloading tiny.en N%" on
/diagnostics (N only going up, to 100) while it is up, then loads the model and
transcribes; restarted with HF_HUB_OFFLINE=1 it loads from the cache without a single
request; allow_download:=false is a clear error."""

import pytest

rclpy = pytest.importorskip('rclpy')

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from droid_audio.fake_hub import FakeHub  # noqa: E402
from droid_audio.msgs import int16_array  # noqa: E402
from droid_audio.testing import Harness, NodeProcess, pick_domain  # noqa: E402
from droid_audio.tiny_whisper import build_model  # noqa: E402
from droid_common import names  # noqa: E402
from droid_common.ros import RELIABLE_QOS, to_time_msg  # noqa: E402
from droid_common.testing import speech  # noqa: E402

from droid_msgs.msg import Transcription, Utterance  # noqa: E402

REPO = 'Systran/faster-whisper-tiny.en'
MODEL_FILES = ['config.json', 'model.bin', 'preprocessor_config.json', 'tokenizer.json',
               'vocabulary.json']
OK, WARN, ERROR = 0, 1, 2


def statuses(h, name):
    """[(level, message)] of the node's status, in arrival order, repeats folded."""
    out = []
    for arr in h.got(names.DIAGNOSTICS):
        for s in arr.status:
            if s.name == name:
                item = (s.level[0], s.message)
                if not out or out[-1] != item:
                    out.append(item)
    return out


def level_is(h, name, level, text=''):
    st = statuses(h, name)
    return bool(st) and st[-1][0] == level and text in st[-1][1]


def send_utterance(h, pub, samples, cid='d0wn10ad0001', uid=1, block=1280):
    t0 = h.node.get_clock().now().nanoseconds / 1e9
    chunks = [samples[i:i + block] for i in range(0, len(samples), block)]
    for k, chunk in enumerate(chunks + [np.zeros(0, np.int16)]):
        m = Utterance()
        m.header.stamp = to_time_msg(t0 + k * block / 16000)
        m.conversation_id, m.utterance_id = cid, uid
        m.state = Utterance.STARTED if k == 0 else \
            Utterance.ENDED if k == len(chunks) else Utterance.AUDIO
        m.trigger = Utterance.TRIGGER_INJECTED
        m.audio_start = to_time_msg(t0)
        if m.state == Utterance.ENDED:
            m.end_reason = Utterance.END_SILENCE
            m.audio_end = to_time_msg(t0 + len(samples) / 16000)
        m.audio.sample_rate, m.audio.channels, m.audio.seq = 16000, 1, k
        m.audio.data = int16_array(chunk)
        pub.publish(m)


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    model = Path(build_model(tmp_path_factory.mktemp('whisper') / 'test', shape='test'))
    files = {f: (model / f).read_bytes() for f in MODEL_FILES}
    files['README.md'] = b'# random weights\n'
    return files


def test_stt_downloads_its_model_reports_progress_then_hears(served, tmp_path):
    domain = pick_domain()
    cache = tmp_path / 'cache'
    params = {'model': 'tiny.en', 'model_cache_dir': str(cache), 'allow_download': True,
              'cpu_threads': 1}
    h = Harness(domain)
    procs = []
    try:
        h.collect(DiagnosticArray, names.DIAGNOSTICS, 100)
        finals = h.collect(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        pub = h.node.create_publisher(Utterance, names.UTTERANCE, RELIABLE_QOS)
        with FakeHub({REPO: served}, rate=200_000) as hub:       # model.bin: ~4 s
            env = {'HF_ENDPOINT': hub.url, 'HF_HOME': str(tmp_path / 'hf_home')}
            stt = NodeProcess('stt_node', domain, params, env=env,
                              log_path=str(tmp_path / 'stt.log'))
            procs.append(stt)
            assert h.wait_for(lambda: level_is(h, 'stt', OK, 'model loaded'), 180.0), \
                (statuses(h, 'stt'), stt.log())
            seen = statuses(h, 'stt')
            msgs = [m for _, m in seen]
            downloading = [(lv, m) for lv, m in seen if m.startswith('downloading tiny.en ')]
            assert downloading, seen
            assert all(lv == WARN for lv, _ in downloading)
            pcts = [int(m.rsplit(' ', 1)[1].rstrip('%')) for _, m in downloading]
            assert pcts == sorted(pcts) and pcts[-1] == 100, pcts
            after = msgs[msgs.index(downloading[-1][1]) + 1:]      # then load, then OK
            assert after[0] == 'loading model' and after[-1] == 'model loaded', msgs
            log = stt.log()
            assert f'downloading {REPO} into {cache}' in log
            assert 'downloading tiny.en: 100%' in log and 'loaded and warmed up' in log
            assert sorted(hub.file_gets()) == MODEL_FILES          # README.md not fetched

            # ... and it hears
            assert h.wait_for(lambda: pub.get_subscription_count() >= 1, 30.0)
            clip = np.concatenate([np.zeros(4000, np.int16),
                                   speech('play some cantina music'),
                                   np.zeros(8000, np.int16)])
            send_utterance(h, pub, clip)
            assert h.wait_for(lambda: any(m.is_final for m in finals), 60.0), stt.log()
            final = [m for m in finals if m.is_final][0]
            assert final.source == 'whisper' and final.text.strip()
            assert final.conversation_id == 'd0wn10ad0001' and final.utterance_id == 1
            assert stt.stop() == 0
            procs.remove(stt)
            assert 'Traceback' not in stt.log()

            # restarted offline: straight from the cache, no request at all
            hub.reset_log()
            h.clear(names.DIAGNOSTICS)
            again = NodeProcess('stt_node', domain, params,
                                env=dict(env, HF_HUB_OFFLINE='1'),
                                log_path=str(tmp_path / 'stt2.log'))
            procs.append(again)
            assert h.wait_for(lambda: level_is(h, 'stt', OK, 'model loaded'), 120.0), \
                (statuses(h, 'stt'), again.log())
            assert not any(m.startswith('downloading') for _, m in statuses(h, 'stt'))
            assert hub.requests == []
            assert 'downloading' not in again.log()
    finally:
        for p in procs:
            p.stop()
        h.close()
    for p in procs:
        assert 'Traceback' not in p.log()


def test_allow_download_false_keeps_the_clear_error(served, tmp_path):
    domain = pick_domain()
    h = Harness(domain)
    with FakeHub({REPO: served}) as hub:
        stt = NodeProcess('stt_node', domain,
                          {'model': 'tiny.en', 'model_cache_dir': str(tmp_path / 'cache'),
                           'allow_download': False},
                          env={'HF_ENDPOINT': hub.url, 'HF_HOME': str(tmp_path / 'hf')},
                          log_path=str(tmp_path / 'stt.log'))
        try:
            h.collect(DiagnosticArray, names.DIAGNOSTICS, 100)
            assert h.wait_for(lambda: level_is(h, 'stt', ERROR), 60.0), stt.log()
            msg = statuses(h, 'stt')[-1][1]
            assert 'allow_download: false' in msg and 'fetch_models tiny.en' in msg
            h.wait_for(lambda: False, 1.0)
            assert stt.alive()
            assert hub.requests == []
        finally:
            rc = stt.stop()
            h.close()
    assert rc == 0
    log = stt.log()
    assert 'speech-to-text disabled' in log and 'Traceback' not in log


def test_shutdown_during_a_download_exits_0(served, tmp_path):
    """Ctrl-C / launch shutdown while the hub has gone quiet mid-file: the node exits 0
    promptly, without a traceback, and the partial file is never taken for a model."""
    from droid_audio import models
    domain = pick_domain()
    cache = tmp_path / 'cache'
    h = Harness(domain)
    with FakeHub({REPO: served}) as hub:
        hub.fail('model.bin', stall_after=300_000)
        stt = NodeProcess('stt_node', domain,
                          {'model': 'tiny.en', 'model_cache_dir': str(cache)},
                          env={'HF_ENDPOINT': hub.url, 'HF_HOME': str(tmp_path / 'hf')},
                          log_path=str(tmp_path / 'stt.log'))
        try:
            h.collect(DiagnosticArray, names.DIAGNOSTICS, 100)
            assert hub.stalled.wait(120.0), stt.log()
            assert h.wait_for(lambda: level_is(h, 'stt', WARN, 'downloading tiny.en'),
                              60.0), (statuses(h, 'stt'), stt.log())
        finally:
            rc = stt.stop(timeout=30.0)
            hub.release()
            h.close()
    assert rc == 0, stt.log()
    assert 'Traceback' not in stt.log()
    assert models.find_cached('tiny.en', str(cache)) is None

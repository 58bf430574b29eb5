"""Mocks keep the real nodes' contract: mock_microphone vs microphone (the real one on a
PulseAudio null source) and mock_stt vs stt (on a tiny random-weight model) expose the
same topics, types and services, compared with rclpy graph introspection. The mocks'
only extras are the mock-only plumbing: the inject service and the announced
transcripts (audio/mock_transcript)."""

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_audio.testing import Harness, NodeProcess, pick_domain
from droid_audio.tiny_whisper import build_model
from droid_common import names
from droid_common.ros import SENSOR_QOS
from droid_common.testing import PulseAudioServer

from droid_msgs.msg import AudioChunk

MIC_TYPE = ('droid_msgs/msg/AudioChunk',)
TRANSCRIPTION_TYPE = ('droid_msgs/msg/Transcription',)


def test_mocks_expose_the_real_nodes_contract(tmp_path):
    domain = pick_domain()
    model = build_model(tmp_path / 'whisper', shape='test')
    with PulseAudioServer() as pa:
        procs = [
            NodeProcess('microphone_node', domain, {'device': 'pulse'}, namespace='/real',
                        env=pa.env, log_path=str(tmp_path / 'mic.log')),
            NodeProcess('mock_microphone_node', domain, namespace='/mock',
                        log_path=str(tmp_path / 'mock_mic.log')),
            NodeProcess('stt_node', domain, {'model': model, 'cpu_threads': 1},
                        namespace='/real', log_path=str(tmp_path / 'stt.log')),
            NodeProcess('mock_stt_node', domain, namespace='/mock',
                        log_path=str(tmp_path / 'mock_stt.log')),
        ]
        h = Harness(domain)
        try:
            chunks = h.collect(AudioChunk, '/real/' + names.AUDIO, SENSOR_QOS)

            def ready():
                g = {(n, ns) for n, ns in h.node.get_node_names_and_namespaces()}
                if not {('microphone', '/real'), ('microphone', '/mock'),
                        ('stt', '/real'), ('stt', '/mock')} <= g:
                    return False
                return all(names.INJECT_UTTERANCE in {s for s, _ in h.graph(*k)['srv']}
                           or k[1] == '/real' for k in (('microphone', '/mock'),)) and \
                    any(t == names.TRANSCRIPTION for t, _ in h.graph('stt', '/real')['pub']) \
                    and any(t == names.TRANSCRIPTION for t, _ in h.graph('stt', '/mock')['pub'])
            assert h.wait_for(ready, 60.0), '\n'.join(p.log() for p in procs)
            h.wait_for(lambda: False, 1.0)       # let the graph settle

            real, mock = h.graph('microphone', '/real'), h.graph('microphone', '/mock')
            assert (names.AUDIO, MIC_TYPE) in real['pub']
            assert real['pub'] <= mock['pub']
            assert mock['pub'] - real['pub'] == {(names.MOCK_TRANSCRIPT, TRANSCRIPTION_TYPE)}
            assert real['sub'] == mock['sub']
            assert real['srv'] <= mock['srv']
            assert mock['srv'] - real['srv'] == {
                (names.INJECT_UTTERANCE, ('droid_msgs/srv/InjectUtterance',))}

            real, mock = h.graph('stt', '/real'), h.graph('stt', '/mock')
            assert (names.TRANSCRIPTION, TRANSCRIPTION_TYPE) in real['pub']
            assert (names.UTTERANCE, ('droid_msgs/msg/Utterance',)) in real['sub']
            assert real['pub'] == mock['pub']
            assert real['srv'] == mock['srv']
            assert real['sub'] <= mock['sub']
            assert mock['sub'] - real['sub'] == {(names.MOCK_TRANSCRIPT, TRANSCRIPTION_TYPE)}

            # the real microphone really streams from the null source: 80 ms blocks
            assert h.wait_for(lambda: len(chunks) >= 5, 20.0), procs[0].log()
            msgs = h.got('/real/' + names.AUDIO)
            assert all(len(m.data) == 1280 and m.sample_rate == 16000 and m.channels == 1
                       for m in msgs)
            seqs = [m.seq for m in msgs]
            assert seqs == sorted(seqs)
        finally:
            h.close()
            logs = [p.log() for p in procs]
            for p in procs:
                p.stop()
    for log in logs:
        assert 'Traceback' not in log, log


def _status(h, name):
    for arr in reversed(h.got(names.DIAGNOSTICS)):
        for s in arr.status:
            if s.name == name:
                return s
    return None


def _level(status):
    return None if status is None else status.level[0]


def test_missing_models_are_clear_errors_and_nodes_stay_up(tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray
    domain = pick_domain()
    model = build_model(tmp_path / 'whisper', shape='test')
    corrupt = tmp_path / 'corrupt'
    corrupt.mkdir()
    for f in ('config.json', 'vocabulary.json', 'tokenizer.json', 'preprocessor_config.json'):
        (corrupt / f).write_bytes((tmp_path / 'whisper' / f).read_bytes())
    (corrupt / 'model.bin').write_bytes(b'garbage' * 10)
    procs = [
        NodeProcess('stt_node', domain, {'model': 'tiny.en', 'allow_download': False,
                                         'model_cache_dir': str(tmp_path / 'no_models')},
                    namespace='/a', env={'HF_HUB_OFFLINE': '1'},
                    log_path=str(tmp_path / 'a.log')),
        NodeProcess('stt_node', domain, {'model': str(corrupt)}, namespace='/b',
                    log_path=str(tmp_path / 'b.log')),
        NodeProcess('listener_node', domain, {'wakeword_models': ['hey_r2d2']},
                    namespace='/c', log_path=str(tmp_path / 'c.log')),
    ]
    h = Harness(domain)
    try:
        h.collect(DiagnosticArray, names.DIAGNOSTICS, 10)
        assert h.wait_for(lambda: _level(_status(h, 'a/stt')) == 2 and
                          _level(_status(h, 'b/stt')) == 2 and
                          _level(_status(h, 'c/listener: wake_word')) == 2, 60.0), \
            '\n'.join(p.log() for p in procs)
        assert 'allow_download: false' in _status(h, 'a/stt').message
        assert 'fetch_models tiny.en' in _status(h, 'a/stt').message
        assert 'cannot load Whisper model' in _status(h, 'b/stt').message
        assert "unknown wake-word model 'hey_r2d2'" in _status(h, 'c/listener: wake_word').message
        h.wait_for(lambda: False, 1.0)
        assert all(p.alive() for p in procs)
        assert model  # the good model exists: only the configuration is wrong
    finally:
        h.close()
        logs = [p.log() for p in procs]
        for p in procs:
            p.stop()
    assert 'speech-to-text disabled' in logs[0] and 'speech-to-text disabled' in logs[1]
    assert 'wake word disabled' in logs[2]
    for log in logs:
        assert 'Traceback' not in log, log


def test_mock_microphone_is_paced_by_the_node_clock(tmp_path):
    """Under use_sim_time the mock microphone follows /clock: many times faster than real time."""
    import time

    from rosgraph_msgs.msg import Clock
    domain = pick_domain()
    proc = NodeProcess('mock_microphone_node', domain, {'use_sim_time': True},
                       log_path=str(tmp_path / 'mock.log'))
    h = Harness(domain)
    try:
        # best effort like the topic, with a deep queue: the mock microphone catches up in
        # bursts, which a loaded machine must not make this probe drop
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        h.collect(AudioChunk, names.AUDIO,
                  QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT))
        clock_pub = h.node.create_publisher(Clock, '/clock', 10)
        sim_ns = 1000 * 10**9

        def tick(n, step_ns=100_000_000):
            """``n`` clock steps of 0.1 sim seconds, 10 ms (wall) apart."""
            nonlocal sim_ns
            for _ in range(n):
                sim_ns += step_ns
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(sim_ns, 10**9)
                clock_pub.publish(msg)
                time.sleep(0.01)
        assert h.wait_for(lambda: h.node.count_subscribers('/clock') >= 1 and
                          h.node.count_publishers(names.AUDIO) >= 1, 30.0), proc.log()
        tick(100)
        h.wait_for(lambda: False, 0.5)
        h.clear(names.AUDIO)
        sim_start, wall_start = sim_ns * 1e-9, time.monotonic()
        tick(200)                             # 20 s of sim time in >= 2 s of wall time
        sim = sim_ns * 1e-9
        sim_span = sim - sim_start
        want = 0.8 * sim_span / 0.08          # about one chunk per 80 ms of *sim* time
        h.wait_for(lambda: len(h.got(names.AUDIO)) >= want, 20.0)
        wall_span = time.monotonic() - wall_start
        msgs = h.got(names.AUDIO)
        stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in msgs]
        assert len(msgs) >= want, (len(msgs), sim_span, wall_span)
        # ... far more than the wall clock would have paced (however slow the machine was)
        assert len(msgs) > 1.5 * wall_span / 0.08, (len(msgs), sim_span, wall_span)
        assert all(abs(b - a - 0.08) < 1e-6 for a, b in zip(stamps, stamps[1:]))
        assert sim_start - 3.0 < stamps[0] and stamps[-1] <= sim + 1e-6
    finally:
        h.close()
        log = proc.log()
        proc.stop()
    assert 'Traceback' not in log, log

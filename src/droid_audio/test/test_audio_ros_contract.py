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

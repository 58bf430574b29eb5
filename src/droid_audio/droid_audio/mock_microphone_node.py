"""``mock_microphone`` executable (node name ``microphone``): the microphone's contract
with no sound card.

Publishes AudioChunk on ``audio/mic`` (sensor-data QoS, 80 ms blocks, stamps = first
sample on the node clock), paced by a timer on the node clock, so under
``use_sim_time`` it runs as fast as the clock does. Audio comes from ``wav_files`` and/or
a rosbag (``bag_path``: AudioChunk messages, read with rosbags), then silence or faint
noise (``noise_level``) so the graph keeps moving.

Service ``audio/inject`` (droid_msgs/srv/InjectUtterance) queues an utterance (a WAV
file or espeak-ng text) ahead of the files. When an injected utterance starts playing,
its transcript is announced on ``audio/mock_transcript`` (droid_msgs/Transcription,
is_final=false, empty conversation_id, utterance_id 0, source 'mock', audio_start /
audio_end = where the speech lies) for the mock STT.

``muted`` (settable at run time, as on the real microphone) publishes silence instead:
an utterance playing meanwhile is lost, as it would be on a muted microphone.
"""

from __future__ import annotations

import threading

from droid_common import names
from droid_common.audio import MIC_RATE
from droid_common.ros import (
    ERROR,
    OK,
    RELIABLE_QOS,
    SENSOR_QOS,
    WARN,
    Diagnostics,
    declare,
    now_sec,
    run,
    to_time_msg,
)
from rcl_interfaces.msg import SetParametersResult
from droid_common.ros_activity import track_activity
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from droid_audio.mock_source import (
    MockAudioSource,
    Segment,
    load_bag,
    load_wav,
    make_utterance,
    strip_wake_phrase,
    synthesize,
)
from droid_audio.msgs import audio_chunk
from droid_msgs.msg import AudioChunk, Transcription
from droid_msgs.srv import InjectUtterance


class MockMicrophoneNode(Node):
    def __init__(self, **kwargs):
        super().__init__('microphone', **kwargs)
        self.block_ms = declare(self, 'block_ms', 80, 'Published block length [ms]',
                                min_value=10, max_value=500, read_only=True)
        self.wav_files = declare(self, 'wav_files', [], 'WAV files played in '
                                             'order at start (any rate/channels; resampled '
                                             'to 16 kHz mono)', read_only=True)
        self.bag_path = declare(self, 'bag_path', '', 'rosbag2 directory whose AudioChunk '
                                'messages are played after the WAV files', read_only=True)
        self.bag_topic = declare(self, 'bag_topic', '', "AudioChunk topic in the bag "
                                 "('' = the first one found)", read_only=True)
        self.loop = declare(self, 'loop', False, 'Repeat the files/bag forever',
                            read_only=True)
        self.noise_level = declare(self, 'noise_level', 0.0, 'RMS of the filler noise '
                                   'between sources, fraction of full scale (0 = silence)',
                                   min_value=0.0, max_value=0.5, read_only=True)
        self.frame_id = declare(self, 'frame_id', 'mock', 'header.frame_id of the chunks')
        self.muted = declare(self, 'muted', False, 'Publish silence instead of what the '
                             "microphone hears (the dashboard's mute button); settable at "
                             'run time')
        self.wake_phrases = declare(self, 'wake_phrases', ['hey jarvis'], 'Phrases '
                                    'stripped from injected text to make the default '
                                    'transcript for the mock STT')
        self.default_voice = declare(self, 'default_voice', 'en-us', 'espeak-ng voice for '
                                     'injected text when the request gives none')
        self.max_catch_up = declare(self, 'max_catch_up_blocks', 25, 'Blocks published at '
                                    'most per timer tick when behind the clock',
                                    min_value=1, max_value=1000)
        self.block = round(MIC_RATE * self.block_ms / 1000.0)
        self.block_s = self.block / MIC_RATE

        self.diag = Diagnostics(self, hardware_id='mock microphone')
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.muted:
            self.diag.set(WARN, 'muted: publishing silence', component='mute')
        self.source = MockAudioSource(self.block, noise_level=self.noise_level, loop=self.loop)
        problems = self._load_sources()

        self.pub = self.create_publisher(AudioChunk, names.AUDIO, SENSOR_QOS)
        self.transcript_pub = self.create_publisher(Transcription, names.MOCK_TRANSCRIPT,
                                                    RELIABLE_QOS)
        # The real microphone's contract: it takes the echo reference. A mock microphone
        # hears no speaker, so there is no echo to cancel; it only counts the blocks.
        self.reference_blocks = 0
        self.create_subscription(AudioChunk, names.PLAYBACK, self._on_playback, RELIABLE_QOS)
        self._timer_group = MutuallyExclusiveCallbackGroup()
        self._srv_group = MutuallyExclusiveCallbackGroup()
        self.srv = self.create_service(InjectUtterance, names.INJECT_UTTERANCE, self._inject,
                                       callback_group=self._srv_group)
        self._lock = threading.Lock()
        self._next_t = None
        self._seq = 0
        # a block goes out at most ~block/4 after its last sample, like a real microphone
        self.timer = self.create_timer(self.block_s / 4.0, self._tick,
                                       callback_group=self._timer_group)
        self.activity = track_activity(self)   # tells a replay when it is done
        if problems:
            self.diag.set(ERROR, '; '.join(problems))
        else:
            self.diag.set(OK, 'mock microphone running')

    def _on_playback(self, msg: AudioChunk) -> None:
        self.reference_blocks += 1

    def _load_sources(self) -> list:
        problems = []
        for path in [p for p in self.wav_files if p]:
            try:
                self.source.add_file_segment(Segment(load_wav(path), label=path))
                self.get_logger().info(f'queued WAV {path}')
            except Exception as exc:  # noqa: BLE001 - keep going with the rest
                problems.append(f'cannot read WAV {path}: {exc}')
                self.get_logger().error(problems[-1])
        if self.bag_path:
            try:
                samples = load_bag(self.bag_path, self.bag_topic)
                self.source.add_file_segment(Segment(samples, label=self.bag_path))
                self.get_logger().info(f'queued {len(samples) / MIC_RATE:.1f} s of audio '
                                       f'from bag {self.bag_path}')
            except Exception as exc:  # noqa: BLE001
                problems.append(f'cannot read bag {self.bag_path}: {exc}')
                self.get_logger().error(problems[-1])
        return problems

    # ---- publishing, paced by the node clock -----------------------------------------------

    def _tick(self) -> None:
        now = now_sec(self)
        if now <= 0.0:
            return  # sim time not started yet
        if self._next_t is None or now - self._next_t > 2.0 or self._next_t > now + 1.0:
            self._next_t = now - self.block_s       # (re)anchor: first block ends now
        n = 0
        while self._next_t + self.block_s <= now + 1e-6 and n < self.max_catch_up:
            self._publish_block(self._next_t, now)
            self._next_t += self.block_s
            n += 1

    def _publish_block(self, t: float, now: float) -> None:
        chunk = self.source.next_chunk()
        if self.muted:          # the utterance plays into a muted microphone: silence
            self.pub.publish(audio_chunk(chunk.samples * 0, t, self._seq, MIC_RATE,
                                         self.frame_id))
            self._seq += 1
            return
        if chunk.started is not None and chunk.started.transcript:
            seg = chunk.started
            start, end = chunk.speech_span
            msg = Transcription()
            msg.header.stamp = to_time_msg(now)
            msg.text = seg.transcript
            msg.is_final = False
            msg.confidence = -1.0
            msg.language = ''
            msg.audio_start = to_time_msg(t + start / MIC_RATE)
            msg.audio_end = to_time_msg(t + end / MIC_RATE)
            msg.source = 'mock'
            self.transcript_pub.publish(msg)
            self.get_logger().info(f'playing injected utterance ({seg.label}); '
                                   f'transcript: {seg.transcript!r}')
        self.pub.publish(audio_chunk(chunk.samples, t, self._seq, MIC_RATE, self.frame_id))
        self._seq += 1

    # ---- injection ----------------------------------------------------------------------------

    def _inject(self, request, response):
        try:
            if request.wav_path:
                speech = load_wav(request.wav_path)
                label = request.wav_path
                transcript = request.transcript
            elif request.text.strip():
                speech = synthesize(request.text, voice=request.voice or self.default_voice)
                label = f'text {request.text!r}'
                transcript = request.transcript or strip_wake_phrase(request.text,
                                                                     self.wake_phrases)
            else:
                raise ValueError('give wav_path or text')
            seg = make_utterance(speech, float(request.padding), label, transcript)
            ahead = self.source.inject(seg)
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            response.success = False
            response.message = f'cannot inject: {exc}'
            response.duration = 0.0
            self.get_logger().error(response.message)
            self.diag.set(WARN, response.message)
            return response
        response.success = True
        response.duration = float(len(seg.samples) / MIC_RATE)
        response.message = f'queued {response.duration:.2f} s ({label})' + \
            (f', {ahead:.2f} s after earlier injections' if ahead > 0 else '')
        self.get_logger().info(response.message)
        self.diag.set(OK, 'mock microphone running')
        return response


    def _on_set_parameters(self, params):
        for param in params:
            if param.name == 'muted':
                self.muted = bool(param.value)
                self.get_logger().info('muted: publishing silence' if self.muted
                                       else 'unmuted')
                self.diag.set(WARN if self.muted else OK, 'muted: publishing silence'
                              if self.muted else 'listening', component='mute')
        return SetParametersResult(successful=True)


def main(args=None):
    run(MockMicrophoneNode, args=args,
        executor_factory=lambda: MultiThreadedExecutor(num_threads=2))


if __name__ == '__main__':
    main()

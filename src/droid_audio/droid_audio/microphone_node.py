"""``microphone`` node: a sounddevice input stream published as AudioChunk messages.

16 kHz mono int16 blocks of ``block_ms`` (80 ms = 1280 samples) on ``audio/mic`` with
sensor-data QoS, stamped with the capture time of their first sample (node clock). The
PortAudio callback only copies into a bounded queue; a publisher thread converts,
stamps and publishes. No device or a lost device: a clear log line, ERROR on
/diagnostics, a retry every ``retry_s``; back to OK by itself once it works.

Echo cancellation (``echo_cancel``): what the tts and music play arrives on
``audio/playback``; WebRTC AEC removes it from the captured audio before it is published
(:mod:`droid_audio.aec`), so the droid does not hear itself through a real speaker. The
listener's self-hearing guard stays as the backstop.

``muted`` (settable at run time, e.g. by the web dashboard) publishes silence instead of
what the microphone hears, keeping the stream's timing.
"""

from __future__ import annotations

import threading
import time
from collections import deque

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
    moments,
    now_sec,
    run,
    to_sec,
)
from rcl_interfaces.msg import SetParametersResult
from droid_common.ros_activity import track_activity
from rclpy.node import Node

from droid_audio.aec import EchoCanceller, ReferenceBuffer
from droid_audio.framing import CaptureTimeline, FrameAssembler
from droid_audio.mic import DeviceError, MicCapture
from droid_audio.msgs import audio_chunk, chunk_samples
from droid_msgs.msg import AudioChunk


class MicrophoneNode(Node):
    def __init__(self, **kwargs):
        super().__init__('microphone', **kwargs)
        self.device = declare(self, 'device', '', 'Input device: name (substring, e.g. '
                              "'pulse', 'USB'), index, or '' for the default device",
                              read_only=True)
        self.rate = declare(self, 'sample_rate', MIC_RATE, 'Published sample rate [Hz] '
                            '(the device is opened at this rate, or resampled)',
                            min_value=8000, max_value=48000, read_only=True)
        self.block_ms = declare(self, 'block_ms', 80, 'Published block length [ms] '
                                '(80 ms = 1280 samples at 16 kHz, what openwakeword wants)',
                                min_value=10, max_value=500, read_only=True)
        self.channels = declare(self, 'channels', 1, 'Channels captured (mixed down to mono)',
                                min_value=1, max_value=8, read_only=True)
        self.queue_blocks = declare(self, 'queue_blocks', 50, 'Capture queue length '
                                    '[blocks]; the oldest is dropped when full',
                                    min_value=2, max_value=1000, read_only=True)
        self.retry_s = declare(self, 'retry_s', 3.0, 'Seconds between attempts to open '
                               'a missing or lost device', min_value=0.2, max_value=60.0)
        self.stall_timeout_s = declare(self, 'stall_timeout_s', 3.0, 'No audio for this '
                                       'long = device lost, reopen (0 = never)',
                                       min_value=0.0, max_value=60.0)
        self.frame_id = declare(self, 'frame_id', '', "header.frame_id ('' = device name)")
        self.echo_cancel = declare(self, 'echo_cancel', True, 'Cancel the droid\'s own voice '
                                   'and music (audio/playback) from the microphone with WebRTC '
                                   'AEC', read_only=True)
        self.aec_noise_suppression = declare(self, 'aec_noise_suppression', False,
                                             'WebRTC noise suppression too (with echo_cancel)',
                                             read_only=True)
        self.aec_delay_ms = declare(self, 'aec_delay_ms', 0, 'Hint of the speaker-to-microphone '
                                    'delay beyond the stamps [ms]; AEC3 estimates the rest',
                                    min_value=0, max_value=500, read_only=True)
        self.aec_lead_ms = declare(self, 'aec_lead_ms', 90, 'The reference is given to the '
                                   'echo canceller this long before the audio it goes with, '
                                   'so that stamp errors never put an echo ahead of it [ms]',
                                   min_value=0, max_value=300, read_only=True)
        self.aec_auto_delay = declare(self, 'aec_auto_delay', True, 'Measure where the echo '
                                      'really is (cross-correlation with the reference, twice '
                                      'a second while the droid plays) and move the reference '
                                      'when the stamps put it where AEC3 cannot cancel it',
                                      read_only=True)
        self.muted = declare(self, 'muted', False, 'Publish silence instead of what the '
                             "microphone hears (the dashboard's mute button); settable at "
                             'run time')
        self.block = round(self.rate * self.block_ms / 1000.0)

        self.pub = self.create_publisher(AudioChunk, names.AUDIO, SENSOR_QOS)
        self.diag = Diagnostics(self, hardware_id=f'microphone {self.device or "default"}')
        self.aec = None
        self._aec_dropped = 0              # capture blocks lost, as the AEC last knew
        self._overflows_seen = 0
        self._overflow_at: deque = deque(maxlen=8)   # stamps of the last input overflows
        if self.echo_cancel:
            self.reference = ReferenceBuffer()
            self.aec = EchoCanceller(self.reference, self.aec_noise_suppression,
                                     delay_ms=self.aec_delay_ms, lead_ms=self.aec_lead_ms,
                                     auto_delay=self.aec_auto_delay)
            self._aec_aligned = 0
            if self.aec.available:
                self.create_subscription(AudioChunk, names.PLAYBACK, self._on_playback,
                                         RELIABLE_QOS)   # a lost block = an echo let through
                self.diag.set(OK, 'echo cancellation on (reference: audio/playback)',
                              component='echo')
            else:
                self.get_logger().warning(f'{self.aec.error}: the listener\'s self-hearing '
                                          'guard only')
                self.diag.set(WARN, f'{self.aec.error}; self-hearing guard only',
                              component='echo')
                self.aec = None
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.muted:
            self.diag.set(WARN, 'muted: publishing silence', component='mute')
        self.diag.set(WARN, 'opening input device', device=self.device or 'default')
        self._seq = 0
        # Reports to a replay; the device itself is wall-clock audio: replay with
        # disable:=microphone and the bag's audio instead.
        self.activity = track_activity(self)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='mic-publisher', daemon=True)
        self._thread.start()

    # ---- publisher thread ------------------------------------------------------------------

    def _loop(self) -> None:
        cap = MicCapture(self.device, self.rate, self.block, self.channels, self.queue_blocks)
        timeline = CaptureTimeline(self.rate)
        assembler = FrameAssembler(frame_samples=self.block, rate=self.rate)
        next_try = 0.0
        last_error = ''
        dropped_reported = 0
        while not self._stop.is_set():
            if not cap.is_open:
                if time.monotonic() < next_try:
                    self._stop.wait(0.1)
                    continue
                try:
                    desc = cap.open()
                except DeviceError as exc:
                    next_try = time.monotonic() + self.retry_s
                    msg = str(exc)
                    if msg != last_error:
                        self.get_logger().error(f'{msg}; retrying every {self.retry_s:.0f} s')
                        last_error = msg
                    self.diag.set(ERROR, f'no input device: {msg}',
                                  device=self.device or 'default')
                    continue
                self.get_logger().info(f'capturing from {desc}')
                if last_error:
                    self.get_logger().info('input device recovered')
                last_error = ''
                timeline = CaptureTimeline(cap.rate)
                assembler = FrameAssembler(frame_samples=self.block, rate=self.rate)
                self.diag.set(OK, f'capturing from {cap.name}', device=cap.name,
                              rate=cap.rate)
            block = cap.read(timeout=0.2)
            if block is None:
                why = cap.failed(self.stall_timeout_s)
                if why and cap.is_open:
                    cap.close()
                    msg = f'input device {cap.name!r}: {why}'
                    self.get_logger().error(f'{msg}; reopening')
                    last_error = msg
                    self.diag.set(ERROR, msg, device=cap.name)
                    next_try = time.monotonic() + min(1.0, self.retry_s)
                continue
            self._publish(block, cap, timeline, assembler)
            if cap.dropped != dropped_reported or cap.overflows:
                dropped_reported = cap.dropped
                self.diag.set(WARN if cap.dropped else OK,
                              f'capturing from {cap.name}' +
                              (f'; {cap.dropped} blocks dropped' if cap.dropped else ''),
                              device=cap.name, dropped=cap.dropped, overflows=cap.overflows)
        cap.close()

    def _on_playback(self, msg: AudioChunk) -> None:
        if msg.sample_rate == 16000 and msg.channels == 1:
            self.reference.add(to_sec(msg.header.stamp), chunk_samples(msg))

    def _publish(self, block, cap, timeline, assembler) -> None:
        # capture time (monotonic) -> node clock
        node_now = now_sec(self)
        t_capture = node_now - (time.monotonic() - block.t_capture)
        samples = block.samples
        t = timeline.stamp(t_capture, len(samples))
        if self.aec is not None and cap.dropped != self._aec_dropped:
            self._aec_dropped = cap.dropped      # blocks were lost: align by stamps again
            self.aec.realign()
        if cap.overflows != self._overflows_seen:
            self._overflows_seen = cap.overflows
            self._overflow_at.append(t)
        for frame in assembler.push(samples.reshape(-1), t, sample_rate=cap.rate, channels=cap.channels):
            out = frame.samples
            if self.aec is not None and self.rate == 16000:
                out = self.aec.process(out, frame.t)
                if self.aec.auto_aligned != self._aec_aligned:
                    self._report_alignment()
            if self.muted:
                out = out * 0
            self.pub.publish(audio_chunk(out, frame.t, self._seq, self.rate,
                                         self.frame_id or cap.name))
            self._seq += 1

    def _report_alignment(self) -> None:
        aec = self.aec
        self._aec_aligned = aec.auto_aligned
        lag_ms = aec.echo_lag_s * 1000.0
        self.get_logger().warning(
            f'the echo reaches the microphone {abs(lag_ms):.0f} ms '
            f'{"after" if lag_ms >= 0 else "before"} the time the speaker says it is heard: '
            f'reference moved to a {aec.lead_s * 1000.0:.0f} ms lead (measured, '
            f'{aec.auto_aligned} times so far)')
        self.diag.set(OK, 'echo cancellation on (reference: audio/playback; delay measured)',
                      component='echo', echo_lag_ms=round(lag_ms, 1),
                      lead_ms=round(aec.lead_s * 1000.0, 1), realigned=aec.auto_aligned)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=3.0)
        if self.aec is not None:
            self.get_logger().info(f'echo cancellation: {self.aec.frames} frames, '
                                   f'{self.aec.resyncs} re-alignments, reference '
                                   f'{self.reference.blocks} blocks '
                                   f'({self.aec.late_reference} times late, waited for '
                                   f'{self.aec.waited_s:.2f} s in all), lead '
                                   f'{self.aec.lead_s * 1000.0:.0f} ms, echo measured at '
                                   + ('-' if self.aec.echo_lag_s is None else
                                      f'{self.aec.echo_lag_s * 1000.0:+.0f} ms')
                                   + self._aec_history())

    def _aec_history(self) -> str:
        """When the reference came late, and how the measured echo delay moved (capture
        times): what a builder needs to explain an echo that got through."""
        aec = self.aec
        late, lags, moves = moments(aec.late_at), moments(aec.lags), moments(aec.moves)
        over = moments(self._overflow_at)
        return ((f'; input overflows at {over}' if over else '') +
                (f'; reference late at {late}' if late else '') +
                (f'; echo delay {lags}' if lags else '') +
                (f'; capture timeline moved {moves}' if moves else ''))


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
    run(MicrophoneNode, args=args)


if __name__ == '__main__':
    main()

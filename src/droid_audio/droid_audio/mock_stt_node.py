"""``mock_stt`` executable (node name ``stt``): the STT contract with scripted text.

Same topics as ``stt``: subscribes ``audio/utterance``; publishes ``speech/transcription``
(source 'mock') and ``trace``. Which text an utterance gets: the transcript the mock
microphone announced on ``audio/mock_transcript`` for an injected utterance, else the
next entry of ``transcripts`` / ``transcripts_file`` (see :mod:`droid_audio.mock_stt`).
Partials (growing word prefixes) while the utterance grows and at its end, then the
final after ``delay_s`` on the node clock. CANCELLED publishes nothing.
"""

from __future__ import annotations

from droid_common import names
from droid_common.audio import MIC_RATE
from droid_common.ros import (
    ERROR,
    OK,
    RELIABLE_QOS,
    Diagnostics,
    declare,
    log_prefix,
    now_sec,
    run,
    to_sec,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from rclpy.node import Node

from droid_audio.mock_stt import MockScript, MockUtterance, load_script, partial_text
from droid_msgs.msg import TraceEvent, Transcription, Utterance


class MockSttNode(Node):
    def __init__(self, **kwargs):
        super().__init__('stt', **kwargs)
        transcripts = declare(self, 'transcripts', [], 'Scripted transcripts, '
                                          'one per utterance, in order', read_only=True)
        path = declare(self, 'transcripts_file', '', 'YAML file with a list of transcripts '
                       '(appended to transcripts)', read_only=True)
        cycle = declare(self, 'cycle', True, 'Start the script over when it runs out',
                        read_only=True)
        self.delay_s = declare(self, 'delay_s', 0.3, 'Final published this long after the '
                               'utterance ended (node clock) [s]', min_value=0.0,
                               max_value=30.0)
        partial_ms = declare(self, 'partial_interval_ms', 400, 'A partial per this much '
                             'new audio [ms] (0 = only the one at the end)', min_value=0,
                             max_value=10000, read_only=True)
        ttl = declare(self, 'mock_transcript_ttl_s', 60.0, 'Forget announced transcripts '
                      'no utterance picked up after this long [s]', min_value=1.0,
                      max_value=3600.0, read_only=True)
        self.language = declare(self, 'language', 'en', 'Language reported')
        self.diag = Diagnostics(self, hardware_id='mock stt')
        script = list(transcripts)
        if path:
            try:
                script += load_script(path)
            except Exception as exc:  # noqa: BLE001
                self.get_logger().error(f'cannot read transcripts_file {path}: {exc}')
                self.diag.set(ERROR, f'cannot read transcripts_file: {exc}')
        self.script = MockScript(script, cycle=cycle, ttl_s=ttl,
                                 partial_interval_s=partial_ms / 1000.0)
        self._open: dict = {}
        self._pending: list = []
        self.pub = self.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        # Upstream first (the order simultaneous messages are handled in): the announced
        # transcript before the utterance that takes it.
        self.create_subscription(Transcription, names.MOCK_TRANSCRIPT, self._on_mock,
                                 RELIABLE_QOS)
        self.create_subscription(Utterance, names.UTTERANCE, self._on_utterance, RELIABLE_QOS)
        self.timer = self.create_timer(0.02, self._tick)
        self.activity = track_activity(self)   # tells a replay when it is done
        if self.diag.level() == OK:
            self.diag.set(OK, f'mock STT ready ({len(script)} scripted transcripts)')

    def _on_mock(self, msg: Transcription) -> None:
        self.script.announce(msg.text, now_sec(self))

    def _on_utterance(self, msg: Utterance) -> None:
        key = (msg.conversation_id, msg.utterance_id)
        n = len(msg.audio.data)
        if msg.state == Utterance.STARTED:
            text = self.script.take(now_sec(self))
            if text is None:
                self.get_logger().warning(f'{log_prefix(msg.conversation_id)}no scripted '
                                          'transcript for this utterance; nothing published')
            self._open[key] = MockUtterance(msg.conversation_id, msg.utterance_id,
                                            to_sec(msg.audio_start), text or '', samples=n)
            while len(self._open) > 8:
                self._open.pop(next(iter(self._open)))
        utt = self._open.get(key)
        if utt is None:
            return
        if msg.state in (Utterance.STARTED, Utterance.AUDIO):
            utt.samples += n if msg.state == Utterance.AUDIO else 0
            text = self.script.partial_for(utt)
            if text:
                self._publish(utt, text, False, utt.audio_start + utt.samples / MIC_RATE,
                              to_sec(msg.header.stamp))
        elif msg.state == Utterance.ENDED:
            del self._open[key]
            if not utt.text:
                return
            if utt.partials == 0:
                utt.partials += 1
                self._publish(utt, partial_text(utt.text, 0.5), False,
                              to_sec(msg.audio_end), to_sec(msg.header.stamp))
            utt.audio_end = to_sec(msg.audio_end)
            utt.end_stamp = to_sec(msg.header.stamp)
            utt.final_due = now_sec(self) + self.delay_s
            self._pending.append(utt)
        elif msg.state == Utterance.CANCELLED:
            del self._open[key]

    def _tick(self) -> None:
        now = now_sec(self)
        due = [u for u in self._pending if u.final_due <= now]
        for utt in due:
            self._pending.remove(utt)
            self._publish(utt, utt.text, True, utt.audio_end, utt.end_stamp)
            self.get_logger().info(f'{log_prefix(utt.conversation_id)}utterance '
                                   f'{utt.utterance_id}: {utt.text!r} (mock)')

    def _publish(self, utt, text: str, final: bool, audio_end: float, input_stamp: float):
        m = Transcription()
        m.header.stamp = to_time_msg(now_sec(self))
        m.conversation_id = utt.conversation_id
        m.utterance_id = int(utt.utterance_id)
        m.text = text
        m.is_final = final
        m.confidence = 1.0
        m.language = self.language
        m.audio_start = to_time_msg(utt.audio_start)
        m.audio_end = to_time_msg(audio_end)
        m.source = 'mock'
        self.pub.publish(m)
        first_partial = not final and utt.partials == 1
        if final or first_partial:
            t = TraceEvent()
            t.header.stamp = m.header.stamp
            t.conversation_id = utt.conversation_id
            t.utterance_id = int(utt.utterance_id)
            t.stage = TraceEvent.STAGE_FINAL_TRANSCRIPT if final else TraceEvent.STAGE_PARTIAL
            t.input_stamp = to_time_msg(input_stamp)
            t.node = self.get_fully_qualified_name()
            t.detail = 'mock'
            self.trace_pub.publish(t)


def main(args=None):
    run(MockSttNode, args=args)


if __name__ == '__main__':
    main()

"""chat: talk to the droid from a terminal, without speaking.

    ros2 run droid_bringup chat                                  # interactive
    ros2 run droid_bringup chat --say "play the cantina song" --wait 10

Each line you type is published as a final droid_msgs/Transcription (source "chat") with
a new conversation id; the reply sentences, mood, tool calls, speech and eye state print
as they happen.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading

from droid_msgs.msg import (EyeState, ReplySentence, Sentiment, SpeechEvent, SystemMode,
                            TraceEvent, Transcription)
from droid_msgs.srv import SetMode
from rclpy.node import Node

from droid_bringup import chat_format as fmt
from droid_common import names
from droid_common.contract import constants
from droid_common.ids import new_conversation_id
from droid_common.ros import LATCHED_SUB_QOS, RELIABLE_QOS, declare, run

MODES = {k.lower(): v for k, v in constants('SystemMode').items()}


class Chat(Node):
    def __init__(self, say=None, wait: float = 0.0):
        super().__init__('chat')
        self.follow = False
        self.conversation_id = ''
        self.utterance_id = 0
        self.lines: queue.Queue = queue.Queue(maxsize=100)
        self.done = threading.Event()
        self.language = declare(self, 'language', 'en', 'Language code put on typed lines.')
        self.pub = self.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE_QOS)
        self.trace_pub = self.create_publisher(TraceEvent, names.TRACE, RELIABLE_QOS)
        self.mode_client = self.create_client(SetMode, names.SET_MODE)
        self.create_subscription(ReplySentence, names.REPLY, self.on_reply, RELIABLE_QOS)
        self.create_subscription(Sentiment, names.SENTIMENT, self.on_sentiment, RELIABLE_QOS)
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self.on_speech, RELIABLE_QOS)
        self.create_subscription(EyeState, names.EYE_STATE, self.on_eyes, LATCHED_SUB_QOS)
        self.create_subscription(TraceEvent, names.TRACE, self.on_trace, RELIABLE_QOS)
        self.create_subscription(SystemMode, names.MODE, self.on_mode, LATCHED_SUB_QOS)
        self.create_timer(0.05, self.drain)
        if say is not None:
            for line in say:
                self.lines.put(line)
            if wait > 0:
                self.create_timer(wait, self.finish)
        else:
            print(fmt.HELP, flush=True)
            threading.Thread(target=self.read_stdin, daemon=True).start()

    # --- input -------------------------------------------------------------------------
    def read_stdin(self):
        for line in sys.stdin:
            self.lines.put(line.rstrip('\n'))
        self.lines.put('/quit')

    def drain(self):
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            self.handle_line(line.strip())

    def handle_line(self, line: str):
        if not line:
            return
        if line.startswith('/'):
            cmd, _, arg = line[1:].partition(' ')
            if cmd == 'quit':
                self.finish()
            elif cmd == 'new':
                self.follow = False
            elif cmd == 'follow':
                self.follow = True
            elif cmd == 'mode':
                self.set_mode(arg.strip().lower())
            else:
                print(fmt.HELP, flush=True)
            return
        if not self.follow or not self.conversation_id:
            self.conversation_id = new_conversation_id()
            self.utterance_id = 0
        self.utterance_id += 1
        now = self.get_clock().now().to_msg()
        msg = Transcription(conversation_id=self.conversation_id, utterance_id=self.utterance_id,
                            text=line, is_final=True, confidence=1.0, language=self.language,
                            audio_start=now, audio_end=now, source='chat')
        msg.header.stamp = now
        self.pub.publish(msg)
        trace = TraceEvent(conversation_id=self.conversation_id, utterance_id=self.utterance_id,
                           stage=TraceEvent.STAGE_FINAL_TRANSCRIPT, input_stamp=now,
                           node=self.get_fully_qualified_name(), detail='chat')
        trace.header.stamp = now
        self.trace_pub.publish(trace)
        print(f'[{fmt.short(self.conversation_id)}] you: {line}', flush=True)

    def set_mode(self, name: str):
        if name not in MODES:
            print(f'unknown mode {name!r}; one of {", ".join(MODES)}', flush=True)
            return
        if not self.mode_client.service_is_ready():
            print('set_mode service not available (is the mode manager running?)', flush=True)
            return
        future = self.mode_client.call_async(SetMode.Request(mode=MODES[name], reason='chat'))
        future.add_done_callback(lambda f: print(f'set_mode: {f.result().message}', flush=True))

    def finish(self):
        self.done.set()
        raise SystemExit(0)

    # --- output ------------------------------------------------------------------------
    def on_reply(self, m):
        print(fmt.reply(m.conversation_id, m.index, m.text, m.is_final, m.interrupted,
                        m.persona), flush=True)

    def on_sentiment(self, m):
        print(fmt.sentiment(m.conversation_id, m.label, m.score), flush=True)

    def on_speech(self, m):
        print(fmt.speech(m.conversation_id, m.event, m.text, m.played, m.backend), flush=True)

    def on_eyes(self, m):
        print(fmt.eyes(m.conversation_id, m.pattern, (m.color.r, m.color.g, m.color.b),
                       m.brightness, m.source), flush=True)

    def on_trace(self, m):
        line = fmt.trace(m.conversation_id, m.stage, m.detail)
        if line:
            print(line, flush=True)

    def on_mode(self, m):
        print(fmt.mode(m.mode, m.reason), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog='chat', description='Talk to the droid by typing.')
    parser.add_argument('--say', action='append',
                        help='send this line (repeatable) instead of reading stdin')
    parser.add_argument('--wait', type=float, default=10.0,
                        help='with --say: seconds to keep printing before exiting')
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        run(lambda: Chat(say=args.say, wait=args.wait if args.say else 0.0))
    except SystemExit:
        pass


if __name__ == '__main__':
    main()

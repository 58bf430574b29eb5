"""probe: watch and poke one or more droids, for scripts (JSON lines on stdout).

    ros2 run droid_bringup probe --ns r3x --ns tars --diagnostics
    ros2 run droid_bringup probe --ns r3x --bytes          # payload bytes per topic
    ros2 run droid_bringup probe --echo                    # answer pings (on the far host)

Every message of the droid's conversation topics in each namespace is printed as one JSON
object ``{"t": <monotonic s>, "rx": <ROS time of arrival>, "ns": "/r3x", "topic":
"brain/reply", ...fields}`` (audio samples left out); ``rx`` minus the header stamp is the
message's transport latency when the clocks agree. Commands are read from stdin, one per line:

* ``inject <ns> <text>``: the mock microphone speaks ``text`` (``audio/inject`` service);
* ``say <ns> <text>``: a typed line, as ``chat`` sends it (``speech/transcription``);
* ``stats``: with ``--bytes``, the messages and serialized bytes per topic so far, and the
  busiest second of each topic since the previous ``stats`` (``peak_bytes_per_s``);
* ``ping <ns> <count> <bytes> <period_s> [<wait_s>]``: round trips through a ``--echo``
  probe (reliable QoS, ``AudioChunk`` payloads of ``bytes``), after waiting up to
  ``wait_s`` (30) for it to be discovered; prints the round-trip times;
* ``quit``.

The multi-machine tests and ``benchmark/bench_network.py`` drive it inside network
namespaces; on a real network it works the same way.
"""

from __future__ import annotations

import argparse
import collections
import json
import queue
import sys
import threading
import time

from droid_msgs.msg import (AudioChunk, EyeCommand, EyeState, Persona, ReplySentence,
                            Sentiment, SpeechEvent, SystemMode, TraceEvent, Transcription,
                            Utterance)
from droid_msgs.srv import InjectUtterance
from rclpy.node import Node
from rosidl_runtime_py.convert import message_to_ordereddict

from droid_common import names
from droid_common.ids import new_conversation_id
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, run

# topic -> (type, QoS) printed per namespace
WATCHED = {
    names.UTTERANCE: (Utterance, RELIABLE_QOS),
    names.TRANSCRIPTION: (Transcription, RELIABLE_QOS),
    names.REPLY: (ReplySentence, RELIABLE_QOS),
    names.SENTIMENT: (Sentiment, RELIABLE_QOS),
    names.PERSONA: (Persona, LATCHED_QOS),
    names.SPEECH_EVENT: (SpeechEvent, RELIABLE_QOS),
    names.EYE_COMMAND: (EyeCommand, RELIABLE_QOS),
    names.EYE_STATE: (EyeState, LATCHED_QOS),
    names.MODE: (SystemMode, LATCHED_QOS),
    names.TRACE: (TraceEvent, RELIABLE_QOS),
}
# Every topic of the droid with its QoS, for --bytes (type name for raw subscriptions).
ALL_TOPICS = {
    names.AUDIO: ('droid_msgs/msg/AudioChunk', SENSOR_QOS),
    names.WAKE_WORD: ('droid_msgs/msg/WakeWord', RELIABLE_QOS),
    names.VOICE_ACTIVITY: ('droid_msgs/msg/VoiceActivity', RELIABLE_QOS),
    names.UTTERANCE: ('droid_msgs/msg/Utterance', RELIABLE_QOS),
    names.MOCK_TRANSCRIPT: ('droid_msgs/msg/Transcription', RELIABLE_QOS),
    names.TRANSCRIPTION: ('droid_msgs/msg/Transcription', RELIABLE_QOS),
    names.REPLY: ('droid_msgs/msg/ReplySentence', RELIABLE_QOS),
    names.SENTIMENT: ('droid_msgs/msg/Sentiment', RELIABLE_QOS),
    names.PERSONA: ('droid_msgs/msg/Persona', LATCHED_QOS),
    names.MODE: ('droid_msgs/msg/SystemMode', LATCHED_QOS),
    names.SPEECH_EVENT: ('droid_msgs/msg/SpeechEvent', RELIABLE_QOS),
    names.AMPLITUDE: ('droid_msgs/msg/SpeechAmplitude', SENSOR_QOS),
    names.MUSIC_STATE: ('droid_msgs/msg/MusicState', LATCHED_QOS),
    names.EYE_COMMAND: ('droid_msgs/msg/EyeCommand', RELIABLE_QOS),
    names.EYE_STATE: ('droid_msgs/msg/EyeState', LATCHED_QOS),
    names.EYE_FRAMES: ('std_msgs/msg/UInt8MultiArray', RELIABLE_QOS),
    names.TRACE: ('droid_msgs/msg/TraceEvent', RELIABLE_QOS),
}
PING, PONG = 'net_probe/ping', 'net_probe/pong'
_BIG = ('audio', 'data')        # fields left out of the printed messages


def _ns(ns: str) -> str:
    ns = ns.strip().strip('/')
    return '/' + ns if ns else ''


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + '\n')
    sys.stdout.flush()


class Probe(Node):
    def __init__(self, namespaces, diagnostics=False, count_bytes=False, echo=False):
        super().__init__('probe')
        self.namespaces = [_ns(n) for n in namespaces] or ['']
        self.commands: queue.Queue = queue.Queue(maxsize=100)
        self.stats: dict = {}
        self._stats_lock = threading.Lock()
        self._inject = {}
        self._say = {}
        self._ping_pub = {}
        self._pongs: dict = {}
        self._rtts: list = []
        for ns in self.namespaces:
            for topic, (cls, qos) in WATCHED.items():
                self.create_subscription(cls, f'{ns}/{topic}',
                                         lambda m, n=ns, t=topic: self.on_msg(n, t, m), qos)
            self._inject[ns] = self.create_client(InjectUtterance, f'{ns}/{names.INJECT_UTTERANCE}')
            self._say[ns] = self.create_publisher(Transcription, f'{ns}/{names.TRANSCRIPTION}',
                                                  RELIABLE_QOS)
            self._ping_pub[ns] = self.create_publisher(AudioChunk, f'{ns}/{PING}', RELIABLE_QOS)
            self.create_subscription(AudioChunk, f'{ns}/{PONG}', self.on_pong, RELIABLE_QOS)
            if count_bytes:
                from rosidl_runtime_py.utilities import get_message
                for topic, (typename, qos) in ALL_TOPICS.items():
                    self.create_subscription(get_message(typename), f'{ns}/{topic}',
                                             lambda raw, n=ns, t=topic: self.on_raw(n, t, raw),
                                             qos, raw=True)
            if echo:
                pong = self.create_publisher(AudioChunk, f'{ns}/{PONG}', RELIABLE_QOS)
                self.create_subscription(AudioChunk, f'{ns}/{PING}',
                                         lambda m, p=pong: p.publish(m), RELIABLE_QOS)
        if diagnostics:
            from diagnostic_msgs.msg import DiagnosticArray
            self._diag_last: dict = {}
            self.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self.on_diag, 50)
        self.create_timer(0.02, self.drain)
        threading.Thread(target=self.read_stdin, daemon=True).start()
        emit({'t': time.monotonic(), 'event': 'ready', 'namespaces': self.namespaces})

    # -- output --------------------------------------------------------------------------------
    def on_msg(self, ns, topic, msg):
        rx = self.get_clock().now().nanoseconds * 1e-9     # ROS time of arrival
        fields = {k: v for k, v in message_to_ordereddict(msg).items() if k not in _BIG}
        emit({'t': time.monotonic(), 'rx': rx, 'ns': ns, 'topic': topic, **fields})

    def on_raw(self, ns, topic, raw: bytes):
        now = time.monotonic()
        with self._stats_lock:
            # [msgs, bytes, window of (t, size) over the last second, its sum, peak sum]
            entry = self.stats.setdefault(f'{ns}/{topic}'.lstrip('/'),
                                          [0, 0, collections.deque(), 0, 0])
            entry[0] += 1
            entry[1] += len(raw)
            window = entry[2]
            window.append((now, len(raw)))
            entry[3] += len(raw)
            while window and window[0][0] <= now - 1.0:
                entry[3] -= window.popleft()[1]
            entry[4] = max(entry[4], entry[3])

    def on_diag(self, msg):
        for status in msg.status:
            level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
            key = (level, status.message)
            if self._diag_last.get(status.name) == key:
                continue
            self._diag_last[status.name] = key
            emit({'t': time.monotonic(), 'topic': '/diagnostics', 'name': status.name,
                  'level': level, 'message': status.message,
                  'values': {kv.key: kv.value for kv in status.values}})

    def on_pong(self, msg):
        sent = self._pongs.pop(msg.seq, None)
        if sent is not None:
            self._rtts.append(time.monotonic() - sent)

    # -- commands ------------------------------------------------------------------------------
    def read_stdin(self):
        for line in sys.stdin:
            self.commands.put(line.strip())
        self.commands.put('quit')

    def drain(self):
        while True:
            try:
                line = self.commands.get_nowait()
            except queue.Empty:
                return
            self.do(line)

    def do(self, line: str):
        cmd, _, rest = line.partition(' ')
        if cmd == 'quit':
            raise SystemExit(0)
        if cmd == 'stats':
            with self._stats_lock:
                emit({'t': time.monotonic(), 'event': 'stats',
                      'stats': {k: {'msgs': v[0], 'bytes': v[1], 'peak_bytes_per_s': v[4]}
                                for k, v in self.stats.items()}})
                for v in self.stats.values():
                    v[4] = v[3]
        elif cmd in ('inject', 'say'):
            ns, _, text = rest.partition(' ')
            ns = _ns('' if ns == '-' else ns)
            if cmd == 'inject':
                self.inject(ns, text)
            else:
                self.say(ns, text)
        elif cmd == 'ping':
            ns, count, size, period, *wait = rest.split()
            threading.Thread(target=self.ping, daemon=True,
                             args=(_ns('' if ns == '-' else ns), int(count), int(size),
                                   float(period), float(wait[0]) if wait else 30.0)).start()
        elif line:
            emit({'t': time.monotonic(), 'event': 'error', 'message': f'unknown command {line!r}'})

    def inject(self, ns, text):
        client = self._inject[ns]
        if not client.wait_for_service(timeout_sec=0.0):
            emit({'t': time.monotonic(), 'event': 'inject', 'ns': ns, 'ok': False,
                  'message': 'audio/inject not available'})
            return
        future = client.call_async(InjectUtterance.Request(text=text))
        future.add_done_callback(lambda f: emit({
            't': time.monotonic(), 'event': 'inject', 'ns': ns,
            'ok': bool(f.result() and f.result().success),
            'message': f.result().message if f.result() else str(f.exception())}))

    def say(self, ns, text):
        cid = new_conversation_id()
        now = self.get_clock().now().to_msg()
        msg = Transcription(conversation_id=cid, utterance_id=1, text=text, is_final=True,
                            confidence=1.0, language='en', audio_start=now, audio_end=now,
                            source='chat')
        msg.header.stamp = now
        self._say[ns].publish(msg)
        emit({'t': time.monotonic(), 'event': 'say', 'ns': ns, 'conversation_id': cid,
              'text': text})

    def ping(self, ns, count, size, period, wait):
        """Round trips through an --echo probe (runs on its own thread)."""
        self._rtts = []
        pub = self._ping_pub[ns]
        deadline = time.monotonic() + wait
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        matched = pub.get_subscription_count() > 0
        if matched:
            time.sleep(0.5)   # let the pong publisher match too
        for i in range(count):
            msg = AudioChunk(sample_rate=16000, channels=1, seq=i,
                             data=[0] * max(0, size // 2))
            self._pongs[i] = time.monotonic()
            pub.publish(msg)
            time.sleep(period)
        time.sleep(2.0)
        lost_before = len(self._pongs)
        self._pongs.clear()
        emit({'t': time.monotonic(), 'event': 'ping', 'ns': ns, 'count': count, 'bytes': size,
              'matched': matched, 'rtt_s': sorted(self._rtts), 'lost': lost_before})


def main(argv=None):
    p = argparse.ArgumentParser(prog='probe', description=__doc__.splitlines()[0])
    p.add_argument('--ns', action='append', default=[], help='namespace to watch (repeatable)')
    p.add_argument('--diagnostics', action='store_true', help='print /diagnostics changes')
    p.add_argument('--bytes', action='store_true',
                   help='count serialized bytes per topic (every droid topic; "stats")')
    p.add_argument('--echo', action='store_true', help=f'echo {PING} back on {PONG}')
    args, _ = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    try:
        run(lambda: Probe(args.ns, args.diagnostics, args.bytes, args.echo))
    except SystemExit:
        pass


if __name__ == '__main__':
    main()

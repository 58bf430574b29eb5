"""Under ROS: the real `eyes` node (pyserial) talks to the real firmware on a simulated
ATmega328P (simavr, real time, a pseudo-terminal as its USB serial port).

Expressions from the mode, the wake word, the user's transcription, sentiment and speech
end up as the right pixels on the simulated MAX7219 matrices; amplitude drives the
speaking look at the link's full rate with no frame lost; a board reset (DTR) and a
vanished then returned pseudo-terminal are resynced (the times are measured and printed;
the assertions only use generous timeouts).
"""

import sys
import time
import uuid
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

FIRMWARE = Path(__file__).resolve().parent.parent / 'firmware'
sys.path.insert(0, str(FIRMWARE))
import avr_build  # noqa: E402
import avr_sim  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from droid_common import names  # noqa: E402
from droid_common.ros import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS  # noqa: E402
from droid_common.testing import Process, ros_test_env  # noqa: E402
from droid_eyes.expression import PATTERNS  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

from droid_eyes import render  # noqa: E402
from droid_msgs.msg import (  # noqa: E402
    EyeState,
    Sentiment,
    SpeechAmplitude,
    SpeechEvent,
    SystemMode,
    Transcription,
    WakeWord,
)

MISSING = avr_build.missing_tools(simulator=True)
pytestmark = pytest.mark.skipif(bool(MISSING), reason='the AVR toolchain / simavr is missing: '
                                + '; '.join(MISSING))


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp('avr')
    return avr_build.build_firmware('matrix', out), avr_build.build_simulator(out)


@pytest.fixture
def ros():
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f'eyes_sim_test_{uuid.uuid4().hex[:6]}', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor, pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        executor.spin_once(timeout_sec=0.02)
    return pred()


def rows_of(pattern, amplitude=0.0):
    px = render.eye_pixels(pattern, (1, 1, 1), 1.0, 0.0, amplitude=amplitude)
    left = tuple(sum(int(px[r, c, 0] > 0) << (7 - c) for c in range(8)) for r in range(8))
    right = tuple(sum(int(px[r, 8 + c, 0] > 0) << (7 - c) for c in range(8)) for r in range(8))
    return left, right


def intensity(brightness, level=1.0):
    """The firmware's mapping: brightness byte x pattern level -> MAX7219 intensity 0..15."""
    b8 = round(max(0.0, min(1.0, brightness)) * 255)
    return int(b8 * level) * 15 // 255


def shows(frame, pattern, brightness, amplitude=0.0, level=1.0):
    left, right = rows_of(pattern, amplitude)
    return (frame is not None and frame.rows(0) == left and frame.rows(1) == right and
            frame.intensity(0) == intensity(brightness, level))


def thinking_bar(frame):
    """The thinking look: a 2-column bar in rows 2..5, the same on both eyes."""
    if frame is None or frame.rows(0) is None:
        return False
    rows = frame.rows(0)
    bar = rows[2]
    return (rows[:2] == (0, 0) and rows[6:] == (0, 0) and rows[2:6] == (bar,) * 4 and
            bar in [0xC0 >> c for c in range(7)] and frame.rows(1) == rows)


def test_eyes_node_drives_the_simulated_board(ros, built, tmp_path):
    node, ex = ros
    firmware, sim = built
    ns = f'/eyes_sim_{uuid.uuid4().hex[:8]}'
    board = avr_sim.SimulatedBoard(firmware.elf, tmp_path / 'ttyEYES', sim,
                                   log_path=tmp_path / 'sim.log').start()
    eyes = Process([sys.executable, '-m', 'droid_eyes.eyes_node', '--ros-args',
                    '-r', f'__ns:={ns}', '-p', f'port:={tmp_path}/tty*',
                    '-p', 'initial_mode:=interactive', '-p', 'amplitude_max_rate:=1000.0',
                    '-p', 'reconnect_period:=0.1'],
                   env=ros_test_env(), log_path=tmp_path / 'eyes.log')
    measured = {}
    with eyes:
        try:
            states, diags = [], []
            node.create_subscription(EyeState, f'{ns}/{names.EYE_STATE}', states.append,
                                     LATCHED_QOS)
            node.create_subscription(
                DiagnosticArray, names.DIAGNOSTICS,
                lambda m: diags.extend(s for s in m.status if s.name.startswith(ns.lstrip('/'))),
                10)
            pubs = {
                'mode': node.create_publisher(SystemMode, f'{ns}/{names.MODE}', LATCHED_QOS),
                'wake': node.create_publisher(WakeWord, f'{ns}/{names.WAKE_WORD}', RELIABLE_QOS),
                'stt': node.create_publisher(Transcription, f'{ns}/{names.TRANSCRIPTION}',
                                             RELIABLE_QOS),
                'sent': node.create_publisher(Sentiment, f'{ns}/{names.SENTIMENT}',
                                              RELIABLE_QOS),
                'speech': node.create_publisher(SpeechEvent, f'{ns}/{names.SPEECH_EVENT}',
                                                RELIABLE_QOS),
                'amp': node.create_publisher(SpeechAmplitude, f'{ns}/{names.AMPLITUDE}',
                                             SENSOR_QOS),
            }

            def log():
                return (eyes.output()[-3000:], board.display())

            assert spin_until(ex, lambda: all(p.get_subscription_count() for p in pubs.values())
                              and states and states[-1].device_connected, 30), log()

            def publish(kind, msg):
                if hasattr(msg, 'header'):
                    msg.header.stamp = node.get_clock().now().to_msg()
                pubs[kind].publish(msg)

            def look_is(pattern):
                return spin_until(ex, lambda: states[-1].pattern == PATTERNS[pattern], 5)

            def board_shows(pred, timeout=5):
                ok = False
                deadline = time.monotonic() + timeout
                while not ok and time.monotonic() < deadline:
                    ok = board.wait_display(pred, 0.1)
                    ex.spin_once(timeout_sec=0.01)
                return ok

            # The mode's ambient look: interactive -> solid; sleep -> off.
            assert look_is('solid'), log()
            b = states[-1].brightness
            assert board_shows(lambda f: shows(f, PATTERNS['solid'], b)), log()
            publish('mode', SystemMode(mode=SystemMode.SLEEP))
            assert look_is('off')
            assert board_shows(lambda f: f.rows(0) == (0,) * 8 and f.rows(1) == (0,) * 8), log()
            publish('mode', SystemMode(mode=SystemMode.INTERACTIVE))
            assert look_is('solid')
            assert board_shows(lambda f: shows(f, PATTERNS['solid'], b)), log()

            # A turn: wake word -> listening, the user's words -> thinking, the reply's mood.
            cid = 'c0ffee'
            publish('wake', WakeWord(conversation_id=cid, model_name='hey_jarvis', score=0.9,
                                     threshold=0.5))
            assert look_is('listening')
            b = states[-1].brightness
            assert board_shows(lambda f: shows(f, PATTERNS['listening'], b)), log()
            publish('stt', Transcription(conversation_id=cid, utterance_id=1, text='hi',
                                         is_final=True))
            assert look_is('thinking')
            assert board_shows(thinking_bar), log()
            publish('sent', Sentiment(conversation_id=cid, utterance_id=1,
                                      label=Sentiment.POSITIVE, score=0.9))
            assert look_is('happy')
            b_happy = states[-1].brightness
            assert board_shows(lambda f: shows(f, PATTERNS['happy'], b_happy)), log()

            # Speaking: the eye opens with the voice, amplitude at the link's full rate.
            publish('speech', SpeechEvent(conversation_id=cid, utterance_id=1, sentence_index=0,
                                          event=SpeechEvent.STARTED, text='Hello there!'))
            assert look_is('speaking')
            b_speak = states[-1].brightness
            assert board_shows(lambda f: shows(f, PATTERNS['speaking'], b_speak, 0.0, 0.2)), \
                log()
            assert spin_until(ex, lambda: diags, 10)
            before = board.counters()
            sent0 = diag_value(diags, 'amplitude_frames')
            nacks0, retries0 = diag_value(diags, 'nacks'), diag_value(diags, 'retries')
            t0 = time.monotonic()
            k = 0
            while time.monotonic() - t0 < 3.0:       # ~2 kHz of changing amplitude
                publish('amp', SpeechAmplitude(conversation_id=cid,
                                               amplitude=(k % 97) / 96.0))
                k += 1
                if k % 20 == 0:
                    ex.spin_once(timeout_sec=0)
                time.sleep(0.0005)
            publish('amp', SpeechAmplitude(conversation_id=cid, amplitude=1.0))
            assert board_shows(lambda f: shows(f, PATTERNS['speaking'], b_speak, 1.0), 5), log()
            # every AMPLITUDE frame the node wrote reached the firmware, none was rejected
            time.sleep(0.5)
            diags.clear()
            assert spin_until(ex, lambda: len(diags) >= 2, 10)
            sent = diag_value(diags, 'amplitude_frames') - sent0
            got = board.counters()['amplitudes'] - before['amplitudes']
            measured['amplitude_frames'] = sent
            measured['amplitude_frames_per_s'] = round(sent / 3.0, 1)
            assert sent > 200, sent       # far above the default 60/s: as fast as ROS delivers
            assert got == sent, (got, sent)
            assert diag_value(diags, 'nacks') == nacks0
            assert diag_value(diags, 'retries') == retries0
            assert board.counters()['bad_frames'] == 0 and board.stats()['overruns'] == 0

            publish('speech', SpeechEvent(conversation_id=cid, utterance_id=1, sentence_index=0,
                                          event=SpeechEvent.ENDED, last_in_reply=True))
            assert look_is('happy')
            assert board_shows(lambda f: shows(f, PATTERNS['happy'], b_happy)), log()

            # The board resets (DTR, brown-out): the node resyncs it.
            board.clear()
            t0 = time.monotonic()
            board.reset()
            assert board_shows(lambda f: not shows(f, PATTERNS['happy'], b_happy), 5)
            assert board_shows(lambda f: shows(f, PATTERNS['happy'], b_happy), 10), log()
            measured['resync_after_reset_s'] = round(board.display().wall - t0, 3)

            # The pty vanishes (unplug): ERROR on /diagnostics, the node keeps running; it
            # comes back (a new pty, the board powers up): resynced.
            board.unplug()
            assert spin_until(ex, lambda: diags and diags[-1].level == b'\x02', 10), log()
            assert spin_until(ex, lambda: not states[-1].device_connected, 5)
            assert eyes.proc.poll() is None
            board.clear()
            t0 = time.monotonic()
            board.plug()
            assert board_shows(lambda f: shows(f, PATTERNS['happy'], b_happy), 10), log()
            measured['resync_after_replug_s'] = round(board.display().wall - t0, 3)
            assert spin_until(ex, lambda: diags and diags[-1].level == b'\x00' and
                              states[-1].device_connected, 10), log()
            print(f'measured: {measured}')
        finally:
            rc = eyes.stop()
            assert board.close() == 0
    assert rc == 0, eyes.output()[-3000:]
    assert 'Traceback' not in eyes.output()


def diag_value(diags, key):
    for status in reversed(diags):
        for kv in status.values:
            if kv.key == key:
                return int(kv.value)
    return 0

"""droid_common.ros.run, the one shutdown path of every node, against the rclpy races
(needs ROS 2): a MultiThreadedExecutor busy with an action goal that publishes feedback
(one that honours cancel, one stuck that does not), a thread publishing as fast as it can,
a fast timer, Ctrl-C twice (a terminal's and the one launch forwards), SIGTERM, and a
signal during the node's constructor. Every time: exit 0, no traceback, promptly."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytest.importorskip('rclpy')

from droid_common.testing import ros_test_env  # noqa: E402

NODE = textwrap.dedent('''
    import sys, threading, time
    from droid_common.ros import RELIABLE_QOS, run
    from rclpy.action import ActionClient, ActionServer, CancelResponse
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from droid_msgs.action import Speak
    from droid_msgs.msg import TraceEvent

    MODE = sys.argv[1]

    class Busy(Node):
        def __init__(self):
            super().__init__('busy')
            if MODE == 'slow_start':
                print('CONSTRUCTING', flush=True)
                time.sleep(2.0)
            cb = ReentrantCallbackGroup()
            self.pub = self.create_publisher(TraceEvent, 'busy_trace', RELIABLE_QOS)
            self.create_timer(0.001, lambda: self.pub.publish(TraceEvent(detail='timer')),
                              callback_group=cb)
            self.server = ActionServer(self, Speak, 'busy_speak', self.execute,
                                       cancel_callback=lambda h: CancelResponse.ACCEPT,
                                       callback_group=cb)
            self.client = ActionClient(self, Speak, 'busy_speak', callback_group=cb)
            self.stop = threading.Event()
            threading.Thread(target=self.spam, daemon=True).start()
            self.create_timer(0.2, self.send_goal, callback_group=cb)
            self.sent = False

        def send_goal(self):
            if not self.sent and self.client.server_is_ready():
                self.sent = True
                self.client.send_goal_async(Speak.Goal(text='x'),
                                            feedback_callback=self.on_feedback)

        def on_feedback(self, _fb):
            print('READY', flush=True)

        def spam(self):
            while True:                      # never stops by itself: a thread gone wild
                self.pub.publish(TraceEvent(detail='thread'))
                time.sleep(0.0005)

        def execute(self, goal_handle):
            while True:
                if MODE != 'stuck' and goal_handle.is_cancel_requested:
                    goal_handle.canceled()
                    return Speak.Result()
                goal_handle.publish_feedback(Speak.Feedback(played=1.0))
                time.sleep(0.005)

        def close(self):
            self.stop.set()
            time.sleep(0.1)

    run(Busy, executor_factory=lambda: MultiThreadedExecutor(num_threads=4))
''')


@pytest.mark.parametrize('mode,signals', [
    ('honours_cancel', [signal.SIGINT, signal.SIGINT]),   # a terminal's Ctrl-C + launch's
    ('honours_cancel', [signal.SIGTERM]),
    ('stuck', [signal.SIGINT, signal.SIGINT, signal.SIGTERM]),
    ('slow_start', [signal.SIGINT]),
])
def test_exit_0_without_traceback(mode, signals, tmp_path):
    script = tmp_path / 'busy.py'
    script.write_text(NODE)
    env = ros_test_env(ROS_DOMAIN_ID=str(150 + os.getpid() % 70))
    proc = subprocess.Popen([sys.executable, str(script), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out = []
    try:
        wanted = 'CONSTRUCTING' if mode == 'slow_start' else 'READY'
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            out.append(line)
            if wanted in line or not line:
                break
        assert wanted in ''.join(out), ''.join(out)
        t0 = time.monotonic()
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        rest, _ = proc.communicate(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = ''.join(out) + rest
    assert proc.returncode == 0, text[-3000:]
    assert 'Traceback' not in text and 'Error' not in text, text[-3000:]
    assert elapsed < 15.0, f'{elapsed:.1f} s to exit (launch kills after 10 s)\n{text[-2000:]}'

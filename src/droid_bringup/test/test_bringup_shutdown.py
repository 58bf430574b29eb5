"""Ctrl-C is always clean: the mock droid is started and stopped again and again, stopped
in every state it can be in (idle, listening, speaking, music playing, a tool running, a
whole turn in flight, the eyes device reconnecting), by a terminal's Ctrl-C (SIGINT to
the whole process group) or by launch's own shutdown (SIGINT to ``ros2 launch`` only).
Every node must exit 0 ("process has finished cleanly") with no traceback.

Also a script printing the figures as JSON::

    python3 src/droid_bringup/test/test_bringup_shutdown.py --cycles 21
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

from droid_bringup.profiles import parts_of  # noqa: E402
from droid_common import names  # noqa: E402
from droid_common.testing import Process, ros_test_env  # noqa: E402
from droid_eyes.virtual_device import VirtualEyesDevice  # noqa: E402
from rcl_interfaces.srv import ListParameters  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from droid_msgs.action import PlayMusic, Speak, ToolCall  # noqa: E402
from droid_msgs.msg import (  # noqa: E402
    MusicState,
    ReplySentence,
    SpeechEvent,
    Transcription,
    WakeWord,
)
from droid_msgs.srv import InjectUtterance  # noqa: E402

ALL_NODES = set(parts_of('all'))       # what role:=all (the default) starts
STATES = ('idle', 'listening', 'speaking', 'music', 'tool', 'turn', 'reconnecting')
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
STORY = ('Once upon a time, in a cantina far away, a droid played music all night long '
         'while the band argued about the tempo, and nobody wanted to go home at all. ') * 4


class Probe:
    """The test's own node: drives the droid into a state and sees it get there."""

    def __init__(self):
        self.node = rclpy.create_node('shutdown_probe')
        n = self.node
        self.events = []
        for topic, kind, qos in ((names.WAKE_WORD, WakeWord, RELIABLE),
                                 (names.SPEECH_EVENT, SpeechEvent, RELIABLE),
                                 (names.REPLY, ReplySentence, RELIABLE),
                                 (names.MUSIC_STATE, MusicState, LATCHED)):
            n.create_subscription(kind, topic, lambda m, t=topic: self.events.append((t, m)),
                                  qos)
        self.transcription = n.create_publisher(Transcription, names.TRANSCRIPTION, RELIABLE)
        self.inject = n.create_client(InjectUtterance, names.INJECT_UTTERANCE)
        self.speak = ActionClient(n, Speak, names.SPEAK)
        self.music = ActionClient(n, PlayMusic, names.MUSIC_PLAY)
        self.tool = ActionClient(n, ToolCall, names.TOOL_CALL)
        self.feedback = []

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return predicate()

    def wait_for_graph(self, launch: Process, timeout: float = 120.0) -> None:
        """Every node in the graph *and spinning* (it answers a parameter service: a node
        shows up in the graph before its constructor, e.g. loading models, is done)."""
        deadline = time.monotonic() + timeout
        ok = self.spin_until(lambda: ALL_NODES <= set(self.node.get_node_names()), timeout)
        assert ok, f'not all nodes came up\n{launch.output()[-3000:]}'
        for name in sorted(ALL_NODES):
            client = self.node.create_client(ListParameters, f'/{name}/list_parameters')
            try:
                assert client.wait_for_service(timeout_sec=max(1.0, deadline -
                                                               time.monotonic())), name
                # Asked again every 5 s: a reply sent before the service's reply channel
                # has matched this client (a slow discovery on a busy machine) is lost, and
                # waiting for it would call a spinning node stuck.
                while True:
                    future = client.call_async(ListParameters.Request(depth=1))
                    left = deadline - time.monotonic()
                    if self.spin_until(future.done, max(1.0, min(5.0, left))) or left <= 5.0:
                        break
                assert future.done(), f'{name} does not spin\n{launch.output()[-3000:]}'
            finally:
                self.node.destroy_client(client)
        for topic in (names.SPEECH_EVENT, names.REPLY, names.WAKE_WORD, names.MUSIC_STATE):
            assert self.spin_until(lambda t=topic: self.node.count_publishers(t) > 0, 30), topic
        self.spin_until(lambda: False, 0.5)        # let the new publishers match us

    def seen(self, topic, pred=lambda m: True) -> bool:
        return any(t == topic and pred(m) for t, m in self.events)

    def goal(self, client: ActionClient, goal, timeout: float = 30.0) -> None:
        assert client.wait_for_server(timeout_sec=timeout), client._action_name
        client.send_goal_async(goal, feedback_callback=lambda f: self.feedback.append(f))

    def drive(self, state: str, cid: str) -> bool:
        """Bring the droid into ``state``; True once it is there."""
        self.events.clear()
        self.feedback.clear()
        if state in ('idle', 'reconnecting'):
            return True
        if state == 'listening':
            assert self.inject.wait_for_service(timeout_sec=30)
            for _ in range(3):           # (the wake word scores near its threshold)
                self.inject.call_async(InjectUtterance.Request(
                    text='hey jarvis, hello there, tell me a long story about the cantina'))
                if self.spin_until(lambda: self.seen(names.WAKE_WORD), 20):
                    return True
            return False
        if state == 'speaking':
            self.goal(self.speak, Speak.Goal(text=STORY, conversation_id=cid, utterance_id=1))
            return self.spin_until(lambda: bool(self.feedback) or self.seen(
                names.SPEECH_EVENT, lambda m: m.event == SpeechEvent.STARTED), 30)
        if state == 'music':
            self.goal(self.music, PlayMusic.Goal(query='cantina', volume=-1.0, loop=True))
            return self.spin_until(lambda: bool(self.feedback), 30)
        if state == 'tool':
            self.goal(self.tool, ToolCall.Goal(tool_name='play_music',
                                               arguments_json='{"query": "cantina"}',
                                               call_id='t1', conversation_id=cid))
            return self.spin_until(lambda: self.seen(
                names.MUSIC_STATE, lambda m: m.state == MusicState.PLAYING), 30)
        if state == 'turn':
            msg = Transcription(conversation_id=cid, utterance_id=1, is_final=True,
                                text='play the cantina song and make your eyes red')
            msg.header.stamp = self.node.get_clock().now().to_msg()
            assert self.spin_until(lambda: self.transcription.get_subscription_count() > 0, 30)
            self.transcription.publish(msg)
            return self.spin_until(lambda: self.seen(
                names.REPLY, lambda m: m.conversation_id == cid), 30)
        raise ValueError(state)

    def close(self):
        self.node.destroy_node()


STARTED = re.compile(r'\[([\w-]+)-\d+\]: process started with pid')
CLEAN = re.compile(r'\[([\w-]+)-\d+\]: process has finished cleanly')
DIED = re.compile(r'\[([\w-]+)-\d+\]: process has died \[pid (\d+), exit code (-?\d+)')
# asyncio's child watcher found the process already reaped: launch does not know its
# exit status and reports 255 (seen once in 630 exits; the node logged nothing wrong)
LOST = re.compile(r'Unknown child process pid (\d+), will report returncode 255')


def parse(output: str) -> dict:
    """Figures of one launch's output."""
    lost_pids = set(LOST.findall(output))
    died = [(n, pid, int(c)) for n, pid, c in DIED.findall(output)]
    return {'started': sorted(STARTED.findall(output)),
            'clean': sorted(CLEAN.findall(output)),
            'died': sorted((n, c) for n, pid, c in died
                           if not (c == 255 and pid in lost_pids)),
            'lost': sorted(n for n, pid, c in died if c == 255 and pid in lost_pids),
            'tracebacks': output.count('Traceback (most recent call last)'),
            'escalated': len(re.findall(r"sending signal 'SIG(TERM|KILL)'", output))}


def node_blas_threads(launch_pid: int) -> dict:
    """{executable: OPENBLAS_NUM_THREADS in its environment} of the launch's node processes."""
    import psutil
    out = {}
    for p in psutil.Process(launch_pid).children(recursive=True):
        try:
            cmd, env = p.cmdline(), p.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        exe = next((os.path.basename(c) for c in cmd[1:] if '/lib/droid_' in c), None)
        if exe is not None:
            out[exe] = env.get('OPENBLAS_NUM_THREADS')
    return out


def one_cycle(probe: Probe, state: str, how: str, env: dict, tmp: Path, i: int) -> dict:
    args = ['ros2', 'launch', 'droid_bringup', 'droid.launch.py', 'profile:=mock']
    device = None
    if state == 'reconnecting':
        device = VirtualEyesDevice(str(tmp / f'ttyEYES{i}'), seed=i).plug()
        args.append(f'eyes_port:={tmp}/ttyEYES{i}')
    log = tmp / f'cycle{i:02d}-{state}-{how}.log'
    with Process(args, env=env, log_path=str(log)) as launch:
        try:
            probe.wait_for_graph(launch)
            blas = node_blas_threads(launch.proc.pid)
            reached = probe.drive(state, f'shutdown{i}')
            if state == 'reconnecting':
                reached = device.wait_until(lambda d: d.frames_of(0x04), timeout=30)
                device.unplug()                        # the link is now reconnecting
                time.sleep(0.3)
            time.sleep(random.Random(i).uniform(0.0, 0.4))
            if how == 'ctrl-c':                        # a terminal: the whole group
                os.killpg(launch.proc.pid, signal.SIGINT)
            else:                                      # launch's own shutdown
                launch.proc.send_signal(signal.SIGINT)
            try:
                code = launch.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                code = None
        finally:
            if device is not None:
                device.close()
    output = log.read_text(errors='replace')
    figures = parse(output)
    figures.update(state=state, how=how, reached=reached, launch_exit=code, log=str(log),
                   blas=blas)
    return figures


def run_cycles(n: int, tmp: Path, states=STATES) -> list:
    env = ros_test_env(PYTHONUNBUFFERED='1')
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID',) if k in env})
    rclpy.init()
    probe = Probe()
    results = []
    try:
        for i in range(n):
            state = states[i % len(states)]
            how = 'ctrl-c' if (i // len(states)) % 2 == 0 else 'launch-shutdown'
            results.append(one_cycle(probe, state, how, env, tmp, i))
    finally:
        probe.close()
        rclpy.try_shutdown()
    return results


def summary(results: list) -> dict:
    return {'cycles': len(results),
            'node_exits': sum(len(r['clean']) + len(r['died']) + len(r['lost'])
                              for r in results),
            'tracebacks': sum(r['tracebacks'] for r in results),
            'non_zero_exits': sum(len(r['died']) for r in results),
            'exit_status_lost_by_launch': [(r['state'], r['how'], r['lost'])
                                           for r in results if r['lost']],
            'escalations': sum(r['escalated'] for r in results),
            'states_not_reached': [r['state'] for r in results if not r['reached']],
            'failures': [{k: r[k] for k in ('state', 'how', 'died', 'tracebacks', 'log')}
                         for r in results if r['died'] or r['tracebacks'] or r['escalated']
                         or sorted(r['clean'] + r['lost']) != r['started']]}


@pytest.mark.timeout(3600)
def test_every_node_exits_cleanly_in_every_state(tmp_path):
    results = run_cycles(int(os.environ.get('DROID_SHUTDOWN_CYCLES', '21')), tmp_path)
    s = summary(results)
    print(json.dumps(s, indent=1))
    assert s['cycles'] >= 20 and not s['states_not_reached'], s
    details = ''
    for f in s['failures']:
        text = Path(f['log']).read_text(errors='replace')
        start = text.find('Traceback')
        details += f"\n--- {f['state']} / {f['how']}: {f['died']}\n" + \
            (text[max(0, start - 300):start + 2500] if start >= 0 else text[-2500:])
    assert s['tracebacks'] == 0 and s['non_zero_exits'] == 0 and s['escalations'] == 0, \
        json.dumps(s, indent=1) + details
    for r in results:
        # every process the launch started (the droid's nodes and the dashboard's bridge)
        # finished cleanly
        # (or exited with a status launch lost, without a traceback: counted above)
        assert len(r['started']) >= len(ALL_NODES) and \
            sorted(r['clean'] + r['lost']) == r['started'], r
        assert r['launch_exit'] == 0, r
        # every node runs with one BLAS thread (droid_bringup.profiles.node_environment)
        assert r['blas'] and set(r['blas'].values()) == {'1'}, r['blas']


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--cycles', type=int, default=21)
    ap.add_argument('--states', default=','.join(STATES), help='states to cycle through')
    ap.add_argument('--logs', default='', help='keep the launch logs in this directory')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='droid-shutdown-') as d:
        if a.logs:
            Path(a.logs).mkdir(parents=True, exist_ok=True)
        res = run_cycles(a.cycles, Path(a.logs or d), tuple(a.states.split(',')))
        out = summary(res)
        for f in out['failures']:
            text = Path(f['log']).read_text(errors='replace')
            i = text.find('Traceback')
            f['excerpt'] = text[max(0, i - 200):i + 1500] if i >= 0 else text[-1500:]
        print(json.dumps(out, indent=1))
    sys.exit(0)

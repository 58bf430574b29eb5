"""The droid does not hear itself through a real speaker: echo cancellation, end to end.

A private PulseAudio daemon is the room: the tts (real espeak-ng voice) plays into the null
sink ``droid_null``; a loopback carries its monitor, delayed 40 ms and attenuated, into the
null sink ``room``, whose monitor is the microphone. The user's espeak-ng speech is played
into ``room`` too. The real microphone node (echo cancellation on its reference topic
audio/playback), the real listener (Silero VAD, barge-in detection) and the real tts run
as separate processes, as in the droid.

While the droid talks alone, its own voice must never turn the listener's voice activity
on; the user's speech over it still must. Without echo cancellation the same room makes
the droid hear itself (the test of the test).
"""

import os
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip('rclpy')
pytest.importorskip('livekit', reason='livekit (WebRTC audio processing) not installed')

import soundfile as sf
from droid_audio.testing import Harness, NodeProcess, pick_domain, ros_env
from droid_common import names
from droid_common.ros import RELIABLE_QOS, SENSOR_QOS, to_sec, to_time_msg
from droid_common.testing import PulseAudioServer, speech

from droid_msgs.msg import AudioChunk, ReplySentence, SpeechEvent, VoiceActivity

DROID_TEXT = ('Welcome to the cantina, friend. I am the droid on the speaker, and I will keep '
              'talking for quite a while, about music, lights and the best songs of the '
              'galaxy, so that you can hear me clearly.')
USER_TEXT = 'hey jarvis, stop talking and tell me what time it is right now'

if not PulseAudioServer.available():
    pytest.skip('pulseaudio/pactl not installed', allow_module_level=True)


def audio_priority(pid: int) -> None:
    """Audio processes get real-time scheduling, as a droid's sound server and audio nodes
    should (PulseAudio asks for it itself through rtkit): a CPU hog beside the test must
    not starve the audio path. Needs root (CI, these machines); else a raised priority,
    else no change."""
    if subprocess.run(['chrt', '-a', '-r', '-p', '20', str(pid)],
                      capture_output=True).returncode == 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -15)
    except (PermissionError, OSError):
        pass


def pactl(env, *args):
    return subprocess.run(['pactl', *args], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


class Room:
    """PulseAudio with the speaker -> room loopback; the mic is room.monitor."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.pa = PulseAudioServer().__enter__()
        audio_priority(self.pa._proc.pid)
        self.env = dict(os.environ, **self.pa.env)
        pactl(self.env, 'load-module', 'module-null-sink', 'sink_name=room', 'rate=16000',
              'channels=1')
        pactl(self.env, 'load-module', 'module-loopback', 'source=droid_null.monitor',
              'sink=room', 'latency_msec=40', 'source_dont_move=true', 'sink_dont_move=true')
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            inputs = pactl(self.env, 'list', 'short', 'sink-inputs').splitlines()
            if inputs:
                pactl(self.env, 'set-sink-input-volume', inputs[0].split()[0], '60%')
                break
            time.sleep(0.1)
        self.env['PULSE_SOURCE'] = 'room.monitor'
        self.env['PULSE_SINK'] = 'droid_null'
        user = speech(USER_TEXT, 'en-gb')
        self.user_wav = str(tmp_path / 'user.wav')
        sf.write(self.user_wav, user, 16000, subtype='PCM_16')
        self.user_s = len(user) / 16000

    def play_user(self):
        return subprocess.Popen(['paplay', '--device=room', self.user_wav], env=self.env)

    def close(self):
        self.pa.__exit__(None, None, None)


def run_room(tmp_path, echo_cancel: bool, with_user: bool):
    room = Room(tmp_path)
    domain = pick_domain()
    env = {k: room.env[k] for k in ('PULSE_SERVER', 'PULSE_SOURCE', 'PULSE_SINK')}
    procs = []
    h = None
    try:
        procs.append(NodeProcess('microphone_node', domain,
                                 {'device': 'pulse', 'echo_cancel': echo_cancel}, env=env,
                                 log_path=str(tmp_path / 'mic.log')))
        procs.append(NodeProcess('listener_node', domain, {}, env=env,
                                 log_path=str(tmp_path / 'listener.log')))
        tts_args = [sys.executable, '-m', 'droid_voice.tts_node', '--ros-args',
                    '-p', 'backend:=espeak', '-p', 'output:=sounddevice', '-p', 'device:=pulse',
                    '-p', 'barge_in:=false']
        tts_log = open(tmp_path / 'tts.log', 'wb')
        tts = subprocess.Popen(tts_args, env=ros_env(domain, env), stdout=tts_log,
                               stderr=subprocess.STDOUT, start_new_session=True)
        for pid in [p.pid for p in procs] + [tts.pid]:
            audio_priority(pid)
        h = Harness(domain)
        vad = h.collect(VoiceActivity, names.VOICE_ACTIVITY, SENSOR_QOS)
        events = h.collect(SpeechEvent, names.SPEECH_EVENT, RELIABLE_QOS)
        mic = h.collect(AudioChunk, names.AUDIO, SENSOR_QOS)
        playback = h.collect(AudioChunk, names.PLAYBACK, SENSOR_QOS)
        reply = h.node.create_publisher(ReplySentence, names.REPLY, RELIABLE_QOS)
        assert h.wait_for(lambda: len(mic) > 20 and reply.get_subscription_count() > 0, 60), \
            procs[0].log()
        time.sleep(2.0)                       # the listener's models are loaded by now
        m = ReplySentence(conversation_id='echo', utterance_id=1, index=0, text=DROID_TEXT)
        m.header.stamp = to_time_msg(h.node.get_clock().now().nanoseconds * 1e-9)
        reply.publish(m)
        reply.publish(ReplySentence(conversation_id='echo', utterance_id=1, index=1,
                                    is_final=True))
        assert h.wait_for(lambda: [e for e in events if e.event == SpeechEvent.STARTED], 30)
        started = to_sec(events[0].header.stamp)
        user_at = None
        if with_user:
            time.sleep(3.0)
            user_at = h.node.get_clock().now().nanoseconds * 1e-9
            room.play_user().wait(30)
        assert h.wait_for(lambda: [e for e in events if e.event == SpeechEvent.ENDED], 60)
        ended = to_sec([e for e in events if e.event == SpeechEvent.ENDED][0].header.stamp)
        time.sleep(0.5)
        on = [to_sec(v.header.stamp) for v in vad if v.speaking]
        result = dict(started=started, ended=ended, user_at=user_at, voice_on=on,
                      mic=list(mic), playback=list(playback))
    finally:
        if h is not None:
            h.close()
        for p in procs:
            p.stop()
        if 'tts' in locals():
            tts.send_signal(2)
            try:
                tts.wait(10)
            except subprocess.TimeoutExpired:
                tts.kill()
            tts_log.close()
        room.close()
    # after the nodes stopped: the microphone's last line says what the canceller did
    # (frames, re-alignments, reference blocks and how often late, the lead, the echo's
    # measured delay), which is what a failure needs explained
    result['logs'] = '\n'.join(p.log() for p in procs) + (tmp_path / 'tts.log').read_text(
        errors='replace')[-3000:] + f'\nstarted {started:.3f}, user at {user_at}'
    return result


def test_with_echo_cancellation_the_droid_never_hears_itself(tmp_path):
    r = run_room(tmp_path, echo_cancel=True, with_user=False)
    assert r['ended'] - r['started'] > 6.0
    during = [t for t in r['voice_on'] if r['started'] <= t <= r['ended'] + 0.3]
    assert during == [], r['logs']


def test_with_echo_cancellation_the_user_still_barges_in(tmp_path):
    r = run_room(tmp_path, echo_cancel=True, with_user=True)
    assert r['user_at'] is not None and r['user_at'] < r['ended']
    before = [t for t in r['voice_on'] if r['started'] <= t < r['user_at']]
    user = [t for t in r['voice_on'] if r['user_at'] <= t <= r['user_at'] + 4.0]
    assert before == [] and user, r['logs']


def test_without_echo_cancellation_the_same_room_makes_the_droid_hear_itself(tmp_path):
    r = run_room(tmp_path, echo_cancel=False, with_user=False)
    during = [t for t in r['voice_on'] if r['started'] <= t <= r['ended']]
    assert during, 'the room is too quiet to test echo cancellation'

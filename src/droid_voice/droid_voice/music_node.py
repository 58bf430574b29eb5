"""The ``music`` node: plays the local library, ducks under the droid's speech.

Thin rclpy shell around :mod:`droid_voice.music` (library, fuzzy match, decoding thread,
volume x ducking) and :mod:`droid_voice.output` (sounddevice, or mock paced by the node
clock).
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from droid_common import names
from droid_common.contract import constants
from droid_common.ros import (
    ERROR,
    LATCHED_QOS,
    LATCHED_SUB_QOS,
    OK,
    RELIABLE_QOS,
    WARN,
    Diagnostics,
    check_choice,
    declare,
    log_prefix,
    now_sec,
    run,
    to_time_msg,
)
from droid_common.ros_activity import track_activity
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from droid_msgs.action import PlayMusic
from droid_msgs.msg import AudioChunk, MusicState, SpeechEvent, SystemMode
from droid_msgs.srv import MusicControl
from droid_voice.demo_music import make_demo_library
from droid_voice.envelope import DuckingEnvelope
from droid_voice.music import PAUSED, PLAYING, MusicError, MusicLibrary, MusicPlayer
from droid_voice.output import MockOutput, SoundDeviceOutput
from droid_voice.playback import PlaybackTap, publisher_of

OUTPUTS = ('sounddevice', 'mock')
_STATE = {'stopped': MusicState.STOPPED, 'playing': MusicState.PLAYING,
          'paused': MusicState.PAUSED}
_MODE_NAMES = {v: k for k, v in constants('SystemMode').items()}


class MusicNode(Node):
    def __init__(self, node_name: str = 'music', **kwargs):
        super().__init__(node_name, **kwargs)
        p = self._declare_params()
        if not p['library_dir'] and p['demo_library']:
            p['library_dir'] = str(make_demo_library(Path(p['demo_library_dir'])))
        self.diag = Diagnostics(self, hardware_id=f'audio output {p["device"] or "default"}')
        self.activity = track_activity(self)
        self.library = MusicLibrary(p['library_dir'])
        duck = DuckingEnvelope(p['duck_level'], p['duck_ramp_ms'] / 1000.0,
                               p['unduck_delay_ms'] / 1000.0, p['unduck_ramp_ms'] / 1000.0)
        self.player = MusicPlayer(duck, p['volume'], on_end=self._on_track_end)
        self._lock = threading.RLock()
        self._output = None
        self._token = 0                  # bumped whenever the current play session ends
        self._end_error: dict = {}       # token -> error at end of track ('' = natural end)
        self._played_at_end: dict = {}
        self._speaking = False
        self._mode_name = ''
        self._last_pub = None
        self._last_pub_t = -1e9
        self._last_track = None
        self._check_library()

        self.pub_state = self.create_publisher(MusicState, names.MUSIC_STATE, LATCHED_QOS)
        self.pub_playback = self.create_publisher(AudioChunk, names.PLAYBACK, RELIABLE_QOS)
        self._tap = PlaybackTap(self.player.render,
                                publisher_of(self.pub_playback, 'music')
                                if self._p['publish_playback'] else (lambda t, samples: None),
                                rate=16000)
        topics = MutuallyExclusiveCallbackGroup()
        self.create_subscription(SpeechEvent, names.SPEECH_EVENT, self._on_speech, RELIABLE_QOS,
                                 callback_group=topics)
        self.create_subscription(SystemMode, names.MODE, self._on_mode, LATCHED_SUB_QOS,
                                 callback_group=topics)
        self.create_service(MusicControl, names.MUSIC_CONTROL, self._on_control,
                            callback_group=topics)
        self._action = ActionServer(self, PlayMusic, names.MUSIC_PLAY,
                                    execute_callback=self._execute,
                                    goal_callback=lambda goal: GoalResponse.ACCEPT,
                                    cancel_callback=lambda gh: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup())
        # The timer runs only while it has something to do (a track playing or paused, a
        # device still open, the volume ramping): any change arms it, _tick disarms it, so a
        # silent droid's music node is not woken ramp_state_rate_hz times a second.
        self._tick_lock = threading.Lock()
        self._tick_timer = self.create_timer(1.0 / p['ramp_state_rate_hz'], self._tick,
                                             callback_group=topics)
        self._publish_state(force=True)
        self.get_logger().info(f'music ready: library {p["library_dir"] or "(none)"}, output '
                               f'{p["output"]}, duck to {p["duck_level"]:.2f} in '
                               f'{p["duck_ramp_ms"]:.0f} ms')

    def _declare_params(self) -> dict:
        d = {}
        d['library_dir'] = declare(self, 'library_dir', '', 'Directory of music files (WAV, '
                                   'FLAC, OGG, MP3, searched recursively)')
        d['demo_library'] = declare(self, 'demo_library', False, 'With no library_dir: play a '
                                    'few synthesised demo tunes (the mock profile uses this)')
        d['demo_library_dir'] = declare(self, 'demo_library_dir', '~/.cache/droid/demo_music',
                                        'Where the demo tunes are written once')
        d['output'] = declare(self, 'output', 'sounddevice', 'Audio output: sounddevice | mock '
                              '(no device, paced by the node clock)', read_only=True,
                              choices=OUTPUTS)
        check_choice('output', d['output'], OUTPUTS)
        d['device'] = declare(self, 'device', '', 'Output device (index or name substring); '
                              'empty = default', read_only=True)
        d['blocksize'] = declare(self, 'blocksize', 0, 'Output block [frames]; 0 = PortAudio '
                                 'chooses', min_value=0, max_value=16384, read_only=True)
        d['latency_ms'] = declare(self, 'latency_ms', 100.0, 'Requested output latency [ms] '
                                  '(ducking reacts after it)', min_value=5.0, max_value=2000.0,
                                  read_only=True)
        d['volume'] = declare(self, 'volume', 0.6, 'Initial user volume', min_value=0.0,
                              max_value=1.0)
        d['duck_level'] = declare(self, 'duck_level', 0.25, 'Gain while the droid speaks',
                                  min_value=0.0, max_value=1.0, read_only=True)
        d['duck_ramp_ms'] = declare(self, 'duck_ramp_ms', 100.0, 'Ramp down when speech starts '
                                    '[ms]', min_value=0.0, max_value=2000.0, read_only=True)
        d['unduck_delay_ms'] = declare(self, 'unduck_delay_ms', 600.0, 'Wait after speech ends '
                                       'before ramping back [ms]', min_value=0.0,
                                       max_value=10000.0, read_only=True)
        d['unduck_ramp_ms'] = declare(self, 'unduck_ramp_ms', 600.0, 'Ramp back up [ms]',
                                      min_value=0.0, max_value=10000.0, read_only=True)
        d['state_rate_hz'] = declare(self, 'state_rate_hz', 4.0, 'MusicState rate while playing '
                                     '[Hz]', min_value=0.1, max_value=100.0, read_only=True)
        d['ramp_state_rate_hz'] = declare(self, 'ramp_state_rate_hz', 30.0, 'MusicState rate '
                                          'while the volume ramps [Hz]', min_value=1.0,
                                          max_value=200.0, read_only=True)
        d['match_cutoff'] = declare(self, 'match_cutoff', 60.0, 'Minimum fuzzy score (0-100) '
                                    'for a query to match a title', min_value=0.0,
                                    max_value=100.0)
        d['stop_in_modes'] = declare(self, 'stop_in_modes', ['SLEEP'], 'System modes that stop '
                                     'the music (SystemMode constant names)', read_only=True)
        d['duck_in_modes'] = declare(self, 'duck_in_modes', ['INTERACTIVE'], 'System modes in '
                                     'which music stays ducked', read_only=True)
        d['mock_block_ms'] = declare(self, 'mock_block_ms', 20.0, 'Mock output block [ms]',
                                     min_value=1.0, max_value=200.0, read_only=True)
        d['publish_playback'] = declare(self, 'publish_playback', True, 'Publish what is played '
                                        '(16 kHz mono) on audio/playback: the echo reference of '
                                        "the microphone's echo cancellation", read_only=True)
        self._p = d
        return d

    def _now(self) -> float:
        return now_sec(self)

    def _check_library(self) -> None:
        try:
            n = len(self.library.tracks())
            if n:
                self.diag.set(OK, f'{n} tracks in {self.library.directory}', component='library')
            else:
                self.diag.set(WARN, f'no audio files in {self.library.directory}',
                              component='library')
        except MusicError as exc:
            self.get_logger().warning(str(exc))
            self.diag.set(WARN, str(exc), component='library')

    # -- playing ------------------------------------------------------------------------------
    def _open_output(self, rate: int, channels: int):
        if self._p['output'] == 'sounddevice':
            self._tap.rate = rate
            out = SoundDeviceOutput(self._tap, self._now, sample_rate=rate,
                                    channels=channels, device=self._p['device'],
                                    blocksize=self._p['blocksize'],
                                    latency=self._p['latency_ms'] / 1000.0)
            try:
                out.start()
                self.diag.set(OK, 'audio output open', component='output')
                return out
            except Exception as exc:  # noqa: BLE001 - no device: play silently, say so
                msg = f'cannot open audio output: {exc}; playing silently (mock output)'
                self.get_logger().error(msg)
                self.diag.set(ERROR, msg, component='output')
        self._tap.rate = rate
        out = MockOutput(lambda n, th, tw: self._tap(n, th, tw), self._now,
                         sample_rate=rate, block_s=self._p['mock_block_ms'] / 1000.0,
                         activity=self.activity)
        out.start()
        return out

    def _start(self, track, reader, loop: bool) -> int:
        """Switch to ``track`` (already opened); returns the new session token."""
        with self._lock:
            old = self._output
            self._output = None
            self._token += 1
            token = self._token
        if old is not None:
            old.close()
        self.player.play(track, reader, loop)
        self._update_duck()
        out = self._open_output(reader.sample_rate, reader.channels)
        with self._lock:
            self._output = out
            self._last_track = track
        self.get_logger().info(f'playing "{track.title}" ({reader.duration:.1f} s)')
        self._publish_state(force=True)
        return token

    def _stop(self, why: str) -> None:
        with self._lock:
            old = self._output
            self._output = None
            self._played_at_end[self._token] = self.player.position()
            self._token += 1
        self.player.stop()
        if old is not None:
            old.close()
        self.get_logger().info(f'music stopped ({why})')
        self._publish_state(force=True)

    def _on_track_end(self, track, error: str, played: float) -> None:
        # Audio thread: record and let the timer/goal loop do the rest.
        with self._lock:
            self._end_error[self._token] = error
            self._played_at_end[self._token] = played
            self._token += 1
        self._arm_tick()             # the device is released by the tick
        self.activity.notify()

    def _execute(self, goal_handle):
        g = goal_handle.request
        prefix = log_prefix(g.conversation_id)
        try:
            if g.query.strip():
                track = self.library.match(g.query, self.get_parameter('match_cutoff').value)
            else:
                track = self.library.next_after(self._last_track)
            reader = self.player.open(track, bool(g.loop))
        except MusicError as exc:
            self.get_logger().error(prefix + f'cannot play {g.query!r}: {exc}')
            goal_handle.abort()
            return PlayMusic.Result(success=False, error=str(exc))
        if g.volume >= 0.0:
            self.player.set_volume(min(1.0, float(g.volume)))
        token = self._start(track, reader, bool(g.loop))
        self.get_logger().info(prefix + f'query {g.query!r} -> "{track.title}"')
        result = PlayMusic.Result(success=True, track_title=track.title, track_path=track.path)

        def woken():
            return goal_handle.is_cancel_requested or self._token != token
        while True:
            if goal_handle.is_cancel_requested:
                with self._lock:
                    mine = self._token == token
                played = self.player.position()
                if mine:
                    self._stop('goal cancelled')
                result.played = float(played)
                goal_handle.canceled()
                return result
            with self._lock:
                ended = self._token != token
            if ended:
                error = self._end_error.pop(token, '')
                result.played = float(self._played_at_end.pop(token, 0.0))
                if error:
                    result.success, result.error = False, error
                    goal_handle.abort()
                else:
                    goal_handle.succeed()
                self._publish_state(force=True)
                return result
            goal_handle.publish_feedback(PlayMusic.Feedback(
                track_title=track.title, position=float(self.player.position()),
                duration=float(reader.duration)))
            # idle (droid_common.activity) until cancel, the end, or the next feedback (0.1 s
            # on the node clock)
            self.activity.wait(woken, timeout=0.1, poll=0.02, what='playing')

    # -- control ------------------------------------------------------------------------------
    def _on_control(self, req, resp):
        cmd = req.command
        ok, message = True, ''
        try:
            if cmd == MusicControl.Request.STOP:
                self._stop('stop command')
                message = 'stopped'
            elif cmd == MusicControl.Request.PAUSE:
                ok = self.player.pause()
                message = 'paused' if ok else 'nothing is playing'
            elif cmd == MusicControl.Request.RESUME:
                ok = self.player.resume()
                message = 'resumed' if ok else 'nothing is paused'
            elif cmd == MusicControl.Request.NEXT:
                track = self.library.next_after(self.player.track or self._last_track)
                reader = self.player.open(track)
                self._start(track, reader, False)
                message = f'playing "{track.title}"'
            elif cmd == MusicControl.Request.SET_VOLUME:
                v = float(req.volume)
                if math.isnan(v) or not 0.0 <= v <= 1.0:
                    ok, message = False, f'volume {v} out of range [0, 1]'
                else:
                    self.player.set_volume(v)
                    message = f'volume {v:.2f}'
            else:
                ok, message = False, f'unknown command {cmd}'
        except MusicError as exc:
            ok, message = False, str(exc)
            self.get_logger().error(message)
        self._publish_state(force=True)
        resp.success, resp.message = ok, message
        resp.state = self._state_msg()
        return resp

    # -- ducking and modes --------------------------------------------------------------------
    def _on_speech(self, msg: SpeechEvent) -> None:
        self._speaking = msg.event == SpeechEvent.STARTED
        self._update_duck()

    def _on_mode(self, msg: SystemMode) -> None:
        name = _MODE_NAMES.get(msg.mode, str(msg.mode))
        self._mode_name = name
        if name in self._p['stop_in_modes'] and self.player.state in (PLAYING, PAUSED):
            self._stop(f'mode {name}')
        self._update_duck()

    def _update_duck(self) -> None:
        ducked = self._speaking or self._mode_name in self._p['duck_in_modes']
        was = self.player.duck.ducked
        self.player.set_ducked(ducked, self._now())
        if was != ducked:
            self._publish_state(force=True)

    # -- state ----------------------------------------------------------------------------------
    def _state_msg(self, snap: dict | None = None) -> MusicState:
        t = self._now()
        snap = snap or self.player.snapshot(t)
        m = MusicState(state=_STATE[snap['state']], track_title=snap['track_title'],
                       track_path=snap['track_path'], position=float(snap['position']),
                       duration=float(snap['duration']), volume=float(snap['volume']),
                       effective_volume=float(snap['effective_volume']),
                       ducked=bool(snap['ducked']))
        m.header.stamp = to_time_msg(t)
        return m

    def _publish_state(self, force: bool = False, t: float | None = None) -> None:
        if force:
            self._arm_tick()
        t = self._now() if t is None else t
        snap = self.player.snapshot(t)
        # Any change of the effective volume (a ramp, its end) is published at once (at
        # most at the timer rate, ramp_state_rate_hz); position at state_rate_hz.
        key = (snap['state'], snap['track_path'], round(snap['volume'], 4), snap['ducked'],
               round(snap['effective_volume'], 3))
        playing = snap['state'] == PLAYING
        due = playing and t - self._last_pub_t >= 1.0 / self._p['state_rate_hz']
        if force or key != self._last_pub or due:
            self.pub_state.publish(self._state_msg(snap))
            self._last_pub, self._last_pub_t = key, t

    def _tick(self) -> None:
        t = self._now()
        self._publish_state(t=t)
        with self._lock:
            stale_output = self._output is not None and self.player.reader is None
            old = self._output if stale_output else None
            if stale_output:
                self._output = None
        if old is not None:          # the track ended: release the device
            old.close()
        with self._tick_lock:        # nothing left to do: sleep until the next change
            with self._lock:
                busy = self.player.state in (PLAYING, PAUSED) or self._output is not None
            if not busy and not self.player.duck.ramping(t):
                self._tick_timer.cancel()

    def _arm_tick(self) -> None:
        """Something changed: tick until it has settled (any thread)."""
        with self._tick_lock:
            if self._tick_timer.is_canceled():
                self._tick_timer.reset()

    def close(self) -> None:
        with self._lock:
            out, self._output = self._output, None
        if out is not None:
            out.close()
        self.player.stop()
        self._tap.close()


def main(args=None):
    run(MusicNode, args=args, executor_factory=lambda: MultiThreadedExecutor(num_threads=4))


if __name__ == '__main__':
    main()

"""``mock_eyes``: the eyes without hardware (node name ``eyes``, same contract as ``eyes``).

Same subscriptions, publications and expression parameters as the real node; instead of
a serial port it publishes every frame it would write on ``eyes/frames``
(std_msgs/UInt8MultiArray, one frame per message: FULL_STATE at start, SET_STATE per
change, AMPLITUDE coalesced to ``amplitude_max_rate``) and, with ``render``, draws the
eyes: ``terminal`` prints ANSI colour blocks on every change, ``png`` rewrites
``render_path`` (a 192x96 PNG) on every change. ``EyeState.device_connected`` is always
false. Rendering runs in its own thread.
"""

from __future__ import annotations

import os
import queue
import sys

from droid_common.ros import OK, check_choice, declare, fail_fast, run

from droid_eyes import protocol as P
from droid_eyes import render
from droid_eyes.eyes_common import EyesNodeBase

RENDER_CHOICES = ('none', 'terminal', 'png')


class MockEyesNode(EyesNodeBase):
    HARDWARE_ID = 'mock eyes (no device)'

    def declare_node_params(self) -> None:
        self.publish_frames = declare(self, 'publish_frames', True, 'publish the frames the '
                                      'real node would write on eyes/frames', read_only=True)
        self.amplitude_max_rate = declare(self, 'amplitude_max_rate', 60.0, 'at most this many '
                                          'AMPLITUDE frames per second (latest value wins)',
                                          min_value=1.0, max_value=1000.0, read_only=True)
        self.render_mode = declare(self, 'render', 'none', 'draw the eyes: none | terminal '
                                   '(ANSI blocks on stdout) | png (file render_path)',
                                   choices=RENDER_CHOICES, read_only=True)
        self.render_path = declare(self, 'render_path', '/tmp/droid_eyes.png', 'PNG file '
                                   'rewritten on every change when render is png',
                                   read_only=True)
        try:
            check_choice('render', self.render_mode, RENDER_CHOICES)
        except ValueError as exc:
            fail_fast(self, str(exc))

    def start_output(self) -> None:
        self._seq = 0
        self._amp = 0
        self._amp_sent = 0
        self._amp_next = 0.0
        self._frames = 0
        self._started = False
        self._render_q: queue.Queue = queue.Queue(maxsize=1)
        self._render_thread = None
        if self.render_mode != 'none':
            self._render_thread = self.activity.spawn(self._render_loop, 'eyes-render')
        self.get_logger().info(f'mock eyes: no serial device; frames on eyes/frames='
                               f'{self.publish_frames}, render={self.render_mode}')

    def _send(self, frame: P.Frame) -> None:
        data = frame.encode()
        self._frames += 1
        if self.publish_frames:
            self.publish_frame(data)
        self.get_logger().debug(f'frame {frame!r}: {data.hex()}')

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def output_state(self, look) -> None:
        state = P.DeviceState.from_floats(look.pattern, look.color, look.brightness, look.speed)
        if not self._started:
            self._started = True
            self._send(P.Frame(P.FULL_STATE, self._next_seq(),
                               P.full_state_payload(state, self._amp)))
        else:
            self._send(P.Frame(P.SET_STATE, self._next_seq(), P.set_state_payload(state)))
        self._queue_render()

    def output_amplitude(self, amplitude: float) -> None:
        self._amp = P.amplitude_byte(amplitude)
        self._flush_amplitude()

    def _flush_amplitude(self) -> None:
        now = self._now()                    # node clock: the same frames on every replay
        if self._amp != self._amp_sent and now >= self._amp_next:
            self._send(P.Frame(P.AMPLITUDE, self._next_seq(), bytes((self._amp,))))
            self._amp_sent = self._amp
            self._amp_next = now + 1.0 / self.amplitude_max_rate

    def poll_device(self) -> bool:
        self._flush_amplitude()
        self.diag.set(OK, 'mock eyes: no device (frames published on eyes/frames)'
                      if self.publish_frames else 'mock eyes: no device',
                      frames=self._frames, render=self.render_mode,
                      expression=self.expr.look.describe())
        return False

    # ---- rendering (own thread) ---------------------------------------------------------
    def _queue_render(self) -> None:
        if self._render_thread is None:
            return
        look = self.expr.look
        item = (look, self._amp / 255.0, self._now())
        try:
            self._render_q.get_nowait()      # latest wins
        except queue.Empty:
            pass
        try:
            self._render_q.put_nowait(item)
        except queue.Full:
            pass
        self.activity.notify()

    def _render_loop(self) -> None:
        while True:
            self.activity.wait(lambda: not self._render_q.empty(), poll=0.05, what='render')
            try:
                item = self._render_q.get_nowait()
            except queue.Empty:
                continue
            if item is None:
                return
            look, amp, t = item
            px = render.eye_pixels(look.pattern, look.color, look.brightness, look.speed, amp, t)
            try:
                if self.render_mode == 'terminal':
                    sys.stdout.write(render.to_ansi(px, f'eyes: {look.describe()}'))
                    sys.stdout.flush()
                else:
                    tmp = self.render_path + '.tmp'
                    with open(tmp, 'wb') as f:
                        f.write(render.to_png(px))
                    os.replace(tmp, self.render_path)
            except OSError as exc:
                self.get_logger().warning(f'cannot render eyes: {exc}')

    def close(self) -> None:
        if self._render_thread is not None:
            try:
                self._render_q.get_nowait()
            except queue.Empty:
                pass
            self._render_q.put(None)
            self._render_thread.join(2.0)
            self._render_thread = None


def main(args=None):
    run(MockEyesNode, args=args)


if __name__ == '__main__':
    main()

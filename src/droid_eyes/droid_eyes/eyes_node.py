"""``eyes``: the eye LEDs on an Arduino over USB serial (node name ``eyes``).

Expression from :mod:`droid_eyes.expression`, serial link from :mod:`droid_eyes.link`
(its own thread: nothing here blocks a callback). Health on /diagnostics: OK while the
device is connected and in sync, WARN while no device is found / handshaking / resyncing
or while the link is degraded (frames go unacknowledged but the device keeps heartbeating:
the node keeps resending, backed off, and does not reopen the port), ERROR after the device
was lost (unplug, I/O error, silence, no acks) until it is back.
"""

from __future__ import annotations

from droid_common.ros import OK, declare, run

from droid_eyes import protocol as P
from droid_eyes.eyes_common import EyesNodeBase, RosLogAdapter
from droid_eyes.link import LinkConfig, SerialLink


class EyesNode(EyesNodeBase):
    HARDWARE_ID = 'arduino eyes (MAX7219 / NeoPixel)'

    def declare_node_params(self) -> None:
        d = LinkConfig()
        self.link_config = LinkConfig(
            port=declare(self, 'port', d.port, 'serial port: a path or a glob, e.g. '
                         '/dev/serial/by-id/*Arduino* (the first match, sorted)', read_only=True),
            baud=declare(self, 'baud', d.baud, 'serial baud rate', min_value=1200,
                         max_value=2000000, read_only=True),
            ack_timeout=declare(self, 'ack_timeout', d.ack_timeout, 'seconds to wait for the '
                                'ACK of a state frame before resending it', min_value=0.005,
                                max_value=5.0, read_only=True),
            max_retries=declare(self, 'max_retries', d.max_retries, 'resends of an '
                                'unacknowledged frame before the link is reported degraded '
                                '(WARN; it keeps resending, and is declared lost only when '
                                'the device also falls silent)',
                                min_value=0, max_value=100, read_only=True),
            retry_backoff=declare(self, 'retry_backoff', d.retry_backoff, 'each resend waits '
                                  'this many times longer than the previous one (exponential '
                                  'backoff from ack_timeout)', min_value=1.0, max_value=10.0,
                                  read_only=True),
            retry_max_delay=declare(self, 'retry_max_delay', d.retry_max_delay, 'longest wait '
                                    'between resends, HELLOs or failed opens [s]',
                                    min_value=0.01, max_value=60.0, read_only=True),
            retry_jitter=declare(self, 'retry_jitter', d.retry_jitter, 'each retry wait is '
                                 'stretched by a random fraction up to this (keeps resends out '
                                 'of step with periodic faults)', min_value=0.0, max_value=2.0,
                                 read_only=True),
            handshake_timeout=declare(self, 'handshake_timeout', d.handshake_timeout,
                                      'seconds to wait for DEV_HELLO after opening the port '
                                      '(an Arduino resets on open and boots in ~1.6 s)',
                                      min_value=0.1, max_value=30.0, read_only=True),
            hello_interval=declare(self, 'hello_interval', d.hello_interval, 'seconds '
                                   'between HELLOs while handshaking', min_value=0.01,
                                   max_value=5.0, read_only=True),
            reconnect_period=declare(self, 'reconnect_period', d.reconnect_period,
                                     'seconds between attempts to find / open the port',
                                     min_value=0.01, max_value=10.0, read_only=True),
            heartbeat_period=declare(self, 'heartbeat_period', d.heartbeat_period,
                                     'seconds between host HEARTBEAT frames', min_value=0.05,
                                     max_value=10.0, read_only=True),
            link_timeout=declare(self, 'link_timeout', d.link_timeout, 'seconds without any '
                                 'valid frame from the device before the link is declared '
                                 'lost (the device heartbeats every 0.5 s)', min_value=0.2,
                                 max_value=60.0, read_only=True),
            amplitude_max_rate=declare(self, 'amplitude_max_rate', d.amplitude_max_rate,
                                       'at most this many AMPLITUDE frames per second (latest '
                                       'value wins)', min_value=1.0, max_value=1000.0,
                                       read_only=True),
            write_timeout=declare(self, 'write_timeout', d.write_timeout, 'seconds a serial '
                                  'write may block before the link is declared lost',
                                  min_value=0.01, max_value=10.0, read_only=True),
        )
        self.publish_frames = declare(self, 'publish_frames', False, 'also publish every frame '
                                      'written to the device on eyes/frames (debug)',
                                      read_only=True)

    def start_output(self) -> None:
        self.link = SerialLink(self.link_config,
                               on_write=self._on_write if self.publish_frames else None,
                               logger=RosLogAdapter(self.get_logger()))
        self.link.start()

    def _on_write(self, data: bytes, _t: float) -> None:
        self.publish_frame(data)

    def output_state(self, look) -> None:
        self.link.set_state(P.DeviceState.from_floats(look.pattern, look.color, look.brightness,
                                                      look.speed))

    def output_amplitude(self, amplitude: float) -> None:
        self.link.set_amplitude(amplitude)

    def poll_device(self) -> bool:
        st = self.link.status()
        values = {'port': st.port or self.link_config.port,
                  'boot_id': '' if st.boot_id is None else f'{st.boot_id:#06x}',
                  'expression': self.expr.look.describe()}
        values.update(st.counters)
        self.diag.set(st.level if st.level in (0, 1, 2) else OK, st.message, **values)
        return st.connected

    def close(self) -> None:
        link = getattr(self, 'link', None)
        if link is not None:
            link.close()


def main(args=None):
    run(EyesNode, args=args)


if __name__ == '__main__':
    main()

"""The rclpy conventions every droid node shell follows (this module imports rclpy).

- :func:`run` is the Jazzy ``main()`` idiom (no ``with rclpy.init()`` on Jazzy) and the
  droid's one shutdown path: every node exits 0 without a traceback on Ctrl-C, launch
  shutdown or SIGTERM, whatever it is doing (see :class:`Shutdown`).
- :func:`declare` declares a parameter with a descriptor (description, range, read-only).
- QoS profiles: :data:`SENSOR_QOS` for audio/amplitude, :data:`RELIABLE_QOS` for the
  conversation stream, :data:`LATCHED_QOS` for state (mode, persona, music/eye state) and
  :data:`LATCHED_SUB_QOS` to subscribe to it.
- :class:`Diagnostics` reports the node's health on ``/diagnostics``.
- :func:`to_time_msg` / :func:`to_sec` convert between node-clock seconds and stamps.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time

import rclpy
from builtin_interfaces.msg import Time as TimeMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from rclpy.signals import SignalHandlerOptions

from droid_common.names import DIAGNOSTICS
from droid_common.secrets import redact

SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)
# Subscribing to a latched topic: the last state on joining, then every change (a depth of
# 1 would drop a change that comes before the previous one was handled).
LATCHED_SUB_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             history=HistoryPolicy.KEEP_LAST)

# Diagnostic levels as ints (diagnostic_msgs uses `byte`, i.e. bytes in Python).
OK, WARN, ERROR, STALE = 0, 1, 2, 3

_PTYPE = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


# Shutdown races of rclpy: what an executor, a publisher or an action goal raises when the
# context goes away under it ("context is not valid", a destroyed handle, ...).
SHUTDOWN_RACES = (ExternalShutdownException, InvalidHandle, _rclpy.RCLError, KeyboardInterrupt)


class Shutdown:
    """The shutdown of one node process, in an order that leaves rclpy no race to lose.

    rclpy's own signal handlers shut the context down from a signal thread while the
    executor, timers, worker threads and action goals still use it: "context is not
    valid" from an executor building its wait set, feedback published after shutdown,
    KeyboardInterrupt raised wherever the main thread happens to be (even in the cleanup
    after a first Ctrl-C: a terminal's Ctrl-C reaches every node twice, once from the
    terminal and once forwarded by ``ros2 launch``). So :func:`run` installs none of them;
    instead:

    1. SIGINT and SIGTERM only *request* the shutdown (a flag; later signals are ignored,
       SIGKILL stays the hammer; the handlers stay until the process is gone). A thread
       woken by the signal wakes the executor, which then returns to the flag.
    2. Executing action goals are asked to cancel (the droid's execute callbacks watch
       ``is_cancel_requested``) and given time to end with the node still whole; then the
       node's ``close()`` stops its own threads and devices. The context is still valid:
       all of them may still publish.
    3. Callbacks still running in a MultiThreadedExecutor get the rest of :attr:`GRACE_S`
       (launch sends SIGTERM after 5 s); if one is stuck, the process ends there, before
       it could find its node destroyed under it.
    4. Then the executor, the node and the context are shut down, in that order.

    While it runs, exceptions in other threads that are only shutdown races are reported
    in one line instead of a traceback; a thread still stuck at the end does not keep the
    process alive, and the process does not linger in interpreter teardown.
    """

    POLL_S = 0.1
    GRACE_S = 3.0
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = threading.Event()
        self.reason = ''
        self._previous = {}
        self._excepthook = None

    # -- signals ------------------------------------------------------------------------
    def install(self) -> Shutdown:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, _frame) -> None:
        if not self.requested.is_set():
            self.request(signal.Signals(signum).name)

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.requested.set()


    # -- spinning -----------------------------------------------------------------------
    def spin(self, executor, context, node) -> None:
        """Spin until a signal, an external shutdown or SystemExit from a callback."""
        timeout = None if self._watch_signals(node) else self.POLL_S
        while not self.requested.is_set():
            if not context.ok():
                self.request('context shut down')
                break
            try:
                executor.spin_once(timeout_sec=timeout)
            except SHUTDOWN_RACES as exc:
                if self.requested.is_set() or not context.ok():
                    self.request(self.reason or 'context shut down')
                    break
                if isinstance(exc, InvalidHandle):
                    # An entity destroyed by a thread other than the executor's while
                    # the executor built its wait set: rclpy 7 enters its QoS event
                    # handler anyway and raises. The next spin_once builds the wait set
                    # without it; nothing was taken. (The nodes touch ROS objects on the
                    # executor thread, the web bridge through a queue; this is for a node
                    # or a test that does not.)
                    continue
                raise

    def _watch_signals(self, node) -> bool:
        """Wake the executor when a signal arrives. Python runs its signal handlers in the
        main thread only once a blocking wait returns; CPython also writes the signal
        number to the wakeup fd at once, so a thread reading it triggers a guard condition
        of the node, and spin_once returns. False (then the executor is polled every
        POLL_S) if that cannot be set up."""
        try:
            guard = node.create_guard_condition(lambda: None)
            read_fd, write_fd = os.pipe()
            os.set_blocking(write_fd, False)
            signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        except (ValueError, OSError, AttributeError):
            return False

        def watch():
            while True:
                try:
                    if not os.read(read_fd, 64):
                        return
                    guard.trigger()
                except Exception:  # noqa: BLE001 - the node is gone: nothing to wake
                    return
        threading.Thread(target=watch, name='signal-wakeup', daemon=True).start()
        return True

    # -- the orderly part ---------------------------------------------------------------
    def quiet_threads(self, logger=None) -> None:
        """From now on, shutdown races in other threads are one line, not a traceback."""
        if self._excepthook is not None:
            return
        self._excepthook = previous = threading.excepthook

        def hook(args):
            if isinstance(args.exc_value, SHUTDOWN_RACES) or args.exc_type is SystemExit:
                _say(logger, f'thread {args.thread.name if args.thread else "?"} stopped '
                     f'during shutdown ({args.exc_type.__name__})')
                return
            previous(args)
        threading.excepthook = hook

    def cancel_goals(self, node) -> int:
        """Ask every executing action goal of the node to cancel; returns how many."""
        n = 0
        for waitable in list(getattr(node, 'waitables', ()) or ()):
            handles = getattr(waitable, '_goal_handles', None)
            if not isinstance(handles, dict):
                continue
            for handle in list(handles.values()):
                try:
                    if handle.is_active and not handle.is_cancel_requested:
                        handle._update_state(_rclpy.GoalEvent.CANCEL_GOAL)
                        n += 1
                except Exception:  # noqa: BLE001 - a goal already gone
                    pass
        return n

    def wait_for_callbacks(self, executor, timeout: float) -> bool:
        """Wait (without spinning) for callbacks still running in executor threads."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [f for f in list(getattr(executor, '_futures', ()) or ())
                       if not f.done()]
            if not running:
                return True
            time.sleep(0.02)
        return False


def _say(logger, message: str) -> None:
    try:
        if logger is not None:
            logger.info(message)
            return
    except Exception:  # noqa: BLE001 - logging already finalized
        pass
    try:
        print(message, file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001
        pass


def _quietly(step, *args):
    """One cleanup step: a shutdown race is expected; anything else is reported briefly."""
    try:
        return step(*args)
    except SHUTDOWN_RACES:
        pass
    except Exception as exc:  # noqa: BLE001 - cleanup goes on whatever happens
        _say(None, f'shutdown: {getattr(step, "__qualname__", step)} failed: '
             f'{type(exc).__name__}: {redact(str(exc))}')
    return None


def moments(items) -> str:
    """Log text of recent moments: times ``t`` -> ``'12.30, 12.85'``; ``(t, seconds)``
    pairs -> ``'+12 ms at 12.30, -4 ms at 12.85'``."""
    return ', '.join(f'{v[1] * 1000.0:+.0f} ms at {v[0]:.2f}' if isinstance(v, tuple)
                     else f'{v:.2f}' for v in items)


SWITCH_INTERVAL_S = 0.001


def run(node_factory, args=None, executor_factory=None, exit_process: bool = True) -> None:
    """Create the node, spin it until Ctrl-C / launch shutdown / SIGTERM, then clean up.

    ``executor_factory`` makes the executor (default: a SingleThreadedExecutor). The node
    may define ``close()``, called while the context is still valid. See
    :class:`Shutdown` for the order of things. With ``exit_process`` (a node's ``main()``)
    the process then ends at once, 0 after a signal: tearing down the interpreter and its
    native libraries can take seconds on a loaded machine, long enough for launch to
    escalate to SIGTERM, and nothing of the node is left to clean up by then.
    """
    shutdown = Shutdown().install()
    # A node hands work between its threads (executor -> synthesis -> audio): a woken
    # thread waits for the GIL until the running one lets go, up to the switch interval
    # (5 ms by default) when that one is busy in Python. 1 ms keeps hand-offs short.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    context = rclpy.get_default_context()
    node = executor = None
    exit_code = 0          # what the process exits with if a stuck thread forces os._exit
    try:
        if not shutdown.requested.is_set():
            node = node_factory()
        if node is not None and not shutdown.requested.is_set():
            executor = executor_factory() if executor_factory is not None else \
                SingleThreadedExecutor()
            executor.add_node(node)
            shutdown.spin(executor, context, node)
    except SHUTDOWN_RACES:
        if not (shutdown.requested.is_set() or not context.ok()):
            exit_code = None
            raise
    except SystemExit as exc:          # fail_fast(), or a tool that is done (chat --say)
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    except BaseException:
        exit_code = None               # a real crash: its traceback, the usual exit
        raise
    finally:
        shutdown.request(shutdown.reason or 'exit')
        logger = node.get_logger() if node is not None else None
        shutdown.quiet_threads(logger)
        deadline = time.monotonic() + Shutdown.GRACE_S
        if node is not None:
            # Goals first, with the node whole: a goal may need the node's own threads
            # (its speaker, its player) to come to an end.
            if _quietly(shutdown.cancel_goals, node) and executor is not None:
                shutdown.wait_for_callbacks(executor, 0.6 * Shutdown.GRACE_S)
            close = getattr(node, 'close', None)
            if callable(close):
                _quietly(close)
        done = executor is None or shutdown.wait_for_callbacks(
            executor, max(0.0, deadline - time.monotonic()))
        if not done:
            _say(logger, f'shutdown: callbacks still running after {Shutdown.GRACE_S:.0f} s')
            if exit_code is not None and exit_process:
                _exit_now(exit_code)     # before they find their node destroyed under them
        if executor is not None:
            _quietly(executor.shutdown, 0.0)
            pool = getattr(executor, '_executor', None)
            if pool is not None:
                _quietly(lambda: pool.shutdown(wait=False, cancel_futures=True))
        if node is not None:
            _quietly(node.destroy_node)
        _quietly(rclpy.try_shutdown)
        # (the handlers stay: a second Ctrl-C, e.g. the one launch forwards, may still
        # arrive and must not turn a clean exit into a traceback)
        if exit_code is not None and exit_process:
            _exit_now(exit_code)


def _exit_now(exit_code: int, timeout: float = 1.0) -> None:
    """End the process now, with ``exit_code``: signals ignored from here on (the
    interpreter would reset them to their defaults while it tears down), non-daemon
    threads given ``timeout`` s, atexit handlers run, output flushed."""
    for sig in Shutdown.SIGNALS:
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (TypeError, ValueError):
            pass
    deadline = time.monotonic() + timeout
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and not t.daemon]
    for t in others:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in others if t.is_alive()]
    if stuck:
        _say(None, f'shutdown: threads still running ({", ".join(stuck)}); exiting anyway')
    try:
        atexit._run_exitfuncs()
    except Exception:  # noqa: BLE001 - exiting anyway
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(exit_code)


def declare(node, name: str, default, description: str, *, min_value=None, max_value=None,
            step=None, read_only: bool = False, choices=None, dynamic_type: bool = False):
    """Declare a parameter with a descriptor and return its value.

    ``min_value``/``max_value`` become an integer or floating-point range (so
    ``ros2 param set`` rejects out-of-range values); ``choices`` is listed in the
    descriptor's constraints and enforced by :func:`check_choice`.
    """
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               dynamic_typing=dynamic_type)
    if isinstance(default, (list, tuple)):
        kinds = {bool: ParameterType.PARAMETER_BOOL_ARRAY,
                 int: ParameterType.PARAMETER_INTEGER_ARRAY,
                 float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                 str: ParameterType.PARAMETER_STRING_ARRAY}
        elem = type(default[0]) if default else str
        desc.type = kinds[elem]
    else:
        desc.type = _PTYPE[type(default)]
    if min_value is not None or max_value is not None:
        if isinstance(default, bool):
            raise TypeError(f'{name}: a bool parameter has no range')
        if isinstance(default, int):
            desc.integer_range = [IntegerRange(from_value=int(min_value), to_value=int(max_value),
                                               step=int(step or 0))]
        else:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(min_value), to_value=float(max_value), step=float(step or 0.0))]
    if choices:
        desc.additional_constraints = 'one of: ' + ', '.join(map(str, choices))
    if desc.type in (ParameterType.PARAMETER_DOUBLE, ParameterType.PARAMETER_DOUBLE_ARRAY):
        _integers_as_doubles(node, name)
    if isinstance(default, (list, tuple)) and not default:
        # An empty list has no type rclpy can infer: declare by type.
        from rclpy.parameter import Parameter
        return node.declare_parameter(name, Parameter.Type(desc.type), desc).value or []
    return node.declare_parameter(name, default, desc).value


def _integers_as_doubles(node, name: str) -> None:
    """A YAML file or ``-p`` that gives a whole number (``latency_ms: 30``) for a
    floating-point parameter means that number: rclpy would refuse it with a traceback
    and the node would not start. The override is made a double (or a double array)
    before the parameter is declared."""
    overrides = getattr(node, '_parameter_overrides', None)
    if not isinstance(overrides, dict) or name not in overrides:
        return
    from rclpy.parameter import Parameter
    p = overrides[name]
    if p.type_ == Parameter.Type.INTEGER:
        overrides[name] = Parameter(name, Parameter.Type.DOUBLE, float(p.value))
    elif p.type_ == Parameter.Type.INTEGER_ARRAY:
        overrides[name] = Parameter(name, Parameter.Type.DOUBLE_ARRAY,
                                    [float(v) for v in p.value])


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"parameter '{name}' is {value!r}; expected one of {list(choices)}")


def to_time_msg(seconds: float) -> TimeMsg:
    """Seconds on the node clock -> builtin_interfaces/Time."""
    nanos = int(round(seconds * 1e9))
    return TimeMsg(sec=nanos // 1_000_000_000, nanosec=nanos % 1_000_000_000)


def to_sec(stamp) -> float:
    """builtin_interfaces/Time (or rclpy Time) -> seconds."""
    if hasattr(stamp, 'nanoseconds'):
        return stamp.nanoseconds * 1e-9
    return stamp.sec + stamp.nanosec * 1e-9


def now_sec(node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


class Diagnostics:
    """Publishes this node's health on /diagnostics, on change and every ``period`` s.

    One status per named component (default: the node itself)::

        diag = Diagnostics(node, hardware_id='usb mic')
        diag.set(ERROR, 'no input device', device='default')

    Messages and values pass through :func:`droid_common.secrets.redact`.
    """

    def __init__(self, node, hardware_id: str = '', period: float = 1.0):
        self._node = node
        self._hardware_id = hardware_id
        self._statuses: dict = {}
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self._timer = node.create_timer(period, self.publish)

    def set(self, level, message: str, component: str = '', **values) -> None:
        name = self._node.get_fully_qualified_name().lstrip('/')
        if component:
            name = f'{name}: {component}'
        level = bytes([level]) if isinstance(level, int) else bytes(level)
        status = DiagnosticStatus(level=level, name=name, message=redact(message),
                                  hardware_id=self._hardware_id,
                                  values=[KeyValue(key=str(k), value=redact(v))
                                          for k, v in values.items()])
        previous = self._statuses.get(name)
        self._statuses[name] = status
        if previous is None or previous.level != status.level or \
                previous.message != status.message:
            self.publish()

    def level(self, component: str = '') -> int:
        name = self._node.get_fully_qualified_name().lstrip('/')
        if component:
            name = f'{name}: {component}'
        status = self._statuses.get(name)
        return int(status.level[0]) if status is not None else OK

    def publish(self) -> None:
        if not self._statuses:
            return
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = list(self._statuses.values())
        self._pub.publish(msg)


def log_prefix(conversation_id: str) -> str:
    """Prefix for log lines about one conversation: ``[conv 1a2b3c4d5e6f] ``."""
    return f'[conv {conversation_id}] ' if conversation_id else ''


def fail_fast(node, message: str) -> None:
    """Log a clear fatal error (no stack trace) and exit with status 1."""
    node.get_logger().fatal(redact(message))
    sys.exit(1)

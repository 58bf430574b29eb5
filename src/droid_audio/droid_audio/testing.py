"""Helpers for droid_audio's ROS-level tests and benchmark (imports rclpy lazily).

- :func:`ros_env`: environment for node processes on a private ROS domain (localhost).
- :class:`NodeProcess`: a node started as ``python -m droid_audio.<module>`` (works from
  the source tree or the install), stopped with SIGINT, then SIGTERM/SIGKILL fallbacks.
- :class:`Harness`: an rclpy context + test node on that domain, with topic collectors,
  a service caller and graph introspection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PKG_SRC = str(Path(__file__).resolve().parent.parent)   # src/droid_audio (or site-packages)


def pick_domain() -> int:
    """A ROS domain id for one test (no other test process on this machine has it)."""
    from droid_common.testing import free_domain
    return free_domain()


def ros_env(domain: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.pop('ROS_LOCALHOST_ONLY', None)
    env['PYTHONUNBUFFERED'] = '1'
    env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
    paths = [PKG_SRC] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p]
    env['PYTHONPATH'] = os.pathsep.join(dict.fromkeys(paths))
    if extra:
        env.update(extra)
    return env


class NodeProcess:
    """``python -m droid_audio.<module> --ros-args ...`` in its own process group."""

    def __init__(self, module: str, domain: int, params: dict | None = None,
                 namespace: str = '', name: str = '', env: dict | None = None,
                 log_path: str | None = None):
        args = [sys.executable, '-m', f'droid_audio.{module}', '--ros-args']
        if namespace:
            args += ['-r', f'__ns:={namespace}']
        if name:
            args += ['-r', f'__node:={name}']
        for k, v in (params or {}).items():
            args += ['-p', f'{k}:={_param_text(v)}']
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, 'wb') if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, env=ros_env(domain, env), stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self.log_path:
            return ''
        try:
            return Path(self.log_path).read_text(errors='replace')[-6000:]
        except OSError:
            return ''

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL (to this process only, by pid)."""
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0),
                          (signal.SIGKILL, 3.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL
        return self.proc.returncode


def _param_text(v) -> str:
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (list, tuple)):
        return '[' + ','.join(_param_text(x) if not isinstance(x, str) else f"'{x}'"
                              for x in v) + ']'
    return str(v)


class Harness:
    """A test-side rclpy node on ``domain`` spinning in a background thread."""

    def __init__(self, domain: int, name: str = 'audio_test_harness'):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._lock = threading.Lock()
        self.messages: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:
                if self._stop.is_set():
                    return
                raise

    def collect(self, msg_type, topic: str, qos) -> list:
        box = self.messages.setdefault(topic, [])

        def cb(msg):
            with self._lock:
                box.append(msg)
        self.node.create_subscription(msg_type, topic, cb, qos)
        return box

    def got(self, topic: str) -> list:
        with self._lock:
            return list(self.messages.get(topic, []))

    def clear(self, topic: str | None = None) -> None:
        with self._lock:
            for k in ([topic] if topic else list(self.messages)):
                self.messages.get(k, []).clear()

    def wait_for(self, predicate, timeout: float, interval: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(interval)
        return bool(predicate())

    def call(self, srv_type, name: str, request, timeout: float = 30.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f'service {name} not available')
            future = client.call_async(request)
            if not self.wait_for(future.done, timeout):
                raise TimeoutError(f'service {name} did not answer')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def graph(self, node_name: str, namespace: str) -> dict:
        """{'pub': {...}, 'sub': {...}, 'srv': {...}} of (name, types) for one node, names
        relative to ``namespace`` (absolute names such as /rosout stay absolute)."""
        def rel(name):
            prefix = namespace.rstrip('/') + '/'
            return name.removeprefix(prefix)
        n = self.node
        return {
            'pub': {(rel(t), tuple(ty)) for t, ty in
                    n.get_publisher_names_and_types_by_node(node_name, namespace)},
            'sub': {(rel(t), tuple(ty)) for t, ty in
                    n.get_subscriber_names_and_types_by_node(node_name, namespace)},
            'srv': {(rel(t), tuple(ty)) for t, ty in
                    n.get_service_names_and_types_by_node(node_name, namespace)},
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

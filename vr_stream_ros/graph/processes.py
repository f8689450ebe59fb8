"""Start the graph's programs as processes, read their output, stop them for sure (no rclpy).

One harness for ``make run`` (graph/runner.py), the benches and the tests:

    with ProcessGroup(log_dir) as group:
        group.receiver("--port", str(port))
        group.node("camera_node", "ring_name:=x", "fps:=30")
        url = group.wait_for_output("camera_node", r"publishing", timeout=20)
        ...
    # every process stopped: SIGINT to its process group, SIGKILL after a timeout

Each process runs in its own session (process group), so a stop reaches whatever it
started, and writes stdout and stderr to ``<log_dir>/<name>.log``; with ``echo`` its
lines are also handed to a callback as they come (``make run`` prints them).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vr_stream_ros.graph.launches import PACKAGE

T = TypeVar("T")


def executable_path(name: str) -> str:
    """lib/vr_stream_ros/<name> in the installed package (what `ros2 run` starts)."""
    from ament_index_python.packages import get_package_prefix
    return os.path.join(get_package_prefix(PACKAGE), "lib", PACKAGE, name)


def node_argv(executable: str, *params: str, ros_args: Sequence[str] = ()) -> list[str]:
    """argv of an installed node with ``-p name:=value`` for each of ``params``."""
    argv = [executable_path(executable), "--ros-args", *ros_args]
    for p in params:
        argv += ["-p", p]
    return argv


def free_port(kind: int | None = socket.SOCK_DGRAM) -> int:
    """A loopback port free right now for ``kind`` (UDP by default); None: for UDP and TCP."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind or socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if kind is not None:
            return port
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for both UDP and TCP after 50 tries")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` s pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10) -> int:
    """``sig`` to the process's group (its own, see ProcessGroup), SIGKILL after ``timeout``."""
    if proc.poll() is None:
        _signal_group(proc, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the process leads its own group (start_new_session)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


class ProcessGroup:
    """Starts named processes with their logs; ``stop_all`` (or leaving ``with``) stops them."""

    def __init__(self, log_dir: str | os.PathLike, env: dict[str, str] | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self._pumps: list[threading.Thread] = []
        self._how: dict[str, tuple[list[str], Callable[[str], None] | None]] = {}

    def start(self, name: str, argv: Sequence[str], *,
              echo: Callable[[str], None] | None = None) -> subprocess.Popen:
        """Start ``argv`` as ``name``; its output goes to ``<log_dir>/<name>.log`` (and to
        ``echo`` line by line when given)."""
        proc, log = self._popen(name, list(argv), echo, "wb")
        self._how[name] = (list(argv), echo)
        self.procs.append((name, proc, log))
        return proc

    def restart(self, name: str) -> subprocess.Popen:
        """Start ``name`` again with the same argv (after it died); its log goes on after
        the old run's. The new process takes the old one's place in ``procs``."""
        argv, echo = self._how[name]
        proc, _log = self._popen(name, argv, echo, "ab")
        self.procs = [(n, proc if n == name else p, lg) for n, p, lg in self.procs]
        return proc

    def process(self, name: str) -> subprocess.Popen:
        """The current process of ``name`` (the newest, after a restart)."""
        for n, proc, _log in self.procs:
            if n == name:
                return proc
        raise KeyError(f"no process named {name!r}")

    def _popen(self, name: str, argv: list[str], echo: Callable[[str], None] | None,
               mode: str) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        with open(log, mode) as out:
            proc = subprocess.Popen(argv, stdout=out if echo is None else subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self.env)
        if echo is not None:
            pump = threading.Thread(target=_pump, args=(proc.stdout, log, echo), daemon=True,
                                    name=f"log-{name}")
            pump.start()
            self._pumps.append(pump)
        return proc, log

    def node(self, executable: str, *params: str, name: str | None = None,
             ros_args: Sequence[str] = (), echo: Callable[[str], None] | None = None
             ) -> subprocess.Popen:
        """Start an installed node with ``-p name:=value`` parameters."""
        return self.start(name or executable, node_argv(executable, *params, ros_args=ros_args),
                          echo=echo)

    def receiver(self, *args: str, name: str = "receiver",
                 echo: Callable[[str], None] | None = None) -> subprocess.Popen:
        """Start the reference receiver (``vr_stream_ros.tools.receiver``) with ``args``."""
        return self.start(name, [sys.executable, "-m", "vr_stream_ros.tools.receiver", *args],
                          echo=echo)

    def log_path(self, name: str) -> Path:
        """Where ``name`` writes its output."""
        for n, _p, log in self.procs:
            if n == name:
                return log
        raise KeyError(f"no process named {name!r}; started: "
                       f"{', '.join(n for n, _, _ in self.procs) or 'none'}")

    def output(self, name: str) -> str:
        """Everything ``name`` has written so far."""
        with open(self.log_path(name), errors="replace") as f:
            return f.read()

    def wait_for_output(self, name: str, pattern: str, timeout: float) -> re.Match | None:
        """The first match of the regular expression ``pattern`` in ``name``'s output,
        waiting up to ``timeout`` s; None if it has not appeared by then."""
        regex = re.compile(pattern)
        return wait_for(lambda: regex.search(self.output(name)), timeout)

    def wait(self, proc: subprocess.Popen, timeout: float) -> int:
        """Wait for ``proc`` to exit by itself; stopped (SIGINT, then SIGKILL) if it has not."""
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return stop_process(proc)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        """Stop one process (see :func:`stop_process`); its exit code."""
        return stop_process(proc, sig, timeout)

    def stop_all(self, timeout: float = 10) -> None:
        """Stop every process, the last started first, then let the log pumps drain."""
        for _name, proc, _log in reversed(self.procs):
            stop_process(proc, timeout=timeout)
        for pump in self._pumps:
            pump.join(timeout=2)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()


def _pump(stream, log: Path, echo: Callable[[str], None]) -> None:
    with open(log, "ab", buffering=0) as out:
        for raw in iter(stream.readline, b""):
            out.write(raw)
            echo(raw.decode(errors="replace").rstrip())

"""Shared fixtures: real node processes on an isolated DDS domain, free ports, ring names."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

pytest_plugins = ["skip_policy"]  # under CI=true, unlisted skips fail (skip_policy.py)

# One DDS domain per test session, so parallel runs and stray nodes do not cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")


def _have_install() -> bool:
    try:
        from vr_stream_ros.msg import FrameRef  # noqa: F401
        return True
    except ImportError:
        return False


needs_ros = pytest.mark.skipif(
    not _have_install(),
    reason="needs the colcon-built package: run through `make test` (sources install/)")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port that is free right now for UDP (and, for TCP, a listener)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    """A free port usable for both UDP and TCP."""
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A unique ring name; asserts /dev/shm holds no segment of it afterwards."""
    name = f"vrtest_{uuid.uuid4().hex[:10]}"
    yield name
    leftovers = [f for f in os.listdir("/dev/shm") if name in f]
    assert not leftovers, f"shared memory left behind: {leftovers}"


class Processes:
    """Starts processes and guarantees they are stopped at teardown."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[tuple[str, subprocess.Popen, str]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = str(self.tmp_path / f"{name}.log")
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def node(self, executable: str, *params: str, name: str | None = None) -> subprocess.Popen:
        """Start an installed node with ``-p key:=value`` parameters."""
        from vr_stream_ros.graph.runner import executable_path
        argv = [executable_path(executable), "--ros-args"]
        for p in params:
            argv += ["-p", p]
        return self.start(name or executable, argv)

    def receiver(self, *args: str, name: str = "receiver") -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "vr_stream_ros.tools.receiver", *args])

    def output(self, name: str) -> str:
        for n, _p, log in self.procs:
            if n == name:
                with open(log, errors="replace") as f:
                    return f.read()
        raise KeyError(name)

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stop_all(self) -> None:
        for _name, proc, _log in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def procs(tmp_path, ring_name) -> Iterator[Processes]:
    """Processes of one test; stopped before ``ring_name`` checks /dev/shm is clean."""
    p = Processes(tmp_path)
    yield p
    p.stop_all()


def wait_for(predicate, timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)

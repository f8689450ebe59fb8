"""Shared fixtures: real node processes on an isolated DDS domain, free ports, ring names.

The process harness itself (start with a log, wait for output, stop the process group,
free ports) is ``vr_stream_ros.graph.processes``, which ``make run`` and the benches use
too; ``free_port`` and ``wait_for`` are re-exported here for the tests."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from vr_stream_ros.graph.processes import ProcessGroup, free_port, wait_for  # noqa: F401 (re-exported)

pytest_plugins = ["skip_policy"]  # under CI=true, unlisted skips fail (skip_policy.py)

# One DDS domain per test session, so parallel runs and stray nodes do not cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
# camera_node reads ${ROS_HOME}/camera_info/<camera_name>.yaml when no camera_info_url is
# set (camera_info_manager's rule): a calibration saved on this machine must not leak into tests.
os.environ["ROS_HOME"] = tempfile.mkdtemp(prefix="vrtest_ros_home_")


def _have_install() -> bool:
    try:
        from vr_stream_ros.msg import FrameRef  # noqa: F401
        return True
    except ImportError:
        return False


needs_ros = pytest.mark.skipif(
    not _have_install(),
    reason="needs the colcon-built package: run through `make test` (sources install/)")


@pytest.fixture
def chromium(tmp_path):
    """Debian's Chromium driven by Debian's chromedriver (installed when missing)."""
    from debian_tools import ensure_debian_packages

    from vr_stream_ros.tools.chromium import PACKAGES, Chromium
    ensure_debian_packages("chromedriver", list(PACKAGES))
    with Chromium(tmp_path / "chromium-profile") as browser:
        yield browser


@pytest.fixture
def port() -> int:
    """A free port usable for both UDP and TCP."""
    return free_port(None)


@pytest.fixture
def ring_name() -> Iterator[str]:
    """A unique ring name; asserts /dev/shm holds no segment of it afterwards."""
    name = f"vrtest_{uuid.uuid4().hex[:10]}"
    yield name
    leftovers = [f for f in os.listdir("/dev/shm") if name in f]
    assert not leftovers, f"shared memory left behind: {leftovers}"


Processes = ProcessGroup
"""The harness; tests give it their tmp_path for the logs."""

RING_NODES = ("camera_node", "headset_bridge_node", "detector_node")


class IsolatedProcesses(ProcessGroup):
    """The harness with a test's own names: no node of a test touches a shared default.

    A node started without ``ring_name`` gets the test's ring; the bridge without
    ``sdp_path``, ``headset_port`` or ``webrtc_port`` gets a file in the test's tmp_path and
    free ports, so tests running beside each other (or a `make run`) never collide.
    """

    def __init__(self, tmp_path, ring_name: str) -> None:
        super().__init__(tmp_path)
        self._defaults = {"ring_name": ring_name}
        self._bridge_defaults = {"sdp_path": str(tmp_path / "bridge.sdp")}

    def node(self, executable: str, *params: str, **kwargs):
        given = {p.split(":=", 1)[0] for p in params}
        extra = []
        if executable in RING_NODES:
            extra += [f"{k}:={v}" for k, v in self._defaults.items() if k not in given]
        if executable == "headset_bridge_node":
            extra += [f"{k}:={v}" for k, v in self._bridge_defaults.items() if k not in given]
            extra += [f"{k}:={free_port(None)}" for k in ("headset_port", "webrtc_port")
                      if k not in given]
        return super().node(executable, *params, *extra, **kwargs)


@pytest.fixture
def procs(tmp_path, ring_name) -> Iterator[IsolatedProcesses]:
    """Processes of one test; stopped before ``ring_name`` checks /dev/shm is clean."""
    p = IsolatedProcesses(tmp_path, ring_name)
    yield p
    p.stop_all()


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)

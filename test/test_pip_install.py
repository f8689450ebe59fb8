"""`pip install .` on a machine without ROS: the receiver from that install decodes the stream.

A fresh venv (``python -m venv``, no system site-packages) gets a copy of the checkout
installed with pip; every command from it runs with the ROS environment scrubbed
(no PYTHONPATH, AMENT_PREFIX_PATH...), as on the PC beside the headset. The graph
(camera_node, headset_bridge_node) comes from the colcon install as usual.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_ros, read_json

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# Left out of the copy: colcon's and pip's build products, caches, the venv link.
_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "install", "log", "__pycache__",
                                     "*.egg-info", ".pytest_cache", ".ruff_cache", ".hypothesis",
                                     "bench-results")
# What the ROS half is made of: none of it may reach the pip install.
ROS_HALF = ("nodes", "ros", "msg", "bench", "webrtc", "detection", "codecs", "sinks")
# Modules of shipped subpackages that stay in the ROS half or the checkout (setup.py LEFT_OUT).
LEFT_OUT = ("tools/dashboard_view.py", "tools/chromium.py", "tools/apt.py",
            "graph/launches.py", "graph/runner.py", "graph/processes.py",
            "graph/reference.py", "graph/topics.py")
CONSOLE_SCRIPTS = ("vr-stream-receiver", "vr-stream-tune", "vr-stream-plot-latency")


def _no_ros_env() -> dict[str, str]:
    """This process's environment without ROS, colcon or any venv on the Python path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AMENT_", "COLCON_", "ROS_", "RMW_", "CMAKE_PREFIX"))
           and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if "venv" not in p and "/install/" not in p)
    return env


class PipInstall:
    """A venv holding the pip-installed checkout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.site = Path(self.run("python", "-c", "import sysconfig; "
                                  "print(sysconfig.get_paths()['purelib'])").stdout.strip())

    def run(self, exe: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / exe), *args], capture_output=True, text=True,
                              timeout=timeout, env=_no_ros_env(), cwd=self.root)


@pytest.fixture(scope="module")
def pip_install(tmp_path_factory) -> PipInstall:
    base = tmp_path_factory.mktemp("pip")
    tree, venv = base / "tree", base / "venv"
    shutil.copytree(REPO, tree, ignore=_NOT_COPIED, symlinks=True)
    # The base interpreter, not the test venv's, so nothing of ROS's venv leaks in.
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", str(venv)], check=True, env=_no_ros_env())
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                             f"{tree}[plot]"], capture_output=True, text=True, timeout=600,
                            env=_no_ros_env())
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return PipInstall(venv)


def test_pip_install_holds_the_ros_free_half_only(pip_install: PipInstall) -> None:
    package = pip_install.site / "vr_stream_ros"
    assert (package / "tools" / "receiver.py").is_file()
    for part in ("rtp", "net", "ring", "latency", "system", "graph"):
        assert (package / part / "__init__.py").is_file(), part
    for part in ROS_HALF:
        assert not (package / part).exists(), f"vr_stream_ros/{part} must not be pip-installed"
    assert (package / "graph" / "param_spec.py").is_file()
    for module in LEFT_OUT:
        assert not (package / module).exists(), f"vr_stream_ros/{module} must not be pip-installed"
    for exe in CONSOLE_SCRIPTS:
        assert (pip_install.bin / exe).is_file(), exe
    # Neither rclpy nor the generated messages: this venv has no ROS at all.
    probe = pip_install.run("python", "-c", "import importlib.util as u; print("
                            "u.find_spec('rclpy'), u.find_spec('vr_stream_ros.msg'))")
    assert probe.stdout.split() == ["None", "None"], probe
    where = pip_install.run("python", "-c", "import vr_stream_ros; print(vr_stream_ros.__file__)")
    assert where.stdout.strip() == str(package / "__init__.py"), where


def test_every_installed_module_imports_with_the_declared_dependencies(
        pip_install: PipInstall) -> None:
    """A module needing something setup.py does not declare fails here, not on the user's PC."""
    code = ("import pkgutil, importlib, vr_stream_ros as p\n"
            "names = [m.name for m in pkgutil.walk_packages(p.__path__, 'vr_stream_ros.')]\n"
            "for n in names: importlib.import_module(n)\n"
            "print(len(names))")
    result = pip_install.run("python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20, result.stdout


def test_console_commands_start(pip_install: PipInstall) -> None:
    for exe in CONSOLE_SCRIPTS:
        result = pip_install.run(exe, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, (exe, result.stderr)
    check = pip_install.run("vr-stream-tune", "check", "--json")
    assert check.returncode == 0, check.stderr
    items = json.loads(check.stdout)
    assert {"status", "item", "detail", "fix"} <= items[0].keys(), items[0]


@needs_ros
def test_pip_installed_receiver_decodes_the_graphs_stream(pip_install: PipInstall, procs,
                                                          ring_name, port, tmp_path) -> None:
    summary_path = tmp_path / "receiver.json"
    # env -i: the receiver sees none of the colcon install this test process has sourced.
    scrubbed = [f"{k}={v}" for k, v in _no_ros_env().items()]
    receiver = procs.start("pip-receiver", [
        "env", "-i", *scrubbed, str(pip_install.bin / "vr-stream-receiver"), "--port", str(port),
        "--duration", "6", "--quiet", "--summary-json", str(summary_path)])
    time.sleep(0.3)
    procs.node("camera_node", f"ring_name:={ring_name}", "fps:=30", "width:=640",
               "height:=480")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={port}",
               f"sdp_path:={tmp_path / 'stream.sdp'}")
    assert receiver.wait(timeout=40) == 0, procs.output("pip-receiver")
    procs.stop_all()
    s = read_json(summary_path)
    assert s["frames_decoded"] > 0, (s, procs.output("headset_bridge_node"))
    assert s["decode_errors"] == 0 and s["malformed_packets"] == 0, s
    assert s["stamps"]["unreadable"] == 0 and s["stamps"]["count"] > 0, s
    assert "frames" in procs.output("pip-receiver")


def test_colcon_still_builds_the_package_with_ament_cmake() -> None:
    """setup.py at the top does not turn the ROS package into an ament_python/setuptools one:
    package.xml's <build_type>ament_cmake</build_type> decides."""
    colcon = shutil.which("colcon") or str(Path(sys.executable).with_name("colcon"))
    listed = subprocess.run([colcon, "list", "--base-paths", str(REPO)], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["vr_stream_ros", str(REPO), "(ros.ament_cmake)"], \
        listed.stdout

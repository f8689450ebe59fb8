"""plot_latency on a real recording of the graph, and its refusals of bad files."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import time

import pytest
from conftest import needs_ros, wait_for

pytestmark = needs_ros


def _plot(*args: str) -> subprocess.CompletedProcess:
    from vr_stream_ros.graph.processes import executable_path
    return subprocess.run([executable_path("plot_latency"), *args], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> str:
    """A CSV recorded by the bridge while it streamed to a receiver for a few seconds."""
    from conftest import Processes, free_port
    tmp = tmp_path_factory.mktemp("rec")
    ring = f"vrplot_{tmp.name[-6:]}"
    port = free_port()
    record = tmp / "latency.csv"
    procs = Processes(tmp)
    try:
        procs.receiver("--port", str(port), "--duration", "60", "--quiet")
        camera = procs.node("camera_node", f"ring_name:={ring}", "fps:=60")
        bridge = procs.node("headset_bridge_node", f"ring_name:={ring}",
                            f"headset_port:={port}", "sdp_path:=''", f"record_path:={record}")
        # Enough frames with the headset's stamps (its reports come 4 times a second).
        assert wait_for(lambda: "RTP/UDP" in procs.output("headset_bridge_node"), 20)
        time.sleep(5.0)
        assert procs.stop(bridge) == 0, procs.output("headset_bridge_node")
        procs.stop(camera)
    finally:
        procs.stop_all()
    return str(record)


def test_png_from_a_real_recording_marks_its_percentiles(recording, tmp_path):
    import matplotlib.image
    out = tmp_path / "latency.png"
    result = _plot(recording, "-o", str(out))
    assert result.returncode == 0, result.stderr
    image = matplotlib.image.imread(str(out))
    assert image.shape[:2] == (800, 1000), image.shape
    assert image[..., :3].std() > 0.05, "the PNG is blank"
    # The printed figures are those of capture -> headset_decoded in the CSV.
    with open(recording) as f:
        rows = [r for r in csv.DictReader(f) if r["headset_decoded"] and r["capture"]]
    assert len(rows) > 100, f"only {len(rows)} frames with the headset's stamps"
    e2e = [(int(r["headset_decoded"]) - int(r["capture"])) / 1e6 for r in rows]
    printed = dict(re.findall(r"(p\d\d) ([\d.]+) ms", result.stdout))
    for p in (50, 95, 99):
        assert float(printed[f"p{p}"]) == pytest.approx(_by_hand(e2e, p), abs=0.006)


def _by_hand(values: list[float], p: float) -> float:
    """Linear interpolation between the closest ranks of the sorted values (the documented
    definition: rank (n - 1) * p / 100), computed without numpy."""
    xs = sorted(values)
    rank = (len(xs) - 1) * p / 100
    lo = int(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (rank - lo) * (xs[hi] - xs[lo])


def test_known_latencies_give_known_percentiles(tmp_path):
    """Frames 1..101 ms end to end: p50 51, p95 96, p99 100 ms, whatever the order."""
    path = tmp_path / "known.csv"
    order = [(k * 37) % 101 + 1 for k in range(101)]  # 1..101 shuffled
    lines = ["frame,capture,sent,headset_decoded"]
    for frame, ms in enumerate(order):
        capture = frame * 16_666_667
        lines.append(f"{frame},{capture},{capture + 1_000_000},{capture + ms * 1_000_000}")
    path.write_text("\n".join(lines) + "\n")
    result = _plot(str(path), "-o", str(tmp_path / "known.png"))
    assert result.returncode == 0, result.stderr
    assert "101 frames, end to end p50 51.00 ms, p95 96.00 ms, p99 100.00 ms" in \
        result.stdout, result.stdout


def test_default_output_name_is_the_recordings(recording, tmp_path):
    copy = tmp_path / "run1.csv"
    shutil.copy(recording, copy)
    assert _plot(str(copy)).returncode == 0
    assert (tmp_path / "run1.png").stat().st_size > 10_000


@pytest.mark.parametrize(("content", "needle"), [
    (None, "no such file"),
    ("", "not a latency recording"),
    ("frame,capture,sent\n", "no frames recorded"),
    ("frame,capture,sent\n1,100,200\n2,300\n", "line 3 has 2 fields, expected 3"),
    ("frame,capture,sent\n1,100,abc\n", "line 2: expected integer nanoseconds"),
    ("frame,capture\n1,100\n", "not a latency recording"),
])
def test_bad_recordings_are_refused_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "rec.csv"
    if content is not None:
        path.write_text(content)
    result = _plot(str(path), "-o", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert str(path) in result.stderr and needle in result.stderr, result.stderr
    assert not (tmp_path / "x.png").exists()


def test_bad_json_and_output_name(tmp_path):
    path = tmp_path / "rec.json"
    path.write_text('{"frames": [{"frame": 1, "capture": "x"}]}')
    result = _plot(str(path))
    assert result.returncode == 2 and "not a latency recording" in result.stderr
    result = _plot(str(path), "-o", str(tmp_path / "x.jpg"))
    assert result.returncode == 2 and "expected a .png" in result.stderr

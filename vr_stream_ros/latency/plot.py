"""plot_latency: a latency recording (the bridge's ``record_path``) as a PNG.

    ros2 run vr_stream_ros plot_latency /tmp/latency.csv -o latency.png

Top: each stage's latency, frame by frame, over the run. Bottom: the histogram of
end-to-end latency (the first mark to the last one most frames have) with p50, p95 and
p99 marked. Reads the CSV or JSON that ``LatencyProfiler.export`` writes.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: no display on a robot, none in CI
import matplotlib.pyplot as plt
import numpy as np

from vr_stream_ros.latency.percentiles import summarize
from vr_stream_ros.latency.profiler import MISSING, LatencyProfiler


@dataclass(frozen=True)
class Series:
    """Per-frame values of one interval, in ms, at capture times in s from the start."""

    name: str
    t_s: np.ndarray
    ms: np.ndarray


def stage_series(profiler: LatencyProfiler) -> tuple[list[Series], Series]:
    """Consecutive-mark intervals in recording order, and end-to-end."""
    _ids, cols = profiler.columns()
    marks = list(cols)
    if len(marks) < 2:
        raise ValueError(f"the recording has {len(marks)} mark(s) per frame; expected at "
                         "least 2 (e.g. capture and sent)")
    first = marks[0]
    has_first = cols[first] != MISSING
    t0 = int(cols[first][has_first].min())
    # End-to-end ends at the last mark that most frames have (the headset's marks are
    # missing while no receiver reports).
    last = next(m for m in reversed(marks) if (cols[m] != MISSING).sum() * 2 >= _ids.size)
    stages = [_series(f"{a} -> {b}", cols, a, b, first, t0)
              for a, b in itertools.pairwise(marks)]
    end = _series(f"{first} -> {last}", cols, first, last, first, t0)
    if end.ms.size == 0:
        raise ValueError(f"no frame has both '{first}' and '{last}'")
    return [s for s in stages if s.ms.size], end


def _series(name: str, cols: dict[str, np.ndarray], a: str, b: str, first: str, t0: int
            ) -> Series:
    sel = (cols[a] != MISSING) & (cols[b] != MISSING) & (cols[first] != MISSING)
    return Series(name, (cols[first][sel] - t0) / 1e9, (cols[b][sel] - cols[a][sel]) / 1e6)


def plot(profiler: LatencyProfiler, out_path: str, title: str = "") -> dict[str, float]:
    """Write the PNG; returns end-to-end p50/p95/p99 in ms (what the histogram marks)."""
    stages, end = stage_series(profiler)
    summary = summarize(end.ms)
    pcts = {50: summary.p50, 95: summary.p95, 99: summary.p99}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), dpi=100,
                                      gridspec_kw={"height_ratios": (3, 2)})
    for s in stages:
        top.plot(s.t_s, s.ms, linewidth=0.8, label=s.name)
    top.plot(end.t_s, end.ms, linewidth=1.2, color="black", label=f"end to end ({end.name})")
    top.set_xlabel("time since the first frame, s")
    top.set_ylabel("latency, ms")
    top.set_title(title or f"Latency per stage, {end.ms.size} frames")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper right", ncol=2)
    bins = max(10, min(100, end.ms.size // 10))
    bottom.hist(end.ms, bins=bins, color="#4878a8")
    for (p, value), color in zip(pcts.items(), ("green", "orange", "red"), strict=True):
        bottom.axvline(value, color=color, linestyle="--", label=f"p{p} {value:.2f} ms")
    bottom.set_xlabel(f"end to end ({end.name}), ms")
    bottom.set_ylabel("frames")
    bottom.legend(fontsize=9)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, format="png")
    plt.close(fig)
    return {f"p{p}_ms": float(v) for p, v in pcts.items()}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``ros2 run vr_stream_ros plot_latency``."""
    parser = argparse.ArgumentParser(prog="plot_latency", description=__doc__.splitlines()[0])
    parser.add_argument("recording", help="CSV or JSON written by the bridge's record_path")
    parser.add_argument("-o", "--output", default="",
                        help="PNG to write (default: the recording's name with .png)")
    parser.add_argument("--title", default="", help="title of the upper plot")
    args = parser.parse_args(argv)
    out = args.output or args.recording.rsplit(".", 1)[0] + ".png"
    if not out.endswith(".png"):
        print(f"plot_latency: --output {out}: expected a .png file name", file=sys.stderr)
        return 2
    try:
        profiler = LatencyProfiler.load(args.recording)
        figures = plot(profiler, out, args.title)
    except ValueError as exc:
        print(f"plot_latency: {args.recording}: {exc}" if args.recording not in str(exc)
              else f"plot_latency: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"plot_latency: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"{out}: {len(profiler.frames)} frames, end to end "
          + ", ".join(f"{k[:-3]} {v:.2f} ms" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

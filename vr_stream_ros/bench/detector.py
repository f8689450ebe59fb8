"""``make bench-yolo``: does detection slow the video path, and how fast is each backend?

1. Isolation: camera_node + headset_bridge_node + receiver at 1280x720, 60 fps, with
   detector_node off and on (flat out: no rate cap), without and with the real-time
   layout (rt_profile two_core: video on CPU 1 at SCHED_FIFO, detector on CPU 0). The
   variants alternate over several rounds so drift on a shared machine hits them alike.
   The figure is the video path's capture -> last datagram sent (the bridge's stamps).
2. The detector's own speed per backend (PyTorch, ONNX Runtime, OpenVINO, NCNN) at
   imgsz 320 and 640, yolo11n from Ultralytics' YAML (random weights, real cost).

Prints tables, the on-minus-off differences, and one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from vr_stream_ros.bench.pipeline import Result, bench_ros_pipeline
from vr_stream_ros.latency.percentiles import summarize

RT_VIDEO = ("cpu_affinity:=1", "sched_policy:=fifo", "lock_memory:=true", "gc_mode:=freeze")
RT_DETECTOR = ("cpu_affinity:=0", "sched_policy:=other")
DETECTOR = ("model:=yolo11n.yaml", "imgsz:=320", "threads:=1", "max_rate_hz:=0.0")
BACKENDS = ("pytorch", "onnx", "openvino", "ncnn")
START_LAG_S = 6.0


def _variant(tmp: str, name: str, seconds: float, detector: bool, rt: bool) -> Result:
    camera = (*RT_VIDEO, "rt_priority:=90") if rt else ()
    bridge = (*RT_VIDEO, "rt_priority:=85") if rt else ()
    det = ((*DETECTOR, *(RT_DETECTOR if rt else ())) if detector else None)
    # Beside a busy detector the camera and bridge take ~5 s longer to start (here):
    # run those variants longer so every variant records about as many frames.
    return bench_ros_pipeline(tmp, seconds + (START_LAG_S if detector else 0.0),
                              camera_params=camera, bridge_params=bridge, label=name,
                              detector_params=det)


def isolation(seconds: float, rounds: int) -> dict[str, dict]:
    """Video-path figures per variant, the rounds' samples pooled."""
    variants = {"off": (False, False), "on": (True, False),
                "off_rt": (False, True), "on_rt": (True, True)}
    pooled: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="vr_bench_yolo_") as tmp:
        for r in range(rounds):
            for name, (detector, rt) in variants.items():
                print(f"[bench-yolo] round {r + 1}/{rounds}: {name}", flush=True)
                res = _variant(tmp, f"{name}_{r}", seconds, detector, rt)
                res.samples_ms = res.samples_ms[30:]  # each run's warm-up
                if name in pooled:
                    p = pooled[name]
                    p.samples_ms += res.samples_ms
                    p.frames_expected += res.frames_expected
                    p.frames_received += res.frames_received
                    p.cpu = {k: (p.cpu.get(k, 0) + v) / 2 for k, v in res.cpu.items()}
                else:
                    res.name = name
                    pooled[name] = res
    return {name: res.figures() for name, res in pooled.items()}


def backend_speed(repeat: int) -> dict[str, dict[int, dict]]:
    """Inference ms (p50) and fps per backend and imgsz, on a 720p frame."""
    from vr_stream_ros.detection.yolo import Detector, DetectorConfig
    frame = (np.random.default_rng(0).random((720, 1280, 3)) * 255).astype(np.uint8)
    out: dict[str, dict[int, dict]] = {b: {} for b in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="vr_bench_models_") as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # Ultralytics exports a YAML model into the working directory
        try:
            for imgsz in (320, 640):
                source = Detector(DetectorConfig("yolo11n.yaml", imgsz=imgsz, threads=1))
                models = {"pytorch": source}
                for fmt in BACKENDS[1:]:
                    try:
                        path = source.export(fmt, os.path.join(tmp, str(imgsz)))
                        models[fmt] = Detector(DetectorConfig(path, imgsz=imgsz, threads=1))
                    except Exception as exc:  # a runtime whose wheel is missing here
                        out[fmt][imgsz] = {"error": str(exc)[:120]}
                for fmt, det in models.items():
                    for _ in range(3):
                        det.detect(frame)
                    times = []
                    for _ in range(repeat):
                        start = time.perf_counter()
                        det.detect(frame)
                        times.append((time.perf_counter() - start) * 1000)
                    p = summarize(times)
                    out[fmt][imgsz] = {"p50_ms": round(p.p50, 2), "p95_ms": round(p.p95, 2),
                                       "fps": round(1000 / p.p50, 1), "backend": det.backend}
        finally:
            os.chdir(cwd)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both parts, print tables and the differences; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=30, help="inferences per backend")
    parser.add_argument("--skip-isolation", action="store_true")
    ns = parser.parse_args(argv)
    iso = {} if ns.skip_isolation else isolation(ns.seconds, ns.rounds)
    speed = backend_speed(ns.repeat)
    if iso:
        print(f"\n{'video path capture->sent':26} {'p50':>8} {'p95':>8} {'p99':>8} "
              f"{'max':>8} {'lost':>6}  cpu % of one core")
        for name, f in iso.items():
            cpu = ", ".join(f"{k.replace('_node', '')} {v:.0f}" for k, v in f["cpu_pct"].items())
            print(f"{'detector ' + name:26} {f['p50_ms']:8.3f} {f['p95_ms']:8.3f} "
                  f"{f['p99_ms']:8.3f} {f['max_ms']:8.3f} {f['loss_pct']:5.1f}%  {cpu}")
    diffs = {}
    for a, b in (("on", "off"), ("on_rt", "off_rt")):
        if a in iso:
            diffs[f"p99_{a}_minus_{b}_ms"] = round(iso[a]["p99_ms"] - iso[b]["p99_ms"], 3)
            diffs[f"p50_{a}_minus_{b}_ms"] = round(iso[a]["p50_ms"] - iso[b]["p50_ms"], 3)
    if diffs:
        print("\ndetection on minus off (target: p99 <= 0.5 ms): "
              + ", ".join(f"{k} {v:+.3f}" for k, v in diffs.items()))
    print(f"\n{'detector alone (720p frame)':28} {'imgsz 320':>22} {'imgsz 640':>22}")
    for fmt, sizes in speed.items():
        cells = []
        for imgsz in (320, 640):
            f = sizes.get(imgsz, {})
            cells.append(f"{f['p50_ms']:7.1f} ms {f['fps']:6.1f} fps" if "fps" in f
                         else f"{'n/a':>22}")
        print(f"{fmt:28} {cells[0]:>22} {cells[1]:>22}")
    print(json.dumps({"isolation": iso, "differences": diffs, "backends": speed}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

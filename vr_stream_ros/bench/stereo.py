"""`make bench-stereo`: mono 1280x720@60 and stereo 2x1280x720@60 side by side in one run.

Each variant runs real nodes in their own processes: camera_node (the synthetic camera;
stereo: the synchronised synthetic pair packed top_bottom, 1280x1440, one JPEG per pair)
-> ring -> headset_bridge_node -> RTP/JPEG over UDP loopback -> the reference receiver,
which decodes every frame and reads the pixel stamps (both eyes' in stereo). The
receiver starts after a warm-up, so start-up is not measured. Figures: capture ->
decoded p50/p95/p99 (the receiver's clock is the camera's: loopback), frames lost
(camera frames in the receiver's span that it did not decode: network loss and frames
the bridge skipped), eye skew p50/p99 (from the pixels), and the stereo/mono p50 ratio.
Targets (issue 14): 0 frames lost, ratio <= 1.6, eye skew p99 <= 0.1 ms. The machine may
be shared and loaded: compare the ratio, not the absolute numbers. The last line printed
is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from vr_stream_ros.graph.processes import ProcessGroup, free_port

W, H, FPS = 1280, 720, 60.0
WARMUP_S = 3.0
TARGETS = {"frames_lost": 0, "p50_ratio_max": 1.6, "eye_skew_p99_ms_max": 0.1}


def run_variant(tmp: str, label: str, seconds: float, stereo: bool) -> dict:
    """One variant's figures from the reference receiver's summary."""
    port, ring = free_port(), f"vr_bench_stereo_{label}_{os.getpid()}"
    summary = os.path.join(tmp, f"{label}_receiver.json")
    ros = ("--log-level", "warn")
    with ProcessGroup(os.path.join(tmp, label)) as group:
        group.node("camera_node", f"ring_name:={ring}", f"width:={W}", f"height:={H}",
                   f"fps:={FPS}", f"stereo:={str(stereo).lower()}",
                   "stereo_layout:=top_bottom", ros_args=ros)
        group.node("headset_bridge_node", f"ring_name:={ring}", f"headset_port:={port}",
                   "sdp_path:=''", ros_args=ros)
        time.sleep(WARMUP_S)  # nodes up, ring attached, first frames sent into nothing
        receiver = group.receiver("--port", str(port), "--quiet", "--duration", str(seconds),
                                  "--summary-json", summary,
                                  "--layout", "top_bottom" if stereo else "mono")
        receiver.wait(timeout=seconds + 60)
        group.stop_all(timeout=20)
        logs = {name: group.output(name) for name in ("camera_node", "headset_bridge_node")}
    try:
        with open(summary) as f:
            s = json.load(f)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{label}: the receiver wrote no summary ({exc}); node logs: "
                           f"{logs}") from None
    stamps, latency = s["stamps"], s["latency_ms"] or {}
    produced = stamps["last"] - stamps["first"] + 1 if stamps["count"] else 0
    out = {"frames_produced": produced, "frames_decoded": stamps["count"],
           "frames_lost": produced - stamps["count"],
           "frames_incomplete": s["frames_lost"], "fps": s["fps"],
           "mbit_per_s": s["mbit_per_s"],
           **{f"{k}_ms": latency.get(k) for k in ("p50", "p95", "p99", "max")}}
    stereo_s = s.get("stereo")
    if stereo:
        if not stereo_s:
            raise RuntimeError(f"{label}: the receiver found no stereo pairs: {s}")
        skew = stereo_s["eye_skew_ms"] or {}
        out.update(pairs=stereo_s["pairs"], pairs_mismatched=stereo_s["pairs_mismatched"],
                   eye_unreadable=stereo_s["eye_unreadable"],
                   eye_skew_p50_ms=skew.get("p50"), eye_skew_p99_ms=skew.get("p99"),
                   eye_p50_ms={e: (p or {}).get("p50")
                               for e, p in stereo_s["capture_to_decoded_ms"].items()})
    return out


def _row(name: str, f: dict) -> str:
    skew = (f"{f['eye_skew_p50_ms']:9.3f} {f['eye_skew_p99_ms']:9.3f}"
            if f.get("eye_skew_p50_ms") is not None else f"{'-':>9} {'-':>9}")
    return (f"{name:8} {f['p50_ms']:8.2f} {f['p95_ms']:8.2f} {f['p99_ms']:8.2f} "
            f"{f['frames_lost']:6d}/{f['frames_produced']:<6d} {skew} {f['mbit_per_s']:8.1f}")


def main(argv: list[str] | None = None) -> int:
    """Run mono then stereo, print the table and the ratio; the last line is JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per variant (after a warm-up)")
    ns = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vr_bench_stereo_") as tmp:
        results = {"mono": run_variant(tmp, "mono", ns.seconds, stereo=False),
                   "stereo": run_variant(tmp, "stereo", ns.seconds, stereo=True)}
    mono, stereo = results["mono"], results["stereo"]
    ratio = round(stereo["p50_ms"] / max(1e-6, mono["p50_ms"]), 2)
    print(f"\n{'1280x720@60':8} {'p50':>8} {'p95':>8} {'p99':>8} {'lost/made':>13} "
          f"{'skew p50':>9} {'skew p99':>9} {'Mbit/s':>8}   (capture->decoded, ms)")
    for name, f in results.items():
        print(_row(name, f))
    met = {"frames_lost": mono["frames_lost"] == 0 and stereo["frames_lost"] == 0,
           "p50_ratio": ratio <= TARGETS["p50_ratio_max"],
           "eye_skew_p99": (stereo["eye_skew_p99_ms"] or 0.0) <= TARGETS["eye_skew_p99_ms_max"],
           "pairs_mismatched": stereo["pairs_mismatched"] == 0}
    print(f"\nstereo/mono p50 ratio {ratio} (target <= {TARGETS['p50_ratio_max']}); per-eye "
          f"p50 {stereo['eye_p50_ms']}; targets met: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items()))
    print(json.dumps({"variants": results, "p50_ratio_stereo_mono": ratio,
                      "targets": TARGETS, "targets_met": met}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

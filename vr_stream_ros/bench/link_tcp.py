"""bench-link's TCP part: the RTP-over-TCP stream with each congestion control (root).

TCP's congestion control reacts to the kernel's link, so a user-space relay (which
ends the TCP connection) cannot stand in for it. Here the link is a veth pair between
two network namespaces (graph/netns.py) with a tbf bottleneck on the sender's side
(``RATE_MBPS``, a WiFi-like rate with room for the 720p60 stream) and, for
``tcp_dip``, a drop to 10 Mbit/s for 2 s that the sender itself sets with ``tc`` at
the frame it is due (the kernel here has no netem: no added delay). The bridge's TCP
sink (sinks/rtp.py) runs in namespace a with ``TCP_CONGESTION`` set to each of
``CONGESTION_CONTROLS``; the reference receiver listens in namespace b.

Per run, as bench-link: frames shown, longest freeze, gaps over 50 and 100 ms,
capture -> decoded p50/p95/p99 (one host: one monotonic clock), and for the dip its
fps; and every stall over 100 ms with when it began, to see a periodic one (BBR's
ProbeRTT comes every 10 s).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys

from vr_stream_ros.bench.link import FPS, RunResult, figures_of, send_frames
from vr_stream_ros.graph.netns import TwoHosts
from vr_stream_ros.graph.processes import ProcessGroup
from vr_stream_ros.net.impairment import LinkConditions
from vr_stream_ros.net.senders import TcpRtpSender

RATE_MBPS = 40.0
CONGESTION_CONTROLS = ("cubic", "bbr")
CONDITIONS = {"tcp_clean": LinkConditions(),
              "tcp_dip": LinkConditions(dips=((2.0, 2.0, 10.0),))}
PORT = 5004  # the namespaces are new: nothing else listens there
STALL_MS = 100.0


def _tbf(link: str, mbps: float, verb: str = "replace", netns: str = "") -> None:
    """The bottleneck on ``link`` (in ``netns``, else the caller's): ``mbps``, 50 ms of
    queue."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "tc", "qdisc", verb, "dev", link, "root", "tbf", "rate", f"{mbps}mbit",
                    "burst", "32kb", "latency", "50ms"], check=True, capture_output=True,
                   timeout=10)


def _sender(ns: argparse.Namespace) -> int:
    """Namespace a: the TCP sink for ``--seconds``, the dip applied on time; JSON out."""
    host, port = ns.send.rsplit(":", 1)
    dips = {int(start * FPS): (int((start + length) * FPS), mbps)
            for start, length, mbps in CONDITIONS[ns.condition].dips}
    ends: dict[int, float] = {}

    def on_frame(i: int) -> None:
        if i in dips:
            end, mbps = dips[i]
            _tbf(ns.link, mbps, "change")
            ends[end] = RATE_MBPS
        elif i in ends:
            _tbf(ns.link, ends.pop(i), "change")

    sender = TcpRtpSender(host, int(port), congestion_control=ns.cc)
    sent, total, _rtx, _ = send_frames(sender, ns.seconds, on_frame=on_frame)
    with open(ns.json, "w") as f:
        json.dump({"sent": sent, "bytes": total, "applied": sender.applied,
                   "refused": sender.refused, "dropped": sender.stats.frames_dropped}, f)
    return 0


def run_tcp(hosts: TwoHosts, tmp: str, condition: str, cc: str, seconds: float) -> RunResult:
    """One run: the TCP sink in namespace a -> tbf -> the receiver in namespace b."""
    label = f"{condition}_{cc}"
    rx_json, tx_json = (os.path.join(tmp, f"{label}_{w}.json") for w in ("receiver", "sender"))
    _tbf(hosts.a.link, RATE_MBPS, netns=hosts.a.netns)
    with ProcessGroup(os.path.join(tmp, label)) as group:
        receiver = group.start("receiver", hosts.b.argv([
            sys.executable, "-m", "vr_stream_ros.tools.receiver", "--tcp", "--port",
            str(PORT), "--bind", hosts.b.address, "--assume-same-clock", "--quiet",
            "--duration", str(seconds + 4), "--summary-json", rx_json]))
        if group.wait_for_output("receiver", "listening", 20) is None:
            raise RuntimeError(f"bench-link tcp: the receiver did not start; see "
                               f"{group.log_path('receiver')}")
        sender = group.start("sender", hosts.a.argv([
            sys.executable, "-m", "vr_stream_ros.bench.link_tcp", "--send",
            f"{hosts.b.address}:{PORT}", "--cc", cc, "--seconds", str(seconds),
            "--condition", condition, "--link", hosts.a.link, "--json", tx_json]))
        group.wait(sender, timeout=seconds + 30)
        group.wait(receiver, timeout=30)
    with open(rx_json) as f:
        rx = json.load(f)
    with open(tx_json) as f:
        tx = json.load(f)
    figures = figures_of(rx, None, tx["sent"], tx["bytes"], 0, CONDITIONS[condition])
    times = rx["decoded_at_ms"]
    figures["stalls"] = [[round(a), round(b - a)] for a, b in itertools.pairwise(times)
                         if b - a > STALL_MS]
    figures["frames_dropped_at_sender"] = tx["dropped"]
    figures["tcp_congestion"] = tx["applied"].get("TCP_CONGESTION", tx["refused"])
    return RunResult(condition, f"tcp {cc}", figures)


def run_all(tmp: str, seconds: float) -> list[RunResult]:
    """Every condition with every congestion control, in one pair of namespaces."""
    results = []
    with TwoHosts(b_private_shm=False) as hosts:
        for condition in CONDITIONS:
            for cc in CONGESTION_CONTROLS:
                results.append(run_tcp(hosts, tmp, condition, cc, seconds))
                f = results[-1].figures
                print(f"[bench-link] {condition} tcp {cc}: {f['intact_pct']} % shown, "
                      f"freeze {f['longest_freeze_ms']} ms, stalls {f['stalls']}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """The sender side (``--send``), run by ``run_tcp`` inside namespace a."""
    parser = argparse.ArgumentParser(prog="bench-link-tcp", description=__doc__.splitlines()[0])
    parser.add_argument("--send", required=True, help="receiver HOST:PORT")
    parser.add_argument("--cc", required=True, help="TCP congestion control")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--condition", choices=list(CONDITIONS), required=True)
    parser.add_argument("--link", required=True, help="the veth carrying the tbf")
    parser.add_argument("--json", required=True)
    return _sender(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

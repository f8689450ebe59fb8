"""A user-space link impairment relay: delay, jitter, loss bursts and capacity dips.

    python3 -m vr_stream_ros.net.impairment --listen 6000 --to 127.0.0.1:5004 \
        --delay-ms 5 --jitter-ms 2 --loss 0.01 --seed 1 [--duration 10]

The bridge sends to ``127.0.0.1:LISTEN``; the relay forwards to ``--to`` and carries the
receiver's replies (RTCP, NACKs) back to whoever sent last. Everything stays on the
loopback interface. Why a loopback relay rather than two network namespaces: this
kernel has no netem, so delay and jitter need a user-space hop anyway, and once a
user-space hop shapes every datagram, namespaces add isolation but no realism, while
they need CAP_NET_ADMIN and a namespaced bridge (DDS discovery across namespaces).
The loopback relay runs unprivileged, in any test, with the same code path.

What it models (all draws from one ``random.Random(seed)``: a run repeats exactly for
the same arrival order):

- one-way delay, both directions;
- jitter: uniform in +-``jitter_ms``; with ``reorder`` off a datagram never overtakes
  the one before it (its departure is held back instead), as on a FIFO radio link;
- loss on the forward (media) path: independent (``loss``) or Gilbert-Elliott bursts
  (``burst``: the chance to enter the bad state per packet and the mean burst length;
  every packet in the bad state is lost, none in the good one);
- a bottleneck: ``rate_mbps`` (0 = unlimited) with ``dips`` (start s, length s, Mbit/s)
  counted from the first forwarded datagram, and a drop-tail queue of ``queue_ms`` at
  the current rate, like tbf's latency limit.

The relay measures itself: ``lateness`` holds, per datagram, how much later than its
scheduled time it left (the relay's own added latency on top of the modelled one).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field

from vr_stream_ros.latency.percentiles import summarize

FORWARD, BACKWARD = 0, 1


@dataclass(frozen=True)
class LinkConditions:
    """What the relay does to the traffic (see the module text)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: bool = False
    loss: float = 0.0
    burst: tuple[float, float] | None = None  # (P(good -> bad) per packet, mean burst length)
    rate_mbps: float = 0.0
    dips: tuple[tuple[float, float, float], ...] = ()  # (start s, length s, Mbit/s)
    queue_ms: float = 50.0
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("delay_ms", "jitter_ms", "rate_mbps", "queue_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"link {name}: got {getattr(self, name)}, expected >= 0")
        if not 0.0 <= self.loss < 1.0:
            raise ValueError(f"link loss: got {self.loss}, expected a fraction in 0..1")
        if self.burst is not None and (not 0.0 < self.burst[0] < 1.0 or self.burst[1] < 1.0):
            raise ValueError(f"link burst: got {self.burst}, expected (P(enter) in 0..1, "
                             "mean length >= 1 packet)")
        for dip in self.dips:
            if len(dip) != 3 or dip[0] < 0 or dip[1] <= 0 or dip[2] <= 0:
                raise ValueError(f"link dip: got {dip}, expected (start s >= 0, length s > 0, "
                                 "Mbit/s > 0)")

    def rate_at(self, t_s: float) -> float:
        """The bottleneck's rate (bit/s) ``t_s`` after the first datagram; 0 = unlimited."""
        for start, length, mbps in self.dips:
            if start <= t_s < start + length:
                return mbps * 1e6
        return self.rate_mbps * 1e6


class LossModel:
    """Independent or Gilbert-Elliott loss, one draw per forwarded packet."""

    def __init__(self, cond: LinkConditions, rng: random.Random) -> None:
        self._rng = rng
        self._p = cond.loss
        self._enter, self._leave = (cond.burst[0], 1.0 / cond.burst[1]) if cond.burst else (0, 0)
        self._bad = False

    def lost(self) -> bool:
        """True when this packet is lost."""
        rng = self._rng
        if self._enter:
            self._bad = rng.random() >= self._leave if self._bad else rng.random() < self._enter
            if self._bad:
                return True
        return self._p > 0 and rng.random() < self._p


@dataclass
class RelayStats:
    """Counters of one relay run."""

    forwarded: list[int] = field(default_factory=lambda: [0, 0])  # by direction
    lost: int = 0  # dropped by the loss model (forward)
    queue_drops: int = 0  # dropped by the bottleneck's full queue (forward)
    bytes_forward: int = 0
    lateness_ns: list[int] = field(default_factory=list)  # relay's own delay per datagram

    def summary(self) -> dict:
        """Counters and the relay's own added latency (ms percentiles)."""
        late = summarize([v / 1e6 for v in self.lateness_ns])
        return {"forwarded": self.forwarded[FORWARD], "returned": self.forwarded[BACKWARD],
                "lost": self.lost, "queue_drops": self.queue_drops,
                "bytes_forward": self.bytes_forward,
                "relay_added_ms": late.as_dict() if late else None}


class ImpairmentRelay:
    """Loopback UDP relay: ``127.0.0.1:listen_port`` -> ``target``, replies back."""

    def __init__(self, listen_port: int, target: tuple[str, int], cond: LinkConditions,
                 bind: str = "127.0.0.1") -> None:
        self.cond = cond
        self.target = target
        self.stats = RelayStats()
        self._rng = random.Random(cond.seed)
        self._loss = LossModel(cond, self._rng)
        self._front = self._socket((bind, listen_port))
        self._back = self._socket((bind, 0))
        self.port = self._front.getsockname()[1]
        self._peer: tuple[str, int] | None = None
        self._queue: list[tuple[int, int, int, bytes]] = []  # due, order, direction, data
        self._order = 0
        self._last_due = [0, 0]
        self._link_free_ns = 0
        self._t0_ns: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _socket(address: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
        sock.bind(address)
        sock.setblocking(False)
        return sock

    def start(self) -> ImpairmentRelay:
        """Run in a daemon thread until ``stop``."""
        self._thread = threading.Thread(target=self.run, name="impairment-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and close the sockets (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._front.close()
        self._back.close()

    def run(self, duration_s: float = 0.0) -> None:
        """Relay until ``stop`` (or ``duration_s`` > 0 elapsed)."""
        end = time.monotonic_ns() + int(duration_s * 1e9) if duration_s > 0 else None
        socks = [self._front, self._back]
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if end is not None and now >= end:
                break
            wait = 0.05 if not self._queue else max(0.0, (self._queue[0][0] - now) / 1e9)
            ready, _, _ = select.select(socks, [], [], wait)
            for sock in ready:
                self._read(sock)
            self._send_due()

    def _read(self, sock: socket.socket) -> None:
        for _ in range(256):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP unreachable of an earlier send: the peer is not up yet
                continue
            now = time.monotonic_ns()
            if sock is self._front:
                self._peer = addr
                self._schedule(FORWARD, data, now)
            else:
                self._schedule(BACKWARD, data, now)

    def _schedule(self, direction: int, data: bytes, now: int) -> None:
        cond = self.cond
        depart = now
        if direction == FORWARD:
            if self._t0_ns is None:
                self._t0_ns = now
            if self._loss.lost():
                self.stats.lost += 1
                return
            rate = cond.rate_at((now - self._t0_ns) / 1e9)
            if rate > 0:
                start = max(now, self._link_free_ns)
                if start - now > cond.queue_ms * 1e6:
                    self.stats.queue_drops += 1
                    return
                self._link_free_ns = start + int(len(data) * 8e9 / rate)
                depart = self._link_free_ns
        jitter = self._rng.uniform(-cond.jitter_ms, cond.jitter_ms) if cond.jitter_ms else 0.0
        due = depart + int(max(0.0, cond.delay_ms + jitter) * 1e6)
        if not cond.reorder:
            due = max(due, self._last_due[direction])
            self._last_due[direction] = due
        self._order += 1
        heapq.heappush(self._queue, (due, self._order, direction, data))

    def _send_due(self) -> None:
        queue = self._queue
        while queue and queue[0][0] <= time.monotonic_ns():
            due, _, direction, data = heapq.heappop(queue)
            try:
                if direction == FORWARD:
                    self._back.sendto(data, self.target)
                    self.stats.bytes_forward += len(data)
                elif self._peer is not None:
                    self._front.sendto(data, self._peer)
                else:
                    continue
            except OSError:
                continue  # receiver not up yet: the datagram is lost, as on a real link
            self.stats.forwarded[direction] += 1
            self.stats.lateness_ns.append(time.monotonic_ns() - due)


def _dip(text: str) -> tuple[float, float, float]:
    try:
        start, length, mbps = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--dip {text!r}: expected START_S:LENGTH_S:MBPS, "
                                         "e.g. 3:2:10") from None
    return start, length, mbps


def _this_host(host: str) -> bool:
    """True for an IPv4 address of this host (a socket can bind it): loopback, or the LAN
    address a browser offers its WebRTC candidates on (bench/link_webrtc.py)."""
    if host.startswith("127."):
        return True
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
    except OSError:  # not an address of this host (or not an address at all)
        return False
    return True


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not _this_host(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"--to {text!r}: expected 127.x.y.z:PORT or an "
                                         "address of this host (the relay stays on loopback "
                                         "and this host's own addresses)")
    return host, int(port)


def conditions_from_args(ns: argparse.Namespace) -> LinkConditions:
    """LinkConditions from the parsed command line (ValueError names the bad option)."""
    burst = (ns.burst_enter, ns.burst_length) if ns.burst_enter > 0 else None
    return LinkConditions(delay_ms=ns.delay_ms, jitter_ms=ns.jitter_ms, reorder=ns.reorder,
                          loss=ns.loss, burst=burst, rate_mbps=ns.rate_mbps,
                          dips=tuple(ns.dip), queue_ms=ns.queue_ms, seed=ns.seed)


def main(argv: list[str] | None = None) -> int:
    """Command line: relay until --duration or a signal, then print the counters as JSON."""
    parser = argparse.ArgumentParser(prog="impairment", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--to", type=_address, required=True,
                        help="127.x.y.z:PORT, or an address of this host")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--reorder", action="store_true", help="jitter may reorder")
    parser.add_argument("--loss", type=float, default=0.0, help="independent loss fraction")
    parser.add_argument("--burst-enter", type=float, default=0.0,
                        help="Gilbert-Elliott: chance per packet to start a burst")
    parser.add_argument("--burst-length", type=float, default=10.0,
                        help="Gilbert-Elliott: mean burst length in packets")
    parser.add_argument("--rate-mbps", type=float, default=0.0, help="0 = unlimited")
    parser.add_argument("--dip", type=_dip, action="append", default=[],
                        help="START_S:LENGTH_S:MBPS capacity dip (repeatable)")
    parser.add_argument("--queue-ms", type=float, default=50.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds, 0 = until signal")
    parser.add_argument("--summary-json", help="write the counters here at the end")
    ns = parser.parse_args(argv)
    try:
        cond = conditions_from_args(ns)
        relay = ImpairmentRelay(ns.listen, ns.to, cond)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"[impairment] cannot listen on 127.0.0.1:{ns.listen}: {exc.strerror}",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: relay._stop.set())
    signal.signal(signal.SIGINT, lambda *_: relay._stop.set())
    print(f"[impairment] 127.0.0.1:{relay.port} -> {ns.to[0]}:{ns.to[1]} {asdict(cond)}",
          flush=True)
    try:
        relay.run(ns.duration)
    finally:
        summary = relay.stats.summary()
        relay.stop()
    print(f"[impairment] {json.dumps(summary)}", flush=True)
    if ns.summary_json:
        with open(ns.summary_json, "w") as f:
            json.dump(summary, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

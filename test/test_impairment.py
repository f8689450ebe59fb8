"""The loopback impairment relay against real sockets: delay, order, loss, capacity."""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import time

import pytest

from vr_stream_ros.net.impairment import ImpairmentRelay, LinkConditions, LossModel

_STAMP = struct.Struct("!IQ")  # index, send time (ns)


def _pair() -> tuple[socket.socket, socket.socket]:
    """(sender, receiver) UDP sockets on loopback."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(1.0)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    tx.settimeout(1.0)
    return tx, rx


def _run(cond: LinkConditions, count: int, size: int = 200, gap_s: float = 0.0002
         ) -> tuple[list[tuple[int, int]], ImpairmentRelay]:
    """Send ``count`` stamped datagrams through a relay; (index, transit ns) received."""
    tx, rx = _pair()
    relay = ImpairmentRelay(0, rx.getsockname(), cond).start()
    got: list[tuple[int, int]] = []
    try:
        for i in range(count):
            tx.sendto(_STAMP.pack(i, time.monotonic_ns()).ljust(size, b"x"),
                      ("127.0.0.1", relay.port))
            time.sleep(gap_s)
        while True:
            try:
                data = rx.recv(65536)
            except TimeoutError:
                break
            index, sent = _STAMP.unpack_from(data)
            got.append((index, time.monotonic_ns() - sent))
    finally:
        relay.stop()
        tx.close()
        rx.close()
    return got, relay


def test_delay_is_added_and_the_relay_reports_its_own_latency() -> None:
    got, relay = _run(LinkConditions(delay_ms=5.0), 100)
    assert len(got) == 100
    assert min(t for _, t in got) >= 5_000_000  # never earlier than the modelled delay
    own = relay.stats.summary()["relay_added_ms"]
    assert own is not None and own["samples"] == 100 and own["p50"] >= 0
    print(f"\nrelay's own added latency: p50 {own['p50']:.3f} p99 {own['p99']:.3f} ms")


def test_jitter_without_reordering_keeps_order_and_with_it_reorders() -> None:
    fifo, _ = _run(LinkConditions(delay_ms=2.0, jitter_ms=2.0, seed=3), 300)
    assert [i for i, _ in fifo] == sorted(i for i, _ in fifo)
    spread = [t for _, t in fifo]
    assert max(spread) - min(spread) > 1_000_000  # the jitter is there
    mixed, _ = _run(LinkConditions(delay_ms=2.0, jitter_ms=2.0, reorder=True, seed=3), 300)
    order = [i for i, _ in mixed]
    assert sorted(order) == list(range(300))  # nothing lost ...
    assert order != sorted(order)  # ... but overtaken


def test_seeded_loss_repeats_exactly() -> None:
    cond = LinkConditions(loss=0.1, seed=7)
    first, r1 = _run(cond, 400)
    second, r2 = _run(cond, 400)
    assert {i for i, _ in first} == {i for i, _ in second}
    assert r1.stats.lost == r2.stats.lost == 400 - len(first)
    assert 10 <= r1.stats.lost <= 80  # binomial(400, 0.1): far outside 6 sigma otherwise


def test_gilbert_elliott_gives_bursts_of_the_asked_length() -> None:
    model = LossModel(LinkConditions(burst=(0.002, 10.0)), random.Random(5))
    outcomes = [model.lost() for _ in range(200_000)]
    bursts, run = [], 0
    for lost in outcomes:
        if lost:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    mean = sum(bursts) / len(bursts)
    loss = sum(outcomes) / len(outcomes)
    assert 8.0 < mean < 12.0, mean
    assert 0.01 < loss < 0.03, loss  # 0.002 * 10 / (1 + 0.002 * 10) ~ 2 %


def test_capacity_dip_queues_then_drops_and_recovers() -> None:
    cond = LinkConditions(dips=((0.0, 0.3, 1.0),), queue_ms=20.0)
    assert cond.rate_at(0.1) == 1e6 and cond.rate_at(0.5) == 0.0
    # 1 Mbit/s holds one 1250-byte datagram per 10 ms: a 5 ms cadence must overflow.
    got, relay = _run(cond, 40, size=1250, gap_s=0.005)
    assert relay.stats.queue_drops > 0
    assert len(got) + relay.stats.queue_drops == 40


def test_replies_go_back_to_the_sender() -> None:
    tx, rx = _pair()
    relay = ImpairmentRelay(0, rx.getsockname(), LinkConditions(delay_ms=1.0)).start()
    try:
        tx.sendto(b"media", ("127.0.0.1", relay.port))
        data, back = rx.recvfrom(100)
        assert data == b"media"
        rx.sendto(b"feedback", back)
        assert tx.recvfrom(100) == (b"feedback", ("127.0.0.1", relay.port))
    finally:
        relay.stop()
        tx.close()
        rx.close()


@pytest.mark.parametrize("argv, message", [
    (["--to", "10.0.0.1:5004"], "stays on loopback"),
    (["--to", "127.0.0.1:5004", "--dip", "3:2"], "START_S:LENGTH_S:MBPS"),
    (["--to", "127.0.0.1:5004", "--loss", "1.5"], "link loss"),
])
def test_bad_command_line_is_refused_with_the_option_named(argv, message) -> None:
    proc = subprocess.run([sys.executable, "-m", "vr_stream_ros.net.impairment", "--listen",
                           "0", *argv], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr

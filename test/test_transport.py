"""Low-latency UDP/TCP senders against real sockets on loopback."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from conftest import free_port, wait_for

from vr_stream_ros.rtp import Rfc4571Decoder, pack_header, parse_packet
from vr_stream_ros.transport import TcpRtpSender, UdpRtpSender, open_sender

SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; the socket module does not export it


def _rtp_frame(first_seq: int, count: int, size: int = 1200) -> list[bytes]:
    return [pack_header(26, i == count - 1, first_seq + i, 0, 1) + bytes([i % 256]) * size
            for i in range(count)]


def _udp_listener() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # kernel arrival times
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock, sock.getsockname()[1]


def _recv_all(sock: socket.socket, n: int) -> list[tuple[bytes, int]]:
    """(datagram, kernel arrival time in ns) for ``n`` datagrams."""
    out = []
    for _ in range(n):
        data, ancillary, _flags, _addr = sock.recvmsg(65536, 64)
        stamp = next(d for level, kind, d in ancillary
                     if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS)
        seconds, nanos = struct.unpack("qq", stamp[:16])
        out.append((data, seconds * 1_000_000_000 + nanos))
    return out


@pytest.mark.parametrize("use_gso", [False, True])
def test_udp_datagrams_arrive_intact_in_order(use_gso: bool) -> None:
    listener, port = _udp_listener()
    sender = UdpRtpSender("127.0.0.1", port, use_gso=use_gso)
    frames = [_rtp_frame(100 * k, 5 + k, size=300 + 97 * k) for k in range(6)]
    for frame in frames:
        result = sender.send_frame(frame)
        assert not result.dropped, result
    got = [data for data, _ in _recv_all(listener, sum(len(f) for f in frames))]
    assert got == [p for f in frames for p in f]
    if use_gso and "UDP_SEGMENT" in sender.refused:
        pytest.skip(f"kernel refused UDP_SEGMENT ({sender.refused['UDP_SEGMENT']}); "
                    "the per-packet fallback was checked instead")
    assert sender.applied["IP_TOS"] == 46 << 2
    sender.close()
    listener.close()


def test_udp_without_receiver_never_raises() -> None:
    sender = UdpRtpSender("127.0.0.1", free_port())
    results = [sender.send_frame(_rtp_frame(0, 3)) for _ in range(1000)]
    assert len(results) == 1000
    assert sender.stats.send_errors > 0  # ICMP port unreachable came back as refusals
    assert {r.reason for r in results if r.dropped} <= {"no_receiver"}


def test_pacing_spreads_a_frame_compared_with_a_burst() -> None:
    spreads = {}
    for rate in (0.0, 100e6):
        listener, port = _udp_listener()
        sender = UdpRtpSender("127.0.0.1", port, max_rate_bps=rate, burst_bytes=4096)
        frame = _rtp_frame(0, 40, size=1200)  # 48 KB: ~3.8 ms at 100 Mbit/s
        result = sender.send_frame(frame)
        arrivals = [t for _, t in _recv_all(listener, len(frame))]
        spreads[rate] = arrivals[-1] - arrivals[0]
        if rate:
            assert result.paced_ns > 0
        listener.close()
        sender.close()
    print(f"arrival spread: burst {spreads[0.0] / 1e3:.0f} us, paced {spreads[100e6] / 1e3:.0f} us")
    assert spreads[100e6] > 3 * spreads[0.0]


class _TcpReceiver:
    """An RFC 4571 receiver in a thread; ``stop_reading`` makes it a stalled peer."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(1)
        self.packets: list[bytes] = []
        self.reading = True
        self.conn = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.conn, _ = self.server.accept()
        except OSError:
            return
        decoder = Rfc4571Decoder()
        while self.reading:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.packets += decoder.feed(data)

    def close(self) -> None:
        self.reading = False
        if self.conn is not None:
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            self.conn.close()  # RST: like a receiver that crashed
        self.server.close()


def _pump(sender: TcpRtpSender, frames: int, seq0: int = 0) -> list:
    results = []
    for k in range(frames):
        results.append(sender.send_frame(_rtp_frame(seq0 + 10 * k, 10)))
        time.sleep(0.01)
    return results


def test_tcp_connects_late_reconnects_and_keeps_framing() -> None:
    port = free_port(socket.SOCK_STREAM)
    sender = TcpRtpSender("127.0.0.1", port, reconnect_backoff=(0.05, 0.2))
    early = _pump(sender, 5)
    assert all(r.dropped and r.reason == "not_connected" for r in early)
    first = _TcpReceiver(port)
    assert wait_for(lambda: not sender.send_frame(_rtp_frame(0, 10)).dropped, 5)
    _pump(sender, 20)
    assert wait_for(lambda: len(first.packets) >= 200, 5)
    assert all(parse_packet(p).payload_type == 26 for p in first.packets)
    first.close()
    _pump(sender, 20, seq0=1000)  # into a reset connection: no exception, no blocking
    second = _TcpReceiver(port)
    assert wait_for(lambda: (_pump(sender, 1, seq0=5000), len(second.packets) > 0)[1], 10)
    first_after = parse_packet(second.packets[0])  # a whole RTP packet: framing intact
    assert first_after.payload_type == 26 and len(first_after.payload) == 1200
    assert sender.stats.reconnects >= 1
    second.close()
    sender.close()


def test_tcp_stalled_receiver_gives_backlog_drops_not_blocking() -> None:
    port = free_port(socket.SOCK_STREAM)
    receiver = _TcpReceiver(port, rcvbuf=4096)
    receiver.reading = False  # accepts, never reads
    sender = TcpRtpSender("127.0.0.1", port, sndbuf=16384)
    wait_for(lambda: not sender.send_frame(_rtp_frame(0, 1)).dropped, 5)
    results = [sender.send_frame(_rtp_frame(0, 50)) for _ in range(200)]
    assert len(results) == 200
    assert any(r.reason == "backlog" for r in results)
    receiver.close()
    sender.close()


@pytest.mark.parametrize(("args", "named"), [
    (("udp", "300.1.1.1", 5004), "headset_ip"),
    (("udp", "127.0.0.1", 0), "headset_port"),
    (("tcp", "127.0.0.1", 70000), "headset_port"),
    (("sctp", "127.0.0.1", 5004), "transport"),
])
def test_bad_destination_names_the_parameter(args, named) -> None:
    with pytest.raises(ValueError, match=named):
        open_sender(*args)

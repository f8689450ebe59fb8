"""Low-latency UDP/TCP senders against real sockets and processes on loopback."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import free_port, needs_ros, wait_for

from vr_stream_ros.net.senders import TcpRtpSender, UdpRtpSender, open_sender
from vr_stream_ros.rtp.packet import Rfc4571Decoder, frame_rfc4571, pack_header, parse_packet
from vr_stream_ros.rtp.rtcp import is_rtcp

SO_TIMESTAMPNS = 35  # Linux <asm-generic/socket.h>; the socket module does not export it


def _rtp_frame(first_seq: int, count: int, size: int = 1200, last: int | None = None
               ) -> list[bytes]:
    """``count`` RTP packets with distinct contents; the last one ``last`` bytes long."""
    sizes = [size] * count
    if last is not None:
        sizes[-1] = last
    return [pack_header(26, i == count - 1, first_seq + i, first_seq, 1)
            + bytes([(first_seq + i) % 251]) * n for i, n in enumerate(sizes)]


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


# -- UDP ---------------------------------------------------------------------------------
@pytest.mark.parametrize("use_gso", [False, True])
def test_udp_datagrams_arrive_intact_in_order(use_gso: bool) -> None:
    listener, port = _udp_listener()
    frames = [_rtp_frame(100 * k, 3 + k, size=300 + 97 * k, last=50 + k) for k in range(6)]
    frames.append(_rtp_frame(1000, 60, size=1400, last=333))  # > 64 KiB: several GSO calls
    frames.append(_rtp_frame(2000, 1, size=900))
    with UdpRtpSender("127.0.0.1", port, use_gso=use_gso) as sender:
        for frame in frames:
            result = sender.send_frame(frame)
            assert not result.dropped, result
            assert result.packets_sent == len(frame)
            assert result.bytes_sent == sum(map(len, frame))
        got = [data for data, _ in _recv_all(listener, sum(map(len, frames)))]
        assert got == [p for f in frames for p in f]
        assert sender.applied["IP_TOS"] == 46 << 2
        assert sender.applied["SO_SNDBUF"] >= 262144  # Linux doubles what was asked
        assert sender.stats.frames_sent == len(frames) and sender.stats.send_errors == 0
        if use_gso:
            if "UDP_SEGMENT" in sender.refused:
                pytest.skip(f"kernel refused UDP_SEGMENT ({sender.refused['UDP_SEGMENT']}); "
                            "the per-packet fallback was checked instead")
            assert sender.use_gso  # the GSO path itself carried these datagrams
    listener.close()


def test_udp_without_receiver_never_raises_then_recovers() -> None:
    port = free_port()
    with UdpRtpSender("127.0.0.1", port) as sender:
        results = [sender.send_frame(_rtp_frame(0, 3)) for _ in range(1000)]
        refused = [r for r in results if r.dropped]
        assert refused, "ICMP port unreachable never came back as no_receiver"
        assert {r.reason for r in refused} == {"no_receiver"}
        assert sender.stats.frames_dropped == len(refused) == sender.stats.send_errors
        assert sender.stats.frames_sent == 1000 - len(refused)
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind(("127.0.0.1", port))
        listener.settimeout(2)
        sender.send_frame(_rtp_frame(0, 1))  # may still report a stale refusal
        frame = _rtp_frame(7, 4)
        assert not sender.send_frame(frame).dropped
        got = [listener.recv(65536)]
        while got[-1] != frame[-1]:
            got.append(listener.recv(65536))
        assert got[-len(frame):] == frame
        listener.close()


def _stamps_are_taken_on_arrival(listener: socket.socket, port: int) -> bool:
    """Linux switches RX timestamps on lazily (deferred work): until then a datagram is
    stamped when it is read, which would make arrival spreads meaningless."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.sendto(b"probe", ("127.0.0.1", port))
    time.sleep(0.005)
    [(_, stamp)] = _recv_all(listener, 1)
    return time.time_ns() - stamp >= 4_000_000


def test_pacing_spreads_a_frame_compared_with_a_burst() -> None:
    spreads = {}
    for rate in (0.0, 100e6):
        listener, port = _udp_listener()
        assert wait_for(lambda s=listener, p=port: _stamps_are_taken_on_arrival(s, p), 5)
        with UdpRtpSender("127.0.0.1", port, max_rate_bps=rate, burst_bytes=4096) as sender:
            frame = _rtp_frame(0, 40, size=1200)  # 48 KB: ~3.8 ms at 100 Mbit/s
            result = sender.send_frame(frame)
            assert not result.dropped
            arrivals = [t for _, t in _recv_all(listener, len(frame))]
        spreads[rate] = arrivals[-1] - arrivals[0]
        assert (result.paced_ns > 0) == (rate > 0)
        listener.close()
    print(f"arrival spread: burst {spreads[0.0] / 1e3:.0f} us, paced {spreads[100e6] / 1e3:.0f} us")
    assert spreads[100e6] > 3 * spreads[0.0]


def _frames_at(listener: socket.socket, seconds: float) -> dict[int, list[tuple[int, int]]]:
    """RTP datagrams received for ``seconds``: RTP timestamp -> [(arrival ns, size)]."""
    frames: dict[int, list[tuple[int, int]]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            (data, arrival), = _recv_all(listener, 1)
        except TimeoutError:
            continue
        if is_rtcp(data):  # the bridge's sender reports share the port (rtcp-mux)
            continue
        frames.setdefault(parse_packet(data).timestamp, []).append((arrival, len(data)))
    return frames


@needs_ros
@pytest.mark.slow
def test_bridge_paces_each_frame_at_max_rate_mbps_after_burst_kib(procs, ring_name,
                                                                  tmp_path) -> None:
    """The bridge's pacing parameters, seen at a real receiving socket: after burst_kib the
    rest of each frame arrives at about max_rate_mbps (loose bounds: a loaded host is
    slower, never faster), where an unpaced frame arrives as one burst."""
    rate_mbps, burst_kib = 8.0, 2  # the pattern encodes to ~30 KB: ~25 ms per frame
    listener, port = _udp_listener()
    assert wait_for(lambda: _stamps_are_taken_on_arrival(listener, port), 5)
    procs.node("camera_node", f"ring_name:={ring_name}", "fps:=10", "width:=1280",
               "height:=720")
    procs.node("headset_bridge_node", f"ring_name:={ring_name}", f"headset_port:={port}",
               f"max_rate_mbps:={rate_mbps}", f"burst_kib:={burst_kib}",
               f"sdp_path:={tmp_path / 's.sdp'}")
    assert wait_for(lambda: _frames_at(listener, 0.5), 30), procs.output("headset_bridge_node")
    frames = _frames_at(listener, 4.0)
    listener.close()
    burst = burst_kib * 1024
    rates = []
    for packets in list(frames.values())[1:-1]:  # the first and last may be cut by the window
        size = sum(n for _, n in packets)
        spread = packets[-1][0] - packets[0][0]
        assert size > 3 * burst, f"a {size}-byte frame is too small to show pacing"
        rates.append((size - burst) * 8 / (spread / 1e9) / 1e6)
    assert len(rates) >= 10, f"only {len(rates)} whole frames: {procs.output('camera_node')}"
    median = sorted(rates)[len(rates) // 2]
    print(f"paced at {rate_mbps} Mbit/s after {burst_kib} KiB: frames of "
          f"{size / 1024:.0f} KiB arrive at {median:.1f} Mbit/s (median of {len(rates)})")
    assert 0.4 * rate_mbps <= median <= 1.25 * rate_mbps, sorted(rates)


def test_gso_is_not_used_while_pacing() -> None:
    listener, port = _udp_listener()
    with UdpRtpSender("127.0.0.1", port, max_rate_bps=1e9, use_gso=True) as sender:
        assert not sender.use_gso  # GSO would send the whole frame as one burst
        frame = _rtp_frame(0, 5)
        assert not sender.send_frame(frame).dropped
        assert [d for d, _ in _recv_all(listener, 5)] == frame
    listener.close()


# -- TCP ---------------------------------------------------------------------------------
class _TcpReceiver:
    """An RFC 4571 receiver in a thread; ``reading = False`` makes it a stalled peer."""

    def __init__(self, port: int, rcvbuf: int | None = None, reading: bool = True) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.server.bind(("127.0.0.1", port))
        self.server.listen(1)
        self.server.settimeout(10)
        self.packets: list[bytes] = []
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self.conn: socket.socket | None = None
        self._accepted = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.conn, _ = self.server.accept()
        except OSError:
            return
        finally:
            self._accepted.set()
        decoder = Rfc4571Decoder()
        self.reading.wait(10)
        while True:
            try:
                data = self.conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.packets += decoder.feed(data)

    def send(self, packet: bytes) -> None:
        self.conn.sendall(frame_rfc4571(packet))

    def close(self) -> None:
        self.reading.set()
        # The sender may be connected before this thread ran accept(): wait for it, or
        # the connection would outlive close() in the thread.
        self._accepted.wait(2)
        if self.conn is not None:
            self.conn.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            self.conn.close()
        self.server.close()
        self._thread.join(5)


def _pump(sender: TcpRtpSender, frames: int, seq0: int = 0, packets: int = 10) -> list:
    results = []
    for k in range(frames):
        results.append(sender.send_frame(_rtp_frame(seq0 + packets * k, packets)))
        time.sleep(0.005)
    return results


def test_tcp_receiver_gets_every_packet_intact() -> None:
    port = free_port(socket.SOCK_STREAM)
    receiver = _TcpReceiver(port)
    with TcpRtpSender("127.0.0.1", port, notsent_lowat=32768) as sender:
        assert wait_for(lambda: not sender.send_frame([]).dropped, 5)
        frames = [_rtp_frame(100 * k, 2 + k % 7, size=200 + 150 * k, last=17) for k in range(30)]
        for frame in frames:  # a frame the kernel cannot take now is dropped: offer it again
            assert wait_for(lambda f=frame: not sender.send_frame(f).dropped, 5)
        assert wait_for(sender.flush, 5)
        sent = [p for f in frames for p in f]
        assert wait_for(lambda: len(receiver.packets) >= len(sent), 5)
        assert receiver.packets == sent
        assert sender.applied["IP_TOS"] == 46 << 2
        assert sender.applied["TCP_NODELAY"] == 1
        assert sender.applied["SO_KEEPALIVE"] == 1
        assert sender.applied["TCP_NOTSENT_LOWAT"] == 32768
        assert "TCP_CONGESTION" in sender.applied or "TCP_CONGESTION" in sender.refused
    receiver.close()


def test_tcp_connects_when_the_receiver_starts_late() -> None:
    port = free_port(socket.SOCK_STREAM)
    with TcpRtpSender("127.0.0.1", port, reconnect_backoff=(0.05, 0.2)) as sender:
        early = _pump(sender, 20)
        assert all(r.dropped and r.reason == "not_connected" for r in early)
        assert sender.stats.frames_dropped == 20
        receiver = _TcpReceiver(port)
        assert wait_for(lambda: not sender.send_frame(_rtp_frame(0, 10)).dropped, 5)
        frames = [_rtp_frame(1000 + 10 * k, 10) for k in range(20)]
        accepted = [p for f in frames if not sender.send_frame(f).dropped for p in f]
        assert accepted  # (a receiver thread slower than the loop gives backlog drops)
        assert wait_for(sender.flush, 5)
        assert wait_for(lambda: len(receiver.packets) >= 10 + len(accepted), 5)
        assert receiver.packets[10:] == accepted
        assert sender.stats.reconnects == 0  # the first connection is not a reconnect
    receiver.close()


_KILLABLE_RECEIVER = """
import socket, sys
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(1)
print("listening", flush=True)
conn, _ = server.accept()
while conn.recv(65536):
    pass
"""


def test_tcp_receiver_killed_midstream_then_reconnects_on_a_packet_boundary() -> None:
    port = free_port(socket.SOCK_STREAM)
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_RECEIVER, str(port)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "listening"
        sender = TcpRtpSender("127.0.0.1", port, reconnect_backoff=(0.05, 0.2))
        assert wait_for(lambda: not sender.send_frame(_rtp_frame(0, 10)).dropped, 5)
        _pump(sender, 20, packets=40)  # big frames: often one is half written at the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        after_kill = _pump(sender, 50, seq0=10_000, packets=40)  # no exception, no blocking
        assert any(r.reason == "not_connected" for r in after_kill)
        assert sender.stats.send_errors >= 1 and sender.stats.last_error
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    second = _TcpReceiver(port)
    sent: list[bytes] = []

    def pump_until_received() -> bool:
        frame = _rtp_frame(50_000 + len(sent), 40)
        if not sender.send_frame(frame).dropped:
            sent.extend(frame)
        return len(second.packets) >= 40

    assert wait_for(pump_until_received, 10)
    assert second.packets[:40] == sent[:40]  # whole packets from the first byte on
    assert sender.stats.reconnects == 1
    second.close()
    sender.close()


def test_tcp_stalled_receiver_gives_backlog_drops_and_whole_frames() -> None:
    port = free_port(socket.SOCK_STREAM)
    receiver = _TcpReceiver(port, rcvbuf=4096, reading=False)  # accepts, does not read
    sender = TcpRtpSender("127.0.0.1", port, sndbuf=16384, notsent_lowat=16384)
    assert wait_for(lambda: not sender.send_frame([]).dropped, 5)
    frames = [_rtp_frame(100 * k, 50) for k in range(200)]  # 60 KB each
    results = [sender.send_frame(f) for f in frames]  # would hang here if it blocked
    assert {r.reason for r in results} <= {"", "backlog"}
    backlog = sum(r.reason == "backlog" for r in results)
    assert backlog > 150, backlog
    assert sender.pending_bytes < 60 * 1300  # at most one frame waits in user space
    receiver.reading.set()  # the receiver catches up: the rest flows, framing intact
    assert wait_for(sender.flush, 5)
    accepted = [p for f, r in zip(frames, results, strict=True) if not r.dropped for p in f]
    assert wait_for(lambda: len(receiver.packets) >= len(accepted), 5)
    assert receiver.packets == accepted  # no torn or interleaved frame
    receiver.close()
    sender.close()


# -- RTCP both ways, on the media socket ---------------------------------------------------
def test_udp_control_and_feedback() -> None:
    listener, port = _udp_listener()
    with UdpRtpSender("127.0.0.1", port) as sender:
        assert sender.poll_feedback() == []
        assert sender.send_control(b"\x80\xc8report")
        data, _ancillary, _flags, peer = listener.recvmsg(65536, 64)
        assert data == b"\x80\xc8report"
        listener.sendto(b"\x80\xc9one", peer)
        listener.sendto(b"\x80\xc9two", peer)
        assert wait_for(lambda: sender.poll_feedback() or None, 2) in (
            [b"\x80\xc9one", b"\x80\xc9two"], [b"\x80\xc9one"])
    listener.close()


def test_udp_feedback_arrival_is_the_kernels_not_the_late_read() -> None:
    """Reports are read between frames; their arrival time must not include that wait."""
    listener, port = _udp_listener()
    with UdpRtpSender("127.0.0.1", port) as sender:
        assert "SO_TIMESTAMPNS" in sender.applied, sender.refused
        assert sender.send_control(b"\x80\xc8report")
        _data, _anc, _flags, peer = listener.recvmsg(65536, 64)
        sent_ns = time.monotonic_ns()
        listener.sendto(b"\x80\xc9late", peer)
        time.sleep(0.2)  # the video thread is busy with a frame
        read_ns = time.monotonic_ns()
        [(packet, arrived_ns)] = sender.poll_feedback_stamped()
        assert packet == b"\x80\xc9late"
        assert sent_ns <= arrived_ns + 1_000_000, "arrival before it was sent"
        assert read_ns - arrived_ns > 150_000_000, (
            f"arrival stamped {(read_ns - arrived_ns) / 1e6:.1f} ms before the read, "
            "expected the ~200 ms the datagram waited in the socket")
    listener.close()


def test_tcp_control_and_feedback() -> None:
    port = free_port(socket.SOCK_STREAM)
    receiver = _TcpReceiver(port)
    with TcpRtpSender("127.0.0.1", port) as sender:
        assert not sender.send_control(b"early")  # not connected yet: refused, not queued
        assert wait_for(lambda: not sender.send_frame([]).dropped, 5)
        assert sender.send_control(b"\x80\xc8report")
        assert wait_for(lambda: receiver.packets == [b"\x80\xc8report"], 5)
        receiver.send(b"\x80\xc9back")
        assert wait_for(lambda: sender.poll_feedback() or None, 2) == [b"\x80\xc9back"]
    receiver.close()


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "kwargs", "named"), [
    (("udp", "300.1.1.1", 5004), {}, "headset_ip"),
    (("tcp", "", 5004), {}, "headset_ip"),
    (("udp", "127.0.0.1", 0), {}, "headset_port"),
    (("tcp", "127.0.0.1", 70000), {}, "headset_port"),
    (("sctp", "127.0.0.1", 5004), {}, "transport"),
    (("udp", "127.0.0.1", 5004), {"dscp": 64}, "dscp"),
    (("udp", "127.0.0.1", 5004), {"max_rate_bps": -1.0}, "max_rate_bps"),
    (("tcp", "127.0.0.1", 5004), {"reconnect_backoff": (2.0, 0.1)}, "reconnect_backoff"),
])
def test_bad_input_names_the_parameter(args, kwargs, named) -> None:
    with pytest.raises(ValueError, match=named):
        open_sender(*args, **kwargs)


def test_tcp_ignores_inert_udp_options_and_rejects_oversized_packets() -> None:
    with open_sender("tcp", "127.0.0.1", free_port(socket.SOCK_STREAM),
                     max_rate_bps=0.0, burst_bytes=65536, use_gso=False) as sender:
        assert isinstance(sender, TcpRtpSender)
        with pytest.raises(ValueError, match=r"packet 1\b.*70000 bytes"):
            sender.send_frame([b"x", b"y" * 70000])


# -- what the kernel refused, connect timeouts, stale remainders --------------------------
def test_gso_sends_a_720p_frame_in_a_few_calls() -> None:
    listener, port = _udp_listener()
    frame = _rtp_frame(0, 50, size=1388, last=700)  # a 720p JPEG: ~50 datagrams, > 64 KiB
    with UdpRtpSender("127.0.0.1", port, use_gso=True) as sender:
        assert not sender.send_frame(frame).dropped
        assert [d for d, _ in _recv_all(listener, len(frame))] == frame
        if "UDP_SEGMENT" in sender.refused:
            pytest.skip(f"kernel refused UDP_SEGMENT ({sender.refused['UDP_SEGMENT']})")
        assert sender.gso_batches == 2  # 64 KiB per sendmsg at most
        assert sender.applied["SO_PRIORITY"] == 6
    listener.close()


def test_refused_socket_option_is_recorded_not_raised() -> None:
    port = free_port(socket.SOCK_STREAM)
    receiver = _TcpReceiver(port)
    with TcpRtpSender("127.0.0.1", port, congestion_control="no_such_cc") as sender:
        frame = _rtp_frame(0, 3)
        assert wait_for(lambda: not sender.send_frame(frame).dropped, 5)
        assert "TCP_CONGESTION" in sender.refused and "TCP_CONGESTION" not in sender.applied
        assert sender.applied["TCP_NODELAY"] == 1
        assert wait_for(lambda: receiver.packets == frame, 5)
    receiver.close()


def test_tcp_connect_that_hangs_is_abandoned_and_retried() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(0)  # the accept queue holds one connection; later SYNs are dropped
    port = server.getsockname()[1]
    fillers = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    try:
        with TcpRtpSender("127.0.0.1", port, connect_timeout=0.02,
                          reconnect_backoff=(0.02, 0.05)) as sender:
            results = _pump(sender, 40)  # never waits for the SYN that gets no answer
            assert {r.reason for r in results} == {"not_connected"}
            assert sender.stats.last_error == "connect_timeout"
            assert sender.stats.send_errors >= 2  # abandoned, then tried again
            server.settimeout(2)
            accepted = [server.accept()[0] for _ in range(2)]  # room again: SYNs answered
            assert wait_for(lambda: not sender.send_frame([]).dropped, 5)
            assert sender.connected
            for conn in accepted:
                conn.close()
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_tcp_reset_discards_a_half_written_frame() -> None:
    port = free_port(socket.SOCK_STREAM)
    stalled = _TcpReceiver(port, rcvbuf=4096, reading=False)
    sender = TcpRtpSender("127.0.0.1", port, sndbuf=16384, reconnect_backoff=(0.02, 0.05))
    assert wait_for(lambda: not sender.send_frame([]).dropped, 5)
    assert wait_for(lambda: (sender.send_frame(_rtp_frame(0, 50)), sender.pending_bytes)[1], 5)
    stalled.close()  # RST while the rest of a frame waits in user space
    second = _TcpReceiver(port)
    sent: list[bytes] = []

    def pump_until_received() -> bool:
        frame = _rtp_frame(60_000 + len(sent), 5)
        if not sender.send_frame(frame).dropped:
            sent.extend(frame)
        return len(second.packets) >= 5

    assert wait_for(pump_until_received, 10)
    assert second.packets[:5] == sent[:5]  # the stale remainder never reached it
    assert sender.stats.reconnects == 1
    second.close()
    sender.close()

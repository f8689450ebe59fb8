"""Low-latency RTP senders over UDP and TCP (the seed's network_optimizations).

Both never block the video path: a frame that cannot leave now is dropped and
counted, because a late frame is worth less than the next one. Socket settings follow
the seed's LowLatencySocket: DSCP EF, high socket priority, a small send buffer (so
stale frames are not queued in the kernel), connected UDP, TCP_NODELAY and, for TCP, a
low TCP_NOTSENT_LOWAT so unsent bytes do not pile up behind a slow link.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vr_stream_ros.rtp import Rfc4571Decoder

SO_PRIORITY_INTERACTIVE = 6
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)


def resolve_ipv4(host: str, param: str = "headset_ip") -> str:
    """An IPv4 literal, or the address a host name resolves to; ValueError naming ``param``."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    if any(c.isalpha() for c in host):
        try:
            return socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
        except OSError:
            pass
    raise ValueError(f"parameter '{param}': got {host!r}, expected an IPv4 address or a "
                     "resolvable host name")


def check_port(port: int, param: str = "headset_port") -> int:
    """``port`` if it is in 1..65535; ValueError naming ``param`` otherwise."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"parameter '{param}': got {port!r}, expected 1..65535")
    return port


@dataclass
class SendResult:
    """What became of one frame."""

    packets_sent: int
    bytes_sent: int
    dropped: bool
    reason: str
    done_ns: int
    paced_ns: int = 0


@dataclass
class SenderStats:
    """Totals since the sender was made."""

    frames_sent: int = 0
    frames_dropped: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    send_errors: int = 0
    reconnects: int = 0
    last_error: str = ""


def _tune(sock: socket.socket, dscp: int, sndbuf: int, applied: dict, refused: dict) -> None:
    """Apply the low-latency options; record what took effect and what was refused."""
    options = [
        ("IP_TOS", socket.IPPROTO_IP, socket.IP_TOS, dscp << 2),
        ("SO_PRIORITY", socket.SOL_SOCKET, socket.SO_PRIORITY, SO_PRIORITY_INTERACTIVE),
        ("SO_SNDBUF", socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf),
    ]
    if sock.type == socket.SOCK_STREAM:
        options += [
            ("TCP_NODELAY", socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
            ("TCP_NOTSENT_LOWAT", socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 16384),
            ("SO_KEEPALIVE", socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        ]
    for name, level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
            applied[name] = sock.getsockopt(level, option)
        except OSError as exc:
            refused[name] = exc.strerror or str(exc)


class _Pacer:
    """Token bucket: ``rate_bps`` sustained, ``burst`` bytes at once."""

    def __init__(self, rate_bps: float, burst: int) -> None:
        self.rate = rate_bps / 8e9  # bytes per ns
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic_ns()

    def wait(self, nbytes: int) -> int:
        now = time.monotonic_ns()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= nbytes
        if self.tokens >= 0:
            return 0
        delay = int(-self.tokens / self.rate)
        if delay > 200_000:
            time.sleep(delay / 1e9)
        else:
            while time.monotonic_ns() - now < delay:
                pass
        return delay


class UdpRtpSender:
    """Connected UDP socket; a frame is a burst of datagrams (optionally paced or GSO)."""

    def __init__(self, host: str, port: int, *, dscp: int = 46, sndbuf: int = 262144,
                 max_rate_bps: float = 0.0, burst_bytes: int = 64 * 1024,
                 use_gso: bool = False) -> None:
        self.address = (resolve_ipv4(host), check_port(port))
        self.stats = SenderStats()
        self.applied: dict[str, int] = {}
        self.refused: dict[str, str] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _tune(self.sock, dscp, sndbuf, self.applied, self.refused)
        self.sock.connect(self.address)
        self._pacer = _Pacer(max_rate_bps, burst_bytes) if max_rate_bps > 0 else None
        self.use_gso = use_gso and self._pacer is None

    def send_frame(self, packets: Sequence[bytes | memoryview]) -> SendResult:
        """Send every datagram of a frame; drop the rest rather than block."""
        sent = nbytes = 0
        paced = 0
        reason = ""
        sock, pacer = self.sock, self._pacer
        try:
            if self.use_gso and len(packets) > 1:
                sent, nbytes = self._send_gso(packets)
            else:
                for packet in packets:
                    if pacer is not None:
                        paced += pacer.wait(len(packet))
                    nbytes += sock.send(packet, socket.MSG_DONTWAIT)
                    sent += 1
        except BlockingIOError:
            reason = "would_block"
        except ConnectionRefusedError:
            reason = "no_receiver"  # ICMP port unreachable from an earlier datagram
        except OSError as exc:
            reason = errno.errorcode.get(exc.errno or 0, "error").lower()
        done = time.monotonic_ns()
        st = self.stats
        st.packets_sent += sent
        st.bytes_sent += nbytes
        if reason:
            st.frames_dropped += 1
            st.send_errors += 1
            st.last_error = reason
            return SendResult(sent, nbytes, True, reason, done, paced)
        st.frames_sent += 1
        return SendResult(sent, nbytes, False, "", done, paced)

    def _send_gso(self, packets: Sequence[bytes | memoryview]) -> tuple[int, int]:
        """UDP_SEGMENT: one sendmsg per run of equal-size datagrams (last may be shorter)."""
        sent = nbytes = 0
        i = 0
        while i < len(packets):
            size = len(packets[i])
            j = i + 1
            while j < len(packets) and len(packets[j]) == size and j - i < 64:
                j += 1
            if j < len(packets) and len(packets[j]) < size and j - i < 64:
                j += 1  # a shorter last segment is allowed
            run = packets[i:j]
            if len(run) == 1:
                nbytes += self.sock.send(run[0], socket.MSG_DONTWAIT)
            else:
                try:
                    nbytes += self.sock.sendmsg(
                        [b"".join(run)], [(socket.SOL_UDP, 103, struct.pack("H", size))],
                        socket.MSG_DONTWAIT)
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOPROTOOPT, errno.EIO):
                        raise
                    self.refused["UDP_SEGMENT"] = exc.strerror or str(exc)
                    self.use_gso = False
                    for packet in run:
                        nbytes += self.sock.send(packet, socket.MSG_DONTWAIT)
            sent += len(run)
            i = j
        return sent, nbytes

    def send_control(self, packet: bytes) -> bool:
        """Send one RTCP packet on the RTP socket (rtcp-mux); False if it could not go."""
        try:
            self.sock.send(packet, socket.MSG_DONTWAIT)
            return True
        except OSError:
            return False

    def poll_feedback(self) -> list[bytes]:
        """Datagrams the headset sent back (RTCP). The socket is connected, so the
        kernel delivers only those from headset_ip:headset_port."""
        packets = []
        for _ in range(64):
            try:
                packets.append(self.sock.recv(65536, socket.MSG_DONTWAIT))
            except (BlockingIOError, ConnectionRefusedError):
                break
            except OSError:
                break
        return packets

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()


class TcpRtpSender:
    """RTP over TCP with RFC 4571 framing; connects (and reconnects) without blocking."""

    def __init__(self, host: str, port: int, *, dscp: int = 46, sndbuf: int = 262144,
                 reconnect_backoff: tuple[float, float] = (0.1, 2.0)) -> None:
        self.address = (resolve_ipv4(host), check_port(port))
        self.stats = SenderStats()
        self.applied: dict[str, int] = {}
        self.refused: dict[str, str] = {}
        self._dscp, self._sndbuf = dscp, sndbuf
        self._backoff_min, self._backoff_max = reconnect_backoff
        self._backoff = self._backoff_min
        self._next_attempt = 0.0
        self.sock: socket.socket | None = None
        self._connected = False
        self._pending = memoryview(b"")
        self._ever_connected = False
        self._feedback = Rfc4571Decoder()

    # -- connection ----------------------------------------------------------------
    def _start_connect(self) -> None:
        now = time.monotonic()
        if now < self._next_attempt:
            return
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _tune(sock, self._dscp, self._sndbuf, self.applied, self.refused)
        sock.setblocking(False)
        err = sock.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.stats.last_error = errno.errorcode.get(err, str(err)).lower()
            return
        self.sock = sock
        self._connected = err == 0

    def _finish_connect(self) -> bool:
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            try:
                self.sock.getpeername()
            except OSError:
                return False  # still in progress
            self._connected = True
            self._backoff = self._backoff_min
            if self._ever_connected:
                self.stats.reconnects += 1
            self._ever_connected = True
            return True
        self._drop_connection(errno.errorcode.get(err, str(err)).lower())
        return False

    def _drop_connection(self, why: str) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self._connected = False
        self._pending = memoryview(b"")
        self._feedback.reset()
        self.stats.last_error = why
        self.stats.send_errors += 1

    def _ready(self) -> bool:
        if self.sock is None:
            self._start_connect()
            if self.sock is None:
                return False
        if not self._connected:
            return self._finish_connect()
        return True

    # -- sending -------------------------------------------------------------------
    def _write(self, data: memoryview) -> int:
        """Write what the kernel takes now; returns bytes written."""
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except BlockingIOError:
            return 0

    def _dropped(self, reason: str, sent: int = 0, nbytes: int = 0) -> SendResult:
        self.stats.frames_dropped += 1
        return SendResult(sent, nbytes, True, reason, time.monotonic_ns())

    def send_frame(self, packets: Sequence[bytes | memoryview]) -> SendResult:
        """Send a frame's packets, framed; drop it if the link is not ready for it."""
        if not self._ready():
            return self._dropped("not_connected")
        try:
            if self._pending:
                n = self._write(self._pending)
                self._pending = self._pending[n:]
                self.stats.bytes_sent += n
                if self._pending:
                    return self._dropped("backlog")
            data = memoryview(b"".join(
                b for p in packets for b in (struct.pack("!H", len(p)), bytes(p))))
            n = self._write(data)
        except OSError as exc:  # reset, broken pipe: reconnect later, on a packet boundary
            self._drop_connection(errno.errorcode.get(exc.errno or 0, "error").lower())
            return self._dropped("not_connected")
        self.stats.bytes_sent += n
        if n < len(data):
            self._pending = data[n:]  # at most one frame waits in user space
        self.stats.frames_sent += 1
        self.stats.packets_sent += len(packets)
        return SendResult(len(packets), len(data), False, "", time.monotonic_ns())

    def send_control(self, packet: bytes) -> bool:
        """Send one RTCP packet, framed, between frames; False if the link is busy."""
        if not self._connected or self._pending:
            return False
        data = memoryview(struct.pack("!H", len(packet)) + packet)
        try:
            n = self._write(data)
        except OSError:
            return False
        if n < len(data):
            self._pending = data[n:]  # keep framing whole; it goes before the next frame
        return True

    def poll_feedback(self) -> list[bytes]:
        """RTCP packets the headset sent back on the connection (RFC 4571 framed)."""
        if not self._connected or self.sock is None:
            return []
        try:
            data = self.sock.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return []
        if not data:
            return []  # peer closed; the next send notices and reconnects
        return self._feedback.feed(data)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def open_sender(transport: str, host: str, port: int, **options) -> UdpRtpSender | TcpRtpSender:
    """A sender for ``transport`` ('udp' or 'tcp'); pacing options apply to UDP only."""
    if transport == "udp":
        return UdpRtpSender(host, port, **options)
    if transport == "tcp":
        for udp_only in ("max_rate_bps", "burst_bytes", "use_gso"):
            options.pop(udp_only, None)
        return TcpRtpSender(host, port, **options)
    raise ValueError(f"parameter 'transport': got {transport!r}, expected 'udp' or 'tcp'")

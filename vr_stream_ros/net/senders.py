"""Low-latency RTP senders over UDP and TCP (the seed's network_optimizations).

Neither ever blocks the video path: a frame that cannot leave now is dropped and
counted, because a late frame is worth less than the next one. Socket settings follow
the seed's LowLatencySocket: DSCP EF, socket priority 6, a small send buffer (stale
frames are not queued in the kernel), a connected UDP socket (no route lookup per
datagram), TCP_NODELAY and, for TCP, BBR, a low TCP_NOTSENT_LOWAT (unsent bytes do not
pile up behind a slow link), keepalive and a user timeout (a headset that vanished
without a reset is given up on, then reconnected). Options the kernel refuses are
recorded in ``refused``, never raised; ``applied`` holds what took effect, read back.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from vr_stream_ros.graph.param_spec import (
    IPV4_HOST,
    ParameterError,
    ParamSpec,
    Value,
    resolve_ipv4_host,
)
from vr_stream_ros.rtp.packet import Rfc4571Decoder

Packet = bytes | memoryview

SO_PRIORITY_INTERACTIVE = 6  # TC_PRIO_INTERACTIVE: highest priority without CAP_NET_ADMIN
SOL_UDP = 17
UDP_SEGMENT = 103  # Linux GSO for UDP (4.18+); not exported by the socket module
GSO_MAX_SEGMENTS = 64  # UDP_MAX_SEGMENTS before Linux 6.x (128 later)
GSO_MAX_BYTES = 65507  # a GSO batch is limited like one IPv4 UDP datagram
ADAPT_BURST_BYTES = 4096  # set_pacing_rate: about three full packets at once
PACING_SLEEP_MIN_NS = 200_000  # shorter gaps are carried as debt, not slept
RFC4571_MAX_PACKET = 0xFFFF
# About one 720p JPEG frame may wait unsent in the kernel; the next is refused, not queued.
DEFAULT_NOTSENT_LOWAT = 64 * 1024
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)
TCP_CONGESTION = getattr(socket, "TCP_CONGESTION", 13)
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
_IOV_MAX = max(os.sysconf("SC_IOV_MAX"), 2)  # 1024 on Linux
_IOV_MAX -= _IOV_MAX % 2  # keep (length, packet) pairs together in one sendmsg


def resolve_ipv4(host: str, param: str = "headset_ip") -> str:
    """An IPv4 literal, or the address a host name resolves to; ParameterError naming ``param``."""
    address = resolve_ipv4_host(host)
    if address is None:
        raise ParameterError(f"parameter '{param}': got {host!r}, expected {IPV4_HOST}")
    return address


def _library_value(spec: ParamSpec, value: object) -> Value:
    """``spec.validate`` for a Python argument: numbers only (no text to convert)."""
    if isinstance(value, str):
        raise ParameterError(f"parameter '{spec.name}': got {value!r}, expected "
                             f"{spec.allowed()}")
    return spec.validate(value)


def check_port(port: int, param: str = "headset_port") -> int:
    """``port`` if it is an int in 1..65535; ParameterError naming ``param`` otherwise."""
    return _library_value(ParamSpec(param, 1, "", min=1, max=65535), port)


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    """``value`` within low..high (no upper bound: None), an int when ``low`` is one."""
    _library_value(ParamSpec(name, low, "", min=low, max=high), value)


@dataclass
class SendResult:
    """What became of one frame."""

    packets_sent: int
    bytes_sent: int  # bytes handed to the kernel (TCP: RFC 4571 length prefixes included)
    dropped: bool  # the frame (or its rest) was dropped rather than block
    reason: str  # '' or 'would_block', 'no_receiver', 'not_connected', 'backlog', errno name
    done_ns: int  # time.monotonic_ns() after the last datagram/byte left (or giving up)
    paced_ns: int = 0  # time slept by the pacer within this frame


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


def _error_name(exc: OSError | int) -> str:
    """A short reason for a failed send: 'would_block', 'no_receiver' or the errno name."""
    code = exc if isinstance(exc, int) else exc.errno
    if code in (errno.EAGAIN, errno.ENOBUFS):  # socket or device queue full
        return "would_block"
    if code == errno.ECONNREFUSED:  # ICMP port unreachable for an earlier datagram
        return "no_receiver"
    return errno.errorcode.get(code or 0, "oserror").lower()


def _apply_options(sock: socket.socket, options: list[tuple], applied: dict,
                   refused: dict) -> None:
    """setsockopt each option, read it back into ``applied``; errors go to ``refused``."""
    for name, level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
            if isinstance(value, bytes):
                applied[name] = sock.getsockopt(level, option, 32).split(b"\0")[0].decode()
            else:
                applied[name] = sock.getsockopt(level, option)
            refused.pop(name, None)
        except OSError as exc:
            applied.pop(name, None)
            refused[name] = exc.strerror or str(exc)


def _common_options(dscp: int, sndbuf: int) -> list[tuple]:
    return [
        ("IP_TOS", socket.IPPROTO_IP, socket.IP_TOS, dscp << 2),
        ("SO_PRIORITY", socket.SOL_SOCKET, socket.SO_PRIORITY, SO_PRIORITY_INTERACTIVE),
        ("SO_SNDBUF", socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf),  # read back doubled
    ]


class _TokenBucket:
    """``rate_bps`` sustained, ``burst`` bytes at once; debts under 200 us are carried."""

    def __init__(self, rate_bps: float, burst: int) -> None:
        self._bytes_per_ns = rate_bps / 8e9
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp = time.monotonic_ns()

    def set_rate(self, rate_bps: float) -> None:
        """A new sustained rate from now on."""
        self._bytes_per_ns = rate_bps / 8e9

    def take(self, nbytes: int) -> int:
        """Take ``nbytes``, sleeping first if the debt is worth a sleep; returns ns slept."""
        now = time.monotonic_ns()
        tokens = self._tokens + (now - self._stamp) * self._bytes_per_ns
        tokens = min(tokens, self._burst) - nbytes
        self._tokens, self._stamp = tokens, now
        if tokens >= 0:
            return 0
        debt_ns = -tokens / self._bytes_per_ns
        if debt_ns < PACING_SLEEP_MIN_NS:
            return 0  # send now; the debt makes a later gap longer
        time.sleep(debt_ns / 1e9)
        return time.monotonic_ns() - now


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python does not name it
_STAMP_SPACE = socket.CMSG_SPACE(struct.calcsize("@ll"))


def _arrival_mono_ns(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The kernel's receive stamp (CLOCK_REALTIME timespec) on the monotonic clock."""
    now_mono = time.monotonic_ns()
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack_from("@ll", data)
            age = time.clock_gettime_ns(time.CLOCK_REALTIME) - (sec * 1_000_000_000 + nsec)
            if 0 <= age < 10_000_000_000:  # a stepped wall clock: fall back to now
                return now_mono - age
    return now_mono


class UdpRtpSender:
    """A connected UDP socket; a frame is a burst of datagrams (optionally paced or GSO)."""

    def __init__(self, host: str, port: int, *, dscp: int = 46, sndbuf: int = 262144,
                 max_rate_bps: float = 0.0, burst_bytes: int = 64 * 1024,
                 use_gso: bool = False) -> None:
        self.address = (resolve_ipv4(host), check_port(port))
        _check_range("dscp", dscp, 0, 63)
        _check_range("sndbuf", sndbuf, 1024)
        _check_range("max_rate_bps", max_rate_bps, 0.0)
        _check_range("burst_bytes", burst_bytes, 1)
        self.stats = SenderStats()
        self.applied: dict[str, int | str] = {}
        self.refused: dict[str, str] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _apply_options(self.sock, _common_options(dscp, sndbuf), self.applied, self.refused)
        # The kernel stamps each report on arrival: the video thread reads them only
        # between frames, and a late read would count as network time in the RTT.
        _apply_options(self.sock, [("SO_TIMESTAMPNS", socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)],
                       self.applied, self.refused)
        self._connected = False
        self._connect()  # no route yet (WiFi still joining): retried by send_frame
        self._pacer = _TokenBucket(max_rate_bps, burst_bytes) if max_rate_bps > 0 else None
        self._max_rate_bps, self._burst_bytes = max_rate_bps, burst_bytes
        self.use_gso = bool(use_gso) and self._pacer is None
        self.gso_batches = 0  # sendmsg calls that carried several datagrams

    def set_pacing_rate(self, rate_bps: float) -> None:
        """Pace at ``rate_bps`` (the adapted rate) from the next frame on, never above the
        configured ``max_rate_bps``; 0: back to what was configured."""
        if self._max_rate_bps > 0:
            rate_bps = min(rate_bps, self._max_rate_bps) if rate_bps > 0 else self._max_rate_bps
        if rate_bps <= 0:
            self._pacer = None
        elif self._pacer is None:
            self._pacer = _TokenBucket(rate_bps, min(self._burst_bytes, ADAPT_BURST_BYTES))
        else:
            self._pacer.set_rate(rate_bps)

    def _connect(self) -> bool:
        try:
            self.sock.connect(self.address)
        except OSError as exc:
            self.stats.last_error = _error_name(exc)
            return False
        self._connected = True
        return True

    def send_frame(self, packets: Sequence[Packet]) -> SendResult:
        """Send every datagram of a frame; drop the rest rather than block."""
        paced = 0
        if not self._connected and not self._connect():
            sent, nbytes, reason = 0, 0, "not_connected"
        elif self.use_gso and self._pacer is None and len(packets) > 1:
            sent, nbytes, reason = self._send_batched(packets)
        else:
            sent, nbytes, paced, reason = self._send_each(packets)
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

    def _send_each(self, packets: Sequence[Packet]) -> tuple[int, int, int, str]:
        """One send per datagram, paced if asked; (sent, bytes, paced_ns, reason)."""
        send, pacer = self.sock.send, self._pacer
        sent = nbytes = paced = 0
        try:
            for packet in packets:
                if pacer is not None:
                    paced += pacer.take(len(packet))
                nbytes += send(packet, socket.MSG_DONTWAIT)
                sent += 1
        except OSError as exc:
            return sent, nbytes, paced, _error_name(exc)
        return sent, nbytes, paced, ""

    def _send_batched(self, packets: Sequence[Packet]) -> tuple[int, int, str]:
        """UDP_SEGMENT: one sendmsg per run of equal-size datagrams (the last may be
        shorter), gathered from the packets without copying; (sent, bytes, reason)."""
        sock = self.sock
        count = len(packets)
        sent = nbytes = i = 0
        try:
            while i < count:
                size = len(packets[i])
                limit = min(count, i + GSO_MAX_SEGMENTS)
                j, total = i + 1, size
                while j < limit and len(packets[j]) == size and total + size <= GSO_MAX_BYTES:
                    j, total = j + 1, total + size
                if j < limit and len(packets[j]) < size and total + len(packets[j]) <= \
                        GSO_MAX_BYTES:
                    j += 1  # a shorter last segment is allowed
                if j - i == 1:
                    nbytes += sock.send(packets[i], socket.MSG_DONTWAIT)
                else:
                    try:
                        nbytes += sock.sendmsg(
                            packets[i:j], [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))],
                            socket.MSG_DONTWAIT)
                    except OSError as exc:
                        if exc.errno not in (errno.EINVAL, errno.EIO, errno.ENOPROTOOPT,
                                             errno.EOPNOTSUPP):
                            raise
                        self.refused["UDP_SEGMENT"] = exc.strerror or str(exc)
                        self.use_gso = False  # this kernel or device cannot: per packet
                        more, more_bytes, _, reason = self._send_each(packets[i:])
                        return sent + more, nbytes + more_bytes, reason
                    self.gso_batches += 1
                sent += j - i
                i = j
        except OSError as exc:
            return sent, nbytes, _error_name(exc)
        return sent, nbytes, ""

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
        return [packet for packet, _ in self.poll_feedback_stamped()]

    def poll_feedback_stamped(self) -> list[tuple[bytes, int]]:
        """``poll_feedback`` with each datagram's arrival (CLOCK_MONOTONIC ns, from the
        kernel's receive stamp where it gives one, else the time of reading)."""
        packets = []
        for _ in range(64):
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65536, _STAMP_SPACE,
                                                                 socket.MSG_DONTWAIT)
            except OSError:  # nothing more, or a stale ICMP error
                break
            packets.append((data, _arrival_mono_ns(ancdata)))
        return packets

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()

    def __enter__(self) -> UdpRtpSender:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class TcpRtpSender:
    """RTP over TCP with RFC 4571 framing; the bridge connects to the headset.

    Connecting never waits: a non-blocking connect is started at most once per backoff
    interval (doubling from ``reconnect_backoff[0]`` to ``[1]``) and finished by a
    later ``send_frame``; frames meanwhile are dropped ('not_connected'). A frame the
    kernel takes only in part keeps its rest in user space and goes first on the next
    call; until it is gone new frames are dropped ('backlog'), so at most one frame
    waits here and framing is never broken.
    """

    def __init__(self, host: str, port: int, *, dscp: int = 46, sndbuf: int = 262144,
                 connect_timeout: float = 0.2,
                 reconnect_backoff: tuple[float, float] = (0.1, 2.0),
                 notsent_lowat: int = DEFAULT_NOTSENT_LOWAT, user_timeout: float = 3.0,
                 congestion_control: str = "bbr") -> None:
        self.address = (resolve_ipv4(host), check_port(port))
        _check_range("dscp", dscp, 0, 63)
        _check_range("sndbuf", sndbuf, 1024)
        _check_range("connect_timeout", connect_timeout, 0.001)
        _check_range("notsent_lowat", notsent_lowat, 1)
        _check_range("user_timeout", user_timeout, 0.0)
        if (not isinstance(reconnect_backoff, tuple | list) or len(reconnect_backoff) != 2
                or not 0 < reconnect_backoff[0] <= reconnect_backoff[1]):
            raise ValueError(f"parameter 'reconnect_backoff': got {reconnect_backoff!r}, "
                             "expected (first, most) seconds with 0 < first <= most")
        self.stats = SenderStats()
        self.applied: dict[str, int | str] = {}
        self.refused: dict[str, str] = {}
        self._options = [
            *_common_options(dscp, sndbuf),
            ("TCP_NODELAY", socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
            ("TCP_NOTSENT_LOWAT", socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, notsent_lowat),
            ("SO_KEEPALIVE", socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            ("TCP_KEEPIDLE", socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1),
            ("TCP_KEEPINTVL", socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1),
            ("TCP_KEEPCNT", socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3),
            ("TCP_USER_TIMEOUT", socket.IPPROTO_TCP, TCP_USER_TIMEOUT,
             int(user_timeout * 1000)),
        ]
        if congestion_control:
            self._options.append(("TCP_CONGESTION", socket.IPPROTO_TCP, TCP_CONGESTION,
                                  congestion_control.encode()))
        self._connect_timeout = connect_timeout
        self._backoff_first, self._backoff_most = reconnect_backoff
        self._backoff = self._backoff_first
        self._next_attempt = 0.0
        self._connect_started = 0.0
        self.sock: socket.socket | None = None
        self._connected = False
        self._ever_connected = False
        self._pending = memoryview(b"")
        self._feedback = Rfc4571Decoder()

    @property
    def connected(self) -> bool:
        """True while a connection to the receiver is established."""
        return self._connected

    @property
    def pending_bytes(self) -> int:
        """Bytes of a partly written frame waiting in user space."""
        return len(self._pending)

    # -- connection ----------------------------------------------------------------
    def _ensure_connected(self) -> bool:
        if self._connected:
            return True
        now = time.monotonic()
        if self.sock is None:
            if now < self._next_attempt:
                return False
            self._start_connect(now)
            if self.sock is None:
                return False
        return self._finish_connect(now)

    def _start_connect(self, now: float) -> None:
        self._next_attempt = now + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_most)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        _apply_options(sock, self._options, self.applied, self.refused)
        sock.setblocking(False)
        err = sock.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self._note_error(_error_name(err))
            return
        self.sock = sock
        self._connect_started = now

    def _finish_connect(self, now: float) -> bool:
        """Check an in-progress connect without waiting; True once established."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._drop_connection(_error_name(err))
            return False
        try:
            self.sock.getpeername()
        except OSError:  # still in progress
            if now - self._connect_started > self._connect_timeout:
                self._drop_connection("connect_timeout")
            return False
        self._connected = True
        self._backoff = self._backoff_first
        if self._ever_connected:
            self.stats.reconnects += 1
        self._ever_connected = True
        return True

    def _note_error(self, why: str) -> None:
        self.stats.last_error = why
        self.stats.send_errors += 1

    def _drop_connection(self, why: str) -> None:
        """Close; the next connection starts on a packet boundary, so no remainder."""
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self._connected = False
        self._pending = memoryview(b"")
        self._feedback.reset()
        self._note_error(why)

    # -- sending -------------------------------------------------------------------
    def _dropped(self, reason: str, nbytes: int = 0) -> SendResult:
        self.stats.frames_dropped += 1
        return SendResult(0, nbytes, True, reason, time.monotonic_ns())

    def _flush_pending(self) -> int:
        """Write what the kernel takes of the pending remainder now; bytes written."""
        try:
            n = self.sock.send(self._pending, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except BlockingIOError:
            return 0
        self._pending = self._pending[n:]
        self.stats.bytes_sent += n
        return n

    def _write(self, pieces: list[Packet]) -> int:
        """Gather-write ``pieces`` (no copy); returns bytes the kernel took now."""
        flags = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
        sendmsg = self.sock.sendmsg
        if len(pieces) <= _IOV_MAX:
            try:
                return sendmsg(pieces, (), flags)
            except BlockingIOError:
                return 0
        written = 0
        for start in range(0, len(pieces), _IOV_MAX):
            chunk = pieces[start:start + _IOV_MAX]
            try:
                n = sendmsg(chunk, (), flags)
            except BlockingIOError:
                return written
            written += n
            if n < sum(len(p) for p in chunk):
                break
        return written

    def send_frame(self, packets: Sequence[Packet]) -> SendResult:
        """Send a frame's packets, framed; drop it if the link is not ready for it.

        Raises ValueError (before writing anything) for a packet over 65535 bytes,
        which RFC 4571 cannot frame.
        """
        pieces: list[Packet] = []
        total = 0
        for index, packet in enumerate(packets):
            size = len(packet)
            if size > RFC4571_MAX_PACKET:
                raise ValueError(f"packet {index}: {size} bytes; RFC 4571 frames at most "
                                 f"{RFC4571_MAX_PACKET}")
            pieces += (size.to_bytes(2, "big"), packet)
            total += 2 + size
        if not self._ensure_connected():
            return self._dropped("not_connected")
        flushed = 0
        try:
            if self._pending:
                flushed = self._flush_pending()
                if self._pending:
                    return self._dropped("backlog", flushed)
            written = self._write(pieces) if pieces else 0
        except OSError as exc:  # reset, broken pipe, user timeout: reconnect later
            self._drop_connection(_error_name(exc))
            return self._dropped("not_connected", flushed)
        if written == 0 and pieces:
            return self._dropped("backlog", flushed)  # nothing taken: framing untouched
        if written < total:
            self._pending = memoryview(b"".join(pieces))[written:]  # rare: one copy
        st = self.stats
        st.frames_sent += 1
        st.packets_sent += len(packets)
        st.bytes_sent += written
        return SendResult(len(packets), flushed + written, False, "", time.monotonic_ns())

    def flush(self) -> bool:
        """Push a pending remainder on without waiting; True when nothing is pending.

        Call it between frames (e.g. from the idle loop) so a remainder does not wait
        for the next frame.
        """
        if not self._pending:
            return True
        if not self._connected:
            return False
        try:
            self._flush_pending()
        except OSError as exc:
            self._drop_connection(_error_name(exc))
            return False
        return not self._pending

    def send_control(self, packet: bytes) -> bool:
        """Send one RTCP packet, framed, between frames; False if the link is busy."""
        if not self._connected or self._pending:
            return False
        data = len(packet).to_bytes(2, "big") + packet
        try:
            n = self._write([data])
        except OSError as exc:
            self._drop_connection(_error_name(exc))
            return False
        if n == 0:
            return False
        if n < len(data):
            self._pending = memoryview(data)[n:]  # keep framing whole: it goes first
        self.stats.bytes_sent += n
        return True

    def poll_feedback_stamped(self) -> list[tuple[bytes, int]]:
        """``poll_feedback`` with the time of reading as each packet's arrival."""
        now = time.monotonic_ns()
        return [(packet, now) for packet in self.poll_feedback()]

    def poll_feedback(self) -> list[bytes]:
        """RTCP packets the headset sent back on the connection (RFC 4571 framed)."""
        if not self._connected:
            return []
        try:
            data = self.sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except OSError as exc:  # reset: reconnect on the next frame
            self._drop_connection(_error_name(exc))
            return []
        if not data:
            return []  # peer closed its side; the next send notices a reset
        return self._feedback.feed(data)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self._connected = False
        self._pending = memoryview(b"")

    def __enter__(self) -> TcpRtpSender:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


UDP_ONLY_OPTIONS = ("max_rate_bps", "burst_bytes", "use_gso")


def open_sender(transport: str, host: str, port: int, **options) -> UdpRtpSender | TcpRtpSender:
    """A sender for ``transport`` ('udp' or 'tcp'); pacing and GSO options are UDP-only
    and ignored for TCP."""
    if transport == "udp":
        return UdpRtpSender(host, port, **options)
    if transport == "tcp":
        for name in UDP_ONLY_OPTIONS:
            options.pop(name, None)
        return TcpRtpSender(host, port, **options)
    raise ValueError(f"parameter 'transport': got {transport!r}, expected 'udp' or 'tcp'")

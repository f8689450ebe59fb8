"""RFC 4585 generic NACK: the packet, and the receiver's decision when to ask.

Wire format (RFC 4585 6.2.1): RTCP type 205 (RTPFB), FMT 1, sender SSRC, media SSRC,
then FCI words of (PID: a lost sequence number, BLP: a bitmask of the 16 following).

:class:`NackTracker` is the receiver's side. It follows the media stream's sequence
numbers (extended past wrap-around) and knows two kinds of missing packet:

- a *gap*: a later sequence number arrived. Asked for once it has stayed missing for
  the reorder tolerance (so a packet that is merely reordered is not re-sent);
- a *tail*: the frame-packets extension (packet.py, id 3) says the frame has packets
  beyond the highest one seen. Asked for once nothing at all has arrived for the
  tail wait (the burst has stopped), so a lost *last* packet of a frame is found
  within it instead of when the next frame's first packet shows the gap (a frame
  period later).

Both waits are measured: ``reorder_ms`` and ``tail_ms`` are the least, and each grows
to the 95th percentile (+ 0.5 ms) of what was seen: how late a reordered packet came
after the later one, and how long a frame's burst paused before its next packet
(at most ``MAX_WAIT_MS``). Seen here: a fixed 2 ms tolerance against +-2 ms
reordering jitter re-sent a fifth of the stream; a 6 ms tail wait on a loaded 2-core
host asked for ~3 % of packets still on their way.

A packet still missing is asked again after ``repair_wait`` (the slowest of the last 16
NACK -> repair times + 2 ms, measured here, 20 ms until measured), at most ``rounds`` times in
all, and given up (``lost``) ``give_up_ms`` after it was noticed; one that then arrives
on its own moves from ``lost`` to ``late`` (a stalled path or host, not the network
losing it: seen on a loaded 2-core host, where a clean link showed 30 packets lost).
Loss counted this way does not include reordering: ``reordered`` counts the packets
that came late on their own, ``recovered`` those a retransmission brought, ``spurious``
those asked for that then came on their own.
"""

from __future__ import annotations

import itertools
import struct
from collections import OrderedDict, deque
from dataclasses import dataclass

PT_RTPFB = 205
FMT_GENERIC_NACK = 1
_HEADER = struct.Struct("!BBHII")
_FCI = struct.Struct("!HH")
MAX_FCI = 64  # 64 words: up to 1088 packets in one NACK, well within one datagram


class NackError(ValueError):
    """A malformed generic NACK (the message says which part)."""


def generic_nack(sender_ssrc: int, media_ssrc: int, seqs: list[int]) -> bytes:
    """One RTPFB generic NACK asking for ``seqs`` (16-bit sequence numbers)."""
    if not seqs:
        raise NackError("generic NACK: no sequence numbers to ask for")
    fci: list[tuple[int, int]] = []
    for seq in sorted({s & 0xFFFF for s in seqs}, key=lambda s: (s - seqs[0]) & 0xFFFF):
        if fci and 0 < (seq - fci[-1][0]) & 0xFFFF <= 16:
            pid, blp = fci[-1]
            fci[-1] = (pid, blp | 1 << (((seq - pid) & 0xFFFF) - 1))
        else:
            fci.append((seq, 0))
    fci = fci[:MAX_FCI]
    body = b"".join(_FCI.pack(pid, blp) for pid, blp in fci)
    return _HEADER.pack(0x80 | FMT_GENERIC_NACK, PT_RTPFB, 2 + len(fci), sender_ssrc,
                        media_ssrc) + body


def parse_nack_fci(fci: bytes | memoryview) -> list[int]:
    """The sequence numbers a generic NACK's FCI asks for; NackError if it is not whole
    words or is empty."""
    if not fci or len(fci) % 4:
        raise NackError(f"generic NACK: FCI of {len(fci)} bytes, expected 4 x n (n >= 1)")
    seqs = []
    for i in range(0, len(fci), 4):
        pid, blp = _FCI.unpack_from(fci, i)
        seqs.append(pid)
        seqs += [(pid + bit + 1) & 0xFFFF for bit in range(16) if blp >> bit & 1]
    return seqs


@dataclass
class _Missing:
    noticed_ns: int  # gap: when a later packet showed it; tail: when the burst went quiet
    next_ask_ns: int
    asked: int = 0
    last_ask_ns: int = 0
    quiet_from_ns: int = 0  # tail: the last arrival before it was missed (0 for a gap)


MAX_WAIT_MS = 8.0
"""The measured tolerances never grow past this (half a 60 fps frame period): a repair
must still arrive within the two frame periods the bridge resends for."""
MAX_MISSING = 3000  # gaps remembered at most (one sender jump of MAX_DROPOUT)


MAX_GIVEN_UP = 1024  # given-up numbers remembered, so a late arrival is not counted lost
REPAIR_MARGIN_NS = 2_000_000
"""Asked again this long after the slowest of the last 16 repairs would have come: 1.5 x
that (as before) put the second round past a 30 ms hold at 3 % loss."""


def _p95(samples: deque[int]) -> int:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class NackTracker:
    """The receiver's view of which packets are missing and when to ask for them."""

    def __init__(self, reorder_ms: float = 2.0, rounds: int = 3, give_up_ms: float = 100.0,
                 enabled: bool = True, tail_ms: float = 6.0) -> None:
        if reorder_ms < 0 or rounds < 0 or give_up_ms <= 0 or tail_ms < 0:
            raise ValueError(f"NACK tracker: reorder_ms {reorder_ms}, rounds {rounds}, "
                             f"give_up_ms {give_up_ms}, tail_ms {tail_ms}; expected >= 0, "
                             ">= 0, > 0 and >= 0")
        self.enabled = enabled
        self.reorder_ns = int(reorder_ms * 1e6)
        self.tail_ns = int(tail_ms * 1e6)
        self.rounds = rounds
        self.give_up_ns = int(give_up_ms * 1e6)
        self.received = self.lost = self.reordered = self.recovered = self.spurious = 0
        self.nacks_sent = self.packets_asked = 0
        self.fec_recovered = 0  # rebuilt from parity (rtp/fec.py) before or after noticed
        self.late = 0  # given up, then arrived on their own (a stalled path, not loss)
        self._given_up: OrderedDict[int, bool] = OrderedDict()
        self._highest: int | None = None  # extended
        self._span_end: int | None = None  # extended: last packet known to exist
        self._missing: dict[int, _Missing] = {}
        self._last_arrival_ns = 0
        self._repair_ns: deque[int] = deque(maxlen=16)
        self.repair_ms: deque[float] = deque(maxlen=4096)  # every NACK -> repair time seen
        self.noticed_to_repaired_ms: deque[float] = deque(maxlen=4096)
        self._late_gap: deque[int] = deque(maxlen=128)  # how late reordered packets came
        self._late_tail: deque[int] = deque(maxlen=128)  # pauses within a frame's burst
        self._max_wait_ns = int(MAX_WAIT_MS * 1e6)

    def _measured(self, base_ns: int, samples: deque[int]) -> int:
        if len(samples) < 8:
            return base_ns
        return max(base_ns, min(self._max_wait_ns, _p95(samples) + 500_000))

    @property
    def reorder_wait_ns(self) -> int:
        """The reorder tolerance in use: ``reorder_ms``, or longer when the reordering seen
        (95th percentile of how late packets came on their own, + 0.5 ms) needs it."""
        return self._measured(self.reorder_ns, self._late_gap)

    @property
    def tail_wait_ns(self) -> int:
        """The quiet time in use before a frame's tail is asked for (``tail_ms`` or the
        measured pauses within bursts, as ``reorder_wait_ns``)."""
        return self._measured(self.tail_ns, self._late_tail)

    @property
    def repair_wait_ns(self) -> int:
        """How long to wait for a repair before asking again."""
        return max(self._repair_ns) + REPAIR_MARGIN_NS if self._repair_ns else 20_000_000

    @property
    def highest(self) -> int:
        """The highest extended sequence number seen (0 before the first)."""
        return self._highest or 0

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        base = self._highest
        return base + ((seq - base + 0x8000) & 0xFFFF) - 0x8000

    def on_packet(self, seq: int, now_ns: int, *, retransmitted: bool = False,
                  span: tuple[int, int] | None = None, fec: bool = False) -> None:
        """A media packet arrived (``retransmitted``: restored from RTX; ``fec``: rebuilt
        from parity, lost by the network all the same). ``span`` is the frame's (first
        seq, packet count) when the packet carries it."""
        ext = self._extend(seq)
        if self._highest is None:
            self._highest = ext - 1
        if fec:
            if ext in self._missing or ext > self._highest:
                self.fec_recovered += 1
            elif ext <= self._highest:
                return  # rebuilt after it came some other way
            self._missing.pop(ext, None)
        elif not retransmitted:
            self._last_arrival_ns = now_ns
            self.received += 1
        entry = None if fec else self._missing.pop(ext, None)
        if entry is not None:
            if retransmitted:
                self.recovered += 1
                if entry.last_ask_ns:
                    self._repair_ns.append(now_ns - entry.last_ask_ns)
                    self.repair_ms.append((now_ns - entry.last_ask_ns) / 1e6)
                self.noticed_to_repaired_ms.append((now_ns - entry.noticed_ns) / 1e6)
            else:
                self.reordered += 1
                self.spurious += entry.asked > 0
                if entry.quiet_from_ns:
                    self._late_tail.append(now_ns - entry.quiet_from_ns)
                else:
                    self._late_gap.append(now_ns - entry.noticed_ns)
        elif not fec and (retransmitted or ext <= self._highest):
            if not retransmitted and self._given_up.pop(ext, False):
                self.lost -= 1  # it came after all, only later than give_up_ms: not lost
                self.late += 1
            return  # a duplicate, or a repair of something already given up
        if ext > self._highest:
            wait_ns = self.reorder_wait_ns  # once: a percentile per gap made a jump cost ~60 ms
            for gap in range(max(self._highest + 1, ext - 3000), ext):
                if gap not in self._missing:
                    self._missing[gap] = _Missing(now_ns, now_ns + wait_ns)
            self._highest = ext
            self._bound_missing()
        if span is not None:
            first, count = span
            end = self._extend((first + count - 1) & 0xFFFF)
            if 0 <= end - ext < 3000:
                self._span_end = max(self._span_end or end, end)

    def _bound_missing(self) -> None:
        """Give up the oldest gaps beyond MAX_MISSING: sequence numbers jumping ahead
        (a hostile or broken sender) would otherwise add 3000 each until ``due`` runs."""
        excess = len(self._missing) - MAX_MISSING
        if excess > 0:  # in one pass: popping the first key again and again is quadratic
            for ext in list(itertools.islice(self._missing, excess)):
                del self._missing[ext]
            self.lost += excess

    def due(self, now_ns: int) -> list[int]:
        """The 16-bit sequence numbers to ask for now (each counted as asked)."""
        self._tail(now_ns)
        seqs = []
        repair_wait_ns = self.repair_wait_ns  # once, not per packet asked for
        for ext, m in list(self._missing.items()):
            if now_ns - m.noticed_ns >= self.give_up_ns or (
                    m.asked >= self.rounds and now_ns >= m.next_ask_ns):
                del self._missing[ext]
                self.lost += 1
                self._given_up[ext] = True
                if len(self._given_up) > MAX_GIVEN_UP:
                    self._given_up.popitem(last=False)
            elif self.enabled and m.asked < self.rounds and now_ns >= m.next_ask_ns:
                m.asked += 1
                m.last_ask_ns = now_ns
                m.next_ask_ns = now_ns + repair_wait_ns
                seqs.append(ext & 0xFFFF)
        if seqs:
            self.nacks_sent += 1
            self.packets_asked += len(seqs)
        return seqs

    def _tail(self, now_ns: int) -> None:
        """Packets the frame-packets extension announced that the burst did not bring."""
        if self._span_end is None or self._highest is None or self._span_end <= self._highest:
            return
        if now_ns - self._last_arrival_ns < self.tail_wait_ns:
            return
        for ext in range(self._highest + 1, self._span_end + 1):
            self._missing.setdefault(ext, _Missing(now_ns, now_ns,
                                                   quiet_from_ns=self._last_arrival_ns or 1))
        self._highest = self._span_end
        self._bound_missing()

    def next_due_ns(self) -> int | None:
        """When ``due`` may next have work (None: nothing missing or expected)."""
        times = [m.next_ask_ns for m in self._missing.values()]
        if self._span_end is not None and self._highest is not None and \
                self._span_end > self._highest:
            times.append(self._last_arrival_ns + self.tail_wait_ns)
        return min(times) if times else None

    @property
    def expected(self) -> int:
        """Packets the stream should have brought so far (the missing ones included)."""
        return self.received + self.recovered + self.fec_recovered + self.lost + \
            len(self._missing)

    @property
    def network_lost(self) -> int:
        """Packets the network lost, repaired or not (reordered ones are not lost)."""
        return self.recovered + self.fec_recovered + self.lost

"""The bridge's bounded history of sent RTP packets, and its resend policy (no rclpy).

Each NACKed sequence number gets at most one resend per request, and only when

- it is in the history (``keep_ms`` of packets, at least 100 ms): else it is counted as
  ``unknown`` (ahead of the newest packet sent: never sent) or ``expired`` (older);
- its frame is not past the deadline (``deadline_ns`` after the frame was sent; the
  caller passes one frame period past due by default): ``too_late``;
- it was not resent within ``min_interval_ms`` (a repeated NACK that crossed the
  repair in flight): ``repeated``;
- the resend budget allows (a token bucket of ``max_resend_per_s`` packets with a
  burst of a tenth of that): ``rate_limited``. A flood of NACKs cannot make the
  bridge send more than that.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class ResendCounters:
    """What became of the sequence numbers NACKs asked for."""

    nacks: int = 0
    asked: int = 0
    resent: int = 0
    unknown: int = 0
    expired: int = 0
    too_late: int = 0
    repeated: int = 0
    rate_limited: int = 0

    @property
    def refused(self) -> int:
        """Requests counted and dropped."""
        return self.unknown + self.expired + self.too_late + self.repeated + self.rate_limited


class PacketHistory:
    """Sent packets by 16-bit sequence number, for ``keep_ms``."""

    def __init__(self, keep_ms: float = 200.0, min_interval_ms: float = 5.0,
                 max_resend_per_s: float = 2000.0) -> None:
        if keep_ms < 100:
            raise ValueError(f"parameter 'nack_history_ms': got {keep_ms}, expected >= 100")
        if max_resend_per_s <= 0:
            raise ValueError(f"parameter 'nack_max_resend_per_s': got {max_resend_per_s}, "
                             "expected > 0")
        self.keep_ns = int(keep_ms * 1e6)
        self.min_interval_ns = int(min_interval_ms * 1e6)
        self.counters = ResendCounters()
        self._packets: OrderedDict[int, list] = OrderedDict()  # seq -> [packet, sent, resent]
        self._newest: int | None = None
        self._rate = max_resend_per_s / 1e9
        self._burst = max(1.0, max_resend_per_s / 10)
        self._tokens = self._burst
        self._stamp = 0

    def __len__(self) -> int:
        return len(self._packets)

    def add(self, seq: int, packet: bytes, sent_ns: int) -> None:
        """A packet left at ``sent_ns`` (its frame's send time)."""
        self._packets[seq & 0xFFFF] = [packet, sent_ns, 0]
        self._packets.move_to_end(seq & 0xFFFF)
        self._newest = seq & 0xFFFF
        while self._packets:
            oldest = next(iter(self._packets.values()))
            if sent_ns - oldest[1] <= self.keep_ns:
                break
            self._packets.popitem(last=False)

    def request(self, seqs: list[int], now_ns: int, deadline_ns: int) -> list[bytes]:
        """The packets to resend for one NACK (see the module text for what is refused)."""
        c = self.counters
        c.nacks += 1
        c.asked += len(seqs)
        self._tokens = min(self._burst, self._tokens + (now_ns - self._stamp) * self._rate)
        self._stamp = now_ns
        out = []
        for seq in seqs:
            entry = self._packets.get(seq & 0xFFFF)
            if entry is None:
                ahead = self._newest is None or 0 < (seq - self._newest) & 0xFFFF < 0x8000
                if ahead:
                    c.unknown += 1
                else:
                    c.expired += 1
            elif now_ns - entry[1] > deadline_ns:
                c.too_late += 1
            elif entry[2] and now_ns - entry[2] < self.min_interval_ns:
                c.repeated += 1
            elif self._tokens < 1:
                c.rate_limited += 1
            else:
                self._tokens -= 1
                entry[2] = now_ns
                c.resent += 1
                out.append(entry[0])
        return out

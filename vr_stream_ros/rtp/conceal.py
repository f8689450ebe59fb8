"""Lose a stripe, not a frame: rebuild an incomplete RTP/JPEG frame with restart markers.

A JPEG with a restart interval (DRI) is a sequence of independently entropy-coded
intervals, each (but the last) ending in an RST0..RST7 marker (ITU T.81 F.1.2.3, the
DC predictors start afresh). Our packetizer cuts packets at interval boundaries and
names the first interval of each (RFC 2435 3.1.7 restart count, F/L bits), so every
interval that arrived whole is known by its index. A missing interval is filled with
the same interval of the previous frame shown: its bytes decode in that place (same
index, same RST marker), giving the previous frame's pixels there: concealment at the
bitstream level, no pixel work. ``stale`` is the fraction of the frame so filled.
"""

from __future__ import annotations

import re

RST = re.compile(rb"\xff[\xd0-\xd7]")
NOT_ALIGNED = 0x3FFF  # RFC 2435: restart count when packets are not cut at intervals


def split_intervals(scan: bytes | memoryview) -> list[bytes]:
    """A scan cut after each RST marker: interval 0, 1, ... (the last has no marker)."""
    data = bytes(scan)
    out, start = [], 0
    for m in RST.finditer(data):
        out.append(data[start:m.end()])
        start = m.end()
    out.append(data[start:])
    return out


def interval_count(jpeg_type: int, width: int, height: int, restart_interval: int) -> int:
    """Restart intervals in a frame: MCUs (16x16 for 4:2:0, 16x8 for 4:2:2) / interval."""
    mcu_h = 16 if jpeg_type & 1 else 8
    mcus = -(-width // 16) * -(-height // mcu_h)
    return -(-mcus // restart_interval)


class StripeConcealer:
    """Remembers the last frame's intervals and patches the next incomplete frame."""

    def __init__(self) -> None:
        self._previous: list[bytes] | None = None
        self._key: tuple | None = None
        self.frames_concealed = 0
        self.intervals_concealed = 0

    def previous_tables(self, jpeg_type: int, width: int, height: int,
                        restart_interval: int) -> bytes | None:
        """The previous frame's quantisation tables if it had this format (a frame whose
        first packet, the one with the tables, was lost is patched with them)."""
        key = self._key
        if key is None or (key[0], key[1], key[2], key[4]) != (jpeg_type, width, height,
                                                                restart_interval):
            return None
        return key[3]

    def remember(self, key: tuple, scan: bytes | memoryview) -> None:
        """A frame decoded whole (``key``: type, size, tables, interval must match)."""
        self._key = key
        self._previous = split_intervals(scan)

    def conceal(self, key: tuple, n_intervals: int,
                runs: list[tuple[int, bytes, bool, int, bool]]) -> tuple[bytes, float] | None:
        """(scan, stale fraction) of an incomplete frame, or None if it cannot be patched.

        ``runs`` are the contiguous stretches of scan that arrived: (offset, bytes,
        starts an interval (F), restart count of its first packet, reaches the frame's
        end). Intervals that arrived whole are kept; the others come from the previous
        frame, which must have the same ``key``.
        """
        if self._previous is None or key != self._key or len(self._previous) != n_intervals:
            return None
        got: dict[int, bytes] = {}
        for _offset, data, starts, count, at_end in runs:
            if count == NOT_ALIGNED:
                return None
            pieces = [p for p in split_intervals(data) if p]
            index = count
            if not starts:  # continues an interval whose start was lost: skip its rest
                pieces, index = pieces[1:], count + 1
            for i, piece in enumerate(pieces):
                whole = RST.fullmatch(piece[-2:]) is not None or \
                    (at_end and i == len(pieces) - 1)
                if whole and index < n_intervals:
                    got[index] = piece
                index += 1
        missing = [i for i in range(n_intervals) if i not in got]
        if len(missing) == n_intervals:
            return None
        scan = [got.get(i, self._previous[i]) for i in range(n_intervals)]
        self._previous = scan
        self.frames_concealed += 1
        self.intervals_concealed += len(missing)
        return b"".join(scan), len(missing) / n_intervals

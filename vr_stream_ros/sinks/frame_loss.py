"""Frames the headset never decoded, from its per-frame reports (no rclpy).

The headset reports (RTCP APP 'VRFS') every frame it decoded. A frame the bridge sent
in full is counted lost once the headset has reported a later frame but not this one.
Frames sent before the first reported frame are not judged (their reports may predate
the clock estimate), nor are frames across a camera restart (seq starts at 0 again).
A frame reported after a later one (reordering) would count as lost; RTP/JPEG over one
path does not reorder whole frames.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

MEMORY = 1024
"""Sent frames remembered while their report is awaited (~17 s at 60 fps)."""


class FrameLossCounter:
    """Counts sent frames whose decode was never reported although later ones were."""

    def __init__(self, memory: int = MEMORY) -> None:
        self.lost = 0
        self._pending: deque[int] = deque(maxlen=memory)  # sent, not yet judged, in order
        self._reported: set[int] = set()
        self._started = False

    def frame_sent(self, seq: int) -> None:
        """The bridge sent frame ``seq`` whole."""
        if self._pending and seq <= self._pending[-1]:  # camera restart: start over
            self._pending.clear()
            self._reported.clear()
            self._started = False
        self._pending.append(seq)

    def frames_reported(self, seqs: Iterable[int]) -> None:
        """The headset decoded these frames."""
        if not self._pending:
            return
        first, last = self._pending[0], self._pending[-1]
        seqs = [s for s in seqs if first <= s <= last]  # else judged already, or stale
        if not seqs:
            return
        self._reported.update(seqs)
        newest = max(seqs)
        if not self._started:
            self._started = True
            while self._pending and self._pending[0] < min(seqs):
                self._pending.popleft()  # before the first report: not judged
        while self._pending and self._pending[0] <= newest:
            seq = self._pending.popleft()
            if seq in self._reported:
                self._reported.discard(seq)
            else:
                self.lost += 1

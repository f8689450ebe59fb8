"""The newest-frame loop every ring consumer runs: never queue, count what was missed.

    newest = NewestFrames(reader)
    while running:
        view = newest.take(timeout=0.25)   # waits on the doorbell; None: nothing new
        if view is None:
            continue
        ... use view.array ...
        if not newest.intact(view):        # the writer lapped us meanwhile: discard
            continue

``skipped`` counts the frames that were published while the consumer was busy (it only
ever takes the newest), ``torn`` the frames it took but lost to the writer before it
was done with them. A camera restart starts its seq at 0 again; that is not a skip.
"""

from __future__ import annotations

from vr_stream_ros.ring.frame_ring import FrameRingReader, FrameView


class NewestFrames:
    """Hands out the newest committed frame of a ring, once each, with skip/torn counts."""

    def __init__(self, reader: FrameRingReader) -> None:
        self.reader = reader
        self.last_seq = reader.latest_seq()
        """The seq of the frame taken last (or the newest at start: it is not taken)."""
        self.skipped = 0
        self.torn = 0
        self.last_skipped = 0
        """How many frames the last ``take`` jumped over."""

    def take(self, timeout: float) -> FrameView | None:
        """The newest frame after the last one taken, waiting up to ``timeout`` s.

        None when nothing newer came in time, or when the newest frame was overwritten
        between the doorbell and the read (counted in ``torn``).
        """
        seq = self.reader.wait_newer(self.last_seq, timeout)
        if seq is None:
            return None
        last = self.last_seq
        # seq <= last: the camera restarted and counts from 0 again (not a skip).
        self.last_skipped = seq - last - 1 if 0 <= last < seq else 0
        self.skipped += self.last_skipped
        self.last_seq = seq
        view = self.reader.read(seq)
        if view is None:
            self.torn += 1
        return view

    def intact(self, view: FrameView) -> bool:
        """True if ``view`` was not overwritten while it was used; else counts it torn."""
        if self.reader.is_intact(view):
            return True
        self.torn += 1
        return False

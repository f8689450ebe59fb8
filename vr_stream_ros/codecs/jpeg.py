"""JPEG encoding with libjpeg-turbo, through simplejpeg or, with restart markers, OpenCV.

``restart_interval`` > 0 puts a restart marker (RST, JPEG ITU T.81 B.2.4.4) every that
many MCUs: the entropy coder starts afresh after each, so the packetizer can cut the
scan at those points and every RTP packet decodes on its own (RFC 2435 3.1.7), and a
receiver that lost one packet loses a stripe, not the frame. simplejpeg cannot write
them; OpenCV's encoder (the same libjpeg-turbo, standard Huffman tables) can.

``threads`` > 1 (without ``restart_interval``) encodes the frame as that many horizontal
bands at once and splices them into one baseline JPEG with a restart marker between
bands (see :class:`JpegEncoder`): simplejpeg releases the GIL, so two bands of a
1280x1440 frame take about half the time of the whole on two free CPUs.
"""

from __future__ import annotations

import concurrent.futures
import struct

import numpy as np
import simplejpeg

_COLORSPACE = {"rgb8": "RGB", "bgr8": "BGR", "mono8": "GRAY"}
MAX_RESTART_INTERVAL = 65535
MAX_THREADS = 4
_RST = tuple(bytes((0xFF, 0xD0 + m)) for m in range(8))
_EOI = b"\xff\xd9"


def _band_layout(jpeg: bytes) -> tuple[int, int]:
    """(offset of SOF0's height field, offset of the first scan byte) of a libjpeg JPEG."""
    pos, height_at, n = 2, -1, len(jpeg)
    while pos + 4 <= n:
        marker = jpeg[pos + 1]
        length = (jpeg[pos + 2] << 8) | jpeg[pos + 3]
        if marker == 0xC0:
            height_at = pos + 5  # FF C0, length (2), precision (1), then the height
        elif marker == 0xDA:
            if height_at < 0:
                break
            return height_at, pos + 2 + length
        pos += 2 + length
    raise ValueError("simplejpeg wrote a JPEG without SOF0 before its scan")


class JpegEncoder:
    """Encodes ring frames to baseline JPEG with standard Huffman tables (RTP/JPEG-safe).

    ``threads`` > 1 with ``restart_interval`` 0: the frame is cut at MCU-row boundaries
    into ``threads`` bands of equal height (the last may be shorter); the calling thread
    encodes the first, a pool of ``threads`` - 1 threads the others, each with simplejpeg
    (which releases the GIL). The bands are spliced into one JPEG: the first band's
    headers with the full height, a DRI with one band's MCU count as restart interval,
    and each band's entropy-coded data with RST0..RST7 (cyclic) between them. That is
    exactly what a restart interval is: each band's DC predictions start from 0 and its
    last byte is padded with 1 bits. Every band is encoded with the same quality,
    subsampling and libjpeg's standard Huffman tables, so the tables agree (checked per
    frame: the bands' headers must equal the first's but for the height). The result
    goes out as RTP/JPEG type 64/65, one interval per band, fragmented with F/L.

    The single encode is used instead when the frame's height is not a whole number of
    MCU rows (16 px for 4:2:0, 8 for 4:2:2 and grayscale), when it has fewer MCU rows
    than ``threads``, and always with ``restart_interval`` > 0 (OpenCV's path). The pool
    starts with the first banded frame, so its threads inherit that thread's CPU
    affinity and scheduling policy; call :meth:`close` to end them.
    """

    def __init__(self, quality: int = 80, subsampling: str = "420",
                 pixel_format: str = "rgb8", restart_interval: int = 0,
                 threads: int = 1) -> None:
        if not 1 <= quality <= 100:
            raise ValueError(f"parameter 'jpeg_quality': got {quality}, expected 1..100")
        if subsampling not in ("420", "422"):
            raise ValueError(f"parameter 'chroma_subsampling': got {subsampling!r}, "
                             "expected '420' or '422' (RTP/JPEG types 1 and 0)")
        if pixel_format not in _COLORSPACE:
            raise ValueError(f"pixel format {pixel_format!r} not one of {', '.join(_COLORSPACE)}")
        if not 0 <= restart_interval <= MAX_RESTART_INTERVAL:
            raise ValueError(f"parameter 'jpeg_restart_interval': got {restart_interval}, "
                             f"expected 0 (none) .. {MAX_RESTART_INTERVAL} MCUs")
        if not 1 <= threads <= MAX_THREADS:
            raise ValueError(f"parameter 'jpeg_threads': got {threads}, "
                             f"expected 1..{MAX_THREADS}")
        self.quality = quality
        self.subsampling = subsampling
        self.restart_interval = restart_interval
        self.threads = threads
        self._colorspace = _COLORSPACE[pixel_format]
        gray = self._colorspace == "GRAY"
        self._mcu = (8 if gray or subsampling == "422" else 16, 8 if gray else 16)  # h, w
        self._plans: dict[tuple[int, int], tuple[list[tuple[int, int]], int] | None] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._cv2_params: list[int] = []
        if restart_interval:
            import cv2  # only this path needs OpenCV

            self._cv2 = cv2
            self._cv2_params = [
                cv2.IMWRITE_JPEG_QUALITY, quality,
                cv2.IMWRITE_JPEG_RST_INTERVAL, restart_interval,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420 if subsampling == "420" else
                cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]

    def set_quality(self, quality: int) -> None:
        """Change the quality from the next frame on (RTP/JPEG sends the tables in-band)."""
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality: got {quality}, expected 1..100")
        self.quality = quality
        if self._cv2_params:
            self._cv2_params[1] = quality

    def bands(self, height: int, width: int) -> tuple[list[tuple[int, int]], int] | None:
        """(row ranges of the bands, MCUs per band = the restart interval) of a frame of
        this size, or None when it is encoded whole."""
        key = (height, width)
        if key not in self._plans:
            self._plans[key] = self._plan(height, width)
        return self._plans[key]

    def _plan(self, height: int, width: int) -> tuple[list[tuple[int, int]], int] | None:
        if self.threads == 1 or self.restart_interval:
            return None
        mcu_h, mcu_w = self._mcu
        mcu_rows = height // mcu_h
        if height % mcu_h or mcu_rows < self.threads:
            return None
        rows_per_band = -(-mcu_rows // self.threads)
        band_h = rows_per_band * mcu_h
        interval = rows_per_band * -(-width // mcu_w)
        ranges = [(top, min(height, top + band_h)) for top in range(0, height, band_h)]
        if len(ranges) < 2 or interval > MAX_RESTART_INTERVAL:
            return None
        return ranges, interval

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one frame (read straight from the ring view; no copy without restarts)."""
        if not self.restart_interval:
            plan = self.bands(frame.shape[0], frame.shape[1]) if self.threads > 1 else None
            if plan is None:
                return simplejpeg.encode_jpeg(frame, self.quality, self._colorspace,
                                              self.subsampling)
            return self._encode_bands(frame, *plan)
        cv2 = self._cv2
        if self._colorspace == "RGB":
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", frame, self._cv2_params)
        if not ok:
            raise ValueError(f"OpenCV could not encode a {frame.shape} frame as JPEG")
        return buf.tobytes()

    def _encode_bands(self, frame: np.ndarray, ranges: list[tuple[int, int]],
                      interval: int) -> bytes:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self.threads - 1, thread_name_prefix="jpeg_band")
        args = (self.quality, self._colorspace, self.subsampling)
        futures = [self._pool.submit(simplejpeg.encode_jpeg, frame[top:bottom], *args)
                   for top, bottom in ranges[1:]]
        try:
            first = simplejpeg.encode_jpeg(frame[ranges[0][0]:ranges[0][1]], *args)
        finally:  # the others read the frame too: never return before they are done
            concurrent.futures.wait(futures)
        return splice_bands([first, *(f.result() for f in futures)], frame.shape[0],
                            interval)

    def close(self) -> None:
        """End the band threads (idle between frames); encode() starts them again."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def splice_bands(bands: list[bytes], height: int, interval: int) -> bytes:
    """One baseline JPEG of ``height`` rows from the JPEGs of its horizontal bands.

    Each band must be a whole number of MCU rows (but the last), ``interval`` MCUs
    (the last may have fewer), encoded without restart markers with the same tables and
    sampling: the first band's headers (SOF0 height patched), a DRI of ``interval``,
    then the bands' scans separated by RST0..RST7 in turn, then EOI.
    """
    first = bands[0]
    height_at, scan_at = _band_layout(first)
    sos_at = first.rfind(b"\xff\xda", 0, scan_at)
    head = bytearray(first[:sos_at])
    struct.pack_into("!H", head, height_at, height)
    parts: list[bytes | bytearray | memoryview] = [
        head, b"\xff\xdd\x00\x04", struct.pack("!H", interval), memoryview(first)[sos_at:-2]]
    for m, band in enumerate(bands[1:]):
        # Same quality, sampling and width: identical headers but the height (the last
        # band may be shorter); a mismatch would decode as garbage, so it is refused.
        if band[:height_at] != first[:height_at] or \
                band[height_at + 2:scan_at] != first[height_at + 2:scan_at] or \
                band[-2:] != _EOI:
            raise ValueError(f"JPEG band {m + 1}: headers differ from band 0's (tables or "
                             "sampling): cannot splice")
        parts += (_RST[m % 8], memoryview(band)[scan_at:-2])
    if first[-2:] != _EOI:
        raise ValueError("JPEG band 0 does not end with EOI: cannot splice")
    parts.append(_EOI)
    return b"".join(parts)

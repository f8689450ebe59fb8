"""The RTP playout-delay header extension on aiortc's video senders (no rclpy).

    enable_playout_delay()                        # once: aiortc now accepts the extension
    use_playout_delay(sender, PlayoutDelay(0, 0)) # per sender, before the answer is made

Why: a browser holds decoded frames back (jitter buffer, then render pacing) unless the
sender tells it not to. libwebrtc reads the extension
``http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`` (3 bytes: 12-bit minimum
and 12-bit maximum delay in 10 ms units; webrtc/api/video/video_timing.h and
modules/rtp_rtcp/source/rtp_header_extensions.cc) and its VCMTiming renders "as soon as
decoded" when min == 0 and max == 0, or with Chromium's low-latency renderer when min == 0
and max <= 500 ms. ``jitterBufferTarget``/``playoutDelayHint`` in the page only set the
minimum. Chromium offers the extension in every video m-line; the sender has to keep it
in its answer and stamp it on its packets.

What this patches, and why here: aiortc (1.16) has no API for header extensions beyond
its fixed list. Two of its internals are touched, nothing is copied:

1. ``aiortc.codecs.HEADER_EXTENSIONS["video"]`` gets the URI, so that aiortc's answer
   keeps the browser's ``a=extmap`` line (``find_common_header_extensions`` keeps what
   both sides list, with the offer's id).
2. ``RTCRtpSender``'s private ``__rtp_header_extensions_map`` (a ``rtp.HeaderExtensionsMap``
   that turns ``packet.extensions`` into bytes in ``RtpPacket.serialize``) is replaced
   with a subclass that learns the negotiated id in ``configure`` and appends the
   extension in ``set``: every video packet the sender serializes (retransmissions too)
   carries it.

test/test_playout_delay.py fails at once if either internal changes. aiortc PR #668
("Playout delay support", unmerged) sketches the same idea inside aiortc.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import codecs, rtp
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters

URI = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
OFFER_ID = 6
"""Our id when aiortc offers (unused by 1, 2, 3 in aiortc's list; an answer takes the
browser's id)."""
UNIT_MS = 10
MAX_MS = 0xFFF * UNIT_MS  # 12 bits of 10 ms
_MAP_ATTRIBUTE = "_RTCRtpSender__rtp_header_extensions_map"


@dataclass(frozen=True)
class PlayoutDelay:
    """What the receiver may hold a frame for, in ms (multiples of 10; min <= max)."""

    min_ms: int = 0
    max_ms: int = 0

    def __post_init__(self) -> None:
        for name, value in (("min_ms", self.min_ms), ("max_ms", self.max_ms)):
            if not 0 <= value <= MAX_MS or value % UNIT_MS:
                raise ValueError(f"playout delay {name} {value}: expected a multiple of "
                                 f"{UNIT_MS} in 0..{MAX_MS} ms")
        if self.min_ms > self.max_ms:
            raise ValueError(f"playout delay min {self.min_ms} ms > max {self.max_ms} ms")

    def pack(self) -> bytes:
        """The extension's 3 bytes: 12-bit min, 12-bit max, in 10 ms units."""
        value = (self.min_ms // UNIT_MS) << 12 | self.max_ms // UNIT_MS
        return value.to_bytes(3, "big")

    @classmethod
    def unpack(cls, data: bytes) -> PlayoutDelay:
        """The 3 bytes back (ValueError naming what was wrong)."""
        if len(data) != 3:
            raise ValueError(f"playout-delay extension: expected 3 bytes, got {len(data)}")
        value = int.from_bytes(data, "big")
        return cls((value >> 12) * UNIT_MS, (value & 0xFFF) * UNIT_MS)


class PlayoutDelayExtensionsMap(rtp.HeaderExtensionsMap):
    """aiortc's extension map plus playout-delay, once the remote side negotiated it."""

    def __init__(self, delay: PlayoutDelay) -> None:
        super().__init__()
        self.delay = delay
        self._payload = delay.pack()
        self.extension_id: int | None = None
        """The negotiated id; None until ``configure`` saw the URI (then nothing is added)."""

    def configure(self, parameters: RTCRtpParameters) -> None:
        super().configure(parameters)
        self.extension_id = next((x.id for x in parameters.headerExtensions if x.uri == URI),
                                 None)

    def set(self, values: rtp.HeaderExtensions) -> tuple[int, bytes]:
        profile, packed = super().set(values)
        if self.extension_id is None:
            return profile, packed
        elements = list(rtp.unpack_header_extensions(profile, packed)) if packed else []
        elements.append((self.extension_id, self._payload))
        return rtp.pack_header_extensions(elements)


def enable_playout_delay() -> None:
    """Let aiortc's answers keep the browser's playout-delay extmap (idempotent)."""
    video = codecs.HEADER_EXTENSIONS["video"]
    if not any(x.uri == URI for x in video):
        video.append(RTCRtpHeaderExtensionParameters(id=OFFER_ID, uri=URI))


def use_playout_delay(sender: object, delay: PlayoutDelay) -> PlayoutDelayExtensionsMap:
    """Make ``sender`` (an RTCRtpSender not yet started) stamp ``delay`` on every packet
    once negotiated; returns the map, whose ``extension_id`` tells whether it was."""
    current = getattr(sender, _MAP_ATTRIBUTE, None)
    if not isinstance(current, rtp.HeaderExtensionsMap):
        raise RuntimeError(f"aiortc changed: RTCRtpSender has no {_MAP_ATTRIBUTE} "
                           f"HeaderExtensionsMap (found {type(current).__name__}); "
                           f"vr_stream_ros/webrtc/playout_delay.py needs updating")
    mapping = PlayoutDelayExtensionsMap(delay)
    setattr(sender, _MAP_ATTRIBUTE, mapping)
    return mapping

"""The playout-delay adaptation of aiortc: its wire format, the aiortc internals it leans
on (these tests fail loudly when an aiortc upgrade moves them), and a real aiortc
sender stamping it on every video packet once negotiated."""

from __future__ import annotations

import asyncio
import fractions

import pytest

aiortc = pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection, codecs, rtp  # noqa: E402
from aiortc.mediastreams import MediaStreamTrack  # noqa: E402
from aiortc.rtcrtpparameters import (  # noqa: E402
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtcrtpsender import RTCRtpSender  # noqa: E402

from vr_stream_ros.webrtc import playout_delay as pd  # noqa: E402

TESTED = ("1.16.",)


def test_aiortc_is_a_version_this_adaptation_was_tested_on() -> None:
    assert aiortc.__version__.startswith(TESTED), (
        f"aiortc {aiortc.__version__}: vr_stream_ros/webrtc/playout_delay.py was tested on "
        f"{TESTED}; check the internals it patches, then extend TESTED")


def test_aiortc_internals_the_adaptation_needs_are_there() -> None:
    # 1. the fixed list aiortc answers from, a list of RTCRtpHeaderExtensionParameters
    assert isinstance(codecs.HEADER_EXTENSIONS["video"], list)
    assert all(isinstance(x, RTCRtpHeaderExtensionParameters)
               for x in codecs.HEADER_EXTENSIONS["video"])
    # 2. the sender's private extension map, and the packing helpers it relies on
    async def check() -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender = pc.addTransceiver("video", direction="sendonly").sender
        assert isinstance(sender, RTCRtpSender)
        assert type(getattr(sender, pd._MAP_ATTRIBUTE)) is rtp.HeaderExtensionsMap
        mapping = pd.use_playout_delay(sender, pd.PlayoutDelay(0, 0))
        assert getattr(sender, pd._MAP_ATTRIBUTE) is mapping
        await pc.close()

    asyncio.run(check())
    assert rtp.unpack_header_extensions(*rtp.pack_header_extensions([(5, b"\x00\x00\x0a")])) \
        == [(5, b"\x00\x00\x0a")]


def test_a_sender_without_the_map_is_refused_by_name() -> None:
    with pytest.raises(RuntimeError, match=r"aiortc changed.*playout_delay\.py"):
        pd.use_playout_delay(object(), pd.PlayoutDelay())


@pytest.mark.parametrize("min_ms,max_ms,wire", [
    (0, 0, b"\x00\x00\x00"), (0, 100, b"\x00\x00\x0a"), (100, 500, b"\x00\xa0\x32"),
    (0, pd.MAX_MS, b"\x00\x0f\xff"), (pd.MAX_MS, pd.MAX_MS, b"\xff\xff\xff")])
def test_wire_format_is_12_bit_min_and_max_in_10_ms(min_ms, max_ms, wire) -> None:
    delay = pd.PlayoutDelay(min_ms, max_ms)
    assert delay.pack() == wire
    assert pd.PlayoutDelay.unpack(wire) == delay


@pytest.mark.parametrize("min_ms,max_ms,named", [
    (0, 5, "max_ms 5"), (-10, 0, "min_ms -10"), (0, pd.MAX_MS + 10, "max_ms 40960"),
    (20, 10, "min 20 ms > max 10")])
def test_bad_delays_are_named(min_ms, max_ms, named) -> None:
    with pytest.raises(ValueError, match=named):
        pd.PlayoutDelay(min_ms, max_ms)
    with pytest.raises(ValueError, match="expected 3 bytes, got 2"):
        pd.PlayoutDelay.unpack(b"\x00\x00")


def _negotiated(*uris: str) -> RTCRtpParameters:
    ids = {"urn:ietf:params:rtp-hdrext:sdes:mid": 1, pd.URI: 5,
           "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time": 3}
    return RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=ids[u], uri=u) for u in uris])


def _extensions(data: bytes) -> dict[int, bytes]:
    """The RTP header extensions of one serialized packet, by id."""
    if not data[0] & 0x10:
        return {}
    csrc = (data[0] & 0x0F) * 4
    start = 12 + csrc
    profile = int.from_bytes(data[start:start + 2], "big")
    length = int.from_bytes(data[start + 2:start + 4], "big") * 4
    return dict(rtp.unpack_header_extensions(profile, data[start + 4:start + 4 + length]))


def test_the_map_adds_the_extension_only_when_negotiated() -> None:
    packet = rtp.RtpPacket(payload_type=102, sequence_number=1, timestamp=2)
    packet.payload = b"payload"
    packet.extensions.mid = "0"
    packet.extensions.abs_send_time = 0x123456
    both = pd.PlayoutDelayExtensionsMap(pd.PlayoutDelay(0, 100))
    both.configure(_negotiated("urn:ietf:params:rtp-hdrext:sdes:mid", pd.URI,
                               "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"))
    assert both.extension_id == 5
    data = packet.serialize(both)
    assert data.endswith(b"payload")
    assert _extensions(data) == {1: b"0", 3: b"\x12\x34\x56", 5: b"\x00\x00\x0a"}
    without = pd.PlayoutDelayExtensionsMap(pd.PlayoutDelay(0, 100))
    without.configure(_negotiated("urn:ietf:params:rtp-hdrext:sdes:mid"))
    assert without.extension_id is None
    assert _extensions(packet.serialize(without)) == {1: b"0"}


class _Frames(MediaStreamTrack):
    """Pre-encoded H.264 access units (an IDR slice) as our bridge's track gives them."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self):
        import av
        await asyncio.sleep(0.01)
        self.n += 1
        packet = av.Packet(b"\x00\x00\x00\x01\x65" + bytes(3000))
        packet.pts, packet.time_base = self.n * 3000, fractions.Fraction(1, 90000)
        return packet


async def _two_peers(offer_has_it: bool) -> tuple[list[bytes], str, int | None]:
    """A real aiortc sender answering a real aiortc offer on loopback; the RTP it sends
    (before SRTP), its answer, and the extension id its map learned."""
    from vr_stream_ros.webrtc.server import _allow_loopback_candidates
    _allow_loopback_candidates()
    pd.enable_playout_delay()
    viewer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = viewer.addTransceiver("video", direction="recvonly")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                     if c.mimeType == "video/H264"])  # as the page does
    offer_pc = viewer
    await offer_pc.setLocalDescription(await offer_pc.createOffer())
    sdp = offer_pc.localDescription.sdp
    if not offer_has_it:
        sdp = "".join(line + "\r\n" for line in sdp.splitlines() if pd.URI not in line)
    assert (pd.URI in sdp) is offer_has_it
    bridge = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await bridge.setRemoteDescription(type(offer_pc.localDescription)(sdp=sdp, type="offer"))
    sender = bridge.addTrack(_Frames())
    mapping = pd.use_playout_delay(sender, pd.PlayoutDelay(0, 0))
    await bridge.setLocalDescription(await bridge.createAnswer())
    sent: list[bytes] = []
    transport = sender.transport
    original = transport._send_rtp

    async def record(data: bytes) -> None:
        if not rtp.is_rtcp(data):
            sent.append(data)
        await original(data)

    transport._send_rtp = record
    await viewer.setRemoteDescription(bridge.localDescription)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if len(sent) >= 20:
            break
    answer = bridge.localDescription.sdp
    await bridge.close()
    await viewer.close()
    return sent, answer, mapping.extension_id


def test_a_real_aiortc_sender_stamps_every_video_packet_once_negotiated() -> None:
    sent, answer, ext_id = asyncio.run(_two_peers(offer_has_it=True))
    assert f"a=extmap:{pd.OFFER_ID} {pd.URI}" in answer, answer
    assert ext_id == pd.OFFER_ID
    assert len(sent) >= 20, "the sender sent no video"
    for data in sent:
        assert _extensions(data).get(ext_id) == b"\x00\x00\x00", data[:24].hex()


def test_an_offer_without_it_still_streams_without_it() -> None:
    sent, answer, ext_id = asyncio.run(_two_peers(offer_has_it=False))
    assert pd.URI not in answer and ext_id is None
    assert len(sent) >= 20, "the sender sent no video"
    assert all(pd.OFFER_ID not in _extensions(d) for d in sent)

"""The bridge's H.264 follows the browser: aiortc internals the REMB/PLI adaptation leans on
(fail loudly on an aiortc upgrade), the follower's rules, and real headless Chromium,
its media through the seeded impairment relay (bench/link_webrtc.py's SDP hook), whose
own REMBs reach the encoder; a low REMB lowers its rate and a PLI makes the next frame an
IDR, both through aiortc's real RTCP parsing and routing."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from itertools import pairwise

import numpy as np
import pytest
from conftest import free_port, wait_for

aiortc = pytest.importorskip("aiortc")

from aiortc import rtp  # noqa: E402
from aiortc.rtcrtpsender import RTCRtpSender  # noqa: E402

from vr_stream_ros.bench.link_webrtc import RelayedSdp, loopback_only  # noqa: E402
from vr_stream_ros.codecs.h264 import H264Encoder  # noqa: E402
from vr_stream_ros.graph.processes import ProcessGroup  # noqa: E402
from vr_stream_ros.net.impairment import LinkConditions  # noqa: E402
from vr_stream_ros.ring.frame_ring import FrameView  # noqa: E402
from vr_stream_ros.sinks.stream_stats import StreamStats  # noqa: E402
from vr_stream_ros.sinks.webrtc import WebRtcSink  # noqa: E402
from vr_stream_ros.webrtc import congestion  # noqa: E402
from vr_stream_ros.webrtc.server import WebRtcConfig  # noqa: E402

TESTED = ("1.16.",)


def test_aiortc_is_a_version_this_adaptation_was_tested_on() -> None:
    assert aiortc.__version__.startswith(TESTED), (
        f"aiortc {aiortc.__version__}: vr_stream_ros/webrtc/congestion.py was tested on "
        f"{TESTED}; check the internals it wraps, then extend TESTED")


def test_aiortc_internals_the_adaptation_needs_are_there() -> None:
    congestion.check_aiortc_internals()
    # aiortc still hands REMBs to its own encoder only (what the wrapper makes up for)
    import inspect
    source = inspect.getsource(RTCRtpSender._handle_rtcp_packet)
    assert "unpack_remb_fci" in source and "target_bitrate" in source
    bitrate, ssrcs = rtp.unpack_remb_fci(rtp.pack_remb_fci(1_234_000, [7]))
    assert ssrcs == [7] and abs(bitrate - 1_234_000) / 1_234_000 < 0.01


def test_a_changed_aiortc_is_named(monkeypatch) -> None:
    monkeypatch.delattr(rtp, "unpack_remb_fci")
    with pytest.raises(RuntimeError, match=r"rtp\.unpack_remb_fci.*congestion\.py"):
        congestion.check_aiortc_internals()


def test_follower_drops_at_once_clamps_and_climbs_back_in_steps() -> None:
    f = congestion.RembFollower(1e6, 8e6)
    assert f.update(8.5e6, 0.0) is None  # clamped to max: already there
    assert f.update(3e6, 0.1) == 3_000_000  # down at once
    assert f.update(2.8e6, 0.15) is None  # within MIN_CHANGE: the encoder is not reopened
    assert f.update(0.2e6, 0.2) == 1_000_000  # clamped to min
    # No congestion (the estimate is not below 0.9 x what was sent), but just after a drop.
    assert f.update(8e6, 1.5, sent_bps=1e6) is None
    assert f.update(8e6, 2.3, sent_bps=1e6) == 1_250_000  # up 25 %, not a jump
    assert f.update(8e6, 2.8, sent_bps=1.2e6) is None  # within MIN_INTERVAL_S
    assert f.update(8e6, 3.4, sent_bps=1.2e6) == 1_562_500
    assert f.lowest_bps == 1e6 and f.changes == 4


def test_follower_climbs_even_when_the_estimate_only_tracks_what_it_sends() -> None:
    """GCC caps its estimate at 1.5 x what arrives; an easy scene sends under the target:
    the estimate then sits below the target without congestion, and the rate climbs."""
    f = congestion.RembFollower(1e6, 8e6)
    for i, remb in enumerate((0.50e6, 0.51e6, 0.52e6)):  # Chromium's start-up estimate,
        assert f.update(remb, 0.2 * i, sent_bps=1.4e6) is None  # rising: not congestion
    assert f.target_bps == 8e6 and f.app_limited == 3
    assert f.update(0.51e6, 0.6, sent_bps=0.5e6) is None  # falling, not below what is sent
    assert f.update(0.5e6, 0.8, sent_bps=2e6) == 1_000_000  # this is
    t, rates = 3.0, []
    while f.target_bps < 8e6 and t < 30:
        new = f.update(0.9 * f.target_bps, t, sent_bps=0.6 * f.target_bps)
        if new is not None:
            rates.append(new)
        t += 0.2
    assert f.target_bps == 8e6, rates  # back at the cap in ~10 s of 25 % steps
    assert all(b / a <= congestion.STEP_UP * 1.000001 for a, b in pairwise(rates)), rates
    with pytest.raises(ValueError, match="min 9e\\+06 bit/s must be > 0 and <= max"):
        congestion.RembFollower(9e6, 8e6)


def test_encoder_reopens_at_a_new_rate_with_an_idr() -> None:
    enc = H264Encoder(320, 240, 30, 4_000_000, keyframe_interval=600)
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    sizes = []
    for i in range(40):
        if i == 20:
            enc.set_bitrate(300_000)
        packets = enc.encode(np.roll(frame, 5 * i, axis=1), i * 33_333_333)
        sizes.append((sum(p.size for p in packets), any(p.is_keyframe for p in packets)))
    assert [i for i, (_, key) in enumerate(sizes) if key] == [0, 20]
    assert enc.bitrate_bps == 300_000 and enc.reopened == 1
    before = sum(s for s, _ in sizes[5:20]) / 15
    after = sum(s for s, _ in sizes[25:40]) / 15
    assert after < before / 3, (before, after)
    with pytest.raises(ValueError, match=r"H\.264 bitrate 0 bit/s: expected > 0"):
        enc.set_bitrate(0)


@pytest.mark.slow
def test_chromium_remb_and_pli_drive_our_encoder(chromium, tmp_path, monkeypatch) -> None:
    """Through the relay (5 ms, 1 % loss, seeded): Chromium decodes, its own REMBs arrive;
    a low REMB and a PLI fed to aiortc's RTCP parsing lower the rate (encoder, /latency's
    target_rate_mbps) and make the next frame an IDR."""
    import aioice.ice
    monkeypatch.setattr(aioice.ice, "get_host_addresses", loopback_only)
    group = ProcessGroup(tmp_path / "logs")
    relay_json = tmp_path / "relay.json"
    hook = RelayedSdp(group, LinkConditions(delay_ms=5.0, loss=0.01, seed=13), 60.0,
                      str(relay_json))
    port = free_port(socket.SOCK_STREAM)
    logs: list[str] = []
    encoder = H264Encoder(640, 360, 30, 4_000_000, keyframe_interval=600)
    sink = WebRtcSink(encoder, WebRtcConfig(bind="127.0.0.1", port=port, token="t",
                                            tls=False),
                      StreamStats(WebRtcSink.stages), log=logs.append,
                      min_bitrate_bps=500_000, rewrite_sdp=hook)
    stop = threading.Event()
    frames: list[tuple[float, bool]] = []  # (encoded at, keyframe) per frame

    def camera() -> None:
        rng = np.random.default_rng(5)
        base = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
        seq = 0
        while not stop.is_set():
            now = time.monotonic_ns()
            view = FrameView(np.roll(base, 3 * seq, axis=1), seq, 0, now, now)
            keyframes = encoder.keyframes
            sink.send(view, now, lambda v: True)
            frames.append((time.monotonic(), encoder.keyframes > keyframes))
            seq += 1
            time.sleep(1 / 30)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    try:
        chromium.open_viewer(f"http://127.0.0.1:{port}/?token=t")
        assert wait_for(lambda: sink.server.feedback.remb > 0, 15), (
            "no REMB from Chromium", logs)
        assert wait_for(lambda: chromium.stat("framesDecoded") > 0, 10)
        (viewer,) = sink.server._viewers.values()
        (sender,) = viewer.pc.getSenders()

        def route(fmt: int, fci: bytes = b"") -> float:
            """An RTCP packet into the DTLS transport's handler of decrypted RTCP, which
            parses it and routes it to the sender as Chromium's own."""
            packet = rtp.RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc, fci=fci)
            asyncio.run_coroutine_threadsafe(sender.transport._handle_rtcp_data(bytes(packet)),
                                             sink.server._loop).result(5)
            return time.monotonic()

        route(rtp.RTCP_PSFB_APP, rtp.pack_remb_fci(100_000, [sender._ssrc]))
        assert sink.follower.target_bps == 500_000  # clamped to min_bitrate_bps
        assert sink.headset(time.monotonic_ns()).target_rate_mbps == 0.5
        assert wait_for(lambda: encoder.bitrate_bps == 500_000, 5)
        assert any("H.264 bitrate 0.50 Mbit/s" in line for line in logs), logs
        time.sleep(0.3)  # past the reopened encoder's IDR
        plis, reopened = sink.server.feedback.pli, encoder.reopened
        at = route(rtp.RTCP_PSFB_PLI)
        assert sink.server.feedback.pli == plis + 1
        assert wait_for(lambda: sum(1 for t, _ in frames if t > at) >= 3, 5)
        after = [key for t, key in frames if t > at][:2]  # one may have been mid-encode
        if encoder.reopened == reopened:  # a climb's reopen would also give an IDR
            assert any(after), after
        decoded = chromium.stat("framesDecoded")
        assert wait_for(lambda: chromium.stat("framesDecoded") > decoded + 10, 10), (
            "Chromium stopped drawing after the rate change")
    finally:
        stop.set()
        thread.join(5)
        sink.close()
        if hook.relay is not None:
            hook.relay.terminate()
            group.wait(hook.relay, timeout=10)
        group.stop_all()
    relay = json.loads(relay_json.read_text())
    assert relay["forwarded"] > 100 and relay["lost"] > 0, relay  # the media went through it

"""The WebCodecs path's WebSocket: it first tells the frame layout; a viewer that stops
reading gets access units only when its socket has drained; the rest are skipped (counted)
and, when it reads again, its stream restarts at a keyframe, never at a P-frame whose
reference it missed."""

from __future__ import annotations

import itertools
import json
import socket
import time

import pytest

pytest.importorskip("aiortc")
websocket = pytest.importorskip("websocket")  # websocket-client, Selenium's own dependency

from conftest import free_port, wait_for  # noqa: E402

from vr_stream_ros.webrtc.server import WebRtcConfig, WebRtcServer  # noqa: E402

UNIT = 200_000  # bytes per access unit: a few fill a small socket buffer


class _AccessUnit(bytes):
    """An encoded frame as the bridge pushes it: bytes plus ``is_keyframe``."""

    is_keyframe: bool


def _unit(seq: int, key: bool) -> _AccessUnit:
    unit = _AccessUnit(seq.to_bytes(4, "big") + bytes(UNIT))
    unit.is_keyframe = key
    return unit


def test_a_stalled_viewer_skips_to_a_keyframe_and_counts_what_it_skipped() -> None:
    keyframes_asked = []
    port = free_port(socket.SOCK_STREAM)
    server = WebRtcServer(WebRtcConfig(bind="127.0.0.1", port=port, token="t", tls=False),
                          on_keyframe=lambda: keyframes_asked.append(time.monotonic()),
                          log=lambda line: None)
    server.start()
    client = websocket.create_connection(
        f"ws://127.0.0.1:{port}/ws?token=t", timeout=10,
        sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 8192),))
    try:
        # First the layout of the frames to come (the page splits a stereo frame by it).
        assert json.loads(client.recv()) == {"type": "layout", "frame_layout": "mono"}
        assert wait_for(lambda: server.viewers == 1, 5)
        feed = next(iter(server._viewers.values())).track
        # The viewer reads nothing: 60 access units, a keyframe every 20.
        for seq in range(60):
            server.push(_unit(seq, seq % 20 == 0), seq, 0)
            time.sleep(0.01)
        assert wait_for(lambda: feed.skipped > 0, 5), "nothing skipped for a stalled socket"
        stalled_sent = feed.sent
        assert stalled_sent < 60
        # It reads again; the bridge's next keyframe (it was asked for one) restarts it.
        got: list[tuple[int, bool]] = []
        deadline = time.monotonic() + 10
        client.settimeout(0.5)
        seq, answered = 60, 0
        while time.monotonic() < deadline and len(got) < stalled_sent + 5:
            asked = len(keyframes_asked)  # the encoder answers a request with a keyframe
            server.push(_unit(seq, key=asked > answered), seq, 0)
            answered = asked
            seq += 1
            try:
                data = client.recv()
            except websocket.WebSocketTimeoutException:
                continue
            got.append((int.from_bytes(data[1:5], "big"), bool(data[0])))
        assert len(got) >= stalled_sent + 5, got
        seqs = [s for s, _ in got]
        assert got[0] == (0, True), got[:3]
        assert seqs == sorted(seqs), "in order"
        for (prev, _), (cur, key) in itertools.pairwise(got):
            assert cur == prev + 1 or key, f"after {prev} came P-frame {cur}: a gap " \
                f"that is not restarted at a keyframe"
        assert any(b - a > 1 for a, b in itertools.pairwise(seqs)), \
            "the stall skipped nothing"
        print(f"\nstalled WebSocket viewer: {stalled_sent} of the first 60 access units sent, "
              f"{feed.skipped} skipped; restarted at keyframes {[s for s, k in got if k]}")
    finally:
        client.close()
        server.close()

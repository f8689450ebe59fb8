"""WebRTC to a browser (a Meta Quest's included): page, signaling and video (no rclpy).

    server = WebRtcServer(WebRtcConfig(port=8080), on_report=..., on_keyframe=...)
    url = server.start()                      # http://<host>:8080/?token=...
    server.push(packet, seq, capture_ns)      # an H.264 access unit (h264_encoder)
    server.send_json({"type": "detections", ...})

aiohttp serves the viewer page and the signaling (the browser offers, POST /offer);
aiortc sends our own H.264 packets (ultrafast/zerolatency, h264_encoder.py) without
re-encoding, with the playout-delay header extension when the browser offers it
(playout_delay.py: the browser then renders each frame as soon as it is decoded). A page
opened with ``&path=webcodecs`` takes the same access units over a WebSocket (/ws) instead
and decodes them with WebCodecs: no jitter buffer at all, TCP instead of NACKs.
Everything asyncio runs on one thread of its own; ``push`` and ``send_json`` are safe
from any thread and never block. A data channel 'vr' carries the browser's clock pings
and its per-frame reports (reports.py), and detections to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiortc.mediastreams import MediaStreamTrack

from vr_stream_ros.webrtc import congestion, playout_delay
from vr_stream_ros.webrtc.guard import (
    MAX_OFFER_BYTES,
    Guard,
    OfferError,
    RateLimitedLog,
    check_offer,
)
from vr_stream_ros.webrtc.reports import MalformedReport, parse_report

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
VIEWER_QUEUE = 8  # access units a slow viewer may hold before it is reset to a keyframe
MAX_NEGOTIATIONS = 2  # offers answered at once; more get 503 (bounded work under a flood)
CONNECT_DEADLINE_S = 15.0  # an answered viewer not connected by then is dropped (its slot freed)


@dataclass(frozen=True)
class WebRtcConfig:
    """What the bridge's webrtc_* parameters say."""

    bind: str = "0.0.0.0"
    port: int = 8080
    token: str = ""
    """'' = a new random token each start."""
    max_viewers: int = 2
    quad: str = "world"
    """Initial VR quad mode on the page: world (fixed in the room) or head (follows)."""
    tls: bool = True
    """HTTPS: WebXR (Enter VR) exists only in secure contexts, and http://<LAN address>
    is not one. With no cert_file, a self-signed certificate is made once and kept."""
    cert_file: str = ""
    key_file: str = ""
    max_playout_delay_ms: int = 0
    """Playout-delay extension's maximum (min is 0): 0 = render each frame as soon as it
    is decoded; -1 = leave the extension out (the browser paces frames itself)."""
    frame_layout: str = "mono"
    """How the frames hold the eyes (camera.layout); the /offer answer tells the page."""


@dataclass
class _Viewer:
    pc: object | None
    """The RTCPeerConnection; None for a WebSocket viewer."""
    track: object
    """Where its access units go: a _PacketTrack (WebRTC) or a _SocketFeed."""
    started: float = field(default_factory=time.monotonic)
    channel: object | None = None
    """Its text channel: the data channel 'vr', or the _SocketFeed."""
    remb_bps: int = 0
    """Its browser's latest bandwidth estimate (REMB); 0 = none yet."""


def _allow_loopback_candidates() -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; a viewer on this host (and the
    tests) needs it. Harmless on a LAN: the browser pairs the addresses it can reach."""
    import aioice.ice
    original = aioice.ice.get_host_addresses
    if getattr(original, "_vr_loopback", False):
        return

    def with_loopback(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    with_loopback._vr_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = with_loopback


CERT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "vr_stream_ros", "webrtc-tls")


def self_signed_certificate(host: str, directory: str = CERT_DIR) -> tuple[str, str]:
    """A certificate for ``host`` (and localhost), made once and reused: the headset's
    browser then asks to trust it once, not at every start."""
    cert_path = os.path.join(directory, f"{host}.crt")
    key_path = os.path.join(directory, f"{host}.key")
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"vr_stream_ros {host}")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    with contextlib.suppress(ValueError):
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(key, hashes.SHA256()))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(key_path + ".tmp", "wb") as f:
        os.chmod(key_path + ".tmp", 0o600)
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path + ".tmp", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(key_path + ".tmp", key_path)
    os.replace(cert_path + ".tmp", cert_path)
    return cert_path, key_path


def page_host(bind: str) -> str:
    """The address to print in the URL: the bind address, or this host's LAN address."""
    if bind not in ("0.0.0.0", ""):
        return bind
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent; picks the LAN route
        return s.getsockname()[0]
    return "127.0.0.1"


class WebRtcServer:
    """The viewer page, its signaling, and one H.264 track fanned out to every viewer."""

    def __init__(self, config: WebRtcConfig, *,
                 on_report: Callable[[int, int, dict[str, int]], None] | None = None,
                 on_keyframe: Callable[[], None] | None = None,
                 on_remb: Callable[[int], None] | None = None,
                 rewrite_sdp: Callable[[str, str], str] | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.token = config.token or secrets.token_urlsafe(16)
        self._on_report = on_report or (lambda frame, capture_ns, stages: None)
        self._delay = (playout_delay.PlayoutDelay(0, config.max_playout_delay_ms)
                       if config.max_playout_delay_ms >= 0 else None)
        self._on_keyframe = on_keyframe or (lambda: None)
        self._on_remb = on_remb or (lambda bps: None)
        self._rewrite_sdp = rewrite_sdp or (lambda kind, sdp: sdp)
        """("offer" | "answer", sdp) -> sdp: the bench's hook to put a relay between the
        browser and aiortc (bench/link_webrtc.py); the identity otherwise."""
        self.feedback = congestion.FeedbackCounters()
        """PLI, FIR and REMB from every viewer (webrtc/congestion.py)."""
        self._log = log
        self._viewers: dict[int, _Viewer] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None
        self.refused = {"token": 0, "full": 0, "origin": 0, "blocked": 0, "too_large": 0,
                        "malformed": 0, "busy": 0, "not_connected": 0}
        self.reports_malformed = 0
        self.guard = Guard(self.token)
        self._log_refusal = RateLimitedLog(log)
        self._negotiating = 0
        self._timers: set[asyncio.Future] = set()
        self.connect_deadline_s = CONNECT_DEADLINE_S

    # -- life cycle (any thread) ---------------------------------------------------------
    def start(self, timeout: float = 10.0) -> str:
        """Listen; returns the URL (with the token) to open on the headset."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # bind failure: reported to start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="webrtc", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("WebRTC server did not start in time")
        if errors:
            if isinstance(errors[0], ValueError):
                raise OSError(str(errors[0]))
            raise OSError(f"parameter 'webrtc_port': cannot listen on {self.config.bind}:"
                          f"{self.config.port}: {errors[0]}")
        return self.url

    @property
    def url(self) -> str:
        """Where a browser opens the viewer."""
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{page_host(self.config.bind)}:{self.config.port}/?token={self.token}"

    @property
    def viewers(self) -> int:
        """Viewers connected now."""
        return len(self._viewers)

    def push(self, packet, seq: int, capture_ns: int) -> None:
        """One encoded frame to every viewer (returns at once)."""
        if self._loop is not None and self._viewers:
            self._loop.call_soon_threadsafe(self._fan_out, packet)

    def send_json(self, message: dict) -> None:
        """A message to every viewer's data channel (returns at once)."""
        if self._loop is not None and self._viewers:
            text = json.dumps(message, separators=(",", ":"))
            self._loop.call_soon_threadsafe(self._broadcast, text)

    def close(self) -> None:
        """Close every connection and stop listening."""
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._loop = None

    # -- on the asyncio thread -----------------------------------------------------------
    async def _serve(self) -> None:
        from aiohttp import web
        _allow_loopback_candidates()
        if self._delay is not None:
            playout_delay.enable_playout_delay()
        app = web.Application(client_max_size=MAX_OFFER_BYTES)
        app.router.add_get("/", self._page)
        app.router.add_post("/offer", self._offer)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", WEB_DIR, show_index=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        ssl_context = None
        if self.config.tls:
            import ssl
            cert, key = self.config.cert_file, self.config.key_file
            if not cert:
                cert, key = self_signed_certificate(page_host(self.config.bind))
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ssl_context.load_cert_chain(cert, key)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"parameter 'webrtc_cert': {cert} with key {key}: not a "
                                 f"usable PEM certificate and key ({exc})") from None
        site = web.TCPSite(self._runner, self.config.bind, self.config.port,
                           ssl_context=ssl_context)
        await site.start()

    async def _admit(self, request):
        """None for a request with the token from an allowed origin; else the refusal
        (counted in ``refused``, logged at a limited rate, delayed for a guessing client)."""
        verdict = self.guard.check(request.remote, request.query.get("token", ""),
                                    request.headers.get("Origin"), request.host,
                                    "https" if self.config.tls else "http")
        if verdict is None:
            return None
        return await self._refuse(request, verdict.status, verdict.kind, verdict.message,
                                  verdict.delay_s)

    async def _refuse(self, request, status: int, kind: str, message: str,
                      delay_s: float = 0.0):
        from aiohttp import web
        self.refused[kind] += 1
        self._log_refusal(kind, f"{request.method} {request.path} from {request.remote}: "
                          f"{status} {message}")
        if delay_s:
            await asyncio.sleep(delay_s)
        return web.json_response({"error": f"{status}: {message}"}, status=status)

    async def _page(self, request):
        from aiohttp import web
        refused = await self._admit(request)
        if refused is not None:
            return refused
        with open(os.path.join(WEB_DIR, "index.html")) as f:
            html = f.read().replace("{{QUAD}}", self.config.quad)
        return web.Response(text=html, content_type="text/html",
                            headers={"Cache-Control": "no-store"})

    async def _offer(self, request):
        from aiortc import RTCSessionDescription
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        body = await self._offer_body(request)
        if not isinstance(body, dict):
            return body
        if self._negotiating >= MAX_NEGOTIATIONS:
            return await self._refuse(request, 503, "busy", f"{self._negotiating} offers "
                                      "being answered already; try again")
        self._negotiating += 1
        try:
            return await self._answer(request, RTCSessionDescription(**body))
        finally:
            self._negotiating -= 1

    async def _offer_body(self, request):
        """The checked offer {sdp, type}, or the 413/400 response refusing it (read no
        more than MAX_OFFER_BYTES)."""
        from aiohttp import web
        if (request.content_length or 0) > MAX_OFFER_BYTES:
            return await self._refuse(request, 413, "too_large", f"offer of "
                                      f"{request.content_length} bytes, expected at most "
                                      f"{MAX_OFFER_BYTES}")
        try:
            return check_offer(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return await self._refuse(request, 413, "too_large", "offer body over "
                                      f"{MAX_OFFER_BYTES} bytes")
        except OfferError as exc:
            return await self._refuse(request, 400, "malformed", str(exc))

    async def _answer(self, request, offer):
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: LAN only
        viewer_id = self._next_id
        self._next_id += 1
        track = _PacketTrack()
        viewer = _Viewer(pc, track)
        self._viewers[viewer_id] = viewer

        @pc.on("datachannel")
        def on_datachannel(channel) -> None:
            viewer.channel = channel
            channel.on("message", lambda message: self._on_message(channel, message))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed", "disconnected"):
                await self._drop(viewer_id)

        try:
            offer = RTCSessionDescription(self._rewrite_sdp("offer", offer.sdp), offer.type)
            await pc.setRemoteDescription(offer)
            sender = pc.addTrack(track)
            # A viewer's picture loss (PLI/FIR) asks our encoder, not aiortc's, for a
            # keyframe: aiortc only packs the access units we give it.
            sender._send_keyframe = self._request_keyframe
            congestion.watch_feedback(sender, self.feedback,
                                      lambda bps: self._remb(viewer, bps))
            if self._delay is not None:
                playout_delay.use_playout_delay(sender, self._delay)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # a browser offer aiortc cannot answer
            await self._drop(viewer_id)
            return await self._refuse(request, 400, "malformed",
                                      f"cannot answer this offer: {str(exc)[:120]}")
        self._request_keyframe()
        timer = asyncio.ensure_future(self._expire_unconnected(viewer_id, request.remote))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)
        delay = "not negotiated"
        if self._delay is not None and playout_delay.URI in pc.localDescription.sdp:
            delay = f"min {self._delay.min_ms} max {self._delay.max_ms} ms"
        self._log(f"viewer {viewer_id} connected from {request.remote} "
                  f"({len(self._viewers)}/{self.config.max_viewers}); playout delay {delay}")
        return web.json_response({"sdp": self._rewrite_sdp("answer", pc.localDescription.sdp),
                                  "type": pc.localDescription.type,
                                  "frame_layout": self.config.frame_layout})

    async def _refusal(self, request):
        """The error response for a request refused by ``_admit`` or beyond max_viewers."""
        refused = await self._admit(request)
        if refused is None and len(self._viewers) >= self.config.max_viewers:
            refused = await self._refuse(request, 503, "full", f"{len(self._viewers)} "
                                         f"viewers already (max_viewers "
                                         f"{self.config.max_viewers})")
        return refused

    async def _expire_unconnected(self, viewer_id: int, remote: str | None) -> None:
        """Free the slot of an answered viewer that never connects (an offer posted and
        abandoned would otherwise hold one of max_viewers for good)."""
        await asyncio.sleep(self.connect_deadline_s)
        viewer = self._viewers.get(viewer_id)
        if viewer is not None and viewer.pc is not None and \
                viewer.pc.connectionState != "connected":
            self.refused["not_connected"] += 1
            self._log_refusal("not_connected", f"viewer {viewer_id} from {remote} not "
                              f"connected {self.connect_deadline_s:.0f} s after its answer")
            await self._drop(viewer_id)

    async def _websocket(self, request):
        """A WebCodecs viewer: access units out (binary), reports and pings in (text)."""
        from aiohttp import WSMsgType, web
        refused = await self._refusal(request)
        if refused is not None:
            return refused
        # compress=False: H.264 does not deflate, and deflating 60 access units a second
        # costs both ends CPU for nothing.
        ws = web.WebSocketResponse(max_msg_size=1 << 20, heartbeat=10.0, compress=False)
        await ws.prepare(request)
        feed = _SocketFeed(ws, request.transport)
        feed.send(json.dumps({"type": "layout", "frame_layout": self.config.frame_layout}))
        viewer_id = self._next_id
        self._next_id += 1
        self._viewers[viewer_id] = _Viewer(None, feed, channel=feed)
        self._request_keyframe()
        self._log(f"viewer {viewer_id} connected from {request.remote} "
                  f"({len(self._viewers)}/{self.config.max_viewers}); WebSocket + WebCodecs")
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    self._on_message(feed, message.data)
        finally:
            await self._drop(viewer_id)
            self._log(f"WebSocket viewer {viewer_id}: {feed.sent} access units sent, "
                      f"{feed.skipped} skipped while its socket was not drained")
        return ws

    def _request_keyframe(self) -> None:
        for v in self._viewers.values():
            v.track.waiting_for_keyframe = True
        self._on_keyframe()

    def _remb(self, viewer: _Viewer, bps: int) -> None:
        """A viewer's new estimate: the encoder serves them all, so the lowest counts."""
        viewer.remb_bps = bps
        self._on_remb(min((v.remb_bps for v in self._viewers.values() if v.remb_bps),
                          default=bps))

    def _fan_out(self, packet) -> None:
        for v in list(self._viewers.values()):
            if v.track.offer(packet):
                continue
            # A viewer fell behind (its queue is full): restart it at the next keyframe
            # rather than let its delay grow. The others are not held up.
            v.track.reset()
            self._on_keyframe()

    def _broadcast(self, text: str) -> None:
        for v in self._viewers.values():
            if v.channel is not None and v.channel.readyState == "open":
                v.channel.send(text)

    def _on_message(self, channel, message) -> None:
        """A page message: a clock ping (answered) or a frame report; anything else is
        counted in ``reports_malformed`` and dropped."""
        try:
            report = parse_report(message)
        except MalformedReport as exc:
            self.reports_malformed += 1
            if self.reports_malformed <= 3 or self.reports_malformed % 1000 == 0:
                self._log(f"data channel: {exc} ({self.reports_malformed} malformed so far, "
                          f"dropped)")
            return
        if report.kind == "ping":
            channel.send(json.dumps({"type": "pong", "id": report.ping_id, "t": report.ping_t,
                                     "server_ns": str(time.monotonic_ns())}))
        else:
            self._on_report(report.frame, report.capture_ns, report.stages)

    async def _drop(self, viewer_id: int) -> None:
        viewer = self._viewers.pop(viewer_id, None)
        if viewer is not None:
            viewer.track.stop()
            if viewer.pc is not None:
                await viewer.pc.close()
            else:
                await viewer.track.ws.close()
            self._log(f"viewer {viewer_id} left ({len(self._viewers)} connected)")

    async def _shutdown(self) -> None:
        for timer in list(self._timers):
            timer.cancel()
        for viewer_id in list(self._viewers):
            await self._drop(viewer_id)
        if self._runner is not None:
            await self._runner.cleanup()


class _PacketTrack(MediaStreamTrack):
    """A video track of pre-encoded H.264 access units, in order, from a keyframe on."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=VIEWER_QUEUE)
        self.waiting_for_keyframe = True

    def offer(self, packet) -> bool:
        """Queue an access unit; False when the queue is full."""
        if self.waiting_for_keyframe:
            if not packet.is_keyframe:
                return True  # P-frames before the first keyframe cannot be decoded
            self.waiting_for_keyframe = False
        try:
            self._queue.put_nowait(packet)
        except asyncio.QueueFull:
            return False
        return True

    def reset(self) -> None:
        """Drop what is queued and wait for the next keyframe."""
        while not self._queue.empty():
            self._queue.get_nowait()
        self.waiting_for_keyframe = True

    async def recv(self):
        return await self._queue.get()


class _SocketFeed:
    """A WebSocket viewer: access units as binary messages (1 byte: 1 = keyframe, then the
    Annex B bytes) from a keyframe on, and its text channel (``send``, ``readyState``).

    Backpressure: an access unit is written only when the socket has drained everything
    written before (nothing in the transport's buffer, no send pending); otherwise it is
    skipped (counted in ``skipped``) and the viewer restarts at the next keyframe, the
    newest picture, instead of queueing ever older ones behind a slow link."""

    def __init__(self, ws, transport=None) -> None:
        self.ws = ws
        self.waiting_for_keyframe = True
        self.sent = 0
        self.skipped = 0
        self._transport = transport
        self._in_flight = 0
        self._started = False

    @property
    def readyState(self) -> str:  # noqa: N802 - the data channel's name, used alike
        return "closed" if self.ws.closed else "open"

    def send(self, text: str) -> None:
        """A text message (pong, detections), without waiting."""
        self._track(asyncio.ensure_future(self.ws.send_str(text)))

    def drained(self) -> bool:
        """True when everything written so far has left for the kernel."""
        buffered = self._transport.get_write_buffer_size() if self._transport else 0
        return self._in_flight == 0 and buffered == 0

    def offer(self, packet) -> bool:
        """Send an access unit; False (skipped) while the socket is not drained."""
        if self.waiting_for_keyframe:
            if not packet.is_keyframe:
                self.skipped += self._started  # P-frames before the first keyframe: no loss
                return True
            if not self.drained():
                self.skipped += 1
                return False  # still not drained: wait for (and ask for) the next one
            self.waiting_for_keyframe = False
            self._started = True
        if not self.drained():
            self.skipped += 1
            return False  # the server resets us to the next keyframe and asks for one
        self._in_flight += 1
        self.sent += 1
        self._track(asyncio.ensure_future(
            self.ws.send_bytes(bytes([int(packet.is_keyframe)]) + bytes(packet))),
            counted=True)
        return True

    def _track(self, future: asyncio.Future, counted: bool = False) -> None:
        def done(f: asyncio.Future) -> None:
            if counted:
                self._in_flight -= 1
            if not f.cancelled():
                f.exception()  # a closed socket: the viewer is dropped on its own

        future.add_done_callback(done)

    def reset(self) -> None:
        """Wait for the next keyframe (what is in flight is already sent)."""
        self.waiting_for_keyframe = True

    def stop(self) -> None:
        """Nothing to release: closing the socket ends the viewer."""

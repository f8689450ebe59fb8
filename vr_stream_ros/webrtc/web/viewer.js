// The viewer: WebRTC from headset_bridge_node, the frame stamps read from the pixels,
// capture-to-displayed latency reported back, detections drawn. No build step, no CDN.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const video = document.getElementById("video");
const statusEl = document.getElementById("status");
const statsEl = document.getElementById("stats");
const boxes = document.getElementById("boxes");
const probe = document.createElement("canvas");
const probeCtx = probe.getContext("2d", { willReadFrequently: true });

// Read by the tests (and handy in the console): everything the page measured.
const vr = window.vrStats = {
  connected: false, framesRead: [], unreadable: 0, latenciesMs: [], offsetNs: null,
  bestRttMs: Infinity, detections: null, error: "",
};
let channel = null, pc = null;

function serverNs(perfMs) {  // this page's clock (performance.now) -> the bridge's
  return BigInt(Math.round(perfMs * 1e6)) + vr.offsetNs;
}

function onMessage(event) {
  const m = JSON.parse(event.data);
  if (m.type === "pong") {
    const now = performance.now(), rtt = now - m.t;
    if (rtt < vr.bestRttMs) {  // NTP-style: keep the exchange with the shortest round trip
      vr.bestRttMs = rtt;
      vr.offsetNs = BigInt(m.server_ns) - BigInt(Math.round(((m.t + now) / 2) * 1e6));
    }
  } else if (m.type === "detections") {
    vr.detections = m;
  }
}

function ping(id) {
  if (channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ type: "ping", id, t: performance.now() }));
  }
}

function onVideoFrame(now, meta) {
  const w = video.videoWidth, h = video.videoHeight;
  if (w >= 128) {
    const { cols, rows } = stampRegion(w);
    probe.width = cols * STAMP_CELL;
    probe.height = rows * STAMP_CELL;
    probeCtx.drawImage(video, 0, 0, probe.width, probe.height, 0, 0, probe.width, probe.height);
    const stamp = readStamp(probeCtx.getImageData(0, 0, probe.width, probe.height), cols, rows);
    if (!stamp) {
      vr.unreadable++;
    } else if (vr.framesRead.at(-1) !== stamp.frame) {
      vr.framesRead.push(stamp.frame);
      if (vr.offsetNs !== null) {
        const shown = serverNs(meta.expectedDisplayTime || now);
        vr.latenciesMs.push(Number(shown - stamp.captureNs) / 1e6);
        if (channel && channel.readyState === "open") {
          channel.send(JSON.stringify({ type: "frame", frame: stamp.frame,
            capture_ns: stamp.captureNs.toString(), displayed_ns: shown.toString() }));
        }
      }
    }
  }
  drawBoxes();
  video.requestVideoFrameCallback(onVideoFrame);
}

function drawBoxes() {
  const ctx = boxes.getContext("2d");
  boxes.width = video.clientWidth;
  boxes.height = video.clientHeight;
  ctx.clearRect(0, 0, boxes.width, boxes.height);
  const d = vr.detections;
  if (!d || !video.videoWidth) return;
  const sx = boxes.width / video.videoWidth, sy = boxes.height / video.videoHeight;
  ctx.strokeStyle = "#0f0";
  ctx.fillStyle = "#0f0";
  ctx.font = "14px sans-serif";
  for (const [cx, cy, bw, bh, name, score] of d.boxes) {
    ctx.strokeRect((cx - bw / 2) * sx, (cy - bh / 2) * sy, bw * sx, bh * sy);
    ctx.fillText(`${name} ${score.toFixed(2)}`, (cx - bw / 2) * sx + 2, (cy - bh / 2) * sy - 3);
  }
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function showStats() {
  if (!pc) return;
  let decoded = 0, fps = 0, jitterMs = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      decoded = r.framesDecoded || 0;
      fps = r.framesPerSecond || 0;
      jitterMs = r.jitterBufferDelay && r.jitterBufferEmittedCount
        ? (1000 * r.jitterBufferDelay) / r.jitterBufferEmittedCount : 0;
    }
  });
  vr.framesDecoded = decoded;
  const recent = vr.latenciesMs.slice(-120);
  const d = vr.detections;
  statsEl.textContent = [
    `${fps.toFixed(1)} fps, ${decoded} frames decoded, ${video.videoWidth}x${video.videoHeight}`,
    `capture -> displayed  p50 ${percentile(recent, 50).toFixed(1)}  p95 ` +
      `${percentile(recent, 95).toFixed(1)} ms (last ${recent.length} frames)`,
    `jitter buffer ${jitterMs.toFixed(1)} ms, clock sync rtt ${vr.bestRttMs.toFixed(2)} ms`,
    `frame stamps read ${vr.framesRead.length}, unreadable ${vr.unreadable}`,
    d ? `detections of frame ${d.frame} (lag ${d.sent_with - d.frame}): ${d.boxes.length}`
      : "detections: none (start with yolo:=true)",
  ].join("\n");
}

async function connect() {
  pc = window.vrPeer = new RTCPeerConnection({ iceServers: [] });  // LAN only: no STUN/TURN
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  const h264 = RTCRtpReceiver.getCapabilities("video").codecs
    .filter((c) => c.mimeType === "video/H264");
  if (h264.length) transceiver.setCodecPreferences(h264);
  // Latency first: ask the jitter buffer for its minimum.
  if ("jitterBufferTarget" in transceiver.receiver) transceiver.receiver.jitterBufferTarget = 0;
  transceiver.receiver.playoutDelayHint = 0;
  channel = pc.createDataChannel("vr");
  channel.onmessage = onMessage;
  channel.onopen = () => {
    for (let i = 0; i < 8; i++) setTimeout(() => ping(i), i * 100);
    setInterval(() => ping(-1), 2000);
  };
  pc.ontrack = (event) => { video.srcObject = new MediaStream([event.track]); };
  pc.onconnectionstatechange = () => {
    statusEl.textContent = pc.connectionState;
    vr.connected = pc.connectionState === "connected";
  };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  const reply = await fetch(`/offer?token=${encodeURIComponent(token)}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  const answer = await reply.json();
  if (!reply.ok) throw new Error(`${reply.status}: ${answer.error}`);
  await pc.setRemoteDescription(answer);
}

video.requestVideoFrameCallback(onVideoFrame);
setInterval(showStats, 500);
connect().catch((err) => {
  vr.error = String(err);
  statusEl.textContent = `not connected: ${err}`;
});
setUpVr(video, document.body.dataset.quad);

// The viewer: WebRTC from headset_bridge_node; each decoded frame drawn the moment it
// arrives (MediaStreamTrackProcessor; requestVideoFrameCallback on a <video> where that is
// missing, or with ?path=video): onto the page's canvas by a worker (frames.js, off this
// thread, where OffscreenCanvas is), or in VR into the XR quad's texture; the frame stamps
// read from its pixels; capture -> decoded / drawn / XR-submitted reported to the bridge;
// detections drawn over it. A stereo stream (the /offer answer's frame_layout) shows the
// packed frame here and each eye its own half in VR. No build step, no CDN.
"use strict";
const query = new URLSearchParams(location.search);
const token = query.get("token") || "";
const video = document.getElementById("video");
const view = document.getElementById("view");
const statusEl = document.getElementById("status");
const pathEl = document.getElementById("path");
const statsEl = document.getElementById("stats");
const boxes = document.getElementById("boxes");
let viewCtx = null;  // made on first use: a canvas handed to the worker has none here
const LAYOUTS = ["mono", "side_by_side", "top_bottom"];
const xrCanvas = document.getElementById("xr-canvas");
const gl = xrCanvas.getContext("webgl2", { xrCompatible: true, antialias: false })
  || xrCanvas.getContext("webgl", { xrCompatible: true, antialias: false });
const quad = makeQuadRenderer(gl);
const KEEP = 4000;  // samples kept per stage for the page's own percentiles

// Read by the tests (and handy in the console): everything the page measured.
const vr = window.vrStats = {
  connected: false, framesRead: [], unreadable: 0, offsetNs: null, bestRttMs: Infinity,
  decodedMs: [], drawnMs: [], xrMs: [], latenciesMs: [], workMs: [], overtaken: 0,
  detections: null, error: "", layout: "mono",
  worker: null,  // the frame worker's counts: {decoded, drawn, overtaken, unreadable}
  main: { taken: 0, drawn: 0, overtaken: 0 },  // frames this thread took, drew, closed
  // unshown; vr.overtaken: this thread's and the worker's together
  path: "", playoutDelay: "", newestDecoded: null, framesDecoded: 0,
  xr: { available: null, active: false, frames: 0, bothEyes: 0, waiting: 0, views: 0,
    probes: [] },
  xrProbe: false,
};
let channel = null, pc = null;
let frameSize = [0, 0];  // the packed frame's, as drawn last
let uploads = 0, texture = null;  // the frame drawn last: {seq, stamp, submittedMs, ...}
// ?worker=0 keeps drawing on this thread (to compare); otherwise a worker draws the 2D
// view where the browser can hand it a canvas (and a stream): made by startWorker().
const canUseWorker = query.get("worker") !== "0" && typeof OffscreenCanvas === "function"
  && "transferControlToOffscreen" in view;
let worker = null;

function serverNs(perfMs) {  // this page's clock (performance.now) -> the bridge's
  return BigInt(Math.round(perfMs * 1e6)) + vr.offsetNs;
}

function keep(list, value) {
  list.push(value);
  if (list.length > KEEP) list.shift();
}

function report(stamp, stages) {  // {stage: performance.now() ms} -> the bridge
  if (vr.offsetNs === null || !channel || channel.readyState !== "open") return;
  const ns = {};
  for (const [name, ms] of Object.entries(stages)) ns[name] = serverNs(ms).toString();
  channel.send(JSON.stringify({ type: "frame", frame: stamp.frame,
    capture_ns: stamp.captureNs.toString(), stages: ns }));
}

function latencyMs(stamp, perfMs) {
  return Number(serverNs(perfMs) - stamp.captureNs) / 1e6;
}

// Draw a decoded frame (a VideoFrame or the <video>): on the page's canvas, or in VR into
// the quad's texture (the XR frame loop draws the newest texture at its next frame).
// Returns what the texture now holds: {seq, stamp (filled in by stamped())}; null when
// the 2D view belongs to the worker (a frame that arrives just after leaving VR).
function draw(source, width, height) {
  frameSize = [width, height];
  if (vr.xr.active) {
    quad.upload(source, width, height);
  } else {
    if (worker) return null;
    // desynchronized: the canvas skips the compositor's double buffering where it can.
    viewCtx = viewCtx || view.getContext("2d", { alpha: false, desynchronized: true });
    if (view.width !== width || view.height !== height) {
      view.width = width;
      view.height = height;
    }
    viewCtx.drawImage(source, 0, 0);
  }
  texture = { seq: ++uploads, stamp: null, submittedMs: null, xrReported: false };
  return texture;
}

// The drawn frame's stamp is known: record and report capture -> decoded and -> drawn.
function stamped(drawn, stamp, arrivedMs, drawnMs) {
  if (!stamp) {
    vr.unreadable++;
    return;
  }
  drawn.stamp = stamp;
  vr.newestDecoded = Math.max(vr.newestDecoded ?? 0, stamp.frame);
  if (vr.framesRead.at(-1) === stamp.frame) return;
  keep(vr.framesRead, stamp.frame);
  if (vr.offsetNs === null) return;
  keep(vr.decodedMs, latencyMs(stamp, arrivedMs));
  keep(vr.drawnMs, latencyMs(stamp, drawnMs));
  keep(vr.latenciesMs, latencyMs(stamp, drawnMs));
  report(stamp, { browser_decoded: arrivedMs, browser_drawn: drawnMs });
  onXrSubmitted(drawn);  // if the XR loop drew it before its stamp was read
}

// capture -> first XR frame that showed it, once both the stamp and that frame are known.
function onXrSubmitted(drawn) {
  if (vr.offsetNs === null || !drawn.stamp || drawn.submittedMs === null || drawn.xrReported) {
    return;
  }
  drawn.xrReported = true;
  keep(vr.xrMs, latencyMs(drawn.stamp, drawn.submittedMs));
  report(drawn.stamp, { xr_submitted: drawn.submittedMs });
}

// takeFrame(frame, arrivedMs): a decoded VideoFrame (MediaStreamTrackProcessor or
// WebCodecs), drawn at the next free moment of this thread; one overtaken by a newer one
// before then is closed unshown (counted in vr.overtaken): a busy page never falls behind.
const takeFrame = (() => {
  let pending = null, stamps = Promise.resolve();
  const drawPending = () => {
    const { frame, arrivedMs } = pending;
    pending = null;
    const drawn = draw(frame, frame.displayWidth, frame.displayHeight);
    if (!drawn) {
      frame.close();
      return;
    }
    const drawnMs = performance.now();
    vr.main.drawn++;
    keep(vr.workMs, drawnMs - arrivedMs);
    stamps = stamps.then(() => stampOfFrame(frame, eyeWidth(frame.displayWidth, vr.layout)))
      .then((stamp) => stamped(drawn, stamp, arrivedMs, drawnMs))
      .catch((err) => { vr.error = `stamp: ${err}`; })
      .finally(() => frame.close());  // the decoder gets its buffer back
  };
  return (frame, arrivedMs) => {
    vr.main.taken++;
    if (pending) {
      pending.frame.close();
      vr.main.overtaken++;
      vr.overtaken++;
    } else {
      setTimeout(drawPending, 0);
    }
    pending = { frame, arrivedMs };
  };
})();

// The worker's word: a frame drawn into the 2D view (its stamp read), or one for the XR
// texture (in VR), or an error. Its times are absolute: made this page's here.
function onWorker({ data }) {
  const pageMs = (abs) => abs - performance.timeOrigin;
  if (data.counts) {
    vr.worker = data.counts;
    vr.overtaken = vr.main.overtaken + data.counts.overtaken;
  }
  if (data.type === "drawn") {
    const arrivedMs = pageMs(data.arrived), drawnMs = pageMs(data.drawn);
    keep(vr.workMs, drawnMs - arrivedMs);
    frameSize = [data.width, data.height];
    stamped({ seq: ++uploads, stamp: null, submittedMs: null, xrReported: false },
      data.stamp, arrivedMs, drawnMs);
  } else if (data.type === "frame") {
    takeFrame(data.frame, pageMs(data.arrived));
  } else if (data.type === "error") {
    vr.error = data.error;
  }
}

// A decoded frame from this thread (the WebCodecs decoder): to the worker, or drawn here.
function decodedFrame(frame) {
  if (worker) {
    worker.postMessage({ type: "frame", frame,
      arrived: performance.timeOrigin + performance.now() }, [frame]);
  } else {
    takeFrame(frame, performance.now());
  }
}

// Hand the page's canvas to the worker (once): it draws the 2D view from now on.
function startWorker(readable) {
  worker = new Worker("/static/frames.js");
  const canvas = view.transferControlToOffscreen();
  worker.onmessage = onWorker;
  worker.onerror = (event) => { vr.error = `worker: ${event.message}`; };
  worker.postMessage({ type: "start", canvas, readable, layout: vr.layout },
    readable ? [canvas, readable] : [canvas]);
  vr.onXrActive = (active) => worker.postMessage({ type: "xr", active });
}

// MediaStreamTrackProcessor: every decoded VideoFrame as it comes, no <video>, no pacing.
async function pumpFrames(track) {
  // maxBufferSize: Chromium's processor keeps 1 frame by default and drops the older one
  // when the reader is a moment late; a few queued frames reach the reader, which keeps
  // the newest and counts the rest as overtaken (not lost unseen).
  const processor = new MediaStreamTrackProcessor({ track, maxBufferSize: 4 });
  if (canUseWorker) {  // the whole stream goes to the worker: no 2D frame on this thread
    startWorker(processor.readable);
    return;
  }
  const reader = processor.readable.getReader();
  for (;;) {
    const { value: frame, done } = await reader.read();
    if (done) return;
    takeFrame(frame, performance.now());
  }
}

// No WebRTC at all: the bridge's H.264 access units over a WebSocket (1 byte keyframe
// flag, then Annex B), decoded by WebCodecs as they come: no jitter buffer, no pacing.
function connectSocket() {
  vr.path = document.body.dataset.path = "webcodecs";
  vr.playoutDelay = "not used (WebCodecs: no jitter buffer)";
  pathEl.textContent = "frames: WebSocket -> WebCodecs VideoDecoder (optimizeForLatency)";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  channel = window.vrChannel = {  // what the data channel offers, over the socket
    send: (text) => ws.send(text),
    get readyState() { return ws.readyState === WebSocket.OPEN ? "open" : "closed"; },
  };
  if (canUseWorker) startWorker(null);
  const decoder = new VideoDecoder({
    output: decodedFrame,
    error: (err) => { vr.error = `decoder: ${err}`; },
  });
  decoder.configure({ codec: "avc1.42E028", optimizeForLatency: true });  // Constrained Baseline
  let chunks = 0;
  ws.onmessage = (event) => {
    if (typeof event.data === "string") return onMessage(event);
    const bytes = new Uint8Array(event.data);
    if (decoder.state !== "configured") return;
    decoder.decode(new EncodedVideoChunk({ type: bytes[0] ? "key" : "delta",
      timestamp: ++chunks, data: bytes.subarray(1) }));
    vr.framesDecoded = chunks;
  };
  ws.onopen = () => {
    vr.connected = true;
    statusEl.textContent = `connected, playout delay: ${vr.playoutDelay}`;
    for (let i = 0; i < 8; i++) setTimeout(() => ping(i), i * 100);
    setInterval(() => ping(-1), 2000);
  };
  ws.onclose = (event) => {
    vr.connected = false;
    statusEl.textContent = `not connected (WebSocket closed ${event.code})`;
  };
}

// The fallback: the <video> element's frames, when it presents them.
function onVideoFrame(now, meta) {
  const arrivedMs = performance.now();
  if (video.videoWidth) {
    const drawn = draw(video, video.videoWidth, video.videoHeight);
    const drawnMs = performance.now();
    vr.main.taken++;
    vr.main.drawn++;
    keep(vr.workMs, drawnMs - arrivedMs);
    stamped(drawn, stampOfImage(video, eyeWidth(video.videoWidth, vr.layout)), arrivedMs,
      drawnMs);
  }
  video.requestVideoFrameCallback(onVideoFrame);
}

function drawBoxes() {
  const ctx = boxes.getContext("2d");
  const [width, height] = frameSize;
  const shown = vr.path === "video" ? video : view;
  boxes.width = shown.clientWidth;
  boxes.height = shown.clientHeight;
  ctx.clearRect(0, 0, boxes.width, boxes.height);
  const d = vr.detections;
  if (!d || !width) return;
  const sx = boxes.width / width, sy = boxes.height / height;
  ctx.strokeStyle = "#0f0";
  ctx.fillStyle = "#0f0";
  ctx.font = "14px sans-serif";
  for (const [cx, cy, bw, bh, name, score] of d.boxes) {
    ctx.strokeRect((cx - bw / 2) * sx, (cy - bh / 2) * sy, bw * sx, bh * sy);
    ctx.fillText(`${name} ${score.toFixed(2)}`, (cx - bw / 2) * sx + 2, (cy - bh / 2) * sy - 3);
  }
}

// How the bridge packs the eyes (a stereo camera): from the /offer answer, or the
// WebSocket's first message; mono unless it says otherwise.
function setLayout(layout, where) {
  if (!LAYOUTS.includes(layout)) {
    vr.error = `${where}: frame_layout ${JSON.stringify(layout)}, expected one of ` +
      `${LAYOUTS.join(", ")}; shown as mono`;
    return;
  }
  vr.layout = document.body.dataset.layout = layout;
  if (worker) worker.postMessage({ type: "layout", layout });
}

function onMessage(event) {
  const m = JSON.parse(event.data);
  if (m.type === "layout") {
    setLayout(m.frame_layout, "WebSocket");
  } else if (m.type === "pong") {
    const now = performance.now(), rtt = now - m.t;
    if (rtt < vr.bestRttMs) {  // NTP-style: keep the exchange with the shortest round trip
      vr.bestRttMs = rtt;
      vr.offsetNs = BigInt(m.server_ns) - BigInt(Math.round(((m.t + now) / 2) * 1e6));
    }
  } else if (m.type === "detections") {
    vr.detections = m;
    drawBoxes();
  }
}

function ping(id) {
  if (channel && channel.readyState === "open") {
    channel.send(JSON.stringify({ type: "ping", id, t: performance.now() }));
  }
}

function percentile(values, p) {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function showStats() {
  let fps = 0, jitterMs = 0;
  (pc ? await pc.getStats() : new Map()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") {
      vr.framesDecoded = r.framesDecoded || 0;
      fps = r.framesPerSecond || 0;
      jitterMs = r.jitterBufferDelay && r.jitterBufferEmittedCount
        ? (1000 * r.jitterBufferDelay) / r.jitterBufferEmittedCount : 0;
    }
  });
  const line = (name, list) => {
    const recent = list.slice(-120);
    return `capture -> ${name} p50 ${percentile(recent, 50).toFixed(1)}  p95 ` +
      `${percentile(recent, 95).toFixed(1)} ms`;
  };
  const d = vr.detections;
  const w = vr.worker;
  statsEl.textContent = [
    `${fps.toFixed(1)} fps, ${vr.framesDecoded} frames decoded, ${frameSize[0]}x${frameSize[1]} ` +
      `${vr.layout}`,
    w ? `page: ${w.decoded} frames taken, ${w.drawn} drawn (worker), ${w.overtaken} overtaken`
      : `page: ${vr.overtaken} frames overtaken before drawing`,
    line("decoded", vr.decodedMs), line("drawn", vr.drawnMs),
    vr.xrMs.length ? line("XR frame", vr.xrMs) : "capture -> XR frame: not in VR",
    `jitter buffer ${jitterMs.toFixed(1)} ms, clock sync rtt ${vr.bestRttMs.toFixed(2)} ms`,
    `frame stamps read ${vr.framesRead.length}, unreadable ${vr.unreadable}`,
    d ? `detections of frame ${d.frame} (lag ${d.sent_with - d.frame}): ${d.boxes.length}`
      : "detections: none (start with yolo:=true)",
  ].join("\n");
}

function useTrack(track) {
  const direct = typeof MediaStreamTrackProcessor === "function" && query.get("path") !== "video";
  vr.path = direct ? "direct" : "video";
  document.body.dataset.path = vr.path;
  pathEl.textContent = direct ? "frames: decoded -> WebGL (MediaStreamTrackProcessor)"
    : "frames: <video> element (requestVideoFrameCallback)" +
      (typeof MediaStreamTrackProcessor === "function" ? ""
        : ": this browser has no MediaStreamTrackProcessor");
  if (direct) {
    pumpFrames(track).catch((err) => { vr.error = `frames: ${err}`; });
  } else {
    video.srcObject = new MediaStream([track]);
    video.requestVideoFrameCallback(onVideoFrame);
  }
}

async function connect() {
  pc = window.vrPeer = new RTCPeerConnection({ iceServers: [] });  // LAN only: no STUN/TURN
  const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
  const h264 = RTCRtpReceiver.getCapabilities("video").codecs
    .filter((c) => c.mimeType === "video/H264");
  if (h264.length) transceiver.setCodecPreferences(h264);
  // Latency first: ask the jitter buffer for its minimum (the sender's playout-delay
  // extension, when negotiated, also caps the maximum).
  if ("jitterBufferTarget" in transceiver.receiver) transceiver.receiver.jitterBufferTarget = 0;
  transceiver.receiver.playoutDelayHint = 0;
  channel = window.vrChannel = pc.createDataChannel("vr");
  channel.onmessage = onMessage;
  channel.onopen = () => {
    for (let i = 0; i < 8; i++) setTimeout(() => ping(i), i * 100);
    setInterval(() => ping(-1), 2000);
  };
  pc.ontrack = (event) => useTrack(event.track);
  pc.onconnectionstatechange = () => {
    vr.connected = pc.connectionState === "connected";
    statusEl.textContent = `${pc.connectionState}, playout delay: ${vr.playoutDelay}`;
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
  setLayout(answer.frame_layout ?? "mono", "/offer answer");
  await pc.setRemoteDescription(answer);
  // What the bridge's answer really negotiated (not what it says about itself).
  const extmap = pc.remoteDescription.sdp.split(/\r?\n/)
    .find((l) => l.includes("/rtp-hdrext/playout-delay"));
  vr.playoutDelay = extmap ? `negotiated (${extmap.trim()})` : "not negotiated";
  statusEl.textContent = `${pc.connectionState}, playout delay: ${vr.playoutDelay}`;
}

setInterval(showStats, 500);
if (query.get("path") === "webcodecs" && typeof VideoDecoder === "function") {
  connectSocket();
} else {
  connect().catch((err) => {
    vr.error = String(err);
    statusEl.textContent = `not connected: ${err}`;
  });
}
setUpVr(gl, quad, vr, () => texture, onXrSubmitted);

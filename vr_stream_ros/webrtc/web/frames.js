// The page's frame worker: decoded VideoFrames (MediaStreamTrackProcessor's stream, handed
// over whole, or frames the WebCodecs decoder posts) are taken here, off the page's main
// thread. Only the newest is kept: one a newer frame overtakes before it is drawn is closed
// unshown (counted). Outside VR the newest is drawn into the page's canvas (an
// OffscreenCanvas), its stamp read from its Y plane, and the page told; in VR each frame
// goes to the page at once (its XR loop owns the WebGL texture).
// Times sent to the page are absolute (timeOrigin + now): a worker's clock has its own origin.
"use strict";
importScripts("/static/stamp.js");

const counts = { decoded: 0, drawn: 0, overtaken: 0, unreadable: 0 };
let canvas = null, ctx = null, xr = false, layout = "mono";
let newest = null, scheduled = false, stamps = Promise.resolve();
let last = null;  // the frame drawn last (a clone): the XR texture's first picture
const now = () => performance.timeOrigin + performance.now();

function drawNewest() {
  scheduled = false;
  if (!newest) return;
  const { frame, arrived } = newest;
  newest = null;
  const width = frame.displayWidth, height = frame.displayHeight;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  ctx.drawImage(frame, 0, 0);
  const drawn = now();
  counts.drawn++;
  if (last) last.frame.close();
  last = { frame: frame.clone(), arrived };
  stamps = stamps.then(() => stampOfFrame(frame, eyeWidth(width, layout)))
    .then((stamp) => {
      if (!stamp) counts.unreadable++;
      postMessage({ type: "drawn", stamp, arrived, drawn, width, height, counts });
    })
    .catch((err) => postMessage({ type: "error", error: `stamp: ${err}` }))
    .finally(() => frame.close());
}

function take(frame, arrived) {
  counts.decoded++;
  if (xr) {  // the page's XR loop uploads it: hand it over now, it keeps the newest
    postMessage({ type: "frame", frame, arrived, counts }, [frame]);
    return;
  }
  if (newest) {
    newest.frame.close();
    counts.overtaken++;
  }
  newest = { frame, arrived };
  if (!scheduled) {  // after the frames already queued in the stream are read
    scheduled = true;
    setTimeout(drawNewest, 0);
  }
}

async function pump(readable) {
  const reader = readable.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    take(value, now());
  }
}

onmessage = ({ data }) => {
  if (data.type === "start") {
    canvas = data.canvas;
    ctx = canvas.getContext("2d", { alpha: false });
    layout = data.layout;
    if (data.readable) {
      pump(data.readable).catch((err) => postMessage({ type: "error", error: `frames: ${err}` }));
    }
  } else if (data.type === "frame") {
    take(data.frame, data.arrived);
  } else if (data.type === "xr") {
    xr = data.active;
    if (xr && newest) {  // it goes to the XR texture instead of the 2D view
      postMessage({ type: "frame", frame: newest.frame, arrived: newest.arrived, counts },
        [newest.frame]);
      newest = null;
    } else if (xr && last) {  // the texture starts with the picture shown last
      postMessage({ type: "frame", frame: last.frame.clone(), arrived: last.arrived, counts });
    }
  } else if (data.type === "layout") {
    layout = data.layout;
  }
};

// Reads the frame number and capture time the synthetic camera draws into its pixels
// (vr_stream_ros/camera/pattern.py): 16x16-px black/white cells in the top-left corner
// of each eye's picture, 8 bits magic (which eye), 32 bits frame, 64 bits capture ns
// (CLOCK_MONOTONIC), CRC-32. Shared by the page and its frame worker.
"use strict";
const STAMP_CELL = 16, STAMP_BITS = 8 + 32 + 64 + 32;
const STAMP_EYES = { 0xA5: "mono", 0xA6: "left", 0xA7: "right" };

// Where each eye lies in a packed frame (vr_stream_ros/camera/layout.py), in texture
// coordinates (u right, v down): {u, v, w, h} of the left or right eye; mono: the whole.
function eyeRect(layout, eye) {
  const second = eye === "right" ? 0.5 : 0;
  if (layout === "side_by_side") return { u: second, v: 0, w: 0.5, h: 1 };
  if (layout === "top_bottom") return { u: 0, v: second, w: 1, h: 0.5 };
  return { u: 0, v: 0, w: 1, h: 1 };
}

// eyeWidth(width, layout): the width in pixels of one eye of a packed frame this wide.
function eyeWidth(width, layout) {
  return layout === "side_by_side" ? width / 2 : width;
}
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes) {
  let c = 0xFFFFFFFF;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

// stampRegion(width): the canvas area holding the stamp for a frame this wide.
function stampRegion(width) {
  const cols = Math.floor(width / STAMP_CELL);
  return { cols, rows: Math.ceil(STAMP_BITS / cols) };
}

// decodeStamp(bitAt): bitAt(col, row) -> 0 or 1 for each cell; {frame, captureNs, eye}
// or null.
function decodeStamp(bitAt, cols) {
  const bytes = new Uint8Array(17);
  for (let i = 0; i < STAMP_BITS; i++) {
    bytes[i >> 3] |= bitAt(i % cols, Math.floor(i / cols)) << (7 - (i & 7));
  }
  const eye = STAMP_EYES[bytes[0]];
  if (!eye) return null;
  const view = new DataView(bytes.buffer);
  if (crc32(bytes.subarray(0, 13)) !== view.getUint32(13)) return null;
  return { frame: view.getUint32(1), captureNs: view.getBigUint64(5), eye };
}

// readStamp(pixels, rowBytes, pixelBytes, channel, cols): the stamp of the top rows of an
// image (RGBA from a canvas: 4 bytes a pixel, green = 1; a Y plane: 1 byte, 0), or null.
function readStamp(pixels, rowBytes, pixelBytes, channel, cols) {
  const q = STAMP_CELL / 4;
  return decodeStamp((c, r) => {
    let sum = 0;
    for (let y = r * STAMP_CELL + q; y < (r + 1) * STAMP_CELL - q; y++) {
      for (let x = c * STAMP_CELL + q; x < (c + 1) * STAMP_CELL - q; x++) {
        sum += pixels[y * rowBytes + x * pixelBytes + channel];
      }
    }
    return sum / (STAMP_CELL / 2) ** 2 > 127 ? 1 : 0;
  }, cols);
}

// Bytes per pixel and the channel to read, by VideoFrame format (Y plane or green).
const STAMP_PLANE = { I420: [1, 0], I420A: [1, 0], NV12: [1, 0], RGBA: [4, 1], RGBX: [4, 1],
  BGRA: [4, 1], BGRX: [4, 1] };
let stampProbe = null;

// The stamp in the top-left corner of an image source (a <video>, a VideoFrame), through
// a canvas; ``width`` is the width of the picture the stamp belongs to (one eye's).
function stampOfImage(source, width) {
  if (width < 128) return null;
  const { cols, rows } = stampRegion(width);
  const w = cols * STAMP_CELL, h = rows * STAMP_CELL;
  if (!stampProbe) {
    const c = typeof OffscreenCanvas === "function" ? new OffscreenCanvas(w, h)
      : document.createElement("canvas");
    stampProbe = c.getContext("2d", { willReadFrequently: true });
  }
  const c = stampProbe.canvas;
  if (c.width !== w || c.height !== h) {
    c.width = w;
    c.height = h;
  }
  stampProbe.drawImage(source, 0, 0, w, h, 0, 0, w, h);
  return readStamp(stampProbe.getImageData(0, 0, w, h).data, w * 4, 4, 1, cols);
}

// The stamp in the top-left corner of a VideoFrame (the left eye's in a packed stereo
// frame: ``width`` is that eye's width), copied straight from its memory (no colour
// conversion); through a canvas for formats copyTo cannot give (a GPU-only frame).
async function stampOfFrame(frame, width) {
  const how = STAMP_PLANE[frame.format];
  if (width < 128) return null;
  if (!how) return stampOfImage(frame, width);
  const { cols, rows } = stampRegion(width);
  const rect = { x: 0, y: 0, width: cols * STAMP_CELL, height: rows * STAMP_CELL };
  const bytes = new Uint8Array(frame.allocationSize({ rect }));
  const [plane] = await frame.copyTo(bytes, { rect });
  return readStamp(bytes.subarray(plane.offset), plane.stride, how[0], how[1], cols);
}

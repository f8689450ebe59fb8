// Reads the frame number and capture time the synthetic camera draws into its pixels
// (vr_stream_ros/camera/pattern.py): 16x16-px black/white cells in the top-left corner,
// 8 bits magic 0xA5, 32 bits frame, 64 bits capture ns (CLOCK_MONOTONIC), CRC-32.
"use strict";
const STAMP_CELL = 16, STAMP_BITS = 8 + 32 + 64 + 32;
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

// decodeStamp(bitAt): bitAt(col, row) -> 0 or 1 for each cell; {frame, captureNs} or null.
function decodeStamp(bitAt, cols) {
  const bytes = new Uint8Array(17);
  for (let i = 0; i < STAMP_BITS; i++) {
    bytes[i >> 3] |= bitAt(i % cols, Math.floor(i / cols)) << (7 - (i & 7));
  }
  if (bytes[0] !== 0xA5) return null;
  const view = new DataView(bytes.buffer);
  if (crc32(bytes.subarray(0, 13)) !== view.getUint32(13)) return null;
  return { frame: view.getUint32(1), captureNs: view.getBigUint64(5) };
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

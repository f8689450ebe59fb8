// In WebXR (immersive-vr), the video on a textured quad 2 m in front, with plain WebGL.
// World-locked: the quad stays where you looked when you entered. Head-locked: it follows
// your head. Each decoded frame is uploaded once, when it arrives; the XR frame loop draws
// whatever texture is newest and never waits for a frame. A stereo frame (vr.layout
// side_by_side or top_bottom) gives each eye (XRView.eye) its own half of the texture;
// the "one picture" toggle shows the left eye's half to both.
"use strict";

function mat4Multiply(a, b) {  // column-major, as WebXR gives them
  const out = new Float32Array(16);
  for (let c = 0; c < 4; c++) {
    for (let r = 0; r < 4; r++) {
      let s = 0;
      for (let k = 0; k < 4; k++) s += a[k * 4 + r] * b[c * 4 + k];
      out[c * 4 + r] = s;
    }
  }
  return out;
}

function quadModel(widthM, heightM, distanceM) {  // scale, then move in front (-z)
  return new Float32Array([widthM / 2, 0, 0, 0, 0, heightM / 2, 0, 0, 0, 0, 1, 0,
    0, 0, -distanceM, 1]);
}

// makeQuadRenderer(gl): one texture (the newest frame) and a quad to draw it with.
function makeQuadRenderer(gl) {
  // rect: the part of the texture this eye shows (u, v, width, height; v down).
  const vs = `attribute vec2 p; uniform mat4 mvp; uniform vec4 rect; varying vec2 uv;
    void main() { uv = rect.xy + rect.zw * vec2(p.x * 0.5 + 0.5, 0.5 - p.y * 0.5);
      gl_Position = mvp * vec4(p, 0.0, 1.0); }`;
  const fs = `precision mediump float; uniform sampler2D tex; varying vec2 uv;
    void main() { gl_FragColor = texture2D(tex, uv); }`;
  const prog = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    gl.attachShader(prog, s);
  }
  gl.linkProgram(prog);
  const buf = gl.createBuffer();
  gl.bindBuffer(gl.ARRAY_BUFFER, buf);
  gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE],
    [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, k, v);
  let size = [0, 0];
  return {
    get width() { return size[0]; },
    get height() { return size[1]; },
    upload(source, width, height) {  // a VideoFrame or a <video>
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, gl.RGBA, gl.UNSIGNED_BYTE, source);
      size = [width, height];
    },
    draw(mvp, rect) {
      gl.useProgram(prog);
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      const loc = gl.getAttribLocation(prog, "p");
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
      gl.uniformMatrix4fv(gl.getUniformLocation(prog, "mvp"), false, mvp);
      gl.uniform4f(gl.getUniformLocation(prog, "rect"), rect.u, rect.v, rect.w, rect.h);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    },
  };
}

// Where a texture point (u, v in 0..1, v down) lands in the viewport, GL pixels.
function projectUv(mvp, vp, u, v) {
  const x = u * 2 - 1, y = 1 - v * 2;
  const cx = mvp[0] * x + mvp[4] * y + mvp[12], cy = mvp[1] * x + mvp[5] * y + mvp[13];
  const cw = mvp[3] * x + mvp[7] * y + mvp[15];
  return [vp.x + ((cx / cw) * 0.5 + 0.5) * vp.width, vp.y + ((cy / cw) * 0.5 + 0.5) * vp.height];
}

// The stamp as drawn into an XR view showing ``rect`` of the texture: each cell's centre
// projected and read back.
function readXrStamp(gl, mvp, vp, rect, texWidth, texHeight) {
  const { cols } = stampRegion(texWidth * rect.w);
  const points = [];
  for (let i = 0; i < STAMP_BITS; i++) {
    const c = i % cols, r = Math.floor(i / cols);
    points.push(projectUv(mvp, vp, (((c + 0.5) * STAMP_CELL) / texWidth) / rect.w,
      (((r + 0.5) * STAMP_CELL) / texHeight) / rect.h).map(Math.floor));
  }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), y0 = Math.min(...ys);
  const w = Math.max(...xs) - x0 + 1, h = Math.max(...ys) - y0 + 1;
  const px = new Uint8Array(w * h * 4);
  gl.readPixels(x0, y0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
  return decodeStamp((c, r) => {
    const [x, y] = points[r * cols + c];
    return px[((y - y0) * w + (x - x0)) * 4 + 1] > 127 ? 1 : 0;
  }, cols);
}

// setUpVr(gl, quad, vr, onTexture, onSubmitted): the Enter VR button and the XR frame
// loop. onTexture() is what the texture holds now ({seq, stamp, submittedMs} or null);
// the first XR frame that shows it sets submittedMs and calls onSubmitted(it).
async function setUpVr(gl, quad, vr, onTexture, onSubmitted) {
  const button = document.getElementById("enter-vr");
  const headLocked = document.getElementById("head-locked");
  const onePicture = document.getElementById("one-picture");
  headLocked.checked = document.body.dataset.quad === "head";
  const supported = navigator.xr && await navigator.xr.isSessionSupported("immersive-vr")
    .catch(() => false);
  if (!supported) {
    button.textContent = "VR not available here (open this page in the Quest browser)";
    vr.xr.available = false;
    return;
  }
  vr.xr.available = true;
  button.disabled = false;
  button.onclick = async () => {
    if (window.vrXrSession) {
      window.vrXrSession.end();
      return;
    }
    const session = window.vrXrSession = await navigator.xr.requestSession("immersive-vr");
    await gl.makeXRCompatible();
    session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
    const space = await session.requestReferenceSpace("local");
    vr.xr.active = true;
    if (vr.onXrActive) vr.onXrActive(true);
    button.textContent = "Exit VR";
    document.body.classList.add("in-vr");
    session.addEventListener("end", () => {
      window.vrXrSession = null;
      vr.xr.active = false;
      if (vr.onXrActive) vr.onXrActive(false);
      button.textContent = "Enter VR";
      document.body.classList.remove("in-vr");
    });
    const onFrame = (time, frame) => {
      session.requestAnimationFrame(onFrame);
      const pose = frame.getViewerPose(space);
      if (!pose) return;
      const layer = session.renderState.baseLayer;
      gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
      gl.clearColor(0, 0, 0, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      const shown = onTexture();
      const mono = vr.layout === "mono" || onePicture.checked;
      const leftRect = eyeRect(vr.layout, "left");
      const aspect = quad.width && quad.height
        ? (quad.width * leftRect.w) / (quad.height * leftRect.h) : 16 / 9;
      const model = quadModel(1.6, 1.6 / aspect, 2.0);
      let eyes = 0, probe = null;
      for (const view of pose.views) {
        const vp = layer.getViewport(view);
        const rect = mono ? leftRect : eyeRect(vr.layout, view.eye === "right" ? "right" : "left");
        gl.viewport(vp.x, vp.y, vp.width, vp.height);
        // Head-locked: the quad lives in view space, so the view matrix is left out.
        const placed = headLocked.checked ? model
          : mat4Multiply(view.transform.inverse.matrix, model);
        const mvp = mat4Multiply(view.projectionMatrix, placed);
        if (shown) {
          quad.draw(mvp, rect);
          eyes++;
          if (vr.xrProbe) {  // tests: what each eye really shows, read back
            const stamp = readXrStamp(gl, mvp, vp, rect, quad.width, quad.height);
            probe = probe || { quadAt: projectUv(mvp, vp, 0.5, 0.5), stamp, eyes: [] };
            probe.eyes.push({ view: view.eye, stamp: stamp ? stamp.frame : null,
              stampEye: stamp ? stamp.eye : null,
              captureNs: stamp ? stamp.captureNs.toString() : null });
          }
        }
      }
      const submittedMs = performance.now();
      vr.xr.frames++;
      vr.xr.views = pose.views.length;
      if (eyes === pose.views.length && eyes > 0) vr.xr.bothEyes++;
      if (!shown) vr.xr.waiting++;  // no picture in the texture yet (just entered VR)
      if (probe) {
        vr.xr.probes.push({ stamped: probe.stamp ? probe.stamp.frame : null, eyes: probe.eyes,
          texture: shown.stamp ? shown.stamp.frame : null, newest: vr.newestDecoded, quadAt: probe.quadAt,
          headLocked: headLocked.checked });
        if (vr.xr.probes.length > 600) vr.xr.probes.shift();
      }
      if (shown && shown.submittedMs === null) {
        shown.submittedMs = submittedMs;
        onSubmitted(shown);
      }
    };
    session.requestAnimationFrame(onFrame);
  };
}

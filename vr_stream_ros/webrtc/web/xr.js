// "Enter VR": the video on a quad in WebXR (immersive-vr), with plain WebGL.
// World-locked: the quad stays 2 m in front of where you looked when you entered.
// Head-locked: it follows your head. The video is one side-by-side texture.
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

function makeQuadRenderer(gl) {
  const vs = `attribute vec2 p; uniform mat4 mvp; varying vec2 uv;
    void main() { uv = vec2(p.x * 0.5 + 0.5, 0.5 - p.y * 0.5); gl_Position = mvp * vec4(p, 0.0, 1.0); }`;
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
  return {
    upload(video) {
      gl.bindTexture(gl.TEXTURE_2D, tex);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGB, gl.RGB, gl.UNSIGNED_BYTE, video);
    },
    draw(mvp) {
      gl.useProgram(prog);
      gl.bindBuffer(gl.ARRAY_BUFFER, buf);
      const loc = gl.getAttribLocation(prog, "p");
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 2, gl.FLOAT, false, 0, 0);
      gl.uniformMatrix4fv(gl.getUniformLocation(prog, "mvp"), false, mvp);
      gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    },
  };
}

async function setUpVr(video, quadMode) {
  const button = document.getElementById("enter-vr");
  const headLocked = document.getElementById("head-locked");
  headLocked.checked = quadMode === "head";
  const supported = navigator.xr && await navigator.xr.isSessionSupported("immersive-vr")
    .catch(() => false);
  if (!supported) {
    button.textContent = "VR not available here (open this page in the Quest browser)";
    return;
  }
  button.disabled = false;
  button.onclick = async () => {
    const session = await navigator.xr.requestSession("immersive-vr");
    const canvas = document.getElementById("xr-canvas");
    const gl = canvas.getContext("webgl", { xrCompatible: true });
    await gl.makeXRCompatible();
    session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
    const space = await session.requestReferenceSpace("local");
    const quad = makeQuadRenderer(gl);
    const aspect = () => (video.videoWidth && video.videoHeight
      ? video.videoWidth / video.videoHeight : 16 / 9);
    const onFrame = (time, frame) => {
      session.requestAnimationFrame(onFrame);
      const pose = frame.getViewerPose(space);
      if (!pose) return;
      const layer = session.renderState.baseLayer;
      gl.bindFramebuffer(gl.FRAMEBUFFER, layer.framebuffer);
      gl.clearColor(0, 0, 0, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      if (video.readyState >= 2) quad.upload(video);
      const model = quadModel(1.6, 1.6 / aspect(), 2.0);
      for (const view of pose.views) {
        const vp = layer.getViewport(view);
        gl.viewport(vp.x, vp.y, vp.width, vp.height);
        // Head-locked: the quad lives in view space, so the view matrix is left out.
        const placed = headLocked.checked ? model
          : mat4Multiply(view.transform.inverse.matrix, model);
        quad.draw(mat4Multiply(view.projectionMatrix, placed));
      }
    };
    session.requestAnimationFrame(onFrame);
  };
}

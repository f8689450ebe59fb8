"""Meta's Immersive Web Emulation Runtime (npm ``iwer``) as a script to inject into a page.

Installed at test time with npm into a cache outside the repository (nothing vendored);
npm itself comes from Debian when missing. The script it returns makes the page see an
emulated Meta Quest 3 (stereo) as ``navigator.xr``, with its XR frame loop on a 90 Hz
timer (IWER runs the loop on the page's requestAnimationFrame, which is 60 Hz headless).
"""

from __future__ import annotations

import os
import subprocess

import pytest
from debian_tools import ensure_debian_packages

IWER_VERSION = "2.5.0"
NPM_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "vr_stream_ros", "npm")
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's ca-certificates
XR_HZ = 90.0

_SETUP = """
(() => {
  // 90 Hz, as a Quest 3 runs: IWER asks globalThis.requestAnimationFrame for each frame.
  let next = 0;
  window.requestAnimationFrame = (cb) => {
    const now = performance.now();
    next = Math.max(next + %(period)f, now);
    return setTimeout(() => cb(performance.now()), next - now);
  };
  window.cancelAnimationFrame = (id) => clearTimeout(id);
  const device = new IWER.XRDevice(IWER.metaQuest3, { stereoEnabled: true });
  device.installRuntime({ forceInstall: true });  // over Chromium's own navigator.xr
  window.iwerDevice = device;
})();
"""


def npm_environment() -> dict[str, str]:
    """The environment with the system's CA bundle added to Node's trusted roots.

    Node trusts only its built-in roots, unlike pip and curl: behind a proxy that signs
    with a local CA (SELF_SIGNED_CERT_IN_CHAIN) npm fails where pip succeeds.
    """
    env = dict(os.environ)
    if "NODE_EXTRA_CA_CERTS" not in env:
        bundle = env.get("SSL_CERT_FILE") or SYSTEM_CA_BUNDLE
        if os.path.isfile(bundle):
            env["NODE_EXTRA_CA_CERTS"] = bundle
    return env


def iwer_script(cache: str = NPM_CACHE) -> str:
    """IWER's browser build plus the set-up above; skips (or fails in CI) without npm."""
    build = os.path.join(cache, "node_modules", "iwer", "build", "iwer.min.js")
    if not os.path.exists(build):
        npm = ensure_debian_packages("npm", ["npm"])
        os.makedirs(cache, exist_ok=True)
        result = subprocess.run([npm, "install", "--prefix", cache, "--no-audit", "--no-fund",
                                 f"iwer@{IWER_VERSION}"], capture_output=True, text=True,
                                timeout=600, env=npm_environment())
        if result.returncode != 0 or not os.path.exists(build):
            pytest.fail(f"npm install iwer@{IWER_VERSION} into {cache} failed:\n"
                        f"{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    with open(build) as f:
        return f.read() + _SETUP % {"period": 1000.0 / XR_HZ}

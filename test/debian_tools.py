"""Install Debian packages a test needs (CI runs as root on a fresh machine)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def _present(binary: str, probe: list[str] | None) -> str | None:
    path = shutil.which(binary)
    if path and probe:
        try:
            ok = subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return path if ok else None
    return path


def ensure_debian_packages(binary: str, packages: list[str],
                           probe: list[str] | None = None) -> str:
    """Path of ``binary``, installing ``packages`` with apt-get first if it is missing.

    ``probe``, if given, is a command that must also succeed (say ``gst-inspect-1.0
    rtpjpegdepay`` for a plugin package); when it fails the packages are installed too.
    Skips the calling test (with the reason) when installing is not possible here.
    """
    global _updated
    path = _present(binary, probe)
    if path:
        return path
    what = binary if probe is None else f"{binary} (or `{' '.join(probe)}`)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{what} missing and apt-get unavailable (not root?): install "
                    f"{' '.join(packages)}; runs in CI, which installs them as root")
    print(f"[debian_tools] {what} not found: apt-get install {' '.join(packages)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
        _updated = True
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *packages], capture_output=True, text=True, env=env, timeout=1200)
    path = _present(binary, probe)
    if not path:
        pytest.fail(f"apt-get install {' '.join(packages)} did not provide {what}:\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    print(f"[debian_tools] installed {' '.join(packages)}", flush=True)
    return path

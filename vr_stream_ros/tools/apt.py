"""Debian packages a test or bench needs, installed with apt-get when missing (as root).

    path = ensure_packages("chromedriver", ["chromium", "chromium-driver"])

CI runs as root on a fresh machine and gets what it lacks; elsewhere the error says
which packages to install. No rclpy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

_updated = False


class PackagesMissing(RuntimeError):
    """A command is missing and was not installed; ``tried`` says whether apt-get ran."""

    def __init__(self, message: str, tried: bool) -> None:
        super().__init__(message)
        self.tried = tried


def _present(binary: str, probe: Sequence[str] | None) -> str | None:
    path = shutil.which(binary)
    if path and probe:
        try:
            ok = subprocess.run(list(probe), capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return path if ok else None
    return path


def ensure_packages(binary: str, packages: Sequence[str],
                    probe: Sequence[str] | None = None) -> str:
    """Path of ``binary``, installing ``packages`` with apt-get first if it is missing.

    ``probe``, if given, is a command that must also succeed (say ``gst-inspect-1.0
    rtpjpegdepay`` for a plugin package); when it fails the packages are installed too.
    Raises PackagesMissing (``tried`` False) when installing is not possible here (not
    root, no apt-get), or (``tried`` True) when apt-get did not provide ``binary``.
    """
    global _updated
    path = _present(binary, probe)
    if path:
        return path
    what = binary if probe is None else f"{binary} (or `{' '.join(probe)}`)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PackagesMissing(f"{what} missing and apt-get unavailable (not root?): install "
                              f"{' '.join(packages)} (sudo apt install ...)", tried=False)
    print(f"[apt] {what} not found: apt-get install {' '.join(packages)}", file=sys.stderr,
          flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
        _updated = True
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *packages], capture_output=True, text=True, env=env, timeout=1200)
    path = _present(binary, probe)
    if not path:
        raise PackagesMissing(f"apt-get install {' '.join(packages)} did not provide {what}:\n"
                              f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}", tried=True)
    print(f"[apt] installed {' '.join(packages)}", file=sys.stderr, flush=True)
    return path

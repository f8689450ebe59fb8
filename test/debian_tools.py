"""Install Debian packages a test needs (CI runs as root on a fresh machine)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def ensure_debian_packages(binary: str, packages: list[str]) -> str:
    """Path of ``binary``, installing ``packages`` with apt-get first if it is missing.

    Skips the calling test (with the reason) when that is not possible here.
    """
    global _updated
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"{binary} missing and apt-get unavailable (not root?): install "
                    f"{' '.join(packages)}; runs in CI, which installs them as root")
    print(f"[debian_tools] {binary} not found: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=600)
        _updated = True
    result = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *packages], capture_output=True, text=True, env=env, timeout=1200)
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"apt-get install {' '.join(packages)} did not provide {binary}:\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return path

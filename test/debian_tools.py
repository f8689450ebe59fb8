"""Debian packages a test needs: ``vr_stream_ros.tools.apt``, with pytest's skip and fail."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from vr_stream_ros.tools.apt import PackagesMissing, ensure_packages


def ensure_debian_packages(binary: str, packages: Sequence[str],
                           probe: Sequence[str] | None = None) -> str:
    """Path of ``binary`` (see ``ensure_packages``); skips the calling test when installing
    is not possible here (CI runs as root and installs them), fails it when apt-get ran
    and did not provide ``binary``."""
    try:
        return ensure_packages(binary, packages, probe)
    except PackagesMissing as exc:
        if exc.tried:
            pytest.fail(str(exc))
        pytest.skip(f"{exc}; runs in CI, which installs them as root")

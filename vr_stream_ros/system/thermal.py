"""SoC temperature and the Raspberry Pi's throttling word, read one way for every tool.

``tune check`` and the dashboard's system monitor both use these. ``root`` points every
path at another tree (a test's fake /sys, a Pi's SD card); commands (vcgencmd) are run
only for the live machine, root '/'. No rclpy.

Temperature: the hottest ``/sys/class/thermal/thermal_zone*/temp``, in millidegrees
Celsius (Linux, Documentation/driver-api/thermal/sysfs-api.rst; a Pi 5 has one zone,
cpu-thermal).

Throttling, in this order:
1. ``vcgencmd get_throttled`` (live machine only): the interface the Raspberry Pi
   documentation describes, https://www.raspberrypi.com/documentation/computers/os.html#get_throttled
   (prints ``throttled=0x50005``; the bits are :data:`THROTTLE_BITS`).
2. The firmware driver's sysfs attribute ``get_throttled`` (the same word, printed as
   bare hex: raspberrypi/linux drivers/firmware/raspberrypi.c) under
   ``/sys/devices/platform/soc*/*firmware/``: a Pi 4 has it at ``soc/soc:firmware``,
   a Pi 5 at ``soc@107c000000/soc@107c000000:firmware``. Newer kernels mark it
   deprecated but keep it, and a tree without vcgencmd has only this.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess

THROTTLE_BITS = {0: "under-voltage now", 1: "ARM frequency capped now", 2: "throttled now",
                 3: "soft temperature limit now", 16: "under-voltage has occurred",
                 17: "frequency capping has occurred", 18: "throttling has occurred",
                 19: "soft temperature limit has occurred"}
"""Bits of the firmware's get_throttled word (Raspberry Pi documentation, get_throttled)."""

THERMAL_ZONES = "sys/class/thermal/thermal_zone*"
FIRMWARE_THROTTLED = "sys/devices/platform/soc*/*firmware/get_throttled"
NO_THROTTLED = "no vcgencmd and no firmware get_throttled (a Raspberry Pi has them)"


def _is_live(root: str) -> bool:
    return os.path.realpath(root) == "/"


def _read(path: str) -> str | None:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return f.read().strip()
    return None


def read_temperature(root: str = "/") -> tuple[float | None, str]:
    """Hottest thermal zone in C and where it was read ('/sys/class/thermal/thermal_zone0
    (cpu-thermal)'); (None, why) when there is none."""
    best: tuple[float, str] | None = None
    for zone in sorted(glob.glob(THERMAL_ZONES, root_dir=root)):
        text = _read(os.path.join(root, zone, "temp"))
        if not text or not text.lstrip("-").isdigit():
            continue
        value = int(text) / 1000
        kind = _read(os.path.join(root, zone, "type"))
        where = f"/{zone}" + (f" ({kind})" if kind else "")
        if best is None or value > best[0]:
            best = (value, where)
    if best is None:
        return None, "no /sys/class/thermal zone on this machine"
    return best


def read_throttled(root: str = "/") -> tuple[int | None, str]:
    """The firmware's throttling word and where it came from; (None, why) without one."""
    vcgencmd = shutil.which("vcgencmd") if _is_live(root) else None
    if vcgencmd:
        with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
            out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True,
                                 timeout=5).stdout.strip()
            if "=" in out:
                return int(out.partition("=")[2], 16), "vcgencmd get_throttled"
    for path in sorted(glob.glob(FIRMWARE_THROTTLED, root_dir=root)):
        with contextlib.suppress(TypeError, ValueError):
            return int(_read(os.path.join(root, path)), 16), f"/{path}"
    return None, NO_THROTTLED


def throttle_flags(value: int | None) -> list[str]:
    """Names of the set bits of a get_throttled word (empty when none or unknown)."""
    if not value:
        return []
    return [name for bit, name in THROTTLE_BITS.items() if value >> bit & 1]

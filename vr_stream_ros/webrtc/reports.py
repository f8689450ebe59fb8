"""What the viewer page says over the data channel, checked (no rclpy).

    report = parse_report('{"type": "frame", "frame": 7, "capture_ns": "123", '
                          '"stages": {"browser_decoded": "125"}}')

Two messages exist: ``ping`` (clock sync: ``id``, ``t``) and ``frame`` (one frame's stamp
read from its pixels and the bridge-clock time, ns as decimal strings, at which it reached
each page stage). Anything else raises MalformedReport saying what was wrong; the server
counts and drops it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

BROWSER_DECODED = "browser_decoded"
"""capture -> the decoded frame is in the page's hands (ready to draw)."""
BROWSER_DRAWN = "browser_drawn"
"""capture -> uploaded to the texture and drawn on the page's canvas."""
XR_SUBMITTED = "xr_submitted"
"""capture -> drawn into an XR frame (both eyes) that was handed to the compositor."""
PAGE_STAGES = (BROWSER_DECODED, BROWSER_DRAWN, XR_SUBMITTED)
MAX_MESSAGE = 4096
MAX_SKEW_NS = 60_000_000_000  # a stage more than a minute from its capture is nonsense
UINT64 = 1 << 64


class MalformedReport(ValueError):
    """A data-channel message that is not a valid ping or frame report."""


@dataclass(frozen=True)
class Report:
    """A checked message: ``kind`` 'ping' (``ping_id``, ``ping_t``) or 'frame'."""

    kind: str
    frame: int = 0
    capture_ns: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    ping_id: int = 0
    ping_t: float = 0.0


def _ns(value: object, what: str) -> int:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or \
            (isinstance(value, str) and not value.isdigit()):
        raise MalformedReport(f"{what}: expected ns as a decimal string, got {value!r:.40}")
    ns = int(value)
    if not 0 <= ns < UINT64:
        raise MalformedReport(f"{what}: {ns} is not a uint64 ns time")
    return ns


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 32:
        raise MalformedReport(f"{what}: expected an integer 0..2^32-1, got {value!r:.40}")
    return value


def parse_report(message: str | bytes) -> Report:
    """The message checked, or MalformedReport naming the field and what was expected."""
    if len(message) > MAX_MESSAGE:
        raise MalformedReport(f"message of {len(message)} bytes (at most {MAX_MESSAGE})")
    try:
        data = json.loads(message)
    except (ValueError, RecursionError) as exc:  # RecursionError: '[[[[...' too deep
        raise MalformedReport(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise MalformedReport(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if kind == "ping":
        t = data.get("t")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
            raise MalformedReport(f"ping 't': expected a number, got {t!r:.40}")
        ping_id = data.get("id")
        if not isinstance(ping_id, int) or isinstance(ping_id, bool) or \
                not -1 <= ping_id < 1 << 31:
            raise MalformedReport(f"ping 'id': expected an integer >= -1, got {ping_id!r:.40}")
        return Report("ping", ping_id=ping_id, ping_t=float(t))
    if kind != "frame":
        raise MalformedReport(f"'type': expected 'ping' or 'frame', got {kind!r:.40}")
    frame = _int(data.get("frame"), "frame 'frame'")
    capture_ns = _ns(data.get("capture_ns"), "frame 'capture_ns'")
    raw = data.get("stages")
    if not isinstance(raw, dict) or not raw:
        raise MalformedReport(f"frame 'stages': expected an object of {PAGE_STAGES}, "
                              f"got {raw!r:.60}")
    stages = {}
    for name, value in raw.items():
        if name not in PAGE_STAGES:
            raise MalformedReport(f"frame 'stages': unknown stage {name!r:.40} (expected "
                                  f"{', '.join(PAGE_STAGES)})")
        ns = _ns(value, f"frame stage '{name}'")
        if abs(ns - capture_ns) > MAX_SKEW_NS:
            raise MalformedReport(f"frame stage '{name}': {(ns - capture_ns) / 1e9:.1f} s "
                                  f"from its capture (clock not synced?)")
        stages[name] = ns
    return Report("frame", frame=frame, capture_ns=capture_ns, stages=stages)

"""What the viewer page's HTTP endpoints check before doing any work (no rclpy, no aiohttp).

    guard = Guard(token)
    verdict = guard.check(remote, token, origin, host, scheme)   # None = let it in
    offer = check_offer(body_bytes)                            # or OfferError

- the token is compared in constant time (``hmac.compare_digest`` on UTF-8 bytes, so a
  token of any length or alphabet is refused the same way);
- a client (remote address) with ``SLOW_AFTER`` wrong tokens in ``WINDOW_S`` is slowed
  (its answers wait ``SLOW_S``), with ``BLOCK_AFTER`` it is refused outright for
  ``BLOCK_S``; the table holds at most ``MAX_CLIENTS`` addresses (oldest forgotten);
- a request carrying an ``Origin`` header must come from the page's own origin
  (``scheme://Host``); one without (curl, aiortc, the receiver) is let through to the
  token check: a browser always sends Origin on a cross-site POST or WebSocket;
- an offer body is JSON ``{"sdp": "v=0...m=video...", "type": "offer"}`` of at most
  ``MAX_OFFER_BYTES``.

Refusals are logged through :class:`RateLimitedLog` (the first of each kind, then at most
one line per ``period_s`` with the count), so a flood does not flood the log.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_OFFER_BYTES = 64 * 1024  # a browser offer is 3-8 KB; the page's own is ~5 KB
MAX_SDP_LINES = 1000
MAX_CLIENTS = 1024
WINDOW_S = 60.0
SLOW_AFTER = 5
SLOW_S = 1.0
BLOCK_AFTER = 20
BLOCK_S = 300.0


class OfferError(ValueError):
    """An offer body that is not ``{"sdp": <SDP offer>, "type": "offer"}``."""


@dataclass(frozen=True)
class Verdict:
    """Why a request is refused (``status``, ``kind``, ``message``), or slowed."""

    status: int
    kind: str
    message: str
    delay_s: float = 0.0


@dataclass
class _Client:
    first: float
    wrong: int = 0
    blocked_until: float = 0.0


def token_matches(given: str, token: str) -> bool:
    """Constant-time comparison of two tokens of any length and alphabet."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               token.encode("utf-8", "surrogatepass"))


def same_origin(origin: str | None, scheme: str, host: str) -> bool:
    """True when there is no Origin (not a browser page) or it is the page's own."""
    return origin is None or origin == f"{scheme}://{host}"


class Guard:
    """Token, origin and per-client wrong-token accounting."""

    def __init__(self, token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.token = token
        self._clock = clock
        self.slow_s = SLOW_S
        """How long a guessing client's answers wait (tests shorten it)."""
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    @property
    def clients(self) -> int:
        """Addresses currently remembered for wrong tokens (at most MAX_CLIENTS)."""
        return len(self._clients)

    def check(self, remote: str | None, given: str, origin: str | None, host: str,
              scheme: str) -> Verdict | None:
        """None when the request may go on; else why it is refused (and how long to wait
        before answering)."""
        now = self._clock()
        remote = remote or "?"
        client = self._clients.get(remote)
        if client is not None and now - client.first > WINDOW_S and \
                client.blocked_until <= now:
            del self._clients[remote]
            client = None
        if client is not None and client.blocked_until > now:
            return Verdict(429, "blocked", f"too many wrong tokens from {remote}; refused "
                           f"for {client.blocked_until - now:.0f} s more")
        if not same_origin(origin, scheme, host):
            return Verdict(403, "origin", f"Origin {origin[:80]!r} is not this page's "
                           f"({scheme}://{host[:80]})")
        if token_matches(given, self.token):
            return None
        if client is None:
            client = self._clients[remote] = _Client(now)
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
        client.wrong += 1
        self._clients.move_to_end(remote)
        delay = self.slow_s if client.wrong > SLOW_AFTER else 0.0
        if client.wrong >= BLOCK_AFTER:
            client.blocked_until = now + BLOCK_S
        return Verdict(403, "token", "bad or missing token (?token=... as printed by "
                       "headset_bridge_node at start-up)", delay)


def check_offer(body: bytes) -> dict[str, str]:
    """The offer as ``{"sdp", "type"}``, or OfferError saying what was expected."""
    if len(body) > MAX_OFFER_BYTES:
        raise OfferError(f"offer of {len(body)} bytes, expected at most {MAX_OFFER_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise OfferError(f"expected JSON {{sdp, type}}: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise OfferError(f"expected JSON {{sdp, type}}, got {type(data).__name__}")
    sdp, kind = data.get("sdp"), data.get("type")
    if kind != "offer":
        raise OfferError(f"'type': expected \"offer\", got {str(kind)[:40]!r}")
    if not isinstance(sdp, str):
        raise OfferError(f"'sdp': expected a string, got {type(sdp).__name__}")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if not sdp.startswith("v=0") or len(lines) > MAX_SDP_LINES or \
            not any(line.startswith("m=") for line in lines):
        raise OfferError("'sdp': expected an SDP offer (RFC 8866: 'v=0' first, an 'm=' "
                         f"line, at most {MAX_SDP_LINES} lines)")
    if any(not line.isprintable() for line in lines):
        raise OfferError("'sdp': control characters inside a line")
    return {"sdp": sdp, "type": kind}


class RateLimitedLog:
    """Logs the first refusal of each kind, then at most one line per ``period_s``
    carrying how many were refused since."""

    def __init__(self, log: Callable[[str], None], period_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self.lines = 0

    def __call__(self, kind: str, text: str) -> None:
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._period:
            self._held[kind] = self._held.get(kind, 0) + 1
            return
        held = self._held.pop(kind, 0)
        self._last[kind] = now
        self.lines += 1
        self._log(f"refused ({kind}): {text}"
                  + (f" (+{held} more refused since the last line)" if held else ""))

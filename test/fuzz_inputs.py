"""Hostile inputs for the fuzz tests: seeded generators and the checks every surface shares.

``FUZZ_N`` sets how many inputs each in-process surface takes (``make fuzz``: 100000);
each test file names its own default, the most that fits the CI budget. Every input
must be handled within ``MAX_INPUT_S`` (no hang), and the resident memory after the run
may exceed that after a warm-up by at most the test's bound (RSS from /proc: no tracing
overhead, so the count stays high).
"""

from __future__ import annotations

import json
import os
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_INPUT_S = 5.0  # a hang, not scheduler noise on a loaded machine (slowest seen: 0.9 s)


def fuzz_n(default: int) -> int:
    """Inputs per surface: $FUZZ_N, else ``default``."""
    return int(os.environ.get("FUZZ_N", default))


@dataclass
class Run:
    """What a fuzz run did: inputs, slowest input, RSS growth after warm-up."""

    inputs: int = 0
    slowest_s: float = 0.0
    growth_bytes: int = 0
    seconds: float = 0.0


def rss_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drive(handle: Callable[[object], None], inputs: Iterable[object], warmup: int = 1000
          ) -> Run:
    """Feed every input to ``handle``; any exception escapes (and fails the test)."""
    run = Run()
    started = time.perf_counter()
    base = None
    for item in inputs:
        t0 = time.perf_counter()
        handle(item)
        spent = time.perf_counter() - t0
        run.slowest_s = max(run.slowest_s, spent)
        assert spent < MAX_INPUT_S, f"input {run.inputs} took {spent:.2f} s: {item!r:.200}"
        run.inputs += 1
        if run.inputs == warmup:
            base = rss_bytes()
    if base is not None:
        run.growth_bytes = rss_bytes() - base
    run.seconds = time.perf_counter() - started
    return run


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One of: unchanged, a byte changed, cut short, bytes appended, two spliced."""
    if not data:
        return rng.randbytes(rng.randrange(0, 64))
    choice = rng.randrange(5)
    i = rng.randrange(len(data))
    if choice == 1:
        return data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    if choice == 2:
        return data[:i]
    if choice == 3:
        return data + rng.randbytes(rng.randrange(1, 64))
    if choice == 4:
        return data[:i] + rng.randbytes(rng.randrange(0, 16)) + data[i:]
    return data


def random_json(rng: random.Random, depth: int = 0) -> object:
    """A JSON value of any shape, with numbers out of every range."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice([0, -1, 1, 2**31, 2**32, 2**64, -2**63, 10**30])
    if kind == 1:
        return rng.choice([0.5, -1e308, 1e308, 1e-300, float("nan"), float("inf")])
    if kind == 2:
        return rng.choice(["", "ping", "frame", "123", "-5", "1e9", "\u00e9\u0000", "x" * 300])
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return str(rng.randrange(0, 2**70))
    if kind == 5:
        return rng.randrange(-2**40, 2**40)
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["type", "t", "id", "frame", "capture_ns", "stages", "sdp", "browser_decoded",
            "browser_drawn", "xr_submitted", "x"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


# -- RTCP ---------------------------------------------------------------------------------

def _rtcp(pt: int, count: int, body: bytes, rng: random.Random) -> bytes:
    body += b"\0" * (-len(body) % 4)
    words = len(body) // 4
    if rng.random() < 0.05:
        words = rng.randrange(0, 0x10000)  # a length that lies
    return struct.pack("!BBH", 0x80 | (count & 0x1F), pt, words) + body


def _xr_block(rng: random.Random) -> bytes:
    block_type = rng.choice([4, 4, 4, 1, 2, 3, 5, 6, 7, 0, 255])
    words = rng.choice([2, 2, 0, 1, 3, rng.randrange(0, 300)])
    payload = rng.randbytes(4 * min(words, rng.choice([words, words, 0, 1, 8])))
    return struct.pack("!BBH", block_type, rng.randrange(256), words) + payload


def rtcp_compound(rng: random.Random, media_ssrc: int | None = None) -> bytes:
    """A compound RTCP packet of 1-4 parts (SR, RR, XR blocks, APP VRFS/VRDT/other,
    generic NACK, unknown types), each part's fields chosen to hit every limit, then
    maybe mutated. Report blocks and NACKs name ``media_ssrc`` half the time."""
    def media() -> bytes:
        if media_ssrc is not None and rng.random() < 0.5:
            return struct.pack("!I", media_ssrc)
        return struct.pack("!I", rng.getrandbits(32))

    parts = []
    for _ in range(rng.randrange(1, 5)):
        kind = rng.randrange(8)
        ssrc = struct.pack("!I", rng.getrandbits(32))
        if kind == 0:  # SR with 0-3 blocks, maybe short
            count = rng.randrange(4)
            parts.append(_rtcp(200, count, ssrc + rng.randbytes(20 + 24 * rng.randrange(4)), rng))
        elif kind == 1:  # RR
            count = rng.randrange(32)
            blocks = b"".join(media() + rng.randbytes(20) for _ in range(rng.randrange(4)))
            parts.append(_rtcp(201, count, ssrc + blocks, rng))
        elif kind == 2:  # XR with blocks of every type and length
            body = ssrc + b"".join(_xr_block(rng) for _ in range(rng.randrange(0, 5)))
            parts.append(_rtcp(207, 0, body, rng))
        elif kind == 3:  # APP VRFS: frame stamps, whole or not
            stamps = rng.randbytes(rng.choice([28 * rng.randrange(0, 50), rng.randrange(0, 100)]))
            parts.append(_rtcp(204, rng.randrange(32), ssrc + b"VRFS" + stamps, rng))
        elif kind == 4:  # APP VRDT: JSON of any shape, nested too deep, or not JSON
            text = json.dumps(random_json(rng)).encode() if rng.random() < 0.8 else \
                rng.choice([b"[" * 3000 + b"]" * 3000, rng.randbytes(rng.randrange(0, 200))])
            parts.append(_rtcp(204, 0, ssrc + b"VRDT" + text, rng))
        elif kind == 5:  # APP with another name, or too short for one
            parts.append(_rtcp(204, 0, ssrc + rng.randbytes(rng.randrange(0, 40)), rng))
        elif kind == 6:  # generic NACK
            fci = rng.randbytes(4 * rng.choice([0, 1, 2, 64, 65, rng.randrange(0, 100)]))
            parts.append(_rtcp(205, 1, ssrc + media() + fci, rng))
        else:  # any RTCP type, any body
            parts.append(_rtcp(rng.randrange(192, 224), rng.randrange(32),
                               rng.randbytes(rng.randrange(0, 80)), rng))
    return mutate(rng, b"".join(parts)) if rng.random() < 0.3 else b"".join(parts)

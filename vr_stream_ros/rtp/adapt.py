"""Adapt the stream to the link from the headset's receiver reports (no rclpy).

Signals, per RTCP receiver report: the fraction of packets the network lost in the
report interval (RFC 3550; repaired ones included: they were lost), and queueing delay
growth: the smallest of the last ``DELAY_WINDOW`` round trips over the smallest one
ever seen (a bottleneck's standing queue shows there before it drops anything; the
minimum over a few reports ignores the queue one frame's burst builds for a moment,
which read as congestion here and pushed a 3 Mbit/s stream down on an 8 Mbit/s link).

Levels, from the best down: JPEG quality in steps of ``QUALITY_STEP`` down to
``min_quality``, then frame rate halved, then a third, then (``halve``: the frame's
halves are still whole 16-pixel MCUs) half the width and height, a quarter of the
pixels, still at a third of the frame rate. The sink takes every other pixel of every
other row (no filtering: the last resort, cheap) and RTP/JPEG carries the new size.
With hysteresis: one step down when a report shows congestion (loss over
``degrade_loss`` or delay growth over ``delay_growth_ms``) and the last change is
``hold_down_s`` old (its effect had time to show); one step up after
``climb_after_s`` without congestion. A climb that meets congestion within
``climb_after_s`` doubles the wait before the next one (up to ``MAX_CLIMB_S``), so a
link that holds one level but not the next does not swing between them every few
seconds; a climb that holds resets it. Every change is logged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

QUALITY_STEP = 15
DELAY_WINDOW = 4
MAX_CLIMB_S = 16.0


@dataclass(frozen=True)
class Level:
    """What the bridge sends at one adaptation level."""

    quality: int
    fps_divisor: int  # send every n-th frame
    scale: int = 1  # 2: half the width and height


def ladder(quality: int, min_quality: int, halve: bool = False) -> list[Level]:
    """The levels, best first (``halve``: a half-resolution level last)."""
    qualities = [*range(quality, min_quality, -QUALITY_STEP), min(quality, min_quality)]
    lowest = qualities[-1]
    return [*(Level(q, 1) for q in dict.fromkeys(qualities)), Level(lowest, 2), Level(lowest, 3),
            *([Level(lowest, 3, 2)] if halve else [])]


class LinkAdapter:
    """Chooses the level from the reports (``on_report``); ``level`` is the current one."""

    def __init__(self, quality: int, *, min_quality: int = 30, degrade_loss: float = 0.05,
                 delay_growth_ms: float = 15.0, hold_down_s: float = 0.4,
                 climb_after_s: float = 2.0, log: Callable[[str], None] | None = None,
                 halve: bool = False) -> None:
        if not 1 <= min_quality <= 100:
            raise ValueError(f"parameter 'adapt_min_quality': got {min_quality}, "
                             "expected 1..100")
        self.levels = ladder(quality, min_quality, halve)
        self.index = 0
        self.changes = 0
        self._degrade_loss = degrade_loss
        self._growth_ns = int(delay_growth_ms * 1e6)
        self._hold_ns = int(hold_down_s * 1e9)
        self._base_climb_ns = self._climb_ns = int(climb_after_s * 1e9)
        self._climbed_ns = 0  # when the last step up was taken
        self._min_rtt_ns: int | None = None
        self._recent_rtt: deque[int] = deque(maxlen=DELAY_WINDOW)
        self._last_change_ns = 0
        self._last_congestion_ns = 0
        self._log = log or (lambda _msg: None)

    @property
    def level(self) -> Level:
        """The level in use."""
        return self.levels[self.index]

    def on_report(self, now_ns: int, fraction_lost: float, rtt_ns: int | None) -> bool:
        """One receiver report; True when the level changed."""
        growth = 0
        if rtt_ns is not None and rtt_ns >= 0:
            self._min_rtt_ns = rtt_ns if self._min_rtt_ns is None else \
                min(self._min_rtt_ns, rtt_ns)
            self._recent_rtt.append(rtt_ns)
            growth = min(self._recent_rtt) - self._min_rtt_ns
        congested = fraction_lost > self._degrade_loss or growth > self._growth_ns
        if congested:
            self._last_congestion_ns = now_ns
            if self._climbed_ns and now_ns - self._climbed_ns < self._base_climb_ns:
                self._climb_ns = min(2 * self._climb_ns, int(MAX_CLIMB_S * 1e9))
                self._climbed_ns = 0
            if self.index + 1 < len(self.levels) and \
                    now_ns - self._last_change_ns >= self._hold_ns:
                return self._move(now_ns, +1, f"loss {fraction_lost:.1%}, queueing delay "
                                              f"+{growth / 1e6:.1f} ms")
        else:
            if self._climbed_ns and now_ns - self._climbed_ns >= self._base_climb_ns:
                self._climb_ns, self._climbed_ns = self._base_climb_ns, 0  # the climb held
            if self.index and now_ns - max(self._last_change_ns,
                                           self._last_congestion_ns) >= self._climb_ns:
                self._climbed_ns = now_ns
                return self._move(now_ns, -1, f"link clean for {self._climb_ns / 1e9:.1f} s")
        return False

    def _move(self, now_ns: int, step: int, why: str) -> bool:
        old = self.level
        self.index += step
        self.changes += 1
        self._last_change_ns = now_ns
        new = self.level
        self._log(f"adapt: {'down' if step > 0 else 'up'} to JPEG quality {new.quality}, "
                  f"1/{new.fps_divisor} of the frames, 1/{new.scale} size (was "
                  f"{old.quality}, 1/{old.fps_divisor}, 1/{old.scale}): {why}")
        return True

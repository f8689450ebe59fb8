"""The interface every bridge sink implements, and what it reports back (no rclpy)."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from vr_stream_ros.ring.frame_ring import FrameView
from vr_stream_ros.rtp.rtcp import DetectionsMeta

IDLE_MAX_S = 0.25
"""Longest wait for a frame before the loop gives the sink its idle work anyway."""


class Outcome(enum.Enum):
    """What became of one frame handed to a sink."""

    SENT = "sent"
    DROPPED = "dropped"  # the transport refused it rather than block (no receiver, backlog)
    TORN = "torn"  # the writer overwrote the slot while it was encoded: nothing was sent


@dataclass(frozen=True)
class SendOutcome:
    """A frame's fate with its times (CLOCK_MONOTONIC ns; 0 where it did not get there)."""

    outcome: Outcome
    encoded_ns: int = 0
    done_ns: int = 0
    reason: str = ""


@dataclass(frozen=True)
class HeadsetStatus:
    """What the viewer's reports say, as of now.

    ``fresh`` is true when a report arrived recently; the end-to-end figure is then the
    ``end_stage`` (capture -> decoded or displayed) and ``stages`` follow the sender's.
    """

    fresh: bool
    measured_to: str
    end_stage: str
    stages: tuple[str, ...]
    rtt_ms: float = 0.0
    clock_offset_ms: float = 0.0
    jitter_ms: float = 0.0
    packet_loss: float = 0.0
    packets_lost: int = 0
    frames_lost: int = 0
    reports_malformed: int = 0
    clock_offset_error_ms: float = 0.0  # the offset is known within +- this (half the RTT)
    packets_retransmitted: int = 0  # resent on the viewer's NACKs
    nacks_refused: int = 0  # NACKed packets not resent (unknown, expired, late, flood)
    jpeg_quality: int = 0  # in use now (adaptation may lower it)
    adapt_level: int = 0  # adaptation steps below the configured quality and frame rate
    target_rate_mbps: float = 0.0  # what the current level sends: frame size x frame rate


class FrameSink(ABC):
    """One transport to the viewer. All calls but ``headset`` come from the video thread."""

    transport: str = "abstract"
    stages: tuple[str, ...] = ()
    """The viewer-side stages this sink records, besides the sender's."""

    @abstractmethod
    def send(self, view: FrameView, pickup_ns: int,
             intact: Callable[[FrameView], bool]) -> SendOutcome:
        """Encode ``view`` straight from the ring, check ``intact(view)``, then send it."""

    def idle(self, now_ns: int) -> float:
        """Work between frames; returns how soon (s) it wants to be called again."""
        return IDLE_MAX_S

    @abstractmethod
    def send_detections(self, meta: DetectionsMeta) -> bool:
        """Send the newest detections to the viewer; False if they could not go now."""

    @abstractmethod
    def headset(self, now_ns: int) -> HeadsetStatus:
        """The viewer's state from its reports (any thread)."""

    @abstractmethod
    def close(self) -> None:
        """Stop every thread of the sink and release its sockets (idempotent)."""

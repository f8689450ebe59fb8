"""Two Raspberry Pi cameras as one stereo pair (Pi 5: CSI0 and CSI1), via picamera2.

Each eye is its own ``Picamera2`` instance (``camera_index`` left, ``right_camera_index``
right); each frame is copied once, from its DMA buffer into its half of the ring slot.

Synchronisation. libcamera has no stereo camera: two cameras run independently, so their
frames are paired here by ``SensorTimestamp`` within ``stereo_pair_tolerance_ms``
(pairing.py); a frame with no partner is dropped and counted, never shown mismatched.
Where Raspberry Pi's libcamera offers it, the pair is also synchronised:

- Software synchronisation (``rpi.SyncMode`` control, Raspberry Pi libcamera since early
  2025): the left camera is the server, the right a client that lengthens or shortens
  its frames to start with the server's; "within several tens of microseconds" for two
  cameras of the same model on one Pi, with every Raspberry Pi camera module and third
  party sensors whose drivers implement frame-duration control. The fps must stay below
  the sensor mode's maximum (the client must be able to shorten frames). Used here
  whenever ``libcamera.controls.rpi.SyncModeEnum`` exists.
  https://www.raspberrypi.com/documentation/computers/camera_software.html#software-camera-synchronisation
- Hardware synchronisation: the HQ camera (IMX477) through its XVS (vertical sync) pin,
  source and sink chosen by ``/sys/module/imx477/parameters/trigger_mode``, and the
  Global Shutter camera (IMX296) through XVS and XHS with the sink's MAS pad bridged (or
  its external trigger input). These are soldered wires and kernel module parameters,
  outside libcamera's controls, so this backend cannot switch them on; with them wired,
  pairing simply finds every pair.
  https://www.raspberrypi.com/documentation/accessories/camera.html#synchronous-captures

The left camera's SensorTimestamp is the pair's capture time; ``eye_skew_ns`` is the right
one's minus the left one's.
"""

from __future__ import annotations

import numpy as np

from vr_stream_ros.camera.base import CameraBackend, CameraError
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pairing import StereoPairer
from vr_stream_ros.camera.picamera2_backend import Picamera2Camera, boottime_to_monotonic_ns

UNPAIRED_SECONDS = 3.0
"""Drops in a row, in seconds of frames, before the pair counts as broken: software sync
pulls the client in at the server's first timing message (about once a second)."""


class Picamera2StereoCamera(CameraBackend):
    """A left and a right Picamera2, paired by SensorTimestamp."""

    name = "picamera2"

    def open(self) -> None:
        c = self.config
        if c.right_camera_index == c.camera_index:
            raise CameraError(f"parameters 'camera_index'/'right_camera_index': both are "
                              f"{c.camera_index}; a stereo pair needs two cameras")
        # The client first: it waits for the server's timing (Raspberry Pi's advice).
        self._right = Picamera2Camera(c, camera_index=c.right_camera_index,
                                      index_param="right_camera_index", sync_role="client")
        self._left = Picamera2Camera(c, sync_role="server")
        self._right.open()
        try:
            self._left.open()
        except BaseException:
            self._right.close()
            raise
        self._pairer = StereoPairer(self._left.capture_sensor_ns, self._right.capture_sensor_ns,
                                    round(c.stereo_pair_tolerance_ms * 1e6),
                                    max_unpaired=max(10, round(UNPAIRED_SECONDS * c.fps)))

    @property
    def synchronised(self) -> bool:
        """Whether libcamera's software synchronisation runs the pair."""
        return self._left.synchronised and self._right.synchronised

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        left_ns, right_ns = self._pairer.capture(eye_views(out, self.config.layout))
        self.eye_skew_ns = right_ns - left_ns
        self.pairs_dropped = self._pairer.dropped
        return boottime_to_monotonic_ns(left_ns)

    def describe(self) -> str:
        sync = "rpi.SyncMode software sync" if self.synchronised else "no libcamera sync"
        return (f"{super().describe()} (cameras {self.config.camera_index} left, "
                f"{self.config.right_camera_index} right; {sync}; paired within "
                f"{self.config.stereo_pair_tolerance_ms:g} ms)")

    def close(self) -> None:
        for eye in (getattr(self, "_left", None), getattr(self, "_right", None)):
            if eye is not None:
                eye.close()

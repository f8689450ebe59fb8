"""The Raspberry Pi camera through picamera2 (libcamera), with the seed's latency profiles.

picamera2 needs libcamera, which exists only on a Pi (Raspberry Pi OS, or Ubuntu with
the Raspberry Pi libcamera build): it is imported when this backend opens, never before,
so every other backend works without it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from vr_stream_ros.camera.base import CameraBackend, CameraConfig, CameraError


@dataclass(frozen=True)
class LatencyProfile:
    """Buffering and exposure policy of one profile (seed: picamera2_low_latency.py)."""

    buffer_count: int
    """libcamera buffers: fewer = less queueing, more risk of a dropped frame."""
    exposure_us: int
    """Fixed exposure; 0 = auto-exposure within FrameDurationLimits."""
    analogue_gain: float
    """Fixed gain; 0 = automatic."""
    denoise: bool


PROFILES: dict[str, LatencyProfile] = {
    # 2 buffers, short fixed exposure, no denoise: the least time in the camera.
    "ultra_low": LatencyProfile(buffer_count=2, exposure_us=5000, analogue_gain=4.0, denoise=False),
    # 3 buffers, fixed exposure: steady latency with a spare buffer.
    "low": LatencyProfile(buffer_count=3, exposure_us=8000, analogue_gain=2.0, denoise=False),
    # 4 buffers and auto exposure: best picture, frame period still fixed.
    "balanced": LatencyProfile(buffer_count=4, exposure_us=0, analogue_gain=0.0, denoise=True),
}

# picamera2 names formats by libcamera/DRM convention: "RGB888" is B,G,R in memory.
_FORMATS = {"bgr8": "RGB888", "rgb8": "BGR888"}


def controls_for(profile: LatencyProfile, fps: float, exposure_us: int = 0,
                 analogue_gain: float = 0.0) -> dict[str, object]:
    """libcamera controls for a profile at ``fps`` (explicit exposure/gain win)."""
    period_us = round(1e6 / fps)
    controls: dict[str, object] = {"FrameDurationLimits": (period_us, period_us)}
    exposure = exposure_us or profile.exposure_us
    gain = analogue_gain or profile.analogue_gain
    if exposure:
        controls["AeEnable"] = False
        controls["ExposureTime"] = min(exposure, period_us)
    if gain:
        controls["AnalogueGain"] = gain
    return controls


def boottime_to_monotonic_ns(sensor_ns: int) -> int:
    """libcamera's SensorTimestamp is CLOCK_BOOTTIME; the pipeline's clock is MONOTONIC."""
    offset = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return sensor_ns - offset


class Picamera2Camera(CameraBackend):
    """One CSI camera; the frame is copied once, from the DMA buffer into the ring slot.

    A stereo pair (picamera2_stereo.py) opens two, each as one eye: ``camera_index`` and
    ``index_param`` say which camera and which parameter names it, ``sync_role``
    ('server' or 'client') asks for Raspberry Pi's software synchronisation.
    """

    name = "picamera2"

    def __init__(self, config: CameraConfig, *, camera_index: int | None = None,
                 index_param: str = "camera_index", sync_role: str = "") -> None:
        super().__init__(config)
        self.camera_index = config.camera_index if camera_index is None else camera_index
        self.index_param = index_param
        self.sync_role = sync_role
        self.synchronised = False
        """True once the SyncMode control was set (libcamera has rpi.SyncModeEnum)."""

    def open(self) -> None:
        try:
            from picamera2 import MappedArray, Picamera2
        except ImportError as exc:
            raise CameraError(
                "parameter 'camera': picamera2 is not importable here "
                f"({exc}); on a Raspberry Pi: sudo apt install python3-picamera2 "
                "(and create the venv with --system-site-packages)") from exc
        c, index = self.config, self.camera_index
        cameras = Picamera2.global_camera_info()
        if index >= len(cameras):
            raise CameraError(f"parameter '{self.index_param}': camera {index} not found; "
                              f"libcamera sees {len(cameras)} camera(s)")
        if c.pixel_format not in _FORMATS:
            raise CameraError(f"parameter 'pixel_format': picamera2 backend does "
                              f"{', '.join(_FORMATS)}, not {c.pixel_format}")
        cam = Picamera2(camera_num=index)
        try:
            self._check_mode(cam)
            profile = PROFILES[c.profile]
            controls = controls_for(profile, c.fps, c.exposure_us, c.analogue_gain)
            if not profile.denoise:
                from libcamera import controls as lc_controls
                controls["NoiseReductionMode"] = lc_controls.draft.NoiseReductionModeEnum.Off
            if self.sync_role:
                controls.update(self._sync_controls())
            config = cam.create_video_configuration(
                main={"size": (c.width, c.height), "format": _FORMATS[c.pixel_format]},
                buffer_count=profile.buffer_count,
                queue=False,  # never hand out a frame that was waiting before we asked
                controls=controls,
            )
            cam.configure(config)
            cam.start()
        except CameraError:
            cam.close()
            raise
        except Exception as exc:
            cam.close()
            raise CameraError(f"picamera2 camera {index} ('{self.index_param}'): {exc}") from exc
        self._cam, self._mapped_array = cam, MappedArray

    def _check_mode(self, cam: object) -> None:
        c = self.config
        modes = getattr(cam, "sensor_modes", [])
        fitting = [m for m in modes if m["size"][0] >= c.width and m["size"][1] >= c.height]
        if modes and not fitting:
            sizes = ", ".join(f"{m['size'][0]}x{m['size'][1]}" for m in modes)
            raise CameraError(f"parameters 'width'/'height': {c.width}x{c.height} is larger "
                              f"than every sensor mode ({sizes})")
        best = max((m.get("fps", 0.0) for m in fitting), default=0.0)
        if fitting and best + 0.5 < c.fps:
            raise CameraError(f"parameter 'fps': the sensor does at most {best:g} fps at "
                              f"{c.width}x{c.height}, asked for {c.fps:g}")

    def _sync_controls(self) -> dict[str, object]:
        """SyncMode for ``sync_role``, where this libcamera has it (else nothing)."""
        from libcamera import controls as lc_controls
        modes = getattr(getattr(lc_controls, "rpi", None), "SyncModeEnum", None)
        if modes is None:  # libcamera before software sync: pairing alone
            return {}
        self.synchronised = True
        return {"SyncMode": modes.Server if self.sync_role == "server" else modes.Client}

    def capture_sensor_ns(self, out: np.ndarray) -> int:
        """Copy the next frame into ``out``; its SensorTimestamp (CLOCK_BOOTTIME ns), or
        the boot-time clock now if the request has none."""
        request = self._cam.capture_request()
        try:
            with self._mapped_array(request, "main") as mapped:
                np.copyto(out, mapped.array[:, : self.config.width, :3])
            sensor_ns = request.get_metadata().get("SensorTimestamp")
        finally:
            request.release()
        if sensor_ns is None:
            return time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        return int(sensor_ns)

    def capture_into(self, out: np.ndarray, frame: int) -> int:
        return boottime_to_monotonic_ns(self.capture_sensor_ns(out))

    def close(self) -> None:
        cam = getattr(self, "_cam", None)
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()
                self._cam = None

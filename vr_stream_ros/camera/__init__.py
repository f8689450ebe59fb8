"""Camera backends behind one interface; ``create_backend`` picks one by name."""

from vr_stream_ros.camera.base import CameraBackend, CameraConfig, CameraError


def create_backend(config: CameraConfig) -> CameraBackend:
    """Return the (not yet opened) backend named by ``config.backend``."""
    if config.backend == "synthetic":
        from vr_stream_ros.camera.synthetic import SyntheticCamera
        return SyntheticCamera(config)
    if config.backend == "v4l2":
        from vr_stream_ros.camera.v4l2 import V4l2Camera
        return V4l2Camera(config)
    if config.backend == "file":
        from vr_stream_ros.camera.video_file import VideoFileCamera
        return VideoFileCamera(config)
    if config.backend == "picamera2" and config.stereo:
        from vr_stream_ros.camera.picamera2_stereo import Picamera2StereoCamera
        return Picamera2StereoCamera(config)
    if config.backend == "picamera2":
        from vr_stream_ros.camera.picamera2_backend import Picamera2Camera
        return Picamera2Camera(config)
    raise CameraError(
        f"parameter 'camera': got {config.backend!r}, expected one of "
        "'synthetic', 'v4l2', 'file', 'picamera2'")


__all__ = ["CameraBackend", "CameraConfig", "CameraError", "create_backend"]

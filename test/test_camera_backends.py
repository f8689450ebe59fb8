"""Camera backends behind one interface (the Pi camera itself cannot exist here)."""

from __future__ import annotations

import glob
import sys
import time
import types

import cv2
import numpy as np
import pytest

from vr_stream_ros.camera import CameraConfig, CameraError, create_backend
from vr_stream_ros.camera.layout import eye_views
from vr_stream_ros.camera.pattern import PatternGenerator, read_stamp
from vr_stream_ros.camera.picamera2_backend import PROFILES, boottime_to_monotonic_ns, controls_for


def test_synthetic_frames_carry_number_and_time() -> None:
    with create_backend(CameraConfig(width=640, height=480, fps=120.0)) as camera:
        out = np.empty((480, 640, 3), np.uint8)
        stamps = []
        for n in range(5):
            capture = camera.capture_into(out, n)
            stamps.append((read_stamp(out), capture))
    assert [s.frame for s, _ in stamps] == list(range(5))
    assert all(s.capture_ns == c for s, c in stamps)
    assert stamps[-1][1] > stamps[0][1]


def test_file_backend_loops_a_real_video(tmp_path) -> None:
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 480))
    assert writer.isOpened()
    pattern = PatternGenerator(640, 480)
    for n in range(3):
        writer.write(cv2.cvtColor(pattern.render(100 + n, 0), cv2.COLOR_RGB2BGR))
    writer.release()
    config = CameraConfig(backend="file", file_path=path, width=320, height=240, fps=200.0)
    with create_backend(config) as camera:
        out = np.empty((240, 320, 3), np.uint8)
        means = []
        for n in range(7):  # 3 frames in the file: it loops
            camera.capture_into(out, n)
            means.append(float(out.mean()))
    assert means[0] == pytest.approx(means[3], abs=2.0)
    assert means[1] == pytest.approx(means[4], abs=2.0)


def test_file_backend_resizes_and_converts_to_rgb(tmp_path) -> None:
    path = str(tmp_path / "red.png")
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 2] = 255  # red in OpenCV's BGR
    cv2.imwrite(path, image)
    config = CameraConfig(backend="file", file_path=path, width=160, height=128, fps=100.0)
    with create_backend(config) as camera:
        out = np.empty((128, 160, 3), np.uint8)
        for n in range(4):  # a still image repeats (it cannot be rewound like a video)
            out[:] = 0
            camera.capture_into(out, n)
            assert tuple(out[64, 80]) == (255, 0, 0), f"frame {n}"


@pytest.mark.skipif(not glob.glob("/dev/video*"), reason="no V4L2 device here; runs on a "
                    "robot with a USB camera (camera:=v4l2)")
def test_v4l2_device_delivers_frames() -> None:
    device = sorted(glob.glob("/dev/video*"))[0]
    with create_backend(CameraConfig(backend="v4l2", device=device, width=640, height=480,
                                     fps=30.0)) as camera:
        out = np.empty((480, 640, 3), np.uint8)
        assert camera.capture_into(out, 0) <= time.monotonic_ns()


def test_picamera2_profiles_follow_the_seed() -> None:
    assert [PROFILES[p].buffer_count for p in ("ultra_low", "low", "balanced")] == [2, 3, 4]
    controls = controls_for(PROFILES["ultra_low"], fps=60.0)
    assert controls["FrameDurationLimits"] == (16667, 16667)
    assert controls["AeEnable"] is False and controls["ExposureTime"] == 5000
    assert controls_for(PROFILES["low"], fps=200.0)["ExposureTime"] == 5000  # <= frame period
    assert "AeEnable" not in controls_for(PROFILES["balanced"], fps=30.0)
    assert controls_for(PROFILES["balanced"], 30.0, exposure_us=2000)["ExposureTime"] == 2000


def test_sensor_timestamp_is_moved_to_the_monotonic_clock() -> None:
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert abs(boottime_to_monotonic_ns(boot) - time.monotonic_ns()) < 50_000_000


def test_picamera2_without_libcamera_says_how_to_get_it() -> None:
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is importable here: this checks the message where it is not")
    except ImportError:
        pass
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        create_backend(CameraConfig(backend="picamera2")).open()


# --- picamera2 backend against a fake picamera2 (the Pi camera cannot exist here) ---------
# The fake implements the calls the backend makes, with the signatures of picamera2's own
# code (raspberrypi/picamera2, picamera2/picamera2.py and request.py, checked at 3e6dff0)
# and "The Picamera2 Library" manual: 4.2 "Configurations" (create_video_configuration,
# buffer_count, queue, controls), 6.1 "Capturing requests" (capture_request, release,
# get_metadata and its SensorTimestamp), 6.4 "MappedArray", Appendix C (NoiseReductionMode).
# picamera2's MappedArray of an "RGB888" stream has the row stride's padding on the right.
STRIDE_PAD = 32


class FakeRequest:
    """CompletedRequest: one buffer until release(), then it is the camera's again."""

    def __init__(self, camera: FakePicamera2, image: np.ndarray, metadata: dict) -> None:
        self.camera, self.image, self.metadata, self.released = camera, image, metadata, False

    def get_metadata(self) -> dict:
        return dict(self.metadata)

    def release(self) -> None:
        assert not self.released, "a request released twice"
        self.released = True
        self.camera.outstanding -= 1


class FakeMappedArray:
    """picamera2.MappedArray(request, stream, reshape=True, write=True), a context manager."""

    def __init__(self, request: FakeRequest, stream: str, reshape: bool = True,
                 write: bool = True) -> None:
        assert stream == "main" and not request.released, "mapping a released request"
        self.request = request

    def __enter__(self) -> FakeMappedArray:
        self.array = self.request.image
        return self

    def __exit__(self, *exc: object) -> None:
        del self.array


class FakePicamera2:
    """The Picamera2 calls the backend makes; one IMX708 (Camera Module 3) attached."""

    instances: list[FakePicamera2] = []
    # IMX708 sensor modes (size, fps) as picamera2 lists them on a Pi 5.
    MODES = [{"size": (1536, 864), "fps": 120.13}, {"size": (2304, 1296), "fps": 56.03},
             {"size": (4608, 2592), "fps": 14.35}]
    sensor_offset_ns = 3_000_000  # the sensor stamped each frame 3 ms before it was handed out

    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/imx708",
                 "Num": 0}]

    def __init__(self, camera_num: int = 0, verbose_console=None, tuning=None,
                 allocator=None) -> None:
        self.camera_num, self.calls, self.outstanding, self.frames = camera_num, [], 0, 0
        self.config: dict | None = None
        self.timestamps = True
        FakePicamera2.instances.append(self)

    @property
    def sensor_modes(self) -> list[dict]:
        return self.MODES

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None,  # noqa: B006
                                   colour_space=None, buffer_count=6, controls={},  # noqa: B006
                                   display="main", encode="main", queue=True, sensor={},  # noqa: B006
                                   use_case="video") -> dict:
        return {"use_case": use_case, "main": dict(main), "buffer_count": buffer_count,
                "queue": queue, "controls": dict(controls)}

    def configure(self, camera_config=None) -> None:
        self.calls.append("configure")
        self.config = camera_config

    def start(self, config=None, show_preview=False) -> None:
        assert self.config is not None, "start before configure"
        self.calls.append("start")

    def capture_request(self, wait=None, signal_function=None, flush=None) -> FakeRequest:
        assert "start" in self.calls and "stop" not in self.calls
        # A real camera stalls once every buffer is held: make the leak visible instead.
        assert self.outstanding < self.config["buffer_count"], "every buffer held: no release"
        self.outstanding += 1
        width, height = self.config["main"]["size"]
        image = np.empty((height, width + STRIDE_PAD, 3), np.uint8)
        image[:] = self.frames % 251
        image[:, width:] = 255  # stride padding: must not reach the frame
        image[0, 0] = (1, 2, 3)  # B, G, R in memory for "RGB888"
        self.frames += 1
        boottime = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - self.sensor_offset_ns
        metadata = {"SensorTimestamp": boottime, "FrameDuration": 16667} if self.timestamps \
            else {"FrameDuration": 16667}
        return FakeRequest(self, image, metadata)

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def fake_picamera2(monkeypatch):
    """picamera2 and libcamera.controls as modules, where the backend imports them from."""
    import types
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2, picamera2.MappedArray = FakePicamera2, FakeMappedArray
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(draft=types.SimpleNamespace(
        NoiseReductionModeEnum=types.SimpleNamespace(Off=0, Fast=1, HighQuality=2)))
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    FakePicamera2.instances = []
    return FakePicamera2


def test_picamera2_frames_are_copied_without_stride_padding_and_released(fake_picamera2):
    config = CameraConfig(backend="picamera2", width=1280, height=720, fps=60.0,
                          pixel_format="bgr8", profile="ultra_low")
    with create_backend(config) as camera:
        (cam,) = fake_picamera2.instances
        assert cam.config["main"] == {"size": (1280, 720), "format": "RGB888"}  # B,G,R bytes
        out = np.zeros((720, 1280, 3), np.uint8)
        for n in range(10):  # more than buffer_count (2): each request must be released
            camera.capture_into(out, n)
            assert tuple(out[0, 0]) == (1, 2, 3) and int(out[1:, :].max()) == n % 251, n
        assert cam.outstanding == 0
    assert cam.calls == ["configure", "start", "stop", "close"]


def test_picamera2_sensor_timestamp_becomes_monotonic_capture_time(fake_picamera2):
    with create_backend(CameraConfig(backend="picamera2", width=640, height=480,
                                     fps=30.0)) as camera:
        out = np.empty((480, 640, 3), np.uint8)
        before = time.monotonic_ns()
        capture = camera.capture_into(out, 0)
        after = time.monotonic_ns()
        # SensorTimestamp is CLOCK_BOOTTIME: in MONOTONIC it is 3 ms before the handover.
        offset = fake_picamera2.sensor_offset_ns
        assert before - offset - 1_000_000 <= capture <= after - offset + 1_000_000
        fake_picamera2.instances[0].timestamps = False  # no SensorTimestamp: now, not None
        before = time.monotonic_ns()
        assert before <= camera.capture_into(out, 1) <= time.monotonic_ns()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_picamera2_profile_sets_buffers_and_controls(fake_picamera2, profile):
    config = CameraConfig(backend="picamera2", width=1280, height=720, fps=50.0,
                          profile=profile)
    with create_backend(config):
        configured = fake_picamera2.instances[0].config
    p = PROFILES[profile]
    assert configured["buffer_count"] == p.buffer_count
    assert configured["queue"] is False  # never a frame that waited before it was asked for
    assert configured["main"]["format"] == "BGR888"  # rgb8: R,G,B bytes
    controls = configured["controls"]
    assert controls["FrameDurationLimits"] == (20000, 20000)
    assert controls.get("ExposureTime") == (p.exposure_us or None)
    assert controls.get("AnalogueGain") == (p.analogue_gain or None)
    assert ("NoiseReductionMode" in controls) == (not p.denoise)


def test_picamera2_refuses_what_the_sensor_cannot_do_and_closes_it(fake_picamera2):
    too_fast = CameraConfig(backend="picamera2", width=1920, height=1080, fps=120.0)
    with pytest.raises(CameraError, match=r"parameter 'fps': .* at most 56\.03 fps"):
        create_backend(too_fast).open()
    assert fake_picamera2.instances[-1].calls == ["close"]
    with pytest.raises(CameraError, match="parameter 'camera_index': camera 1 not found"):
        create_backend(CameraConfig(backend="picamera2", camera_index=1)).open()
    with pytest.raises(CameraError, match="larger than every sensor mode"):
        create_backend(CameraConfig(backend="picamera2", width=8000, height=6000)).open()


# --- stereo: two Picamera2 instances (Pi 5 CSI0 + CSI1), paired by SensorTimestamp -----
PERIOD_NS = 16_666_667
BASE_NS = 10**12


class FakePicamera2Pair(FakePicamera2):
    """Two IMX708 on a Pi 5; each camera's SensorTimestamps (CLOCK_BOOTTIME) come from
    ``timeline[camera_num](n)`` for its n-th request, and its pixels say which camera
    and which request they are (100 * (camera + 1) + n)."""

    timeline: dict = {}

    @staticmethod
    def global_camera_info() -> list[dict]:
        return [{"Model": "imx708", "Location": 2, "Rotation": 180, "Num": n,
                 "Id": f"/base/axi/pcie@120000/rp1/i2c@{88000 - 8000 * n}/imx708@1a"}
                for n in (0, 1)]

    def capture_request(self, wait=None, signal_function=None, flush=None) -> FakeRequest:
        n = self.frames
        request = super().capture_request(wait, signal_function, flush)
        request.image[:, : self.config["main"]["size"][0]] = 100 * (self.camera_num + 1) + n
        request.metadata["SensorTimestamp"] = self.timeline[self.camera_num](n)
        return request


@pytest.fixture
def fake_pair(fake_picamera2, monkeypatch):
    """The fake with two cameras and libcamera's rpi.SyncModeEnum (software sync)."""
    monkeypatch.setattr(sys.modules["picamera2"], "Picamera2", FakePicamera2Pair)
    monkeypatch.setattr(sys.modules["libcamera"].controls, "rpi", types.SimpleNamespace(
        SyncModeEnum=types.SimpleNamespace(Off=0, Server=1, Client=2)), raising=False)
    return FakePicamera2Pair


def _stereo(**kwargs) -> CameraConfig:
    return CameraConfig(**{"backend": "picamera2", "width": 640, "height": 480, "fps": 60.0,
                           "stereo": True, "stereo_pair_tolerance_ms": 2.0, **kwargs})


def test_picamera2_pair_drops_frames_without_partner_and_never_mismatches(fake_pair) -> None:
    us = 1000
    left = [BASE_NS + k * PERIOD_NS for k in range(5)]
    right = [left[1] + 30 * us, left[2] - 20 * us, left[3] + 5000 * us, left[4] + 100 * us]
    fake_pair.timeline = {0: left.__getitem__, 1: right.__getitem__}
    config = _stereo()
    with create_backend(config) as camera:
        right_cam, left_cam = fake_pair.instances  # the client is started first
        assert (left_cam.camera_num, right_cam.camera_num) == (0, 1)
        assert left_cam.config["controls"]["SyncMode"] == 1  # rpi.SyncModeEnum.Server
        assert right_cam.config["controls"]["SyncMode"] == 2  # Client
        assert camera.synchronised
        out = np.zeros(config.shape, np.uint8)
        got = []
        for n in range(3):
            capture = camera.capture_into(out, n)
            eyes = eye_views(out, config.layout)
            got.append((int(eyes["left"][1, 1, 0]), int(eyes["right"][1, 1, 0]),
                        camera.eye_skew_ns, camera.pairs_dropped, capture))
        assert left_cam.outstanding == right_cam.outstanding == 0
    # Pixels: camera 0 request n = 100 + n, camera 1 request n = 200 + n.
    assert [g[:4] for g in got] == [(101, 200, 30 * us, 1), (102, 201, -20 * us, 1),
                                    (104, 203, 100 * us, 3)]
    # The pair's capture time is the left eye's SensorTimestamp, in CLOCK_MONOTONIC.
    for (_, _, _, _, capture), sensor in zip(got, (left[1], left[2], left[4]), strict=True):
        assert abs(capture - boottime_to_monotonic_ns(sensor)) < 1_000_000


def test_picamera2_pair_that_never_meets_is_one_line_naming_the_tolerance(fake_pair) -> None:
    fake_pair.timeline = {0: lambda n: BASE_NS + n * 100_000_000,  # 10 fps, 8 ms apart
                          1: lambda n: BASE_NS + n * 100_000_000 + 8_000_000}
    config = _stereo(fps=10.0)
    with create_backend(config) as camera:
        out = np.zeros(config.shape, np.uint8)
        with pytest.raises(CameraError, match=r"parameter 'stereo_pair_tolerance_ms': no pair "
                           r"within 2 ms in 31 frames") as info:
            camera.capture_into(out, 0)
    assert "\n" not in str(info.value)
    assert all(c.calls[-2:] == ["stop", "close"] for c in fake_pair.instances)


def test_picamera2_pair_refuses_bad_indices_and_runs_without_sync(fake_pair, monkeypatch) -> None:
    with pytest.raises(CameraError, match=r"parameters 'camera_index'/'right_camera_index': "
                       r"both are 1"):
        create_backend(_stereo(camera_index=1, right_camera_index=1)).open()
    with pytest.raises(CameraError, match=r"parameter 'right_camera_index': camera 2 not "
                       r"found; libcamera sees 2"):
        create_backend(_stereo(right_camera_index=2)).open()
    monkeypatch.delattr(sys.modules["libcamera"].controls, "rpi")  # libcamera before 2025
    fake_pair.instances.clear()
    fake_pair.timeline = dict.fromkeys((0, 1), lambda n: BASE_NS + n * PERIOD_NS)
    with create_backend(_stereo()) as camera:
        assert not camera.synchronised and "no libcamera sync" in camera.describe()
        assert all("SyncMode" not in c.config["controls"] for c in fake_pair.instances)
        camera.capture_into(np.zeros(_stereo().shape, np.uint8), 0)
        assert camera.eye_skew_ns == 0 and camera.pairs_dropped == 0

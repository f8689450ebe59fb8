"""camera/calibration.py: the camera_calibration_parsers YAML format, read and written.

The sample below has the field layout of the calibration files ROS's tools write
(camera_calibration_parsers' documented fields: image_width, image_height, camera_name,
camera_matrix, distortion_model, distortion_coefficients, rectification_matrix,
projection_matrix, each matrix as rows/cols/data), with its data spread over lines as
cameracalibrator writes it and a number without a dot as yaml-cpp writes it.
"""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vr_stream_ros.camera import calibration
from vr_stream_ros.camera.calibration import Calibration, CalibrationError

SAMPLE = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [628.80365, 0, 325.45438,
         0, 630.41851, 238.36707,
         0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.071311, 0.085536, 1e-05, -0.000696, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0,
         0, 1, 0,
         0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [617.21, 0, 325.79, 0,
         0, 621.56, 238.21, 0,
         0, 0, 1, 0]
"""


def test_sample_in_the_ros_format_reads() -> None:
    cal = calibration.loads(SAMPLE)
    assert (cal.width, cal.height, cal.camera_name) == (640, 480, "narrow_stereo")
    assert cal.k == [628.80365, 0, 325.45438, 0, 630.41851, 238.36707, 0, 0, 1]
    assert cal.distortion_model == "plumb_bob"
    assert cal.d == [-0.071311, 0.085536, 1e-05, -0.000696, 0]
    assert cal.r == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert cal.p[:3] == [617.21, 0, 325.79] and len(cal.p) == 12
    assert cal.calibrated


def test_written_file_has_the_ros_layout_and_reads_back(tmp_path) -> None:
    cal = calibration.loads(SAMPLE)
    path = tmp_path / "sub" / "cam.yaml"
    calibration.write(path, cal)
    doc = yaml.safe_load(path.read_text())
    want = yaml.safe_load(SAMPLE)
    assert list(doc) == list(want), "the fields, in camera_calibration_parsers' order"
    for key, value in want.items():
        if isinstance(value, dict):
            assert (doc[key]["rows"], doc[key]["cols"]) == (value["rows"], value["cols"]), key
            assert doc[key]["data"] == pytest.approx([float(v) for v in value["data"]]), key
        else:
            assert doc[key] == value, key
    assert calibration.read(path) == cal


def test_uncalibrated_is_zero_and_round_trips() -> None:
    cal = Calibration.uncalibrated(320, 240)
    assert not cal.calibrated and cal.k == [0.0] * 9 and cal.p == [0.0] * 12
    assert calibration.loads(calibration.dumps(cal)) == cal


BAD = [
    ("image_width: [", "not YAML"),
    ("- 1\n- 2\n", "expected a YAML mapping"),
    (SAMPLE.replace("image_width: 640\n", ""), "image_width: missing"),
    (SAMPLE.replace("image_height: 480", "image_height: -4"), "image_height: expected pixels"),
    (SAMPLE.replace("distortion_model: plumb_bob\n", ""), "distortion_model: missing"),
    (SAMPLE.replace("  rows: 3\n  cols: 4\n", "  rows: 3\n  cols: 3\n"), "projection_matrix"),
    (SAMPLE.replace("0, 0, 1]\ndistortion_model", "0, 0]\ndistortion_model"),
     "camera_matrix: data has 8 numbers"),
    (SAMPLE.replace("cols: 5", "cols: 4").replace(", 0]\nrect", "]\nrect"),
     "distortion_coefficients: plumb_bob has 5 coefficients, got 4"),
    (SAMPLE.replace("628.80365", ".nan"), "camera_matrix: data[0]"),
    (SAMPLE.replace("628.80365", "fx"), "camera_matrix: data[0] = 'fx'"),
    (yaml.safe_dump({**yaml.safe_load(SAMPLE), "rectification_matrix": 7}, sort_keys=False),
     "rectification_matrix: expected a mapping"),
]


@pytest.mark.parametrize(("text", "named"), BAD, ids=[n for _, n in BAD])
def test_bad_file_is_one_line_naming_file_and_field(tmp_path, text, named) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationError) as err:
        calibration.read(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert named in message, message
    assert "\n" not in message


def test_missing_file_and_wrong_size_name_the_file(tmp_path) -> None:
    with pytest.raises(CalibrationError, match=r"none\.yaml: no such calibration file"):
        calibration.load(str(tmp_path / "none.yaml"), 640, 480, "cam")
    (tmp_path / "cam.yaml").write_text(SAMPLE)
    with pytest.raises(CalibrationError) as err:
        calibration.load(f"file://{tmp_path}/cam.yaml", 1280, 720, "cam")
    assert f"camera_info_url {tmp_path}/cam.yaml: image_width/image_height 640x480 " \
           "differ from the camera's 1280x720" in str(err.value)
    cal, path = calibration.load(f"file://{tmp_path}/cam.yaml", 640, 480, "cam")
    assert path == tmp_path / "cam.yaml" and cal.k[0] == 628.80365


def test_urls_resolve_like_camera_info_manager(tmp_path, monkeypatch) -> None:
    assert calibration.resolve_url("") is None
    assert calibration.resolve_url("file:///a/b.yaml") == calibration.Path("/a/b.yaml")
    assert calibration.resolve_url("/a/b.yaml") == calibration.Path("/a/b.yaml")
    for bad in ("file://a/b.yaml", "http://host/b.yaml", "package://only"):
        with pytest.raises(CalibrationError, match="camera_info_url"):
            calibration.resolve_url(bad)
        assert calibration.check_camera_info_url(bad) is not None
    assert calibration.check_camera_info_url("package://vr_stream_ros/config/x.yaml") is None
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    assert calibration.default_path("cam_1") == tmp_path / "camera_info" / "cam_1.yaml"
    assert calibration.resolve_url("file://${ROS_HOME}/${NAME}.yaml", camera_name="cam_1") \
        == tmp_path / "cam_1.yaml"
    assert calibration.check_camera_info_url("file://${ROS_HOME}/${NAME}.yaml") is None
    assert calibration.check_camera_name("cam_1") is None
    assert calibration.check_camera_name("cam-1") is not None


def test_empty_url_uses_the_default_file_if_there(tmp_path, monkeypatch) -> None:
    """camera_info_manager's default: used when present; a bad default file is warned
    about and the camera starts uncalibrated (a named bad file raises instead)."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    warnings: list[str] = []
    cal, path = calibration.load("", 640, 480, "narrow_stereo", warn=warnings.append)
    assert (cal.calibrated, path, warnings) == (False, None, [])
    default = tmp_path / "camera_info" / "narrow_stereo.yaml"
    calibration.write(default, calibration.loads(SAMPLE))
    cal, path = calibration.load("", 640, 480, "narrow_stereo", warn=warnings.append)
    assert (cal.k[0], path, warnings) == (628.80365, default, [])
    cal, path = calibration.load("", 1280, 720, "narrow_stereo", warn=warnings.append)
    assert (cal.calibrated, path) == (False, None)
    assert len(warnings) == 1 and str(default) in warnings[0] and "1280x720" in warnings[0]
    with pytest.raises(CalibrationError, match="1280x720"):
        calibration.load(str(default), 1280, 720, "narrow_stereo")


def test_package_url_uses_the_ament_index() -> None:
    pytest.importorskip("ament_index_python", reason="runs where ROS is sourced (make test)")
    from ament_index_python.packages import get_package_share_directory
    try:
        share = get_package_share_directory("vr_stream_ros")
    except LookupError:
        pytest.skip("vr_stream_ros is not installed in the ament index: run through make test")
    path = calibration.resolve_url("package://vr_stream_ros/config/cam.yaml")
    assert path == calibration.Path(share) / "config" / "cam.yaml"
    with pytest.raises(CalibrationError, match="no ROS package 'no_such_pkg_x'"):
        calibration.resolve_url("package://no_such_pkg_x/a.yaml")


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 65535), height=st.integers(1, 65535),
       name=st.from_regex(calibration.CAMERA_NAME, fullmatch=True),
       model=st.sampled_from(sorted(calibration.DISTORTION_SIZES)),
       values=st.lists(FINITE, min_size=9 + 9 + 12 + 8, max_size=9 + 9 + 12 + 8))
def test_round_trip_keeps_every_value(width, height, name, model, values) -> None:
    n = calibration.DISTORTION_SIZES[model]
    cal = Calibration(width, height, name, model, values[30:30 + n], values[:9], values[9:18],
                      values[18:30])
    back = calibration.loads(calibration.dumps(cal))
    assert back == cal  # exact: every float written so that it reads back bit for bit


def _mutations() -> st.SearchStrategy:
    """Valid documents with one field replaced, dropped or retyped."""
    doc = yaml.safe_load(SAMPLE)
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), FINITE,
                        st.floats(), st.text(max_size=8))
    junk = st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=13),
        st.dictionaries(st.sampled_from(["rows", "cols", "data", "x"]), inner, max_size=4)),
        max_leaves=20)

    def mutate(key: str, sub: str | None, value: object, drop: bool) -> dict:
        out = yaml.safe_load(SAMPLE)
        target = out[key] if sub is not None and isinstance(out[key], dict) else out
        name = sub if target is not out else key
        if drop:
            target.pop(name, None)
        else:
            target[name] = value
        return out

    return st.builds(mutate, st.sampled_from(sorted(doc)),
                     st.one_of(st.none(), st.sampled_from(["rows", "cols", "data"])),
                     junk, st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_mutations())
def test_fuzzed_documents_give_a_calibration_or_one_clear_error(doc) -> None:
    text = yaml.safe_dump(doc)
    try:
        cal = calibration.loads(text, "fuzz.yaml")
    except CalibrationError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "\n" not in str(exc)
        return
    assert len(cal.k) == 9 and len(cal.r) == 9 and len(cal.p) == 12
    assert all(math.isfinite(v) for v in cal.k + cal.d + cal.r + cal.p)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzzed_text_never_escapes_as_another_exception(text) -> None:
    try:
        calibration.loads(text, "fuzz.yaml")
    except CalibrationError as exc:
        assert "\n" not in str(exc)

"""Parameter specs, the shipped config and the launch arguments agree and refuse bad values."""

from __future__ import annotations

import os

import pytest

from vr_stream_ros.graph import launches as graph
from vr_stream_ros.graph.node_params import BRIDGE_PARAMS, CAMERA_PARAMS, DETECTOR_PARAMS
from vr_stream_ros.graph.param_spec import ParameterError, ParamSpec, validate_all


def test_shipped_config_sets_only_known_parameters_with_valid_values() -> None:
    config = graph.load_config(graph.default_config_path())
    for node, specs in graph.NODES:
        values = validate_all(specs, config[node])  # raises on the first bad value
        assert set(config[node]) == {s.name for s in specs}, f"{node}: config and specs differ"
        # The shipped file says what the specs say: one default, written twice, agrees.
        assert values == {s.name: s.default for s in specs}, node
    camera = validate_all(CAMERA_PARAMS, config["camera_node"])
    assert (camera["width"], camera["height"], camera["fps"]) == (1280, 720, 60.0)
    assert camera["ring_name"] == "vr_stream_ros_frames"
    bridge = validate_all(BRIDGE_PARAMS, config["headset_bridge_node"])
    assert (bridge["transport"], bridge["headset_port"], bridge["mtu"]) == ("udp", 5004, 1400)
    assert bridge["chroma_subsampling"] == "420", "a string, not the number 420"


def test_every_parameter_has_a_description() -> None:
    for spec in CAMERA_PARAMS + BRIDGE_PARAMS + DETECTOR_PARAMS:
        assert len(spec.description) > 10, spec.name


@pytest.mark.parametrize(("argument", "value", "named"), [
    ("width", "-5", "'width'"),
    ("camera", "kinect", "'camera'"),
    ("headset_ip", "300.1.1.1", "'headset_ip'"),
    ("headset_port", "70000", "'headset_port'"),
    ("fps", "1000", "'fps'"),
    ("transport", "sctp", "'transport'"),
])
def test_bad_launch_argument_names_parameter_and_allowed_values(argument, value, named) -> None:
    with pytest.raises(ParameterError) as err:
        graph.node_launches({argument: value})
    message = str(err.value)
    assert named in message and "expected" in message
    assert "\n" not in message


@pytest.mark.parametrize(("given", "suggested"), [
    ("widht", "did you mean 'width'?"),
    ("headset_pot", "did you mean 'headset_port'?"),
    ("yolov8", "did you mean 'yolo'?"),
    # Nothing close: every argument is listed, in order (the list grows with the graph).
    ("xyz", "known: " + ", ".join(sorted({a.name for a in graph.LAUNCH_ARGUMENTS}
                                         | {graph.CONFIG_ARGUMENT}))),
])
def test_unknown_launch_argument_is_refused_naming_the_closest(given, suggested) -> None:
    with pytest.raises(ParameterError) as err:
        graph.node_launches({given: "640"})
    assert str(err.value).startswith(f"launch argument '{given}' is not known; {suggested}")
    assert "\n" not in str(err.value)


def test_launch_machinery_configurations_can_be_ignored() -> None:
    graph.check_argument_names({"width", "ros_namespace"}, ignored={"ros_namespace"})
    with pytest.raises(ParameterError, match="'ros_namespace' is not known"):
        graph.check_argument_names({"width", "ros_namespace"})


def test_config_with_unknown_parameter_is_refused(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**/camera_node:\n  ros__parameters:\n    exposure: 3\n")
    with pytest.raises(ParameterError, match="no parameter 'exposure'"):
        graph.node_launches({}, str(bad))


def test_float_parameter_accepts_integer_literal() -> None:
    launches = graph.node_launches({"fps": "30"})
    assert launches[0].parameters["fps"] == 30.0


def test_string_that_looks_like_a_number_stays_a_string() -> None:
    bridge = graph.node_launches({})[1]
    assert "-p" in bridge.ros_args()
    assert "chroma_subsampling:='420'" in bridge.ros_args()


RTP_JPEG_SIZES = "a multiple of 8 up to 2040 (what RTP/JPEG can carry to the headset)"


@pytest.mark.parametrize(("argument", "value", "allowed"), [
    ("width", "641", RTP_JPEG_SIZES),
    ("width", "2048", RTP_JPEG_SIZES),
    ("height", "2048", RTP_JPEG_SIZES),
    ("height", "724", RTP_JPEG_SIZES),
    ("width", "8", "an integer in 16..4096"),
])
def test_sizes_rtp_jpeg_cannot_carry_are_refused_before_start(argument, value, allowed) -> None:
    with pytest.raises(ParameterError) as err:
        graph.node_launches({argument: value})
    assert str(err.value) == f"parameter '{argument}': got {value}, expected {allowed}"


def test_largest_size_rtp_jpeg_carries_is_accepted() -> None:
    camera = graph.node_launches({"width": "2040", "height": "2040"})[0].parameters
    assert (camera["width"], camera["height"]) == (2040, 2040)


def test_step_is_checked_from_the_minimum() -> None:
    spec = ParamSpec("n", 10, "a number in steps of 4 from 2", min=2, max=18, step=4)
    assert spec.allowed() == "an integer in 2..18 in steps of 4 from 2"
    assert spec.validate(14) == 14
    with pytest.raises(ParameterError, match=r"got 12, expected an integer in 2\.\.18"):
        spec.validate(12)
    with pytest.raises(ValueError, match="step needs an int range"):
        ParamSpec("m", 1, "a step that never reaches max", min=0, max=10, step=4)


def test_namespace_moves_every_node_and_is_checked() -> None:
    launches = graph.node_launches({"namespace": "robot2", "yolo": "true"})
    assert {n.namespace for n in launches} == {"/robot2"}
    assert launches[0].ros_args()[:5] == [
        "--ros-args", "-r", "__node:=camera_node", "-r", "__ns:=/robot2"]
    assert {n.namespace for n in graph.node_launches({})} == {""}
    assert "__ns:=" not in " ".join(graph.node_launches({})[0].ros_args())
    with pytest.raises(ParameterError, match="parameter 'namespace': got 'robot 2'"):
        graph.node_launches({"namespace": "robot 2"})


def test_large_shm_exports_the_fast_dds_profile_to_every_node() -> None:
    launches = graph.node_launches({"large_shm": "true", "yolo": "true"})
    paths = {n.env[graph.LARGE_SHM_ENV] for n in launches}
    assert len(paths) == 1 and os.path.isfile(paths.pop())
    camera = launches[0]
    argv = camera.command("/x/camera_node")
    assert argv[:3] == ["env", f"{graph.LARGE_SHM_ENV}={camera.env[graph.LARGE_SHM_ENV]}",
                        "/x/camera_node"]
    plain = graph.node_launches({})[0]
    assert plain.env == {} and plain.command("/x/camera_node")[0] == "/x/camera_node"


def test_webrtc_arguments_reach_the_bridge() -> None:
    bridge = graph.node_launches({"webrtc_port": "8443", "webrtc_bind": "127.0.0.1",
                                  "webrtc_token": "s3cret", "transport": "webrtc"})[1]
    assert (bridge.parameters["webrtc_port"], bridge.parameters["webrtc_bind"],
            bridge.parameters["webrtc_token"]) == (8443, "127.0.0.1", "s3cret")
    with pytest.raises(ParameterError, match="parameter 'webrtc_port': got 0"):
        graph.node_launches({"webrtc_port": "0"})


def test_config_argument_names_the_parameters_file(tmp_path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/camera_node:\n  ros__parameters:\n    width: 640\n")
    assert graph.node_launches({"config": str(mine)})[0].parameters["width"] == 640


def test_user_config_wins_over_unset_launch_arguments(tmp_path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/camera_node:\n  ros__parameters:\n    width: 640\n    fps: 30.0\n"
                    "/**/headset_bridge_node:\n  ros__parameters:\n    headset_port: 6000\n")
    camera, bridge = graph.node_launches({"width": "", "headset_port": ""}, str(mine))
    assert camera.parameters["width"] == 640 and camera.parameters["fps"] == 30.0
    assert bridge.parameters["headset_port"] == 6000
    camera, _ = graph.node_launches({"width": "800"}, str(mine))  # an argument still wins
    assert camera.parameters["width"] == 800


def test_rt_profile_comes_from_the_package_even_with_a_user_config(tmp_path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**/camera_node:\n  ros__parameters:\n    width: 640\n")
    camera, bridge = graph.node_launches({"rt_profile": "two_core"}, str(mine))
    assert (camera.parameters["sched_policy"], camera.parameters["rt_priority"]) == ("fifo", 90)
    assert bridge.parameters["cpu_affinity"] == "1"


def test_yolo_adds_the_detector_with_its_arguments() -> None:
    assert [n.name for n in graph.node_launches({})] == ["camera_node", "headset_bridge_node"]
    launches = graph.node_launches({"yolo": "true", "model": "/m/yolo11n.onnx", "imgsz": "640"})
    assert [n.name for n in launches] == ["camera_node", "headset_bridge_node", "detector_node"]
    detector = launches[2].parameters
    assert detector["model"] == "/m/yolo11n.onnx" and detector["imgsz"] == 640
    assert detector["ring_name"] == launches[0].parameters["ring_name"]
    assert [n.essential for n in launches] == [True, True, False], "the detector is optional"


def test_yolo_rt_profile_keeps_the_detector_off_the_video_cpus() -> None:
    launches = graph.node_launches({"yolo": "true", "rt_profile": "pi5"})
    camera, bridge, detector = (n.parameters for n in launches)
    video_cpus = {camera["cpu_affinity"], bridge["cpu_affinity"]}
    assert detector["cpu_affinity"] == "3" and "3" not in video_cpus
    assert detector["sched_policy"] == "other"


@pytest.mark.parametrize(("argument", "value", "named"), [
    ("yolo", "maybe", "parameter 'yolo'"),
    ("imgsz", "10", "parameter 'imgsz'"),
])
def test_bad_yolo_arguments_are_named(argument, value, named) -> None:
    with pytest.raises(ParameterError, match=named):
        graph.node_launches({"yolo": "true", argument: value})


def test_ring_name_sdp_and_record_paths_let_two_instances_share_a_host(tmp_path) -> None:
    launches = graph.node_launches({"yolo": "true", "ring_name": "robot2_frames",
                                    "sdp_path": str(tmp_path / "robot2.sdp"),
                                    "record_path": str(tmp_path / "robot2.csv")})
    assert {n.parameters["ring_name"] for n in launches} == {"robot2_frames"}
    bridge = launches[1].parameters
    assert bridge["sdp_path"].endswith("robot2.sdp") and bridge["record_path"].endswith(".csv")
    with pytest.raises(ParameterError, match="parameter 'ring_name'"):
        graph.node_launches({"ring_name": "../etc"})
    with pytest.raises(ParameterError, match="parameter 'record_path'"):
        graph.node_launches({"record_path": "/tmp/latency.txt"})

"""Parameter specs of every node: the single source for declarations, config and launch."""

from __future__ import annotations

from vr_stream_ros.camera.calibration import (
    CAMERA_NAME_EXPECTS,
    URL_EXPECTS,
    check_camera_info_url,
    check_camera_name,
)
from vr_stream_ros.graph.param_spec import (
    CPU_LIST,
    IPV4_HOST,
    NAME,
    ParamSpec,
    check_cpu_list,
    check_ipv4_host,
    check_name,
)

RT_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("cpu_affinity", "", "CPUs for this node's threads, e.g. '2' or '2,3' ('' = any).",
              check=check_cpu_list, expects=CPU_LIST, any_type=True),
    ParamSpec("sched_policy", "other", "Scheduling policy: other (normal), fifo or rr (real time).",
              choices=("other", "fifo", "rr")),
    ParamSpec("rt_priority", 0, "Real-time priority 1..99 for fifo/rr (0 with other).",
              min=0, max=99),
    ParamSpec("lock_memory", False, "mlockall(current+future, on fault): every page the "
              "process touches stays in RAM, so the hot path takes no major fault; pages it "
              "never touches (thread stacks, DDS segments) are not pinned. After 300 frames "
              "the lock narrows to what is resident (VmLck <= RSS); new mappings lock on "
              "fault."),
    ParamSpec("gc_mode", "default",
              "Python GC: default, freeze (start-up objects frozen), manual (young-generation "
              "collection between frames only).", choices=("default", "freeze", "manual")),
    ParamSpec("executor", "single_threaded", "rclpy executor spinning the node.",
              choices=("single_threaded", "multi_threaded", "events")),
    ParamSpec("require_realtime", False,
              "Refuse to start if any RT setting above is refused by the kernel."),
)

RING_NAME = ParamSpec(
    "ring_name", "vr_stream_ros_frames",
    "Shared-memory frame ring (/dev/shm/<ring_name>); camera and consumers must agree.",
    check=check_name, expects=NAME)

CAMERA_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("camera", "synthetic", "Camera backend.",
              choices=("synthetic", "v4l2", "file", "picamera2")),
    ParamSpec("device", "/dev/video0", "V4L2 device (camera:=v4l2)."),
    ParamSpec("file_path", "", "Video file played in a loop (camera:=file)."),
    ParamSpec("camera_index", 0, "libcamera camera number (camera:=picamera2).", min=0, max=7),
    # RTP/JPEG (RFC 2435) carries sizes in units of 8 pixels up to 2040: the whole graph
    # exists to reach the headset, so the camera refuses what the bridge could not send.
    ParamSpec("width", 1280, "Frame width in pixels. The headset bridge's RTP/JPEG carries "
              "multiples of 8 up to 2040: the launch file and make run refuse other sizes; "
              "camera_node alone (e.g. for the detector) takes any.", min=16, max=4096),
    ParamSpec("height", 720, "Frame height in pixels. The headset bridge's RTP/JPEG carries "
              "multiples of 8 up to 2040: the launch file and make run refuse other sizes; "
              "camera_node alone (e.g. for the detector) takes any.", min=16, max=4096),
    ParamSpec("fps", 60.0, "Frames per second.", min=1.0, max=240.0),
    ParamSpec("pixel_format", "rgb8", "Pixel format in the ring (sensor_msgs encoding).",
              choices=("rgb8", "bgr8")),
    ParamSpec("profile", "low",
              "Latency profile (picamera2): ultra_low = 2 buffers, low = 3, balanced = 4.",
              choices=("ultra_low", "low", "balanced")),
    ParamSpec("exposure_us", 0, "Fixed exposure in microseconds; 0 = the profile's default.",
              min=0, max=1_000_000),
    ParamSpec("analogue_gain", 0.0, "Fixed analogue gain; 0 = the profile's default.",
              min=0.0, max=64.0),
    # Stereo (issue 14): two cameras, one packed frame written once into the ring slot.
    ParamSpec("stereo", False,
              "Two cameras, one frame: both eyes packed into one ring slot (stereo_layout); "
              "width/height stay per eye."),
    ParamSpec("stereo_layout", "top_bottom",
              "stereo: how the eyes share the frame. top_bottom keeps 2x1280x720 within "
              "RTP/JPEG's 2040 px per side (1280x1440); side_by_side over RTP needs "
              "2*width <= 2040.", choices=("side_by_side", "top_bottom")),
    ParamSpec("right_camera_index", 1,
              "stereo, camera:=picamera2: libcamera camera number of the right eye "
              "(camera_index is the left).", min=0, max=7),
    ParamSpec("right_device", "/dev/video1",
              "stereo, camera:=v4l2, stereo_source:=two_devices: V4L2 device of the right "
              "eye (device is the left)."),
    ParamSpec("stereo_source", "two_devices",
              "stereo, camera:=v4l2: two devices paired by capture time, or one UVC stereo "
              "camera (device) delivering both eyes side by side in each frame.",
              choices=("two_devices", "side_by_side_device")),
    ParamSpec("stereo_pair_tolerance_ms", 2.0,
              "stereo, picamera2/v4l2 two_devices: the most two eyes' capture times may "
              "differ to make a pair; a frame without a partner within it is dropped and "
              "counted (LatencyStats.stereo_pairs_dropped), never shown mismatched.",
              min=0.01, max=100.0),
    RING_NAME,
    ParamSpec("ring_slots", 4, "Slots in the frame ring (more = slow readers keep frames longer).",
              min=2, max=64),
    ParamSpec("frame_id", "camera_optical_frame", "TF frame of the camera (REP-103 optical)."),
    ParamSpec("compressed_quality", 80, "JPEG quality of image_raw/compressed.", min=1, max=100),
    ParamSpec("compressed_fps", 0.0,
              "Most frames per second on image_raw/compressed, encoded off the capture "
              "thread while subscribed (0 = every frame it can).", min=0.0, max=240.0),
    ParamSpec("camera_info_url", "",
              "Calibration file (camera_calibration_parsers YAML) for camera_info, read at "
              "start (the left eye's with stereo:=true); its image_width/image_height must be "
              "width/height, else the node stops. '' = camera_info_manager's default "
              "$ROS_HOME/camera_info/<camera_name>.yaml (ROS_HOME defaults to ~/.ros) if it "
              "exists, else uncalibrated (K and P zero). set_camera_info "
              "(left/set_camera_info) writes the new calibration to this file.",
              check=check_camera_info_url, expects=URL_EXPECTS),
    ParamSpec("right_camera_info_url", "",
              "stereo:=true: the right eye's calibration file, as camera_info_url (default "
              "file <camera_name>_right.yaml; right/set_camera_info writes it).",
              check=check_camera_info_url, expects=URL_EXPECTS),
    ParamSpec("camera_name", "camera",
              "Camera name written into calibration files and naming the default file "
              "(stereo: <camera_name>_left, <camera_name>_right); ${NAME} in a url.",
              check=check_camera_name, expects=CAMERA_NAME_EXPECTS),
    *RT_PARAMS,
)

BIND = "an IPv4 address of this host (0.0.0.0 = every interface)"
RECORD = "a path ending in .csv or .json, or ''"

BRIDGE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("headset_ip", "127.0.0.1", "Headset (receiver) IPv4 address or host name.",
              check=check_ipv4_host, expects=IPV4_HOST),
    ParamSpec("headset_port", 5004, "Headset (receiver) RTP port.", min=1, max=65535),
    ParamSpec("transport", "udp",
              "RTP over UDP, over TCP with RFC 4571 framing, or WebRTC to a browser (the "
              "viewer page on webrtc_port: a Quest with nothing to install).",
              choices=("udp", "tcp", "webrtc")),
    RING_NAME,
    ParamSpec("jpeg_quality", 80, "JPEG quality (libjpeg-turbo via simplejpeg).", min=1, max=100),
    ParamSpec("chroma_subsampling", "420", "JPEG chroma subsampling (RTP/JPEG allows these two).",
              choices=("420", "422")),
    ParamSpec("jpeg_restart_interval", 0,
              "JPEG restart marker every this many MCUs (16x16 px), 0 = none. The packets are "
              "cut at them (RFC 2435), so a lost packet costs a stripe, which a receiver can "
              "conceal, not the frame; 40 = half a 1280 px row (about +2.5 % bytes).",
              min=0, max=65535),
    ParamSpec("jpeg_threads", 1,
              "JPEG bands encoded in parallel: the frame is cut into this many horizontal "
              "bands (whole 16 px MCU rows; 8 px with 4:2:2), encoded at once and spliced "
              "into one JPEG with a restart marker between bands (RFC 2435 type 64/65). "
              "Useful only when the bridge may use more than one CPU: the RT profiles pin "
              "it to one CPU, where it gains nothing. 1 = one encode; with "
              "jpeg_restart_interval > 0, or a frame too small or not whole MCU rows, one "
              "encode too.", min=1, max=4),
    ParamSpec("mtu", 1400, "Largest datagram in bytes (RTP header included).",
              min=576, max=9000),
    ParamSpec("max_rate_mbps", 0.0,
              "Pacing: cap on the send rate in Mbit/s, 0 = send each frame as one burst.",
              min=0.0, max=10000.0),
    ParamSpec("burst_kib", 64, "Pacing: bytes a frame may send at once before pacing, KiB.",
              min=2, max=16384),
    ParamSpec("adapt", False,
              "Follow the link: on loss or queueing delay growth in the headset's reports, "
              "lower JPEG quality step by step, then the frame rate, then the resolution "
              "(halved, when the halves are whole 8-pixel blocks), pacing each frame at "
              "twice the rate sent while below the top level; climb back after 2 s "
              "clean. Every change is logged and on /latency."),
    ParamSpec("adapt_min_quality", 30, "adapt: the lowest JPEG quality it goes down to.",
              min=1, max=100),
    ParamSpec("nack", False,
              "transport:=udp: resend packets the headset asks for (RFC 4585 generic NACK, "
              "RFC 4588 RTX) and mark each frame's packet count so a lost last packet is "
              "asked for too."),
    ParamSpec("nack_history_ms", 200.0, "nack: how long sent packets are kept for resending.",
              min=100.0, max=2000.0),
    ParamSpec("nack_deadline_ms", 0.0,
              "nack: never resend a packet of a frame sent longer ago than this; 0 = one "
              "frame period past due (two frame periods).", min=0.0, max=1000.0),
    ParamSpec("nack_max_resend_per_s", 2000.0,
              "nack: resends per second at most (a NACK flood is cut to this).",
              min=10.0, max=100000.0),
    ParamSpec("tcp_congestion", "bbr",
              "transport:=tcp: the sending socket's congestion control (TCP_CONGESTION); "
              "one the kernel offers (net.ipv4.tcp_available_congestion_control), else the "
              "system default stays.",
              choices=("bbr", "cubic", "reno")),
    ParamSpec("fec", 0,
              "transport:=udp: after each frame, one XOR parity packet (RFC 5109 format, "
              "ulpfec in the SDP, own SSRC) per this many of its RTP packets, so one lost "
              "packet per group is rebuilt without a round trip; 0 = off. 24 is one per "
              "720p frame (+4 % bytes).", min=0, max=48),
    ParamSpec("dscp", 46, "DSCP of outgoing packets (46 = EF, expedited forwarding).",
              min=0, max=63),
    ParamSpec("sndbuf_kib", 256, "Socket send buffer in KiB (small = stale frames are dropped).",
              min=16, max=65536),
    ParamSpec("sdp_path", "/tmp/vr_stream_ros.rtp.sdp",
              "Where to write the SDP describing the stream ('' = do not write)."),
    ParamSpec("ring_wait_s", 10.0, "How long to wait at start for the camera's ring.",
              min=0.0, max=600.0),
    ParamSpec("stats_period_s", 1.0, "Period of the latency stats topic in seconds.",
              min=0.1, max=60.0),
    ParamSpec("rtcp_interval_s", 0.25, "Period of RTCP sender reports to the headset.",
              min=0.05, max=10.0),
    ParamSpec("latency_budget_ms", 30.0,
              "End-to-end budget for /diagnostics: OK if p99 is within, WARN if only p50 is.",
              min=1.0, max=10000.0),
    ParamSpec("webrtc_bind", "0.0.0.0",
              "transport:=webrtc: address the viewer page and signaling listen on.",
              check=lambda v: None if v == "0.0.0.0" or check_ipv4_host(v) is None
              else BIND, expects=BIND),
    ParamSpec("webrtc_port", 8080, "transport:=webrtc: HTTP port of the viewer page.",
              min=1, max=65535),
    ParamSpec("webrtc_token", "",
              "transport:=webrtc: session token the page URL must carry ('' = a new random "
              "one each start, printed with the URL on the bridge's terminal, not in the ROS "
              "log)."),
    ParamSpec("webrtc_tls", True,
              "transport:=webrtc: serve the page over HTTPS (WebXR's Enter VR needs a secure "
              "context; the headset asks once to trust the self-signed certificate)."),
    ParamSpec("webrtc_cert", "",
              "transport:=webrtc: PEM certificate for HTTPS ('' = a self-signed one, made "
              "once in ~/.cache/vr_stream_ros/webrtc-tls)."),
    ParamSpec("webrtc_key", "", "transport:=webrtc: PEM private key of webrtc_cert."),
    ParamSpec("webrtc_max_playout_delay_ms", 0,
              "transport:=webrtc: maximum playout delay the browser may add (RTP playout-delay "
              "extension, min 0, 10 ms steps): 0 = render each frame as soon as it is decoded, "
              "<= 500 = Chromium's low-latency renderer, -1 = leave the extension out.",
              min=-1, max=40950,
              check=lambda v: None if v == -1 or v % 10 == 0 else "a multiple of 10 ms, or -1"),
    ParamSpec("max_viewers", 2, "transport:=webrtc: viewers at once; more are refused.",
              min=1, max=16),
    ParamSpec("bitrate_mbps", 8.0, "transport:=webrtc: H.264 bitrate cap, Mbit/s.",
              min=0.5, max=100.0),
    ParamSpec("min_bitrate_mbps", 1.0,
              "transport:=webrtc: lowest H.264 bitrate the browser's bandwidth estimate "
              "(REMB) may lower the encoder to, Mbit/s; the estimate moves it between this "
              "and bitrate_mbps (must not exceed it).", min=0.1, max=100.0),
    ParamSpec("keyframe_interval", 30,
              "transport:=webrtc: frames between keyframes (also sent at once on a viewer's "
              "picture-loss request).", min=1, max=600),
    ParamSpec("vr_quad", "world",
              "transport:=webrtc: the page's VR video quad, world-locked or head-locked "
              "(a toggle on the page).", choices=("world", "head")),
    ParamSpec("send_detections", True,
              "Send the newest detections (topic 'detections', from detector_node) to the "
              "headset after each frame, as RTCP APP 'VRDT' (JSON boxes) on the RTP port."),
    ParamSpec("record_path", "",
              "Record every frame's stage times to this .csv or .json at exit ('' = off).",
              check=lambda v: None if v == "" or v.endswith((".csv", ".json"))
              else RECORD, expects=RECORD),
    *RT_PARAMS,
)

CLASSES = "class indices separated by commas, e.g. '0' or '0,2,5' ('' = every class)"


def check_classes(value: str) -> str | None:
    """Spec check: class indices '0', '0,2,5' ('' = every class)."""
    parts = [p.strip() for p in value.split(",")] if value.strip() else []
    if all(p.isdigit() for p in parts):
        return None
    return CLASSES


def parse_classes(value: str) -> tuple[int, ...]:
    """'0, 2' -> (0, 2); '' -> ()."""
    return tuple(int(p) for p in value.split(",")) if value.strip() else ()


DETECTOR_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "yolo11n.yaml",
              "Model: a .pt or .onnx file, a *_openvino_model or *_ncnn_model directory, or an "
              "Ultralytics model .yaml (random weights: for tests). Never downloaded."),
    ParamSpec("imgsz", 320, "Inference size in pixels (YOLO's stride: a multiple of 32).",
              min=32, max=1280, step=32),
    ParamSpec("conf", 0.25, "Minimum score of a box.", min=0.0, max=1.0),
    ParamSpec("iou", 0.7, "IoU threshold of non-maximum suppression.", min=0.0, max=1.0),
    ParamSpec("classes", "", "Only these class indices, e.g. '0' (person) ('' = every class).",
              check=check_classes, expects=CLASSES),
    ParamSpec("max_det", 100, "Most boxes per frame.", min=1, max=1000),
    ParamSpec("device", "cpu", "Inference device (cpu on a Pi 5).", choices=("cpu",)),
    ParamSpec("threads", 1, "PyTorch CPU threads (the detector should not take every core).",
              min=1, max=64),
    ParamSpec("max_rate_hz", 0.0, "Cap on detections per second, 0 = as fast as it can.",
              min=0.0, max=240.0),
    ParamSpec("frame_source", "auto",
              "Where frames come from: ring (shared memory, camera on this host), topic "
              "(image_topic, camera anywhere) or auto (ring when frame_ref says the camera "
              "is on this host, else topic; re-decided when that changes).",
              choices=("auto", "ring", "topic")),
    ParamSpec("image_topic", "image_raw/compressed",
              "The topic frame_source topic/auto subscribes to (best effort, keep last 1).",
              choices=("image_raw/compressed", "image_raw")),
    RING_NAME,
    ParamSpec("ring_wait_s", 10.0, "How long to wait at start for the camera's ring.",
              min=0.0, max=600.0),
    ParamSpec("frame_id", "camera_optical_frame", "TF frame of the camera, for the header."),
    *RT_PARAMS,
)

BRIDGE_PARAMS_BY_NAME = {p.name: p for p in BRIDGE_PARAMS}
CAMERA_PARAMS_BY_NAME = {p.name: p for p in CAMERA_PARAMS}

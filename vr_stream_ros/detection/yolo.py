"""Object detection on one frame with Ultralytics YOLO, offline (no rclpy).

    detector = Detector(DetectorConfig(model="/models/yolo11n.onnx", imgsz=320))
    result = detector.detect(frame_rgb)       # boxes in the frame's pixels
    result.detections[0].class_name, result.inference_ms

The model is a .pt file, an exported model (.onnx file, ``*_openvino_model`` or
``*_ncnn_model`` directory) or an Ultralytics model YAML (``yolo11n.yaml``: random
weights, real inference cost, for tests and benchmarks). Nothing is ever downloaded: a
robot may be offline, and Ultralytics would otherwise fetch a missing ``yolo11n.pt``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np


class DetectorError(Exception):
    """A model or setting that cannot work; the message names the parameter."""


@dataclass(frozen=True)
class DetectorConfig:
    """What ``detector_node``'s parameters say."""

    model: str
    imgsz: int = 320
    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[int, ...] = ()
    max_det: int = 100
    device: str = "cpu"
    threads: int = 1


@dataclass(frozen=True)
class Detection:
    """One box, vision_msgs style: centre and size in the frame's pixels."""

    center_x: float
    center_y: float
    size_x: float
    size_y: float
    class_id: int
    class_name: str
    score: float


@dataclass(frozen=True)
class DetectionResult:
    """The boxes of one frame and what they cost."""

    detections: list[Detection] = field(default_factory=list)
    inference_ms: float = 0.0
    """preprocess + inference + postprocess, as measured around the call."""
    raw: np.ndarray | None = None
    """(N, 6) x1, y1, x2, y2, score, class: for comparing backends."""


def backend_of(model: str) -> str:
    """The runtime Ultralytics uses for this model file name."""
    name = model.rstrip("/")
    if name.endswith((".yaml", ".yml")):
        return "pytorch (random weights from YAML)"
    if name.endswith(".pt"):
        return "pytorch"
    if name.endswith(".onnx"):
        return "onnxruntime"
    if name.endswith("_openvino_model"):
        return "openvino"
    if name.endswith("_ncnn_model"):
        return "ncnn"
    raise DetectorError(
        f"parameter 'model': {model!r}: expected a .pt or .onnx file, a *_openvino_model or "
        "*_ncnn_model directory (Ultralytics export), or a model .yaml")


def offline_environment(config_dir: str | None = None) -> None:
    """Ultralytics and OpenVINO settings that keep them off the network (docs/design.md)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "false")
    default_dir = os.path.join(os.path.expanduser("~"), ".cache", "vr_stream_ros", "ultralytics")
    os.environ.setdefault("YOLO_CONFIG_DIR", config_dir or default_dir)
    os.makedirs(os.environ["YOLO_CONFIG_DIR"], exist_ok=True)


def _openvino_opt_out() -> None:
    tool = shutil.which("opt_in_out")
    if tool:
        subprocess.run([tool, "--opt_out"], capture_output=True, timeout=20, check=False)


def check_model_path(model: str) -> str:
    """The model's path; DetectorError, saying how to provide it, when it is missing."""
    kind = backend_of(model)
    if kind.startswith("pytorch (random"):
        return model  # Ultralytics' own cfg/ resolves model YAMLs without the network
    if os.path.exists(model):
        return model
    hint = ("Ultralytics would download it, but detector_node never downloads (a robot may "
            "be offline): copy the file here from a machine with network, e.g. "
            "`yolo export model=yolo11n.pt format=onnx imgsz=320` there, and give its full "
            "path")
    raise DetectorError(f"parameter 'model': {model!r} does not exist "
                        f"(looked in {os.getcwd()}); {hint}")


class Detector:
    """One loaded model; ``detect`` runs it on an RGB (or BGR) frame."""

    def __init__(self, config: DetectorConfig) -> None:
        if config.imgsz < 32 or config.imgsz % 32:
            raise DetectorError(f"parameter 'imgsz': got {config.imgsz}, expected a multiple "
                                "of 32 (the model's stride), at least 32")
        self.config = config
        self.backend = backend_of(config.model)
        path = check_model_path(config.model)
        offline_environment()
        if self.backend == "openvino":
            _openvino_opt_out()
        try:
            import torch
            from ultralytics import YOLO
        except ImportError as exc:
            raise DetectorError(
                f"parameter 'yolo': the detector needs Ultralytics ({exc}); install the extra: "
                "`make setup YOLO=1`, or pip install -r tools/requirements-yolo.txt") from exc
        torch.set_num_threads(config.threads)
        try:
            self._model = YOLO(path, task="detect")
        except Exception as exc:  # Ultralytics raises many kinds for a bad file
            raise DetectorError(f"parameter 'model': {config.model!r} cannot be loaded: "
                                f"{exc}") from exc
        self.class_names: dict[int, str] = dict(self._model.names)
        bad = [c for c in config.classes if c not in self.class_names]
        if bad:
            raise DetectorError(f"parameter 'classes': {bad} not in the model's classes "
                                f"0..{len(self.class_names) - 1}")

    def detect(self, frame: np.ndarray, rgb: bool = True) -> DetectionResult:
        """Boxes on ``frame`` (H x W x 3 uint8)."""
        c = self.config
        bgr = frame[..., ::-1] if rgb else frame
        start = time.perf_counter()
        result = self._model.predict(
            source=np.ascontiguousarray(bgr), imgsz=c.imgsz, conf=c.conf, iou=c.iou,
            classes=list(c.classes) or None, max_det=c.max_det, device=c.device,
            verbose=False)[0]
        elapsed = (time.perf_counter() - start) * 1000
        boxes = result.boxes
        raw = boxes.data.cpu().numpy() if boxes is not None else np.zeros((0, 6))
        detections = [
            Detection(float((x1 + x2) / 2), float((y1 + y2) / 2), float(x2 - x1),
                      float(y2 - y1), int(cls), self.class_names.get(int(cls), str(int(cls))),
                      float(score))
            for x1, y1, x2, y2, score, cls in raw]
        return DetectionResult(detections, elapsed, raw)

    def export(self, fmt: str, out_dir: str) -> str:
        """Export this model (``onnx``, ``openvino``, ``ncnn``) at the configured imgsz."""
        path = str(self._model.export(format=fmt, imgsz=self.config.imgsz, device="cpu",
                                      verbose=False))
        # Ultralytics writes next to the model (the working directory for a YAML).
        os.makedirs(out_dir, exist_ok=True)
        target = os.path.join(out_dir, os.path.basename(path.rstrip("/")))
        if os.path.abspath(path) != os.path.abspath(target):
            if os.path.isdir(target):
                shutil.rmtree(target)
            shutil.move(path, target)
        return target

    def raw_output(self, tensor: np.ndarray) -> np.ndarray:
        """The network's own output for an NCHW float tensor (after one ``detect``): the
        same input through every backend must give the same numbers."""
        import torch
        backend = self._model.predictor.model  # Ultralytics' AutoBackend, any format
        with torch.no_grad():
            out = backend(torch.from_numpy(tensor))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out.cpu().numpy() if hasattr(out, "cpu") else np.asarray(out)

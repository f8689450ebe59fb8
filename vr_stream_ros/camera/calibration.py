"""A camera's calibration in the YAML file format of ROS's camera_calibration_parsers.

The robot stack's calibration tool (``camera_calibration``'s cameracalibrator) sends a
``sensor_msgs/CameraInfo`` to the camera's ``set_camera_info`` service, and the camera
keeps it in a file it reads again at start. That file is the one
camera_calibration_parsers reads and writes (``readCalibrationYml`` /
``writeCalibrationYml``; field names as listed in its parse_yml.cpp,
https://docs.ros.org/en/noetic/api/camera_calibration_parsers/html/parse__yml_8cpp_source.html)::

    image_width: 1280
    image_height: 720
    camera_name: camera
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [...]}
    projection_matrix: {rows: 3, cols: 4, data: [...]}

Where a file lives follows camera_info_manager (its documented URL rules, in
camera_info_manager.hpp of ros-perception/image_common, and its
``default_camera_info_url``,
https://docs.ros.org/en/api/camera_info_manager/html/namespacecamera__info__manager.html):
``camera_info_url`` is ``file:///path``, ``package://pkg/path`` or (ours) a plain path, with
``${NAME}`` (the camera name) and ``${ROS_HOME}`` substituted; an empty url means
``${ROS_HOME}/camera_info/${NAME}.yaml`` (ROS_HOME defaults to ~/.ros): used when that file
exists, and where set_camera_info saves.

Any defect of a file (missing, not YAML, a missing field, a matrix of the wrong size, an
image size other than the camera's) raises CalibrationError with one line naming the
file and the field. Read with PyYAML's safe loader. No rclpy here.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MATRICES = {
    # YAML key: (CameraInfo field, rows, cols); cols 0 = any length (D depends on the model)
    "camera_matrix": ("k", 3, 3),
    "distortion_coefficients": ("d", 1, 0),
    "rectification_matrix": ("r", 3, 3),
    "projection_matrix": ("p", 3, 4),
}
DISTORTION_SIZES = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
"""sensor_msgs/distortion_models.hpp: the models the calibration tool writes, and their D."""

CAMERA_NAME = re.compile(r"[A-Za-z0-9_]{1,200}")
"""camera_info_manager's camera name syntax: letters, digits and '_'."""


CAMERA_NAME_EXPECTS = "letters, digits and '_' (camera_info_manager's camera name syntax)"
URL_EXPECTS = ("'' (the default file), file:///absolute/path, package://<package>/<path> or "
               "a path (${NAME} and ${ROS_HOME} substituted)")


def check_camera_name(value: str) -> str | None:
    """Parameter check: a camera name camera_info_manager would accept."""
    return None if CAMERA_NAME.fullmatch(value) else CAMERA_NAME_EXPECTS


def check_camera_info_url(value: str) -> str | None:
    """Parameter check: the shape of a camera_info_url (the file is read at start)."""
    value = substitute(value, "camera")
    if value.startswith("package://"):
        package, _, rel = value[len("package://"):].partition("/")
        return None if package and rel else URL_EXPECTS
    if value.startswith("file://"):
        return None if value.startswith("file:///") else URL_EXPECTS
    return URL_EXPECTS if "://" in value else None


class CalibrationError(ValueError):
    """A calibration file or url that cannot be used; the message names file and field."""


@dataclass
class Calibration:
    """The calibration part of a sensor_msgs/CameraInfo (row-major, as in the message)."""

    width: int
    height: int
    camera_name: str = "camera"
    distortion_model: str = "plumb_bob"
    d: list[float] = field(default_factory=lambda: [0.0] * 5)
    k: list[float] = field(default_factory=lambda: [0.0] * 9)
    r: list[float] = field(default_factory=lambda: [0.0] * 9)
    p: list[float] = field(default_factory=lambda: [0.0] * 12)

    @classmethod
    def uncalibrated(cls, width: int, height: int, camera_name: str = "camera") -> Calibration:
        """K, R and P zero, no distortion: REP-104 reads this as 'not calibrated'."""
        return cls(width, height, camera_name, distortion_model="", d=[])

    @property
    def calibrated(self) -> bool:
        """True when K holds a focal length (an uncalibrated camera sends K zero)."""
        return self.k[0] != 0.0

    def check_size(self, width: int, height: int, where: str) -> None:
        """Raise CalibrationError unless calibrated for ``width`` x ``height`` pixels."""
        if (self.width, self.height) != (width, height):
            raise CalibrationError(
                f"{where}: image_width/image_height {self.width}x{self.height} differ from "
                f"the camera's {width}x{height} (per eye): calibrate at this size")

    def to_dict(self) -> dict[str, Any]:
        """The file's fields, in camera_calibration_parsers' order."""
        def matrix(values: list[float], rows: int) -> dict[str, Any]:
            return {"rows": rows, "cols": len(values) // rows if rows else 0,
                    "data": [float(v) for v in values]}
        return {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": self.camera_name,
            "camera_matrix": matrix(self.k, 3),
            "distortion_model": self.distortion_model,
            "distortion_coefficients": matrix(self.d, 1),
            "rectification_matrix": matrix(self.r, 3),
            "projection_matrix": matrix(self.p, 3),
        }


def dumps(cal: Calibration) -> str:
    """The YAML text of ``cal``; each matrix's data on one line, as the ROS tools write it.

    Numbers are written the way PyYAML reads them back exactly (``1.0e-05``, never
    ``1e-05``, which YAML 1.1 takes for a string)."""
    def flow(value: Any) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()

    out = []
    for key, value in cal.to_dict().items():
        if isinstance(value, dict):
            out.append(f"{key}:\n  rows: {value['rows']}\n  cols: {value['cols']}\n"
                       f"  data: {flow(value['data'])}")
        else:
            out.append(yaml.safe_dump({key: value}, width=1 << 20).rstrip("\n"))
    return "\n".join(out) + "\n"


def loads(text: str, where: str = "<calibration>") -> Calibration:
    """Parse the YAML text of a calibration file; ``where`` names it in errors."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise CalibrationError(f"{where}: not YAML{at}: expected a camera_calibration_parsers "
                               "file") from None
    if not isinstance(doc, dict):
        raise CalibrationError(f"{where}: expected a YAML mapping of calibration fields, got "
                               f"{type(doc).__name__}")
    width = _size(doc, "image_width", where)
    height = _size(doc, "image_height", where)
    name = doc.get("camera_name", "camera")
    if not isinstance(name, str):
        raise CalibrationError(f"{where}: camera_name: expected a string, got {name!r}")
    model = _require(doc, "distortion_model", where)
    if not isinstance(model, str):
        raise CalibrationError(f"{where}: distortion_model: expected a string such as "
                               f"plumb_bob, got {model!r}")
    values = {attr: _matrix(doc, key, rows, cols, where)
              for key, (attr, rows, cols) in MATRICES.items()}
    want = DISTORTION_SIZES.get(model)
    if want is not None and len(values["d"]) != want:
        raise CalibrationError(f"{where}: distortion_coefficients: {model} has {want} "
                               f"coefficients, got {len(values['d'])}")
    return Calibration(width, height, name, model, values["d"], values["k"], values["r"],
                       values["p"])


def read(path: str | Path) -> Calibration:
    """Read a calibration file, or raise CalibrationError naming the file and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"{path}: no such calibration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read the calibration file: {exc}") from None
    return loads(text, str(path))


def write(path: str | Path, cal: Calibration) -> None:
    """Write ``cal`` to ``path`` (directories created), replacing it atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dumps(cal), encoding="utf-8")
    tmp.replace(path)


def ros_home() -> Path:
    """$ROS_HOME, else ~/.ros (where ROS tools keep per-user state)."""
    return Path(os.environ.get("ROS_HOME") or Path.home() / ".ros")


def default_path(camera_name: str) -> Path:
    """camera_info_manager's default file: ${ROS_HOME}/camera_info/<camera_name>.yaml."""
    return ros_home() / "camera_info" / f"{camera_name}.yaml"


def substitute(url: str, camera_name: str) -> str:
    """camera_info_manager's variables: ``${NAME}`` and ``${ROS_HOME}`` (one pass)."""
    return re.sub(r"\$\{(NAME|ROS_HOME)\}",
                  lambda m: camera_name if m[1] == "NAME" else str(ros_home()), url)


def resolve_url(url: str, where: str = "camera_info_url",
                camera_name: str = "camera") -> Path | None:
    """The file of a camera_info_url: ``file:///abs``, a plain path, ``package://pkg/rel``
    (the package's share directory, via ament_index), variables substituted; '' gives
    None (the caller decides: see ``load``)."""
    if not url:
        return None
    url = substitute(url, camera_name)
    if url.startswith("file://"):
        path = url[len("file://"):]
        if not path.startswith("/"):
            raise CalibrationError(f"{where}: {url!r}: expected file:///absolute/path")
        return Path(path)
    if url.startswith("package://"):
        package, _, rel = url[len("package://"):].partition("/")
        if not package or not rel:
            raise CalibrationError(f"{where}: {url!r}: expected package://<package>/<path>")
        try:
            from ament_index_python.packages import (
                PackageNotFoundError,
                get_package_share_directory,
            )
        except ImportError:
            raise CalibrationError(f"{where}: {url!r}: package:// needs ament_index_python "
                                   "(a sourced ROS install)") from None
        try:
            return Path(get_package_share_directory(package)) / rel
        except PackageNotFoundError:
            raise CalibrationError(f"{where}: {url!r}: no ROS package {package!r}") from None
    if "://" in url:
        raise CalibrationError(f"{where}: {url!r}: expected file:///path, package://pkg/path "
                               "or a plain path")
    return Path(url).expanduser()


def load(url: str, width: int, height: int, camera_name: str,
         where: str = "camera_info_url",
         warn: Callable[[str], None] | None = None) -> tuple[Calibration, Path | None]:
    """The calibration a camera starts with, and the file it came from (None: none).

    A named file that is missing, malformed or not ``width`` x ``height`` raises
    CalibrationError: the user asked for it. With an empty url the default file
    (``default_path``) is used if it exists; a defect in it is passed to ``warn`` and
    the camera starts uncalibrated, as camera_info_manager does with its default.
    """
    path = resolve_url(url, where, camera_name)
    if path is None:
        default = default_path(camera_name)
        if default.exists():
            try:
                return _load_file(default, width, height, f"{where} '': {default}"), default
            except CalibrationError as exc:
                if warn is not None:
                    warn(f"{exc}; starting uncalibrated")
        return Calibration.uncalibrated(width, height, camera_name), None
    return _load_file(path, width, height, f"{where} {path}"), path


def _load_file(path: Path, width: int, height: int, where: str) -> Calibration:
    cal = read(path)
    cal.check_size(width, height, where)
    return cal


def _require(doc: dict, key: str, where: str) -> Any:
    if key not in doc:
        raise CalibrationError(f"{where}: {key}: missing (expected a "
                               "camera_calibration_parsers YAML file)")
    return doc[key]


def _size(doc: dict, key: str, where: str) -> int:
    value = _require(doc, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 65535:
        raise CalibrationError(f"{where}: {key}: expected pixels, an integer in 1..65535, "
                               f"got {value!r}")
    return value


def _matrix(doc: dict, key: str, rows: int, cols: int, where: str) -> list[float]:
    value = _require(doc, key, where)
    shape = f"{rows}x{cols}" if cols else f"{rows}xN"
    if not isinstance(value, dict):
        raise CalibrationError(f"{where}: {key}: expected a mapping with rows, cols and data "
                               f"({shape}), got {type(value).__name__}")
    data = value.get("data")
    if (value.get("rows") != rows or (cols and value.get("cols") != cols)
            or not isinstance(data, list)):
        raise CalibrationError(f"{where}: {key}: expected rows {rows}, cols "
                               f"{cols or 'N'} and a data list ({shape}), got rows "
                               f"{value.get('rows')!r}, cols {value.get('cols')!r}")
    n = value.get("cols")
    if isinstance(n, bool) or not isinstance(n, int) or len(data) != rows * n:
        raise CalibrationError(f"{where}: {key}: data has {len(data)} numbers, expected "
                               f"rows x cols = {rows} x {n!r}")
    numbers = []
    for i, v in enumerate(data):
        if isinstance(v, str):  # YAML 1.1 reads 1e-05 (no dot) as a string; yaml-cpp does not
            with contextlib.suppress(ValueError):
                v = float(v)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise CalibrationError(f"{where}: {key}: data[{i}] = {v!r}: expected a finite "
                                   "number")
        numbers.append(float(v))
    return numbers

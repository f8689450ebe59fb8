"""package.xml's rosdep keys resolve, and every third-party import of the code is declared.

`rosdep install --from-paths src -y --ignore-src` fails on the first key it cannot
resolve. Each key of package.xml must therefore be either in our own rosdep source
(tools/rosdep.yaml, registered as the README says) or in PUBLIC_KEYS below: keys looked
up by hand in a snapshot of ros/rosdistro (commit and date below). That lookup itself
cannot run here: CI reaches no network but the package registries, so a key renamed
upstream later is not noticed by this test; re-check PUBLIC_KEYS when bumping the distro.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OWN_ROSDEP = REPO / "tools" / "rosdep.yaml"

# Verified 2026-11-30 against ros/rosdistro 8468e88ccd52 (2026-08-22): key -> where it
# resolves and what it installs on Ubuntu noble (ROS 2 Jazzy).
PUBLIC_KEYS = {
    # ROS packages: released in jazzy/distribution.yaml (apt ros-jazzy-<name>).
    "ament_cmake": "jazzy/distribution.yaml (ament_cmake)",
    "ament_cmake_python": "jazzy/distribution.yaml (ament_cmake)",
    "rosidl_default_generators": "jazzy/distribution.yaml (rosidl_defaults)",
    "rosidl_default_runtime": "jazzy/distribution.yaml (rosidl_defaults)",
    "std_msgs": "jazzy/distribution.yaml (common_interfaces)",
    "sensor_msgs": "jazzy/distribution.yaml (common_interfaces)",
    "diagnostic_msgs": "jazzy/distribution.yaml (common_interfaces)",
    "rclpy": "jazzy/distribution.yaml (rclpy)",
    "rcl_interfaces": "jazzy/distribution.yaml (rcl_interfaces)",
    "ament_index_python": "jazzy/distribution.yaml (ament_index)",
    "launch": "jazzy/distribution.yaml (launch)",
    "launch_ros": "jazzy/distribution.yaml (launch_ros)",
    "vision_msgs": "jazzy/distribution.yaml (vision_msgs)",
    # System keys: rosdep/python.yaml, ubuntu entry.
    "python3-numpy": "rosdep/python.yaml: apt python3-numpy",
    "python3-opencv": "rosdep/python.yaml: apt python3-opencv",
    "python3-yaml": "rosdep/python.yaml: apt python3-yaml",
    "python3-psutil": "rosdep/python.yaml: apt python3-psutil",
    "python3-rich": "rosdep/python.yaml: apt python3-rich (pip rich on focal only)",
    "python3-matplotlib": "rosdep/python.yaml: apt python3-matplotlib",
    "python3-simplejpeg-pip": "rosdep/python.yaml: pip simplejpeg",
    "python3-aiortc": "rosdep/python.yaml: apt python3-aiortc (pip on focal only)",
    "python3-aiohttp": "rosdep/python.yaml: apt python3-aiohttp",
    "python3-cryptography": "rosdep/python.yaml: apt python3-cryptography",
    "python3-pytest": "rosdep/python.yaml: apt python3-pytest",
    "python3-pytest-timeout": "rosdep/python.yaml: apt python3-pytest-timeout",
    "python3-hypothesis": "rosdep/python.yaml: apt python3-hypothesis",
}

# Third-party modules the code imports -> the package.xml key that provides them.
IMPORT_KEYS = {
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml",
    "psutil": "python3-psutil", "rich": "python3-rich", "matplotlib": "python3-matplotlib",
    "simplejpeg": "python3-simplejpeg-pip", "aiortc": "python3-aiortc",
    "aioice": "python3-aiortc",  # aiortc's ICE: installed with it
    "aiohttp": "python3-aiohttp", "cryptography": "python3-cryptography", "av": "python3-av",
    "rclpy": "rclpy", "rcl_interfaces": "rcl_interfaces", "std_msgs": "std_msgs",
    "sensor_msgs": "sensor_msgs", "diagnostic_msgs": "diagnostic_msgs",
    "ament_index_python": "ament_index_python", "vision_msgs": "vision_msgs",
    "launch": "launch", "launch_ros": "launch_ros",
}
# Imported, deliberately not in package.xml: each says where it is documented instead.
OPTIONAL_IMPORTS = {
    "picamera2": "camera:=picamera2 on a Raspberry Pi (Raspberry Pi OS ships it)",
    "libcamera": "comes with picamera2",
    "torch": "detector extra: tools/requirements-yolo.txt",
    "ultralytics": "detector extra: tools/requirements-yolo.txt",
    "selenium": "bench/webrtc.py only (make bench-webrtc; bench/ is not installed on a robot)",
}


def _package_keys() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {e.text.strip() for e in root if e.tag.endswith("depend") and e.text}


def _own_keys() -> dict:
    with open(OWN_ROSDEP) as f:
        return yaml.safe_load(f)


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> first file importing it, over vr_stream_ros/ and launch/."""
    found: dict[str, str] = {}
    files = sorted((REPO / "vr_stream_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("vr_stream_ros",
                                                                       "__future__"):
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_package_key_resolves_in_our_rosdep_file_or_a_verified_public_one() -> None:
    own = _own_keys()
    unresolved = sorted(k for k in _package_keys() if k not in own and k not in PUBLIC_KEYS)
    assert not unresolved, (f"package.xml keys in neither {OWN_ROSDEP.name} nor the keys "
                            f"verified against ros/rosdistro: {unresolved}")
    assert not own.keys() & PUBLIC_KEYS.keys(), "a key is both ours and public: drop ours"


def test_our_rosdep_file_covers_debian_and_ubuntu_and_is_used() -> None:
    own = _own_keys()
    assert own, f"{OWN_ROSDEP} defines no key"
    used = _package_keys()
    for key, rules in own.items():
        assert key in used, f"{OWN_ROSDEP.name}: {key} is not used by package.xml"
        assert {"debian", "ubuntu"} <= rules.keys(), f"{key}: needs debian and ubuntu rules"


def test_every_third_party_import_is_declared_or_documented_optional() -> None:
    keys = _package_keys()
    imports = _third_party_imports()
    unknown = {m: f for m, f in imports.items() if m not in IMPORT_KEYS
               and m not in OPTIONAL_IMPORTS}
    assert not unknown, f"imports with no package.xml key or optional note: {unknown}"
    undeclared = {m: IMPORT_KEYS[m] for m in imports if m in IMPORT_KEYS
                  and IMPORT_KEYS[m] not in keys}
    assert not undeclared, f"imported but package.xml lacks the key: {undeclared}"
    for module in OPTIONAL_IMPORTS:
        assert module not in keys, f"{module} is optional: it must not be in package.xml"
    assert "python3-picamera2" not in keys, "no rosdep key exists for it (see package.xml)"

"""pip install of the ROS-free half, for the PC or laptop beside the headset (no ROS there).

    pip install .                    # or: pip install "git+https://<repo>.git"
    pip install ".[plot]"            # with matplotlib, for vr-stream-plot-latency

installs the reference receiver, the RTP/RTCP protocol, socket senders, the frame ring,
the latency libraries and the tune command, with only what they import (numpy,
simplejpeg, psutil; matplotlib as the ``plot`` extra). It leaves out nodes/ and ros/
(rclpy and the generated messages: colcon builds those, see CMakeLists.txt), the launch
half of graph/, webrtc/, codecs/, detection/ and bench/.

colcon still builds this package with CMakeLists.txt: package.xml's
<build_type>ament_cmake</build_type> decides, not the presence of this file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# Subpackages whose every module imports without ROS and with the dependencies below.
PACKAGES = [
    "vr_stream_ros",
    "vr_stream_ros.camera",  # pattern.read_stamp for the receiver; backends import lazily
    "vr_stream_ros.graph",  # param_spec: the one set of validators the senders and tune use
    "vr_stream_ros.latency",
    "vr_stream_ros.net",
    "vr_stream_ros.ring",
    "vr_stream_ros.rtp",
    "vr_stream_ros.system",
    "vr_stream_ros.tools",
]
# Modules of those packages that belong to the ROS half or to the developer's checkout:
# the dashboard's rendering (rich) is shown only by nodes/dashboard_node.py; the launch
# description, `make run`, its process harness, the topic spec and the reference generator
# (yaml, the colcon install); the Chromium driver of the tests and benches (selenium, apt).
LEFT_OUT = {("vr_stream_ros.tools", "dashboard_view"), ("vr_stream_ros.tools", "chromium"),
            ("vr_stream_ros.tools", "apt"), ("vr_stream_ros.graph", "launches"),
            ("vr_stream_ros.graph", "runner"), ("vr_stream_ros.graph", "processes"),
            ("vr_stream_ros.graph", "reference"), ("vr_stream_ros.graph", "topics")}


class BuildPyRosFree(build_py):
    """build_py without LEFT_OUT."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) not in LEFT_OUT]


def _version() -> str:
    """The version in package.xml (one place for colcon and pip)."""
    version = ET.parse(HERE / "package.xml").getroot().findtext("version")
    if not version:
        raise SystemExit("package.xml: no <version> element")
    return version.strip()


setup(
    name="vr_stream_ros",
    version=_version(),
    description="ROS-free half of vr_stream_ros: reference RTP/JPEG receiver, protocol, "
                "frame ring, latency tools and tune",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=PACKAGES,
    cmdclass={"build_py": BuildPyRosFree},
    install_requires=[
        "numpy>=1.26",
        "simplejpeg>=1.8",  # receiver: JPEG decode (libjpeg-turbo)
        "psutil>=5.9",  # tune (through system/monitor.py)
        "pyyaml>=6",  # camera/calibration.py: camera_calibration_parsers YAML files
    ],
    extras_require={"plot": ["matplotlib>=3.8"]},
    entry_points={
        "console_scripts": [
            "vr-stream-receiver = vr_stream_ros.tools.receiver:main",
            "vr-stream-tune = vr_stream_ros.system.tune:main",
            "vr-stream-plot-latency = vr_stream_ros.latency.plot:main",
        ],
    },
)

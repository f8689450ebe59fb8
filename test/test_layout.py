"""The package's layout rules, read from the source by AST (no module is imported).

rclpy, ROS messages and launch may be imported only by the ROS shells
(vr_stream_ros/nodes, vr_stream_ros/ros); every other subpackage is a library that
a machine without ROS can import. Ruff's TID251 rule (pyproject.toml) says the same
at lint time; this test also sees imports hidden behind ``# noqa``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vr_stream_ros"
ROS_SHELLS = ("nodes", "ros")
ROS_ONLY = ("rclpy", "launch", "launch_ros", "sensor_msgs", "std_msgs", "diagnostic_msgs",
            "rcl_interfaces", "builtin_interfaces", "vision_msgs", "vr_stream_ros.msg",
            "vr_stream_ros.nodes", "vr_stream_ros.ros")
SUBPACKAGES = {"bench", "camera", "codecs", "detection", "graph", "latency", "net", "nodes",
               "ring", "ros", "rtp", "sinks", "system", "tools", "webrtc"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in ``path``, lazy ones inside functions included."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from vr_stream_ros import msg` names the module in the alias
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_ros_only(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in ROS_ONLY)


def library_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.relative_to(PACKAGE).parts[0] not in ROS_SHELLS)


def test_imported_modules_sees_every_form(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("import os\nfrom rclpy.node import Node\n"
                      "def f():\n    import sensor_msgs.msg\n"
                      "from vr_stream_ros import msg\n")
    modules = imported_modules(source)
    assert (1, "os") in modules
    assert sorted({line for line, m in modules if is_ros_only(m)}) == [2, 4, 5]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_libraries_do_not_import_ros(path):
    offending = [f"line {line}: {m}" for line, m in imported_modules(path) if is_ros_only(m)]
    assert not offending, (f"{path.relative_to(PACKAGE.parent)} imports ROS outside "
                           f"vr_stream_ros/nodes and vr_stream_ros/ros: {offending}")


def test_no_module_left_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert top == [], f"modules belong in a subpackage, found at the top: {top}"


def test_every_subpackage_says_what_it_holds():
    present = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert present >= SUBPACKAGES, f"missing subpackages: {sorted(SUBPACKAGES - present)}"
    for name in present:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc, f"vr_stream_ros/{name}/__init__.py has no docstring saying what it holds"

"""Under CI=true a skip fails the run unless its reason is on ALLOWED_SKIPS.

A test that skips because a Debian tool went missing, an export broke or an extra was
not installed turns green into silence; in CI that is a failure. Skips that CI cannot
avoid (hardware it does not have, packages with no wheel) are listed with where the
test does run. Outside CI (CI unset) skips stay skips. Registered by test/conftest.py.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class AllowedSkip:
    """A skip reason CI may show (regular expression) and where that test does run."""

    pattern: str
    runs_on: str


ALLOWED_SKIPS: tuple[AllowedSkip, ...] = (
    AllowedSkip(r"^no V4L2 device here",
                "a robot or PC with a USB camera (test_camera_backends, camera:=v4l2)"),
    AllowedSkip(r"^launch_ros has no PyPI wheel",
                "a robot with ros-jazzy-launch-ros from apt (test_launch_graph)"),
    AllowedSkip(r"^needs ROS 2's `ros2 launch`",
                "a robot with ros-jazzy-ros2launch from apt (test_launch_graph: the real "
                "`ros2 launch` refusing a misspelled argument, quiet stop, exit 1 on a crash, "
                "a SIGKILLed camera respawned or, with respawn:=false, ending the launch)"),
)


def in_ci() -> bool:
    """CI=true (or 1/yes), as .ci/run is started."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The text pytest shows for a skip (without the 'Skipped: ' prefix)."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def allowed(reason: str) -> AllowedSkip | None:
    """The allow-list entry matching ``reason``, if any."""
    return next((a for a in ALLOWED_SKIPS if re.search(a.pattern, reason)), None)


def _enforce(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = skip_reason(report)
    if allowed(reason) is None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI=true for a reason not on the allow-list: {reason!r}\n"
            "Make the test run in CI (install what it needs), or, if CI truly cannot run "
            "it, add the reason and where it does run to ALLOWED_SKIPS in "
            "test/skip_policy.py.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    _enforce(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    _enforce(outcome.get_result())  # a module-level skip (importorskip at import time)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Under CI, say where each allowed skip does run."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not in_ci() or not skipped:
        return
    terminalreporter.section("skip policy (CI=true)")
    for report in skipped:
        entry = allowed(skip_reason(report))
        where = entry.runs_on if entry else "?"
        terminalreporter.write_line(f"{report.nodeid}: allowed, runs on {where}")

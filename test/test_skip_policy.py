"""The skip policy (skip_policy.py) in pytest runs of its own: unlisted skips fail under CI."""

from __future__ import annotations

import pytest
from skip_policy import ALLOWED_SKIPS

pytest_plugins = ["pytester"]

UNLISTED = '''
import pytest

def test_needs_a_tool():
    pytest.skip("gst-launch-1.0 missing and apt-get unavailable")

@pytest.mark.skipif(True, reason="the YOLO extra is not installed")
def test_marked():
    pass

def test_runs():
    pass
'''


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run ``source`` as a test file with the policy registered, CI set as asked."""
    pytester.makeconftest('pytest_plugins = ["skip_policy"]')

    def _run(source: str, ci: str | None) -> pytest.RunResult:
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        pytester.makepyfile(test_policy=source)
        return pytester.runpytest("-p", "no:cacheprovider", "-rs")
    return _run


def test_unlisted_skips_fail_under_ci(run) -> None:
    result = run(UNLISTED, "true")
    result.assert_outcomes(passed=1, failed=1, errors=1)  # skipif acts in setup: an error
    result.stdout.fnmatch_lines(["*not on the allow-list: 'gst-launch-1.0 missing*"])
    result.stdout.fnmatch_lines(["*not on the allow-list: 'the YOLO extra is not installed'*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_unlisted_skips_stay_skips_outside_ci(run) -> None:
    result = run(UNLISTED, None)
    result.assert_outcomes(passed=1, skipped=2)
    assert result.ret == pytest.ExitCode.OK
    assert run(UNLISTED, "false").ret == pytest.ExitCode.OK


@pytest.mark.parametrize("entry", ALLOWED_SKIPS, ids=lambda a: a.pattern)
def test_allowed_skips_pass_under_ci_and_say_where_they_run(run, entry) -> None:
    reason = entry.pattern.lstrip("^").replace("\\", "") + " (as the real test says)"
    result = run(f"import pytest\ndef test_x():\n    pytest.skip({reason!r})\n", "true")
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*test_x: allowed, runs on {entry.runs_on}*"])


def test_module_level_skip_fails_under_ci(run) -> None:
    result = run('import pytest\npytest.importorskip("no_such_module_here")\n'
                 "def test_x():\n    pass\n", "true")
    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*not on the allow-list*no_such_module_here*"])


def test_xfail_is_not_a_skip(run) -> None:
    result = run("import pytest\n@pytest.mark.xfail(reason='known')\n"
                 "def test_x():\n    assert False\n", "true")
    result.assert_outcomes(xfailed=1)
    assert result.ret == pytest.ExitCode.OK

"""tests/harness/ci_skips.py: with CI=true a skip fails the run unless it is allow-listed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import skip_allowlist

PLUGIN = ("-p", "tests.harness.ci_skips", "-p", "no:cacheprovider", "-p", "no:asyncio")

SKIPPING = '''
import shutil
import pytest

def need(tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")

@pytest.fixture
def tool():
    need("no-such-tool-for-rumor")

def test_runs():
    assert True

def test_fixture_skips(tool):
    pass

@pytest.mark.skipif(True, reason="marked to skip")
def test_marked():
    pass

def test_skips_inside():
    pytest.skip("skipped in the body")

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_xfail():
    assert False
'''


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None
        ) -> pytest.RunResult:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_inprocess(*PLUGIN, "-ra")


def test_without_ci_a_skip_is_a_skip(pytester: pytest.Pytester,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_skipping=SKIPPING)
    result = run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    assert "unexpected skip" not in result.stdout.str()


@pytest.mark.parametrize("ci", ["true", "1"])
def test_in_ci_every_skip_fails_and_is_listed(pytester: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    pytester.makepyfile(test_skipping=SKIPPING)
    result = run(pytester, monkeypatch, ci)
    # a skip in setup (fixture, skipif) becomes an error, one in the body a failure;
    # the xfail stays an xfail
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*unexpected skips in CI: 3*",
        "SKIP IS FAILURE test_skipping.py::test_fixture_skips: no-such-tool-for-rumor is *",
        "SKIP IS FAILURE test_skipping.py::test_marked: marked to skip",
        "SKIP IS FAILURE test_skipping.py::test_skips_inside: skipped in the body",
        "*scripts/setup-system.sh*tests/skip_allowlist.py*",
    ])


def test_in_ci_every_skip_fails_under_xdist_too(pytester: pytest.Pytester,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``make test`` runs two xdist workers: the skips happen there, and the controller
    still fails the run and lists them, a module skipped at collection included."""
    pytester.makepyfile(test_skipping=SKIPPING, test_mod='''
import pytest
pytest.importorskip("no_such_module_for_rumor")

def test_never_collected():
    pass
''')
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    result = pytester.runpytest_subprocess(*PLUGIN, "-ra", "-n", "2", "-p", "xdist")
    # the skipped module counts as a skip; it fails the run all the same
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random([
        "*unexpected skips in CI: 4*",
        "SKIP IS FAILURE test_skipping.py::test_fixture_skips: no-such-tool-for-rumor is *",
        "SKIP IS FAILURE test_skipping.py::test_marked: marked to skip",
        "SKIP IS FAILURE test_skipping.py::test_skips_inside: skipped in the body",
        "SKIP IS FAILURE test_mod.py: *no_such_module_for_rumor*",
    ])


def test_in_ci_allow_listed_skips_pass(pytester: pytest.Pytester,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_skipping=SKIPPING)
    monkeypatch.setattr(skip_allowlist, "ALLOWED", {
        "test_skipping.py::test_fixture_skips": "the tool cannot exist on CI (test of the list)",
        "test_skipping.py::test_mark*": "pattern entry",
    })
    result = run(pytester, monkeypatch, "true")
    result.assert_outcomes(passed=1, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(["*unexpected skips in CI: 1*",
                                 "SKIP IS FAILURE test_skipping.py::test_skips_inside: *"])
    monkeypatch.setattr(skip_allowlist, "ALLOWED", {"test_skipping.py::*": "all of them"})
    result = run(pytester, monkeypatch, "true")
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


def test_in_ci_a_module_skipped_at_collection_fails_the_run(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_mod='''
import pytest
pytest.importorskip("no_such_module_for_rumor")

def test_never_collected():
    pass
''', test_other="def test_ok():\n    pass\n")
    result = run(pytester, monkeypatch, None)
    assert result.ret == pytest.ExitCode.OK
    result = run(pytester, monkeypatch, "true")
    result.assert_outcomes(passed=1, skipped=1)         # the other module still ran
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*unexpected skips in CI: 1*",
                                 "SKIP IS FAILURE test_mod.py: *no_such_module_for_rumor*"])


def test_in_ci_a_missing_serf_or_dig_fails(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """The suite's own ``need()`` (tests/conftest.py), with PATH stripped of every tool."""
    pytester.makepyfile(test_tools='''
import pytest
from tests.conftest import need

@pytest.mark.parametrize("tool", ["serf", "dig"])
def test_drives(tool):
    need(tool)
''')
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = run(pytester, monkeypatch, None)
    result.assert_outcomes(skipped=2)
    result = run(pytester, monkeypatch, "true")
    result.assert_outcomes(failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*test_drives?serf?: serf is not installed*",
                                 "*test_drives?dig?: dig is not installed*"])


def test_the_suite_allow_list_is_explained() -> None:
    """Every entry of the real list carries a reason a reader can check."""
    for pattern, reason in skip_allowlist.ALLOWED.items():
        assert "::" in pattern or pattern.endswith(".py"), pattern
        assert len(reason.split()) >= 4, f"{pattern}: give a real reason"

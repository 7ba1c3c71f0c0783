"""In CI (``CI=true``) a skipped test fails the run, unless tests/skip_allowlist.py names it.

A skip on CI hides what it was meant to check: a missing ``serf`` or ``dig``, a C extension
that was not built, a namespace test run without root. So when ``CI`` is set:

- a test whose setup or call skips (``pytest.skip``, ``skipif``, ``importorskip``, ``need()``,
  a fixture that skips) is reported as an error instead, with the skip's reason;
- a module skipped at collection fails the run at the end (the other tests still run);
- the terminal summary lists every unexpected skip.

xfail is not a skip and is left alone. Without ``CI`` nothing changes: skips stay skips, so a
developer without chromium can still run the rest.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Generator
from typing import Any

import pytest

from tests import skip_allowlist

_UNEXPECTED = pytest.StashKey[list[tuple[str, str]]]()

HINT = ("a skip fails CI (CI=true): install what the test needs in scripts/setup-system.sh, "
        "or allow-list the test with its reason in tests/skip_allowlist.py")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed(nodeid: str) -> str | None:
    """The allow-list's reason for skipping ``nodeid``, or None when it may not skip."""
    for pattern, reason in skip_allowlist.ALLOWED.items():
        if fnmatch.fnmatchcase(nodeid, pattern):
            return reason
    return None


def _reason(rep: pytest.TestReport | pytest.CollectReport) -> str:
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return str(lr)


def _unexpected(config: pytest.Config) -> list[tuple[str, str]]:
    return config.stash.setdefault(_UNEXPECTED, [])


_PROPERTY = "unexpected_skip_in_ci"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    rep = yield
    if rep.skipped and not hasattr(rep, "wasxfail") and in_ci() and allowed(rep.nodeid) is None:
        reason = _reason(rep)
        rep.outcome = "failed"
        rep.longrepr = f"unexpected skip in CI: {reason}\n{HINT}"
        # carried with the report, so that an xdist controller lists it too
        rep.user_properties.append((_PROPERTY, reason))
    return rep


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    rep = yield
    if rep.skipped and in_ci() and allowed(rep.nodeid) is None:
        _unexpected(collector.config).append((rep.nodeid, _reason(rep)))
    return rep


class _Recorder:
    """Lists the unexpected skips where the reports arrive: in the only process, or under
    xdist in the controller (the tests and the collection run in the workers; the controller
    prints the summary and sets the exit status)."""

    def __init__(self, config: pytest.Config, controller: bool) -> None:
        self.config = config
        self.controller = controller

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # the workers' reports come with their user properties
        for name, reason in report.user_properties:
            if name == _PROPERTY:
                _unexpected(self.config).append((report.nodeid, str(reason)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # xdist forwards a worker's skipped collection to the controller
        if (self.controller and report.skipped and in_ci()
                and allowed(report.nodeid) is None):
            _unexpected(self.config).append((report.nodeid, _reason(report)))


def pytest_configure(config: pytest.Config) -> None:
    controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput")
    config.pluginmanager.register(_Recorder(config, controller))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    found = _unexpected(config)
    if not found:
        return
    terminalreporter.section(f"unexpected skips in CI: {len(found)}", sep="=", red=True)
    for nodeid, reason in found:
        terminalreporter.line(f"SKIP IS FAILURE {nodeid}: {reason}")
    terminalreporter.line(HINT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _unexpected(session.config) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Fixtures shared by every test: real agents on loopback and hosts in network namespaces."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.agents import Cluster

# ci_skips: with CI=true a skip fails the run (allow-list: tests/skip_allowlist.py).
pytest_plugins = ("pytester", "tests.harness.ci_skips")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Start agents with ``cluster.start_loopback(n)``; all are stopped at the end."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
        for a in c.agents:
            if a.log_path.exists():
                # Keep the tail of each log in the report when a test fails.
                print(f"--- log of {a.name} ---\n{a.log_tail(25)}")


@pytest.fixture
def netns_lab() -> Iterator[Callable[[int], netns.Lab]]:
    """``lab = netns_lab(3)`` makes three hosts; every namespace is deleted afterwards."""
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    labs: list[netns.Lab] = []

    def make(n: int) -> netns.Lab:
        lab = netns.Lab(n)
        labs.append(lab)
        return lab.__enter__()

    try:
        yield make
    finally:
        for lab in labs:
            lab.close()


def need(tool: str) -> None:
    """Skip with a clear reason when a Debian tool the test drives is missing (a failure in CI,
    see tests/harness/ci_skips.py)."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")

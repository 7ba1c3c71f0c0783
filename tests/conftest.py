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

SERIAL = "serial"
"""The xdist group of the tests that build network namespaces (partitions, loss, heals,
federation, the examples): ``make test`` runs the suite on two workers (``-n 2 --dist
loadgroup``), and these run one after the other on one worker, never two labs at once."""


def serial(item: pytest.Item) -> bool:
    return (item.get_closest_marker("netns") is not None
            or "netns_lab" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests for ``--dist loadgroup``: the namespace tests in one serial group, put
    first (with ``--no-loadscope-reorder`` the longest chain starts at once), every other test
    with the rest of its module (its module-scoped fixtures are set up once, on one worker).
    Without xdist the groups are inert and only the order changes."""
    first = [i for i in items if serial(i)]
    rest = [i for i in items if not serial(i)]
    for i in first:
        i.add_marker(pytest.mark.xdist_group(SERIAL))
    for i in rest:
        i.add_marker(pytest.mark.xdist_group(i.nodeid.split("::", 1)[0]))
    items[:] = first + rest


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

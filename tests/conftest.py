"""Fixtures shared by every test: real agents on loopback and hosts in network namespaces."""

from __future__ import annotations

import importlib
import inspect
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import netns
from tests.harness.agents import Cluster

# ci_skips: with CI=true a skip fails the run (allow-list: tests/skip_allowlist.py).
pytest_plugins = ("pytester", "tests.harness.ci_skips")

SERIAL = "serial"
"""The xdist group of the tests that build network namespaces (partitions, loss, heals,
federation, the examples). ``make test`` runs the suite on two workers (``-n 2 --dist
loadgroup``): these run one after the other on one worker, never two labs at once, and every
other test runs on the worker that runs the rest of its module (its module-scoped fixtures
are set up once)."""


def _marked(obj: object, name: str) -> bool:
    marks = getattr(obj, "pytestmark", [])
    return any(m.name == name for m in (marks if isinstance(marks, list) else [marks]))


def serial_nodeid(nodeid: str) -> bool:
    """Whether the test is a namespace test: marked ``netns`` (itself, its class or its
    module) or using the ``netns_lab`` fixture. Decided from the node id, because xdist's
    controller schedules node ids and holds no items."""
    path, _, rest = nodeid.partition("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    obj: object = module
    chain = [module]
    for part in rest.split("::"):
        obj = getattr(obj, part.split("[", 1)[0], None)
        if obj is None:
            return False
        chain.append(obj)
    if any(_marked(o, "netns") for o in chain):
        return True
    try:
        return "netns_lab" in inspect.signature(obj).parameters  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def serial(item: pytest.Item) -> bool:
    return (item.get_closest_marker("netns") is not None
            or "netns_lab" in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The namespace tests first, then the modules with a test marked ``slow``, then the
    rest: with ``--no-loadscope-reorder`` the longest chain of the run starts at once on one
    worker, and a long test is not the last one left running."""
    slow = {i.nodeid.split("::", 1)[0] for i in items if i.get_closest_marker("slow")}

    def rank(i: pytest.Item) -> int:
        return 0 if serial(i) else 1 if i.nodeid.split("::", 1)[0] in slow else 2

    items.sort(key=rank)  # stable: the order within each rank is the collection's


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with our groups: the namespace tests in one (:data:`SERIAL`),
    every other module its own. (xdist's own ``xdist_group`` marker is not used: with pytest
    9.2 xdist 3.8 cannot rename the node ids that carry it.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Groups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            nodeid = nodeid.rsplit("@", 1)[0]
            return SERIAL if serial_nodeid(nodeid) else nodeid.split("::", 1)[0]

    return Groups(config, log)


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

"""The in-memory view: index, case-insensitive lookup, health filter, waking waiters."""

from __future__ import annotations

import asyncio

from lb.memview import MemInstance, MemoryView


async def test_set_instances_bumps_index_and_wakes_waiters() -> None:
    v = MemoryView()
    i0 = v.index
    waiter = asyncio.create_task(v.wait(i0, 5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    v.set_instances("Web", [MemInstance("web", 2, node="b"), MemInstance("web", 1, node="a")])
    assert await asyncio.wait_for(waiter, 1.0) == i0 + 1
    assert [i.port for i in v.instances("WEB")] == [1, 2]      # sorted by node
    assert v.services() == {"web": frozenset()}


async def test_wait_times_out_and_returns_current() -> None:
    v = MemoryView()
    assert await v.wait(v.index, 0.01) == v.index
    assert await v.wait(v.index - 1, 5.0) == v.index          # already past: immediate


def test_tag_and_passing_filters() -> None:
    v = MemoryView()
    v.set_instances("web", [MemInstance("web", 1, node="a", tags=("V2",)),
                            MemInstance("web", 2, node="b", health="warning")])
    assert [i.port for i in v.instances("web", "v2")] == [1]
    assert [i.port for i in v.instances("web", passing_only=True)] == [1]
    v.remove_instance("web", "web-1")
    assert [i.port for i in v.instances("web")] == [2]
    v.set_instances("web", [])
    assert v.services() == {}

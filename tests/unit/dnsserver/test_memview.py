"""The in-memory view honours the contract: health filtering, case, order, index, wait."""

from __future__ import annotations

import asyncio

from dnsserver import MemoryView


def test_instances_filter_and_order() -> None:
    v = MemoryView("dc7")
    v.add_node("b", "10.0.0.2")
    v.add_node("a", "10.0.0.1")
    v.register("b", "Web", port=1, tags=["Blue"])
    v.register("a", "web", service_id="web-2", port=2, status="warning")
    v.register("a", "web", service_id="web-1", port=3)
    assert [(i.node, i.service_id) for i in v.instances("WEB")] == [
        ("a", "web-1"), ("a", "web-2"), ("b", "Web")]
    assert [i.port for i in v.instances("web", passing_only=True)] == [3, 1]
    assert [i.port for i in v.instances("web", "blue")] == [1]
    assert v.instances("web")[0].datacenter == "dc7"
    v.set_health("a", "web-1", "critical")
    assert [i.port for i in v.instances("web")] == [2, 1]
    v.set_node_status("b", "failed")
    assert [i.port for i in v.instances("web")] == [2]
    assert v.services() == {"Web": frozenset({"Blue"}), "web": frozenset()}
    assert v.node("A") is not None and v.node("zz") is None


async def test_index_and_wait() -> None:
    v = MemoryView()
    i0 = v.index
    assert i0 >= 1
    assert await v.wait(i0 - 1, 5) == i0
    assert await v.wait(i0, 0.01) == i0
    waiter = asyncio.create_task(v.wait(i0, 5))
    await asyncio.sleep(0)
    v.add_node("n", "10.0.0.1")
    assert await asyncio.wait_for(waiter, 2) == i0 + 1

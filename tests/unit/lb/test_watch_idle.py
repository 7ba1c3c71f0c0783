"""The view watcher sleeps while the balancer has no listener, and a listener added later still
follows the view: a change made while it was being added is not missed."""

from __future__ import annotations

import asyncio

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb.testing import start_echo_backend, wait_for


class CountingView(MemoryView):
    """A real in-memory view that counts the watcher's waits."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait(self, index: int, timeout: float) -> int:
        self.waits += 1
        return await super().wait(index, timeout)


def ports(lb: LoadBalancer) -> set[int]:
    info = lb.listener("t")
    assert info is not None
    return {b["Port"] for b in info["Backends"] if not b["Draining"]}


async def test_no_listener_no_wakeups_then_a_listener_follows_the_view() -> None:
    view = CountingView()
    lb = LoadBalancer(LBConfig(), view)
    await lb.start()
    backends = [await start_echo_backend(f"e{i}", "reply-on-eof") for i in range(2)]
    try:
        for i in range(50):   # a join storm's catalog changes, nobody to refresh
            view.set_instances("echo", [MemInstance("echo", 1000 + i, node="n")])
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert view.waits == 0

        view.set_instances("echo", [MemInstance("echo", backends[0].port, node="a")])
        await lb.add_listener({"Name": "t", "Bind": "127.0.0.1:0", "Mode": "tcp",
                               "Service": "echo"})
        assert ports(lb) == {backends[0].port}
        view.set_instances("echo", [MemInstance("echo", b.port, node=b.name)
                                    for b in backends])
        await wait_for(lambda: ports(lb) == {b.port for b in backends}, 5.0)
        assert view.waits >= 1

        await lb.remove_listener("t")
        await asyncio.sleep(0.05)
        view.set_instances("echo", [])      # wakes the watcher once; then it sleeps again
        await asyncio.sleep(0.05)
        settled = view.waits
        for i in range(20):
            view.set_instances("echo", [MemInstance("echo", 2000 + i, node="n")])
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert view.waits == settled
    finally:
        await lb.stop(1.0)
        for b in backends:
            await b.close()

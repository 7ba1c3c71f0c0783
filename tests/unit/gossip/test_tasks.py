"""TaskOwner: the one TaskGroup that owns a service's background tasks."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from gossip.tasks import TaskOwner


async def test_close_cancels_every_child_and_waits_for_it() -> None:
    owner = TaskOwner("t")
    await owner.open()
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits still runs to the end
            cleaned.append(name)

    tasks = [owner.spawn(forever(f"c{i}"), f"c{i}") for i in range(3)]
    assert all(t is not None and t.get_name() == f"t-c{i}" for i, t in enumerate(tasks))
    await asyncio.sleep(0)
    await owner.close()
    assert sorted(cleaned) == ["c0", "c1", "c2"]
    assert all(t is not None and t.done() for t in tasks)
    assert not owner.running
    await owner.close()  # idempotent


async def test_a_failing_child_is_logged_and_does_not_stop_its_siblings(
        caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskOwner("t")
    await owner.open()
    done = asyncio.Event()

    async def boom() -> None:
        raise RuntimeError("bug")

    async def sibling() -> None:
        await asyncio.sleep(0.01)
        done.set()

    with caplog.at_level(logging.ERROR, logger="gossip.tasks"):
        owner.spawn(boom(), "boom")
        owner.spawn(sibling(), "sibling")
        async with asyncio.timeout(5.0):
            await done.wait()
    assert owner.running
    assert any("task=t-boom" in r.getMessage() for r in caplog.records)
    await owner.close()


async def test_spawn_after_close_refuses_and_closes_the_coroutine() -> None:
    owner = TaskOwner("t")
    await owner.open()
    await owner.close()
    ran: list[int] = []

    async def work() -> None:
        ran.append(1)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        assert owner.spawn(work(), "late") is None
        gc.collect()
    assert ran == []


async def test_spawn_before_open_refuses() -> None:
    owner = TaskOwner("t")

    async def work() -> None:
        return None

    assert owner.spawn(work(), "early") is None

"""An idle gossip agent does not wake for work it does not have (issue 18), yet still writes
its snapshot and sends its news as soon as there is some. Two real Gossip services on
loopback, with the asyncio transport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from gossip import Gossip, MemberlistConfig, SerfConfig


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def _node(name: str, snapshot: Path | None) -> Gossip:
    ml = MemberlistConfig.lan(name=name, bind_addr="127.0.0.1", bind_port=0)
    serf = SerfConfig.local(name, snapshot_path=str(snapshot) if snapshot else "")
    return Gossip(ml, serf)


async def test_idle_snapshot_writer_sleeps_and_wakes_for_news(tmp_path: Path) -> None:
    snap = tmp_path / "a.snapshot"
    a, b = _node("a", snap), _node("b", None)
    await a.start()
    await b.start()
    try:
        await b.join([f"127.0.0.1:{a.bound_port}"])
        # the join is recorded within a flush interval or so
        await _until(lambda: snap.exists() and "alive: b " in snap.read_text(), 5.0,
                     "b in a's snapshot")
        # idle: the writer waits for a change instead of ticking; the file stays as it is
        await _until(lambda: not a._snapshot_wake.is_set(), 5.0, "the writer to go quiet")
        before = snap.read_text()
        await asyncio.sleep(1.5)
        assert not a._snapshot_wake.is_set()
        assert snap.read_text() == before
        # news from b (a user event moves the event clock): a's writer wakes on the packet
        # and records the clock within its flush interval (0.5 s), as before
        await b.user_event("deploy", b"v2")
        t = await _until(lambda: "event-clock:" in snap.read_text()[len(before):], 5.0,
                         "the event clock in a's snapshot")
        assert t < 3.0, t
    finally:
        await b.shutdown()
        await a.shutdown()

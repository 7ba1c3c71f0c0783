"""registry.looplag: the histogram, and a real loop's stall showing up as lag."""

from __future__ import annotations

import asyncio
import time

import pytest

from registry.looplag import BUCKETS, SLOW, LoopLag


def test_observe_fills_buckets_cumulatively() -> None:
    lag = LoopLag(interval=0.05)
    for v in (0.0, 0.0005, 0.004, 0.03, 0.3, 7.0, -0.001):
        lag.observe(v)
    b = dict(lag.buckets())
    assert b[0.001] == 3  # 0, 0.5 ms and the early (negative) tick
    assert b[0.005] == 4 and b[0.02] == 4 and b[0.05] == 5 and b[0.5] == 6
    assert b[float("inf")] == 7 == lag.count
    assert lag.max == 7.0 and lag.slow == 3
    assert lag.sum == pytest.approx(7.3345)
    assert [u for u, _ in lag.buckets()][:-1] == list(BUCKETS)
    assert lag.stats()["slow_callbacks"] == "3"


def test_bad_interval_refused() -> None:
    with pytest.raises(ValueError):
        LoopLag(interval=0)


async def test_a_blocking_callback_is_seen_on_a_running_loop() -> None:
    lag = LoopLag(interval=0.01)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        assert lag.count >= 1
        quiet_slow = lag.slow
        time.sleep(0.12)  # noqa: ASYNC251 - a callback that hogs the loop, on purpose
        await asyncio.sleep(0.03)
        assert lag.max >= 0.12 - 0.01 - 0.002
        assert lag.slow > quiet_slow
        assert lag.max > SLOW
    finally:
        lag.stop()
    n = lag.count
    await asyncio.sleep(0.03)
    assert lag.count == n  # stopped

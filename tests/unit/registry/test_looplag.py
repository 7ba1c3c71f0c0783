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


class _FakeCPU:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _ticks(lag: LoopLag, cpu: _FakeCPU, now: float, until: float, cpu_per_s: float,
           late: float = 0.0) -> tuple[float, list[float]]:
    """Drive ``next_interval`` tick by tick (the process burning ``cpu_per_s`` of a core)."""
    seen = []
    while now < until:
        step = lag.next_interval(now, late)
        seen.append(step)
        now += step
        cpu.t += cpu_per_s * step
    return now, seen


def test_idle_process_slows_the_sampler_and_work_brings_it_back() -> None:
    cpu = _FakeCPU()
    lag = LoopLag(interval=0.05, idle_interval=1.0, cpu=cpu)
    lag._new_window(0.0, 0.0)
    # a process at 0.3% of a core: fast ticks for the first window, then one a second
    now, seen = _ticks(lag, cpu, 0.0, 5.0, 0.003)
    assert seen[0] == 0.05 and seen[-1] == 1.0 and lag.idle
    assert sum(1 for s in seen if s == 0.05) <= 21     # one window of fast ticks
    # the process gets busy (10% of a core) after this idle tick: the first tick that sees
    # it goes back to 50 ms, and the sampler stays there
    now, seen = _ticks(lag, cpu, now, now + 3.0, 0.10)
    assert seen[0] == 1.0 and set(seen[1:]) == {0.05} and not lag.idle
    # quiet again: slow after one idle window
    now, seen = _ticks(lag, cpu, now, now + 3.0, 0.003)
    assert seen[-1] == 1.0 and lag.idle


def test_a_late_tick_brings_the_fast_sampler_back_even_without_cpu() -> None:
    cpu = _FakeCPU()
    lag = LoopLag(interval=0.05, idle_interval=1.0, cpu=cpu)
    lag._new_window(0.0, 0.0)
    now, _ = _ticks(lag, cpu, 0.0, 3.0, 0.0)
    assert lag.idle
    # a stall that used no CPU (a blocking read): the tick ran 0.3 s late
    assert lag.next_interval(now + 0.3, 0.3) == 0.05 and not lag.idle
    # the window that saw the late tick stays fast to its end
    _, seen = _ticks(lag, cpu, now + 0.35, now + 1.2, 0.0)
    assert seen[0] == 0.05


def test_idle_interval_none_always_ticks_fast() -> None:
    cpu = _FakeCPU()
    lag = LoopLag(interval=0.05, idle_interval=None, cpu=cpu)
    _, seen = _ticks(lag, cpu, 0.0, 3.0, 0.0)
    assert set(seen) == {0.05}


def test_idle_interval_below_interval_refused() -> None:
    with pytest.raises(ValueError):
        LoopLag(interval=0.5, idle_interval=0.1)


class _FakeWait:
    def __init__(self) -> None:
        self.t: float | None = 0.0

    def __call__(self) -> float | None:
        return self.t


def test_lateness_spent_waiting_for_a_core_does_not_bring_the_fast_ticks_back() -> None:
    cpu, wait = _FakeCPU(), _FakeWait()
    lag = LoopLag(interval=0.05, idle_interval=1.0, cpu=cpu, run_wait=wait)
    lag._new_window(0.0, 0.0)
    lag._waited = wait()
    now, _ = _ticks(lag, cpu, 0.0, 3.0, 0.0)
    assert lag.idle
    # a tick 0.3 s late, all of it in the run queue (the machine was saturated)
    wait.t = 0.3
    own = lag.own_lag(0.3)
    assert own == pytest.approx(0.0)
    assert lag.next_interval(now + 0.3, own) == 1.0 and lag.idle
    # the next one 0.3 s late with only 0.05 s of it queued: the loop's own stall
    wait.t = 0.35
    own = lag.own_lag(0.3)
    assert own == pytest.approx(0.25)
    assert lag.next_interval(now + 1.6, own) == 0.05 and not lag.idle


def test_without_the_kernel_figure_all_lateness_counts() -> None:
    wait = _FakeWait()
    wait.t = None
    lag = LoopLag(interval=0.05, idle_interval=1.0, cpu=_FakeCPU(), run_wait=wait)
    assert lag.own_lag(0.3) == 0.3


def test_the_run_queue_wait_is_read_from_the_kernel() -> None:
    from registry.looplag import RunQueueWait

    w = RunQueueWait()
    first = w()
    assert first is not None and first >= 0.0      # Linux with schedstats: what CI runs
    assert (w() or 0.0) >= first
    w.close()
    assert w() is None
    assert RunQueueWait("/nonexistent/schedstat")() is None


async def test_a_stall_of_ours_is_still_seen_with_the_kernel_figure_on() -> None:
    lag = LoopLag(interval=0.01, idle_interval=1.0)
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.12)  # noqa: ASYNC251 - a callback that hogs the loop, on purpose
        await asyncio.sleep(0.03)
        assert lag.max >= 0.12 - 0.01 - 0.002 and not lag.idle
    finally:
        lag.stop()


async def test_stop_closes_only_the_reader_it_opened() -> None:
    wait = _FakeWait()
    lag = LoopLag(interval=0.01, idle_interval=1.0, run_wait=wait)
    lag.start()
    lag.stop()
    assert lag._run_wait is wait        # an injected reader is the caller's, kept for a restart
    own = LoopLag(interval=0.01, idle_interval=1.0)
    own.start()
    reader = own._run_wait
    assert reader is not None and reader() is not None
    own.stop()
    assert reader() is None and own._run_wait is None   # closed; a restart opens a new one

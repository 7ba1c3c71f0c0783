"""How long the event loop keeps timers waiting: the agent's measure of loop stalls.

A callback that runs for 300 ms delays every timer due during it by up to 300 ms: probes,
acks, HTTP answers. :class:`LoopLag` schedules a timer every ``interval`` seconds and records
how late the loop ran it (Node.js's ``monitorEventLoopDelay`` measures the same thing). uvloop,
the agent's loop, has no per-callback accounting outside debug mode (which costs more than the
stalls it would find), so timer lateness is the measure: a stall of ``s`` seconds shows as a lag
between ``s - interval`` and ``s``; any stall longer than ``interval`` is seen.

While the process is idle the sampler slows down (issue 18: an idle agent's CPU). Ticking every
50 ms was an idle agent's most frequent wake-up (20 a second, more than gossip's). After a
second in which the process used less than ``IDLE_CPU`` of a core and no tick was late by more
than ``SLOW``, ticks come every ``idle_interval`` (1 s); the first tick that finds the process
busy, or that runs late, goes back to ``interval``. So under load (a join burst, requests,
checks) every stall longer than ``interval`` is seen as before; on an idle agent a stall is seen
if it covers a tick (always when it lasts longer than ``idle_interval``), and the sampler is
back at ``interval`` from the next tick on.

A tick is late for one of two reasons: the loop was busy or blocked (a stall of ours), or the
process was ready to run but the machine had no core free for it. Only the first brings the
fast ticks back. The kernel counts the second (the run-queue wait in
``/proc/thread-self/schedstat``), so the part of a tick's lateness that the loop's thread
spent waiting for a core is not counted as ours when choosing the pace; the histogram still
records the whole lateness, which is what the timers suffered. Without that, every agent of a
pool that saturates its machine (200 agents on two cores, issue 13) ticked 20 times a second,
and on a virtual machine a wake-up costs ~100-150 us of CPU whatever it does: load that only
made the saturation worse.

The observations feed the ``rumor_runtime_loop_lag_seconds`` histogram (``registry.metrics``)
and the ``runtime`` section of ``rumor info``. Nothing here imports prometheus_client.
"""

from __future__ import annotations

import asyncio
import os
import time
from bisect import bisect_left
from collections.abc import Callable

BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Histogram upper bounds, seconds (the last bucket, +Inf, is implicit)."""
SLOW = 0.02
"""Seconds: a lag above this counts as a slow callback (the scale budget of issue 13)."""
IDLE_CPU = 0.02
"""Share of a core below which a second counts as idle (an idle agent uses ~0.3%)."""
WINDOW = 1.0
"""Seconds of fast ticks over which the process's CPU is judged before slowing down."""


class RunQueueWait:
    """The calling thread's time spent waiting for a core, seconds (``schedstat``'s second
    field); None where the kernel does not say (no ``/proc``, no schedstats)."""

    def __init__(self, path: str = "/proc/thread-self/schedstat") -> None:
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._fd = None
        if self() is None:
            self.close()

    def __call__(self) -> float | None:
        if self._fd is None:
            return None
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class LoopLag:
    """A histogram of timer lateness, fed by :meth:`observe` (pure) or by :meth:`start`."""

    def __init__(self, interval: float = 0.05, idle_interval: float | None = 1.0,
                 cpu: Callable[[], float] = time.process_time,
                 run_wait: Callable[[], float | None] | None = None) -> None:
        if interval <= 0 or (idle_interval is not None and idle_interval < interval):
            raise ValueError("interval must be positive and idle_interval at least interval")
        self.interval = interval
        self.idle_interval = idle_interval
        """Seconds between ticks while the process is idle; None: always ``interval``."""
        self._cpu = cpu
        self._run_wait = run_wait
        """The loop thread's run-queue wait so far (:class:`RunQueueWait`, made by
        :meth:`start` when None); lateness it explains is not the loop's own."""
        self._waited: float | None = None
        self._own_wait: RunQueueWait | None = None
        """The reader :meth:`start` opened (closed by :meth:`stop`), if it made one."""
        self.idle = False
        """Whether the sampler ticks at ``idle_interval`` now."""
        self._win_start = 0.0
        self._win_cpu = 0.0
        self._win_late = False
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0
        self.slow = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def observe(self, lag: float) -> None:
        lag = max(0.0, lag)
        self.counts[bisect_left(BUCKETS, lag)] += 1
        self.count += 1
        self.sum += lag
        self.max = max(self.max, lag)
        if lag > SLOW:
            self.slow += 1

    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative (upper bound, count) pairs, +Inf last, as Prometheus wants them."""
        out: list[tuple[float, int]] = []
        total = 0
        for upper, n in zip((*BUCKETS, float("inf")), self.counts, strict=True):
            total += n
            out.append((upper, total))
        return out

    def stats(self) -> dict[str, str]:
        return {"loop_lag_max_ms": f"{self.max * 1e3:.1f}",
                "loop_lag_mean_ms": f"{(self.sum / self.count if self.count else 0) * 1e3:.2f}",
                "loop_lag_samples": str(self.count),
                "slow_callbacks": str(self.slow)}

    def next_interval(self, now: float, lag: float) -> float:
        """Seconds to the next tick, after a tick at ``now`` (loop time) that ran ``lag`` late.

        Pure apart from the injected CPU clock: busy (CPU at or above ``IDLE_CPU`` of a core
        since the window began) or late (``lag`` above ``SLOW``) means ``interval`` at once and
        a new window; a whole window of idle fast ticks means ``idle_interval``."""
        if self.idle_interval is None:
            return self.interval
        cpu = self._cpu()
        elapsed = now - self._win_start
        busy = cpu - self._win_cpu >= IDLE_CPU * max(elapsed, self.interval)
        if lag > SLOW:
            self._win_late = True
        if busy or self._win_late:
            if self.idle or elapsed >= WINDOW:
                self._new_window(now, cpu)
            self.idle = False
            return self.interval
        if self.idle or elapsed >= WINDOW:
            self.idle = True
            self._new_window(now, cpu)
            return self.idle_interval
        return self.interval

    def _new_window(self, now: float, cpu: float) -> None:
        self._win_start, self._win_cpu, self._win_late = now, cpu, False

    def own_lag(self, lag: float) -> float:
        """The part of a tick's ``lag`` that was not the loop's thread waiting for a core
        since the last tick (all of it when the kernel does not say)."""
        read = self._run_wait
        waited = read() if read is not None else None
        before, self._waited = self._waited, waited
        if waited is None or before is None:
            return lag
        return lag - max(0.0, waited - before)

    # --- on a running loop -----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._handle is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        if self._run_wait is None:
            # opened on the loop's thread: /proc/thread-self is that thread's figures
            self._run_wait = self._own_wait = RunQueueWait()
        self._waited = self._run_wait()
        self.idle = False
        self._new_window(self._loop.time(), self._cpu())
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._own_wait is not None:
            self._own_wait.close()
            if self._run_wait is self._own_wait:
                self._run_wait = None
            self._own_wait = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        # uvloop's timers have millisecond resolution and may fire up to 1 ms early: the lag
        # is clamped at 0 by observe()
        lag = now - self._due
        self.observe(lag)
        self._due = now + self.next_interval(now, self.own_lag(lag))
        self._handle = loop.call_at(self._due, self._tick)

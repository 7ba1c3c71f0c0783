"""How long the event loop keeps timers waiting: the agent's measure of loop stalls.

A callback that runs for 300 ms delays every timer due during it by up to 300 ms: probes,
acks, HTTP answers. :class:`LoopLag` schedules a timer every ``interval`` seconds and records
how late the loop ran it (Node.js's ``monitorEventLoopDelay`` measures the same thing). uvloop,
the agent's loop, has no per-callback accounting outside debug mode (which costs more than the
stalls it would find), so timer lateness is the measure: a stall of ``s`` seconds shows as a lag
between ``s - interval`` and ``s``; any stall longer than ``interval`` is seen.

The observations feed the ``rumor_runtime_loop_lag_seconds`` histogram (``registry.metrics``)
and the ``runtime`` section of ``rumor info``. Nothing here imports prometheus_client.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left

BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Histogram upper bounds, seconds (the last bucket, +Inf, is implicit)."""
SLOW = 0.02
"""Seconds: a lag above this counts as a slow callback (the scale budget of issue 13)."""


class LoopLag:
    """A histogram of timer lateness, fed by :meth:`observe` (pure) or by :meth:`start`."""

    def __init__(self, interval: float = 0.05) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
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

    # --- on a running loop -----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._handle is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        # uvloop's timers have millisecond resolution and may fire up to 1 ms early: the lag
        # is clamped at 0 by observe()
        self.observe(now - self._due)
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick)

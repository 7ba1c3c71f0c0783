"""registry.metrics.prometheus_text writes what prometheus_client's generate_latest writes."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
)

from registry.metrics import AgentCollector, prometheus_text


class _Static:
    """Every shape the agent's families take, and the awkward values and names."""

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily("rumor_things", "Things by kind.\nSecond line \\ here.",
                                labels=["kind", "odd label"])
        c.add_metric(["a", "x"], 3)
        c.add_metric(['quote " back \\ nl \n', "y"], 2.5)
        c.add_metric(["created", "z"], 1, created=1700000000.25)
        yield c
        yield CounterMetricFamily("rumor_plain", "No labels.", value=0)
        g = GaugeMetricFamily("rumor_values", "Values that Go writes differently.",
                              labels=["v"])
        for v in (0, -1, 0.5, 1e-05, 123456.0, 1234567.0, 12345678.9, 1e16, -1e20,
                  math.inf, -math.inf, math.nan, 2**53):
            g.add_metric([repr(v)], v)
        g.add_metric(["stamped"], 4, timestamp=1700000000.5)
        yield g
        yield GaugeMetricFamily("rumor.dotted-name", "A name outside the legacy set.", value=1)
        h = HistogramMetricFamily("rumor_lag_seconds", "A histogram.",
                                  buckets=[("0.001", 1), ("0.5", 4), ("+Inf", 7)],
                                  sum_value=1.25)
        yield h
        s = SummaryMetricFamily("rumor_summary", "A summary.", count_value=3, sum_value=0.75)
        yield s
        yield InfoMetricFamily("rumor_build", "Build info.", value={"version": "1.2"})
        st = StateSetMetricFamily("rumor_state", "A state set.", value={"up": True, "down": False})
        yield st


def test_same_bytes_as_generate_latest_for_every_shape() -> None:
    reg = CollectorRegistry()
    reg.register(_Static())
    assert prometheus_text(reg) == generate_latest(reg)


def test_same_bytes_for_the_agent_families_and_the_process_collector() -> None:
    reg = CollectorRegistry()
    reg.register(AgentCollector(gossip=None, registry=None, dns=None, lb=None))
    ProcessCollector(registry=reg, pid=lambda: "self")
    # the process's CPU seconds, memory and open files move between two scrapes: their
    # values are not compared, their lines are
    ours = prometheus_text(reg).decode().splitlines()
    theirs = generate_latest(reg).decode().splitlines()
    assert len(ours) == len(theirs) > 10
    for a, b in zip(ours, theirs, strict=True):
        if a.startswith("process_"):
            a, b = a.split(" ", 1)[0], b.split(" ", 1)[0]
        assert a == b

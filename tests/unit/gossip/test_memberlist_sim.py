"""A tiny smoke run of the large-cluster simulator (the real numbers live in bench/)."""

from __future__ import annotations

from gossip.sim import measure_dissemination


def test_sim_smoke_50_nodes() -> None:
    r = measure_dissemination(50, detect=True, idle_window=5.0)
    assert r.dissemination_time < 3.0
    # one probe and one ack per node per probe interval, on average
    assert 1.5 < r.idle_packets_per_node_s < 2.5
    # n = 50: suspicion min = 4 s * log10(50) = 6.8 s; plus probe time and dissemination
    assert r.detection_time is not None and 6.8 < r.detection_time < 30.0

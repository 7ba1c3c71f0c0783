"""Rumor gossip nodes in network namespaces (one per host, veth + bridge): partition and loss.

Each host runs tests/harness/gossip_node.py under ``ip netns exec`` on the LAN timing profile.
Faults are iptables rules inside the hosts (tests/harness/netns.py); the lab installs permanent
neighbour entries so that ARP is never what drops packets (shared/reference/measuring.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.agents import wait_for
from tests.harness.gossip_node import GossipNodeProcess

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
]

N = 5
LOSS_SECONDS = float(os.environ.get("RUMOR_LOSS_SECONDS", "60"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[netns.Lab, list[GossipNodeProcess]]]:
    with netns.Lab(N) as lab:
        nodes: list[GossipNodeProcess] = []
        try:
            first = lab.hosts[0]
            for h in lab.hosts:
                join = [f"{first.ip}:7946"] if h is not first else []
                nodes.append(GossipNodeProcess(
                    f"h{h.index}", bind=h.ip, port=7946, join=join, profile="lan",
                    netns=h.name, log_path=tmp_path / f"h{h.index}.log").start())
            names = [n.name for n in nodes]
            for n in nodes:
                wait_for(lambda n=n: all(n.members().get(x) == "alive" for x in names), 20,
                         what=f"{n.name} sees everyone alive")
            yield lab, nodes
        finally:
            for n in nodes:
                n.kill()


def test_partition_then_heal(cluster: tuple[netns.Lab, list[GossipNodeProcess]]) -> None:
    lab, nodes = cluster
    victim_host, victim = lab.hosts[2], nodes[2]
    others = [n for n in nodes if n is not victim]
    t0 = time.monotonic()
    lab.partition(victim_host)
    for n in others:
        wait_for(lambda n=n: n.members().get(victim.name) == "failed", 40,
                 what=f"{n.name} marks {victim.name} failed")
    print(f"partition: every other node marked {victim.name} failed after "
          f"{time.monotonic() - t0:.1f}s")
    # Let the cut-off node declare the others failed too, so healing needs Serf's reconnect
    # (a push/pull join to a failed member), not just a refutation of the dead message.
    wait_for(lambda: list(victim.members().values()).count("failed") >= 2, 40,
             what=f"{victim.name} marks others failed")
    print(f"{victim.name} sees {victim.members()} after {time.monotonic() - t0:.1f}s")
    t1 = time.monotonic()
    lab.heal(victim_host)
    for n in nodes:
        wait_for(lambda n=n: all(v == "alive" for v in n.members().values())
                 and len(n.members()) == N, 40, what=f"{n.name} sees everyone alive again")
    print(f"healed everywhere after {time.monotonic() - t1:.1f}s (no restart)")


def test_random_udp_loss_causes_no_false_failure(
        cluster: tuple[netns.Lab, list[GossipNodeProcess]]) -> None:
    lab, nodes = cluster
    for h in lab.hosts:
        lab.drop_udp(h, 0.10)
    t0 = time.monotonic()
    bad: list[tuple[float, str, dict[str, str]]] = []
    polls = 0
    try:
        while time.monotonic() - t0 < LOSS_SECONDS:
            for n in nodes:
                view = n.members()
                if any(v != "alive" for v in view.values()) or len(view) != N:
                    bad.append((time.monotonic() - t0, n.name, view))
            polls += 1
            time.sleep(0.5)
    finally:
        lab.heal()
    ran = time.monotonic() - t0
    failed_counts = {n.name: n.call("counters").get("serf.member.failed", 0) for n in nodes}
    print(f"10% UDP loss on every node for {ran:.1f}s, {polls} polls of {N} views; "
          f"non-alive sightings: {len(bad)}; member-failed events: {failed_counts}")
    assert not bad, bad[:5]
    assert all(v == 0 for v in failed_counts.values()), failed_counts

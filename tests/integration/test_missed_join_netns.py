"""An agent that misses a join by gossip (issue 13's stragglers): four agents in network
namespaces; while the fourth joins, the third hears no UDP at all, so every copy of the
joiner's alive message, Serf intent and catalog record passes it by. The periodic push/pull
and the joiner's resync are off, so nothing but the stranger sync can tell it:
the joiner keeps probing and gossiping to it, and 10 s after it first heard from that
stranger the agent push/pulls with it, which brings the member and its catalog record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import netns
from tests.harness.agents import Cluster, wait_for


def _stranger_syncs(prometheus_text: str) -> float:
    return sum(s.value for fam in text_string_to_metric_families(prometheus_text)
               for s in fam.samples if s.name == "rumor_gossip_stranger_syncs_total")


@pytest.mark.netns
def test_an_agent_that_missed_a_join_learns_it_from_the_stranger(
        cluster: Cluster, netns_lab: Callable[[int], netns.Lab], tmp_path: Path) -> None:
    lab = netns_lab(6)
    quiet = tmp_path / "quiet.json"
    # push_pull_interval 0: no periodic push/pull at all. With 600 s, each agent's first one
    # still came at a random point of the first 600 s, and in one CI rehearsal one fell in
    # the test's window and told node2 of the joiner 3.8 s after the heal.
    quiet.write_text(json.dumps({"gossip": {"push_pull_interval": 0, "join_resync": False}}))
    args = ["-config-file", str(quiet)]
    first = cluster.start_in_hosts(lab.hosts[:3], extra_args=args)
    deaf = first[2]
    wait_for(lambda: all(len(x.members()) == 3 for x in first), 30, what="3 members")
    # Up to three joiners: in one CI run (loaded machine) node2 listed the joiner 0.35 s
    # after its join although its UDP was cut (by a path not found; TCP stayed open), and in
    # another 3.8 s after the heal (a periodic push/pull, now off). A joiner node2 learnt of
    # other than by the stranger sync is set aside and the next one tried; the test passes
    # only if one of them is fetched by a stranger sync.
    def syncs() -> float:
        return _stranger_syncs(deaf.http("GET", "/v1/agent/metrics?format=prometheus"))

    missed = None
    took = 0.0
    leaked: list[str] = []
    for host in lab.hosts[3:]:
        name = f"node{host.index}"
        hidden = False
        lab.drop_udp(lab.hosts[2], 1.0)
        try:
            joiner = cluster.add(name, host=host, join=[f"{lab.hosts[0].ip}:7946"],
                                 extra_args=args)
            joiner.start()
            wait_for(lambda n=name: all(x.members().get(n) == "alive" for x in first[:2]), 15,
                     what="node0 and node1 list the joiner")
            wait_for(lambda n=name: n in {x["Node"] for x in
                                          first[0].http("GET", "/v1/catalog/nodes")}, 15,
                     what="node0 has the joiner's record")
            time.sleep(3.0)      # every retransmission of the join's news is spent by now
            hidden = name not in deaf.members()
            before = syncs()
        finally:
            lab.heal(lab.hosts[2])
        if hidden:
            healed = time.monotonic()
            wait_for(lambda n=name: deaf.members().get(n) == "alive", 30, 0.2,
                     what="node2 lists the joiner")
            took = time.monotonic() - healed
            wait_for(lambda n=name: n in {x["Node"] for x in
                                          deaf.http("GET", "/v1/catalog/nodes")}, 10,
                     what="node2 has the joiner's catalog record")
            if syncs() > before:
                missed = name
                break
            leaked.append(f"{name} (after the heal, {took:.1f} s)")
        else:
            leaked.append(f"{name} (during the cut)")
        wait_for(lambda: len(deaf.members()) == 3 + len(leaked), 15, what="settled")
    assert missed is not None, (
        f"node2 learnt of every joiner other than by a stranger sync: {leaked}")
    print(f"node2 learnt of {missed} {took:.1f} s after its ears opened (set aside: {leaked})")

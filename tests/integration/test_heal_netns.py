"""Fast heal (issue 13): five agents in network namespaces, a partition with writes on both
sides, then the heal: every agent's catalog equals the others' within 10 s of the membership
heal (the two sides push-pull as soon as they see each other back, not at the next periodic
push-pull, which at the LAN profile came 59-72 s after the heal). The same with one agent
killed (-9) and restarted during the cut.

The agents run the LAN profile, as deployed, except Serf's reconnect interval (2 s instead of
30 s): the membership heals sooner after the cut ends (a reconnect to a failed member), and
the budget is counted from that heal, with LAN's 30 s periodic push-pull unchanged, so the
test tells the heal push-pulls from the periodic one as before, in less time."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.agents import Cluster, wait_for
from tests.integration.test_registry_cluster import catalog_digest, passing, register

HEAL_BUDGET = 10.0
"""Seconds from the membership heal to equal catalogs. The issue asks for <= 30 s; with the
heal push-pulls it takes ~0.5 s here, and without them (the periodic push-pull only) it took
24 s in one run of this test and 59-72 s in the issue's runs, so 10 s tells them apart."""


@pytest.mark.netns
@pytest.mark.parametrize("restart", [False, True], ids=["cut", "cut+kill-9-restart"])
def test_catalogs_equal_within_10_s_of_the_heal(cluster: Cluster,
                                                netns_lab: Callable[[int], netns.Lab],
                                                restart: bool, tmp_path: Path) -> None:
    lab = netns_lab(5)
    fast_reconnect = tmp_path / "reconnect.json"
    fast_reconnect.write_text(json.dumps({"gossip": {"reconnect_interval": "2s"}}))
    # the LAN profile, as deployed, but for the reconnect interval (see the module docstring)
    agents = cluster.start_in_hosts(lab.hosts, extra_args=["-config-file", str(fast_reconnect)])
    wait_for(lambda: all(len(x.members()) == 5 for x in agents), 30, what="5 members")
    for i, a in enumerate(agents):
        register(a, {"Name": "web", "ID": f"w{i}", "Check": {"TTL": "300s", "Status": "passing"}})
    wait_for(lambda: all(len(passing(x, "web")) == 5 for x in agents), 20, what="5 web everywhere")
    left, right = lab.hosts[:2], lab.hosts[2:]
    for h in left:
        lab.partition(h, right)
    # writes on both sides while they cannot talk
    register(agents[0], {"Name": "api", "ID": "api0"})
    agents[1].http("PUT", "/v1/agent/service/deregister/w1")
    register(agents[3], {"Name": "db", "ID": "db3"})
    agents[4].http("PUT", "/v1/agent/check/fail/service:w4")
    wait_for(lambda: agents[2].members().get("node0") == "failed"
             and agents[0].members().get("node2") == "failed", 60, what="the cut seen")
    if restart:
        agents[2].kill()
        # restarted as an operator would during the cut: -join names a seed it can reach
        # (node0, its first seed, is across the cut; a -join that fails ends the agent, as
        # Consul's does, and the heal may come after that)
        agents[2].join = [agents[3].gossip_addr]
        agents[2].start()
        register(agents[2], {"Name": "db", "ID": "db2"})
    wait_for(lambda: agents[3].http("GET", "/v1/health/service/db") != []
             and agents[1].http("GET", "/v1/health/service/api") != [], 20,
             what="writes seen on their own side")
    lab.heal()
    cut_ended = time.monotonic()
    wait_for(lambda: all(set(x.members().values()) == {"alive"} and len(x.members()) == 5
                         for x in agents), 90, 0.2, what="membership healed")
    healed = time.monotonic()
    wait_for(lambda: len({catalog_digest(x) for x in agents}) == 1, HEAL_BUDGET, 0.5,
             what="identical catalogs after the heal")
    took = time.monotonic() - healed
    want_db = ["db2", "db3"] if restart else ["db3"]
    for a in agents:
        assert sorted(e["Service"]["ID"] for e in a.http("GET", "/v1/health/service/db")) == want_db
        assert [e["Service"]["ID"] for e in a.http("GET", "/v1/health/service/api")] == ["api0"]
        assert sorted(passing(a, "web")) == ["node0/w0", "node2/w2", "node3/w3"]
    print(f"membership healed {healed - cut_ended:.1f} s after the cut ended; catalogs equal "
          f"{took:.1f} s after that")

"""Real ``rumor agent`` processes replicating the catalog over gossip (loopback and netns).

Covers: register on A -> visible with health on all; a failing check on A -> critical everywhere;
kill -9 of A -> its instances critical everywhere within the failure-detection time; deregister
propagates; restart of A from its data dir restores its services with no re-register;
persistence across kill -9; a partition and its heal leave every agent's catalog identical.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import netns
from tests.harness.agents import AgentProcess, Cluster, wait_for

LOCAL = ["-profile", "local"]


def passing(a: AgentProcess, service: str) -> list[str]:
    return sorted(f'{e["Node"]["Node"]}/{e["Service"]["ID"]}'
                  for e in a.http("GET", f"/v1/health/service/{service}?passing"))


def health(a: AgentProcess, service: str) -> dict[str, dict[str, str]]:
    return {e["Service"]["ID"]: {c["CheckID"]: c["Status"] for c in e["Checks"]}
            for e in a.http("GET", f"/v1/health/service/{service}")}


def catalog_digest(a: AgentProcess) -> str:
    """Everything a client can see of the catalog, hashed (indexes left out: they are local)."""
    parts: list[Any] = [sorted((n["Node"], n["Address"], n["ID"])
                               for n in a.http("GET", "/v1/catalog/nodes"))]
    for name in sorted(a.http("GET", "/v1/catalog/services")):
        for e in a.http("GET", f"/v1/health/service/{name}"):
            s = e["Service"]
            parts.append([e["Node"]["Node"], s["ID"], s["Service"], s["Port"], s["Tags"],
                          sorted((c["CheckID"], c["Status"]) for c in e["Checks"])])
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def register(a: AgentProcess, body: dict[str, Any]) -> None:
    a.http("PUT", "/v1/agent/service/register", body)


def test_register_fail_kill_deregister_restart(cluster: Cluster) -> None:
    a, b, c = cluster.start_loopback(3, extra_args=LOCAL)
    wait_for(lambda: all(len(x.members()) == 3 for x in (a, b, c)), 15, what="3 members")
    register(a, {"Name": "web", "ID": "web-a", "Port": 8080,
                 "Check": {"TTL": "60s", "Status": "passing"}})
    register(a, {"Name": "api", "ID": "api-a", "Port": 9090})
    t0 = time.monotonic()
    wait_for(lambda: all(passing(x, "web") == ["node0/web-a"] for x in (b, c)), 10, 0.02,
             what="web on every agent")
    propagation = time.monotonic() - t0
    assert propagation < 5
    # a failing check on A is critical everywhere
    a.http("PUT", "/v1/agent/check/fail/service:web-a?note=down")
    wait_for(lambda: all(passing(x, "web") == [] and
                         health(x, "web")["web-a"]["service:web-a"] == "critical"
                         for x in (a, b, c)), 10, 0.02, what="critical everywhere")
    a.http("PUT", "/v1/agent/check/pass/service:web-a")
    wait_for(lambda: all(passing(x, "web") == ["node0/web-a"] for x in (b, c)), 10, 0.02,
             what="passing again")
    # deregister propagates
    a.http("PUT", "/v1/agent/service/deregister/api-a")
    wait_for(lambda: all(x.http("GET", "/v1/health/service/api") == [] for x in (b, c)), 10,
             0.02, what="deregister everywhere")
    # kill -9: A's instances turn critical everywhere within failure detection
    a.kill()
    t0 = time.monotonic()
    wait_for(lambda: all(passing(x, "web") == [] and
                         health(x, "web")["web-a"]["serfHealth"] == "critical"
                         for x in (b, c)), 20, 0.05, what="serfHealth critical after kill -9")
    detect = time.monotonic() - t0
    # restart from the data dir: services come back with no re-register
    a.start()
    wait_for(lambda: all(passing(x, "web") == ["node0/web-a"] for x in (a, b, c)), 20, 0.05,
             what="restored web-a everywhere")
    assert "api-a" not in a.http("GET", "/v1/agent/services")
    wait_for(lambda: len({catalog_digest(x) for x in (a, b, c)}) == 1, 15, 0.1,
             what="identical catalogs")
    print(f"propagation={propagation:.3f}s detect_after_kill={detect:.2f}s")


def test_graceful_leave_removes_records_and_restart_restores(cluster: Cluster) -> None:
    b, a = cluster.start_loopback(2, extra_args=LOCAL)  # a (node1) joins b (node0) at start
    register(a, {"Name": "web", "ID": "web-a", "Check": {"TTL": "60s", "Status": "passing"}})
    wait_for(lambda: passing(b, "web") == ["node1/web-a"], 10, 0.02, what="propagation")
    assert a.stop() == 0
    wait_for(lambda: b.http("GET", "/v1/health/service/web") == [], 10, 0.05,
             what="left node's records gone")
    assert "node1" not in [n["Node"] for n in b.http("GET", "/v1/catalog/nodes")]
    a.start()
    # TTL status survived the restart too (Consul persists TTL state)
    wait_for(lambda: passing(b, "web") == ["node1/web-a"], 20, 0.05, what="back after restart")


def test_persistence_survives_kill_9(cluster: Cluster, tmp_path: Path) -> None:
    cfg = tmp_path / "svc.json"
    cfg.write_text(json.dumps({"services": [{"name": "fromconfig", "port": 1234}]}))
    a = cluster.add("solo", extra_args=LOCAL + ["-config-file", str(cfg)]).start()
    register(a, {"Name": "web", "ID": "w1", "Port": 80, "Tags": ["x"],
                 "Check": {"TTL": "60s"}})
    a.http("PUT", "/v1/agent/check/warn/service:w1?note=slow")
    a.http("PUT", "/v1/agent/check/register", {"Name": "disk", "TTL": "60s", "Status": "passing"})
    a.http("PUT", "/v1/agent/service/maintenance/w1?enable=true&reason=patching")
    a.kill()  # no chance to flush: the registration must already be on disk
    a.start()
    services = a.http("GET", "/v1/agent/services")
    assert set(services) == {"w1", "fromconfig"} and services["w1"]["Tags"] == ["x"]
    checks = a.http("GET", "/v1/agent/checks")
    assert checks["service:w1"]["Status"] == "warning"
    assert checks["disk"]["Status"] == "passing"
    assert checks["_service_maintenance:w1"]["Notes"] == "patching"
    # SIGHUP reload: the config's services change, API-registered ones stay
    cfg.write_text(json.dumps({"services": [{"name": "other", "port": 1}]}))
    a.signal(signal.SIGHUP)
    wait_for(lambda: set(a.http("GET", "/v1/agent/services")) == {"w1", "other"}, 10,
             what="reload")
    # a bad config on SIGHUP changes nothing: wait until the agent says it refused the
    # reload (what it logs once the reload was processed), then look
    def refusals() -> int:
        return a.log_path.read_text(errors="replace").count("reload refused")

    before = refusals()
    cfg.write_text(json.dumps({"services": [{"name": "bad", "port": 99999}]}))
    a.signal(signal.SIGHUP)
    wait_for(lambda: refusals() > before, 10, 0.05, what="the bad reload to be refused")
    assert "services[0].port: 99999 is not a port" in a.log_path.read_text(errors="replace")
    assert set(a.http("GET", "/v1/agent/services")) == {"w1", "other"}
    assert a.alive()


def test_bad_service_config_refuses_to_start(cluster: Cluster, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"services": [{"name": "web", "port": 70000}]}))
    a = cluster.add("bad", extra_args=["-config-file", str(cfg)])
    a.start(wait=False)
    assert a.proc is not None and a.proc.wait(timeout=20) == 1
    assert "services[0].port: 70000 is not a port; use 1-65535" in a.log_path.read_text()


@pytest.mark.netns
@pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))
def test_partition_and_heal_converge(cluster: Cluster) -> None:
    with netns.Lab(4) as lab:
        agents = cluster.start_in_hosts(lab.hosts, extra_args=LOCAL)
        wait_for(lambda: all(len(x.members()) == 4 for x in agents), 20, what="4 members")
        register(agents[0], {"Name": "web", "ID": "w0", "Check": {"TTL": "120s", "Status": "passing"}})
        wait_for(lambda: all(passing(x, "web") == ["node0/w0"] for x in agents), 10,
                 what="w0 everywhere")
        left, right = lab.hosts[:2], lab.hosts[2:]
        for h in left:
            lab.partition(h, right)
        # changes on both sides while they cannot talk
        register(agents[1], {"Name": "web", "ID": "w1", "Check": {"TTL": "120s", "Status": "passing"}})
        agents[0].http("PUT", "/v1/agent/service/deregister/w0")
        register(agents[3], {"Name": "db", "ID": "d3"})
        wait_for(lambda: agents[2].members().get("node0") == "failed", 30, what="partition seen")
        wait_for(lambda: agents[2].http("GET", "/v1/health/service/db") != [], 10,
                 what="d3 seen on its own side")
        assert agents[0].http("GET", "/v1/health/service/db") == []
        lab.heal()
        wait_for(lambda: all(set(x.members().values()) == {"alive"} for x in agents), 60,
                 what="all alive after heal")
        wait_for(lambda: len({catalog_digest(x) for x in agents}) == 1, 90, 0.5,
                 what="identical catalogs after heal")
        assert passing(agents[3], "web") == ["node1/w1"]
        assert [e["Service"]["ID"] for e in agents[0].http("GET", "/v1/health/service/db")] == ["d3"]

"""External nodes through ``PUT /v1/catalog/register`` / ``deregister``, with real agent processes.

The agent that registers an external node is its only writer and replicates it: the node, its
NodeMeta, services and checks show on every agent (catalog, health, DNS), without serfHealth;
another agent is refused while the writer lives and takes over once it has failed; the records
survive a kill -9 of the writer.
"""

from __future__ import annotations

import subprocess
import urllib.error
from typing import Any

import consul

from tests.harness.agents import AgentProcess, Cluster, wait_for

FAST = ["-profile", "local"]

EXT = {
    "Node": "ext-db", "Address": "10.9.9.9", "ID": "6c1c8b4e-1b7f-4d3c-9b55-3a5d3ef2d0aa",
    "NodeMeta": {"external-source": "consul-esm", "rack": "r7"},
    "TaggedAddresses": {"lan": "10.9.9.9"},
    "Service": {"ID": "db1", "Service": "db", "Port": 5432, "Tags": ["primary"],
                "Meta": {"version": "15"}},
    "Check": {"CheckID": "db1-alive", "Name": "db alive", "Status": "passing",
              "ServiceID": "db1", "Output": "ok", "Definition": {"TCP": "10.9.9.9:5432",
                                                                 "Interval": "10s"}},
}


def health(a: AgentProcess, svc: str, passing: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = a.http("GET", f"/v1/health/service/{svc}"
                                       + ("?passing" if passing else ""))
    return out


def put(a: AgentProcess, path: str, body: Any) -> int:
    try:
        a.http("PUT", path, body)
        return 200
    except urllib.error.HTTPError as e:
        return e.code


def test_external_node_lifecycle(cluster: Cluster) -> None:
    a, b = cluster.start_loopback(2, extra_args=FAST)
    wait_for(lambda: len(a.members()) == len(b.members()) == 2, 20, what="2 members")
    ca = consul.Consul(host="127.0.0.1", port=a.http_port)
    assert ca.catalog.register("ext-cache", "10.9.9.8", service={"service": "cache", "port": 6379},
                               token="t") is True  # py-consul also sends "WriteRequest"
    assert put(a, "/v1/catalog/register", EXT) == 200

    def seen_on_b() -> bool:
        e = health(b, "db")
        return len(e) == 1 and e[0]["Checks"][0]["Status"] == "passing"
    wait_for(seen_on_b, 10, what="the external node's service on b")
    _, cache = consul.Consul(host="127.0.0.1", port=b.http_port).catalog.service("cache")
    assert [(x["Node"], x["Address"], x["ServicePort"], x["NodeMeta"]) for x in cache] == [
        ("ext-cache", "10.9.9.8", 6379, {})]
    (entry,) = health(b, "db", passing=True)
    assert entry["Node"]["Node"] == "ext-db" and entry["Node"]["Address"] == "10.9.9.9"
    assert entry["Node"]["Meta"] == {"external-source": "consul-esm", "rack": "r7"}
    assert [c["CheckID"] for c in entry["Checks"]] == ["db1-alive"]  # no serfHealth
    assert entry["Service"]["ID"] == "db1" and entry["Service"]["Tags"] == ["primary"]
    nodes = {n["Node"]: n for n in b.http("GET", "/v1/catalog/nodes")}
    assert nodes["ext-db"]["Meta"]["external-source"] == "consul-esm"
    assert nodes["ext-db"]["ID"] == EXT["ID"]
    dig = subprocess.run(["dig", "@127.0.0.1", "-p", str(b.dns_port), "+short",
                          "db.service.rumor"], capture_output=True, text=True, timeout=10,
                         check=False)
    assert dig.stdout.split() == ["10.9.9.9"]

    # one writer: b is refused while a lives; an agent's own node is refused everywhere
    assert put(b, "/v1/catalog/register", EXT) == 403
    assert put(a, "/v1/catalog/register", {"Node": b.name, "Address": "1.2.3.4"}) == 403
    # bad registrations change nothing
    assert put(a, "/v1/catalog/register", {"Node": "ext-x"}) == 400  # no Address
    assert put(a, "/v1/catalog/register", {
        "Node": "ext-x", "Address": "1.1.1.1",
        "Check": {"CheckID": "c", "ServiceID": "nope", "Status": "passing"}}) == 400
    assert "ext-x" not in {n["Node"] for n in a.http("GET", "/v1/catalog/nodes")}

    # the writer updates a status (as consul-esm does): it spreads
    failing = {**EXT, "Check": {**EXT["Check"], "Status": "critical", "Output": "refused"}}
    assert put(a, "/v1/catalog/register", failing) == 200
    wait_for(lambda: health(b, "db", passing=True) == [], 10, what="critical on b")

    # kill -9 the writer; with b down too, a restarted alone still has the node (from disk)
    a.kill()
    b.stop()
    a.start()
    (entry,) = health(a, "db")
    assert entry["Node"]["Meta"]["rack"] == "r7" and entry["Checks"][0]["Status"] == "critical"
    b.start()
    wait_for(lambda: len(a.members()) == 2 and a.members().get(b.name) == "alive", 20,
             what="b back")

    # the writer fails: b takes the node over and deregisters the service
    a.kill()
    wait_for(lambda: b.members().get(a.name) in ("failed", "left"), 30, what="a failed")
    assert put(b, "/v1/catalog/deregister", {"Node": "ext-db", "ServiceID": "db1"}) == 200
    assert health(b, "db") == []
    a.start()
    wait_for(lambda: health(a, "db") == [], 40, 0.3, what="a learns b's deregistration")
    wait_for(lambda: a.members().get(b.name) == "alive", 20, what="b alive for a")
    assert put(a, "/v1/catalog/register", EXT) == 403  # b writes it now
    # deregistering the whole node removes it everywhere
    assert put(b, "/v1/catalog/deregister", {"Node": "ext-db"}) == 200
    wait_for(lambda: "ext-db" not in {n["Node"] for n in a.http("GET", "/v1/catalog/nodes")},
             20, what="node gone on a")

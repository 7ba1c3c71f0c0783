"""Two datacenters of three hosts each in network namespaces, the WAN link lossy.

dc1: h0 (WAN member), h1, h2 (LAN only). dc2: h3 and h4 (WAN members), h5 (LAN only, runs
``web``). Every packet a dc2 WAN member receives from dc1 is dropped with 5% probability
(iptables statistic mode; tc is not available on these kernels). All reads are made from h2, a
LAN-only agent of dc1, with curl and dig inside its namespace. One lab, several assertions (the
namespace tests are slow on two cores).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import netns
from tests.harness.agents import AgentProcess, Cluster, wait_for

pytestmark = pytest.mark.netns

FAST = ["-retry-interval", "1s"]


def curl(a: AgentProcess, path: str, timeout: float = 30) -> tuple[int, str]:
    """(HTTP status, body) of a GET made inside ``a``'s namespace."""
    assert a.host is not None
    p = a.host.run("curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", str(timeout),
                   f"http://{a.http_addr}{path}", check=False, timeout=timeout + 5)
    body, _, code = p.stdout.rpartition("\n")
    return int(code or 0), body


def dig(a: AgentProcess, name: str, rdtype: str = "A") -> str:
    assert a.host is not None
    return a.host.run("dig", f"@{a.ip}", "-p", str(a.dns_port), name, rdtype, "+tries=1",
                      "+time=5", check=False, timeout=15).stdout


def test_two_datacenters_in_namespaces(netns_lab: Callable[[int], netns.Lab],
                                       tmp_path: Path) -> None:
    lab = netns_lab(6)
    h = lab.hosts
    c = Cluster(tmp_path)
    try:
        def agent(i: int, dc: str, *args: str, join: list[str] | None = None) -> AgentProcess:
            return c.add(f"h{i}", host=h[i], join=join or [],
                         extra_args=["-datacenter", dc, *FAST, *args])

        a0 = agent(0, "dc1", "-serf-wan-port", "8302").start()
        b3 = agent(3, "dc2", "-retry-join-wan", f"{h[0].ip}:8302").start()
        b4 = agent(4, "dc2", "-retry-join-wan", f"{h[0].ip}", join=[f"{h[3].ip}:7946"]).start()
        rest = [agent(1, "dc1", join=[f"{h[0].ip}:7946"]), agent(2, "dc1", join=[f"{h[0].ip}:7946"]),
                agent(5, "dc2", join=[f"{h[3].ip}:7946"])]
        for a in rest:
            a.start(wait=False)
        for a in rest:
            a.wait_ready()
        l2, w5 = rest[1], rest[2]
        # the WAN link is lossy: dc2's WAN members lose 5% of what dc1's hosts send them
        for b in (h[3], h[4]):
            for src in h[:3]:
                b.run("iptables", "-A", netns.CHAIN, "-s", src.ip, "-m", "statistic", "--mode",
                      "random", "--probability", "0.05", "-j", "DROP")

        def wan_alive() -> bool:
            ms = a0.http("GET", "/v1/agent/members?wan=1")
            return sorted(m["Name"] for m in ms if m["Status"] == 1) == [
                "h0.dc1", "h3.dc2", "h4.dc2"]

        wait_for(wan_alive, 30, what="the WAN pool of three")
        def dcs() -> Any:
            st, body = curl(l2, "/v1/catalog/datacenters")
            return st == 200 and json.loads(body)

        wait_for(lambda: dcs() == ["dc1", "dc2"], 20, what="h2 to see both datacenters")

        w5.http("PUT", "/v1/agent/service/register", {"Name": "web", "Port": 80})

        def web_dc2() -> Any:
            st, body = curl(l2, "/v1/health/service/web?dc=dc2&passing")
            return st == 200 and [e["Node"]["Node"] for e in json.loads(body)]

        assert wait_for(web_dc2, 20, what="web of dc2 from h2") == ["h5"]

        # a blocking read across the hop, woken by a change in dc2
        assert l2.host is not None
        raw_index = l2.host.run("curl", "-sS", "-D", "-", "-o", "/dev/null",
                                f"http://{l2.http_addr}/v1/catalog/service/web?dc=dc2").stdout
        index = int(next(line.split(":", 1)[1] for line in raw_index.splitlines()
                         if line.lower().startswith("x-consul-index")))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            fut = pool.submit(curl, l2, f"/v1/catalog/service/web?dc=dc2&index={index}&wait=30s")
            time.sleep(1.0)
            assert not fut.done(), "the blocking read returned before any change"
            w5.http("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "web2",
                                                           "Port": 81})
            st, body = fut.result(timeout=40)
            assert st == 200 and sorted(e["ServiceID"] for e in json.loads(body)) == [
                "web", "web2"]
            assert time.monotonic() - started < 25

        # DNS for dc2 from the LAN-only agent of dc1
        def srv() -> bool:
            out = dig(l2, "web.service.dc2.rumor", "SRV")
            return "status: NOERROR" in out and "h5.node.dc2.rumor." in out and " 81 " in out

        wait_for(srv, 20, what="web.service.dc2.rumor SRV from h2")
        assert h[5].ip in dig(l2, "web.service.dc2.rumor")
        assert "NXDOMAIN" in dig(l2, "web.service.dc9.rumor")

        # unknown datacenter: Consul's 500, at once
        assert curl(l2, "/v1/catalog/nodes?dc=dc9") == (500, "No path to datacenter\n")

        # kill dc2's first WAN member: reads keep working through the second
        b3.kill()
        for _ in range(5):
            st, body = curl(l2, "/v1/health/service/web?dc=dc2")
            assert st == 200, body
            assert sorted(e["Service"]["ID"] for e in json.loads(body)) == ["web", "web2"]

        # and with dc2's WAN members all down: a clear error, never a hang
        b4.kill()
        started = time.monotonic()
        st, body = curl(l2, "/v1/catalog/nodes?dc=dc2", timeout=30)
        assert st == 500 and body.startswith("No path to datacenter dc2"), (st, body)
        assert time.monotonic() - started < 15
        prom = a0.http("GET", "/v1/agent/metrics?format=prometheus")
        assert 'rumor_federation_errors_total{dc="dc2"}' in prom
    finally:
        c.close()
        for a in c.agents:
            print(f"--- log of {a.name} ---\n{a.log_tail(15)}")

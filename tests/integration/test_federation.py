"""Two datacenters on loopback: the WAN pool, ``?dc=`` reads forwarded through WAN members,
blocking reads across the hop, failover to a second WAN member, and the errors.

In-process agents (real sockets, real aiohttp clients): dc1 has one WAN member (a1) and a
LAN-only agent (l1); dc2 has two WAN members (b1, b2) and a LAN-only agent (bl) that runs
``web``. Every read below is made from l1, the LAN-only agent of dc1, so it crosses two hops
(l1 -> a1 over the LAN, a1 -> b1/b2 over the WAN).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry.agent import Agent
from registry.config import build, flags_to_settings, normalize
from registry.errors import ConfigError
from tests.integration.registry_fixtures import eventually, start_agent, stop_agent

LOCAL = {"gossip": {"profile": "local"}, "retry_interval": 0.2}


async def _get(s: aiohttp.ClientSession, a: Agent, path: str,
               timeout: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    async with s.get(f"http://127.0.0.1:{a.http_port}{path}",
                     timeout=aiohttp.ClientTimeout(total=timeout)) as r:
        text = await r.text()
        body = json.loads(text) if r.content_type == "application/json" else text
        return r.status, body, dict(r.headers)


def _cli(a: Agent, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *argv,
                           "-http-addr", f"127.0.0.1:{a.http_port}"],
                          check=False, capture_output=True, text=True, timeout=30)


async def test_two_datacenters(tmp_path: Path) -> None:
    agents: list[Agent] = []

    async def start(name: str, dc: str, **kw: Any) -> Agent:
        a = await start_agent(tmp_path, name, datacenter=dc, **LOCAL, **kw)
        agents.append(a)
        return a

    try:
        a1 = await start("a1", "dc1", serf_wan_port=0)
        assert a1.wan is not None
        wan1 = f"127.0.0.1:{a1.wan.bound_port}"
        l1 = await start("l1", "dc1", start_join=[f"127.0.0.1:{a1.gossip_port}"],
                         enable_dns=True, dns_port=0)
        b1 = await start("b1", "dc2", serf_wan_port=0, start_join_wan=[wan1])
        b2 = await start("b2", "dc2", serf_wan_port=0, start_join_wan=[wan1],
                         start_join=[f"127.0.0.1:{b1.gossip_port}"])
        bl = await start("bl", "dc2", start_join=[f"127.0.0.1:{b1.gossip_port}"])
        assert l1.wan is None and bl.wan is None
        assert b1.config.wan_member and b1.wan is not None

        async with aiohttp.ClientSession() as s:
            # --- the WAN pool: members named node.dc, in Consul's shape ---------------------
            async def wan_names() -> list[str]:
                _, body, _ = await _get(s, a1, "/v1/agent/members?wan=1")
                return sorted(m["Name"] for m in body if m["Status"] == 1)

            await eventually(lambda: _eq(wan_names(), ["a1.dc1", "b1.dc2", "b2.dc2"]),
                             timeout=15, what="the WAN pool of three")
            _, body, _ = await _get(s, a1, "/v1/agent/members?wan=1")
            b1m = next(m for m in body if m["Name"] == "b1.dc2")
            assert b1m["Tags"]["dc"] == "dc2"
            assert b1m["Tags"]["rumor_http"] == f"127.0.0.1:{b1.http_port}"
            # a LAN-only agent has no WAN members (as a Consul client answers)
            assert (await _get(s, l1, "/v1/agent/members?wan=1"))[1] == []
            # the LAN pool tells l1 which peer is a WAN member
            _, lan, _ = await _get(s, l1, "/v1/agent/members")
            a1lan = next(m for m in lan if m["Name"] == "a1")
            assert a1lan["Tags"]["rumor_wan_http"] == f"127.0.0.1:{a1.http_port}"
            assert a1lan["Tags"]["rumor_wan"] == wan1

            # --- datacenters, from the LAN-only agent -----------------------------------------
            async def dcs() -> Any:
                return (await _get(s, l1, "/v1/catalog/datacenters"))[1]

            await eventually(lambda: _eq(dcs(), ["dc1", "dc2"]), timeout=10,
                             what="l1 to see both datacenters")

            # --- ?dc=dc2 reads, answered from dc2's replica ------------------------------------
            async with s.put(f"http://127.0.0.1:{bl.http_port}/v1/agent/service/register",
                             json={"Name": "web", "Port": 8080, "Tags": ["v1"]}) as r:
                assert r.status == 200

            async def dc2_web() -> Any:
                st, body, _ = await _get(s, l1, "/v1/health/service/web?dc=dc2&passing")
                return st == 200 and [e["Node"]["Node"] for e in body]

            assert await eventually(dc2_web, timeout=10, what="web in dc2 from l1") == ["bl"]
            _, local_web, _ = await _get(s, l1, "/v1/health/service/web")
            assert local_web == []   # dc1 has no web: the read above did cross
            st, nodes, hdr = await _get(s, l1, "/v1/catalog/nodes?dc=dc2")
            assert st == 200 and sorted(n["Node"] for n in nodes) == ["b1", "b2", "bl"]
            assert {n["Datacenter"] for n in nodes} == {"dc2"}
            assert int(hdr["X-Consul-Index"]) > 0

            # --- a blocking read across the hop, woken by a change in dc2 --------------------
            st, _, hdr = await _get(s, l1, "/v1/catalog/service/web?dc=dc2")
            index = int(hdr["X-Consul-Index"])
            started = time.monotonic()
            blocked = asyncio.create_task(
                _get(s, l1, f"/v1/catalog/service/web?dc=dc2&index={index}&wait=20s"))
            await asyncio.sleep(0.5)
            assert not blocked.done(), "the blocking read returned before any change"
            async with s.put(f"http://127.0.0.1:{bl.http_port}/v1/agent/service/register",
                             json={"Name": "web", "ID": "web2", "Port": 8081}) as r:
                assert r.status == 200
            st, body, hdr = await asyncio.wait_for(blocked, 15)
            assert st == 200 and sorted(e["ServiceID"] for e in body) == ["web", "web2"]
            assert int(hdr["X-Consul-Index"]) > index
            assert time.monotonic() - started < 15

            # --- KV with ?dc=dc2: put, read and delete in dc2's keyspace, from l1 ------------
            kv = f"http://127.0.0.1:{l1.http_port}/v1/kv"
            async with s.put(f"{kv}/fed/greeting?dc=dc2&flags=7", data=b"hello dc2") as r:
                assert (r.status, await r.text()) == (200, "true")
            st, body, _ = await _get(s, l1, "/v1/kv/fed/greeting")
            assert st == 404                              # not in dc1's keyspace
            st, body, hdr = await _get(s, l1, "/v1/kv/fed/greeting?dc=dc2")
            assert st == 200, body
            assert base64.b64decode(body[0]["Value"]) == b"hello dc2" and body[0]["Flags"] == 7
            assert int(hdr["X-Consul-Index"]) > 0

            async def in_dc2() -> Any:    # replicated inside dc2 by its own gossip
                st, body, _ = await _get(s, bl, "/v1/kv/fed/greeting?raw")
                return st == 200 and body

            assert await eventually(in_dc2, timeout=10, what="the key on bl") == "hello dc2"
            st, keys, _ = await _get(s, l1, "/v1/kv/fed/?dc=dc2&keys")
            assert (st, keys) == (200, ["fed/greeting"])
            # the CLI's -datacenter flag reaches the same keyspace (consul kv's flag)
            for argv, want in ((("put", "fed/cli", "from the cli"), "Success! Data written"),
                               (("get", "fed/cli"), "from the cli\n"),
                               (("delete", "fed/cli"), "Success! Deleted key")):
                out = await asyncio.to_thread(_cli, l1, "kv", argv[0], "-datacenter", "dc2",
                                              *argv[1:])
                assert out.returncode == 0 and out.stdout.startswith(want), (argv, out)
            out = await asyncio.to_thread(_cli, l1, "kv", "get", "fed/greeting")
            assert out.returncode == 1 and "No key exists" in out.stderr, out   # dc1's keyspace
            async with s.delete(f"{kv}/fed/greeting?dc=dc2") as r:
                assert r.status == 200
            st, _, _ = await _get(s, l1, "/v1/kv/fed/greeting?dc=dc2")
            assert st == 404
            st, text, _ = await _get(s, l1, "/v1/kv/fed/greeting?dc=dc9")
            assert st == 500 and text.startswith("No path to datacenter"), text

            # --- DNS for dc2 from the LAN-only agent of dc1 (dig, a real client) ------------
            def dig(name: str, rdtype: str = "A") -> str:
                out = subprocess.run(["dig", "@127.0.0.1", "-p", str(l1.dns_port), name, rdtype,
                                      "+tries=1", "+time=5"], check=False,
                                     capture_output=True, text=True, timeout=20)
                return out.stdout

            srv = await asyncio.to_thread(dig, "web.service.dc2.rumor", "SRV")
            assert "status: NOERROR" in srv and "bl.node.dc2.rumor." in srv, srv
            assert " 8080 " in srv and " 8081 " in srv, srv
            a = await asyncio.to_thread(dig, "web.service.dc2.dc.rumor")
            assert "status: NOERROR" in a and "127.0.0.1" in a, a
            a = await asyncio.to_thread(dig, "bl.node.dc2.rumor")
            assert "status: NOERROR" in a, a
            assert "NXDOMAIN" in await asyncio.to_thread(dig, "web.service.dc9.rumor")
            assert "NXDOMAIN" in await asyncio.to_thread(dig, "web.service.rumor")   # dc1: none
            # the copy follows dc2 (a blocking read across the hop keeps it fresh)
            async with s.put(f"http://127.0.0.1:{bl.http_port}/v1/agent/service/register",
                             json={"Name": "web", "ID": "web3", "Port": 8083}) as r:
                assert r.status == 200

            async def three() -> bool:
                return " 8083 " in await asyncio.to_thread(dig, "web.service.dc2.rumor", "SRV")

            await eventually(three, timeout=10, what="the DNS copy of dc2 to follow")

            # --- prepared queries with failover (HTTP and DNS), from l1 --------------------
            async def query(method: str, path: str, body: Any = None) -> tuple[int, Any]:
                async with s.request(method, f"http://127.0.0.1:{l1.http_port}{path}",
                                     json=body) as r:
                    text = await r.text()
                    return r.status, (json.loads(text) if r.content_type == "application/json"
                                      else text)

            st, made = await query("POST", "/v1/query", {
                "Name": "webq", "Service": {"Service": "web", "OnlyPassing": True,
                                            "Failover": {"Datacenters": ["dc2"]}}})
            assert st == 200 and made["ID"]
            st, res = await query("GET", "/v1/query/webq/execute")
            assert st == 200, res
            assert (res["Datacenter"], res["Failovers"]) == ("dc2", 1)
            assert sorted(e["Service"]["ID"] for e in res["Nodes"]) == ["web", "web2", "web3"]
            # Tags: only web carries v1; NearestN instead of a list
            st, made2 = await query("POST", "/v1/query", {
                "Name": "webv1", "Service": {"Service": "web", "Tags": ["v1"],
                                             "Failover": {"NearestN": 1}}})
            st, res = await query("GET", f"/v1/query/{made2['ID']}/execute")
            assert [e["Service"]["ID"] for e in res["Nodes"]] == ["web"], res
            st, res = await query("POST", "/v1/query", {"Name": "nolocal",
                                                        "Service": {"Service": "web"}})
            st, res = await query("GET", "/v1/query/nolocal/execute")
            assert (res["Nodes"], res["Datacenter"]) == ([], "dc1")   # no failover: local only
            st, listed = await query("GET", "/v1/query")
            assert sorted(q["Name"] for q in listed) == ["nolocal", "webq", "webv1"]
            assert (await query("POST", "/v1/query", {"Name": "x"}))[0] == 400
            assert (await query("GET", "/v1/query/nope/execute"))[0] == 404
            a = await asyncio.to_thread(dig, "webq.query.rumor", "SRV")
            assert "status: NOERROR" in a and "bl.node.dc2.rumor." in a, a
            assert "NXDOMAIN" in await asyncio.to_thread(dig, "nolocal.query.rumor")
            assert "NXDOMAIN" in await asyncio.to_thread(dig, "nope.query.rumor")

            # --- the CLI --------------------------------------------------------------------
            out = await asyncio.to_thread(_cli, l1, "catalog", "services", "-datacenter", "dc2")
            assert out.returncode == 0, out.stderr
            assert "web" in out.stdout.split()
            out = await asyncio.to_thread(_cli, a1, "members", "-wan")
            assert out.returncode == 0, out.stderr
            assert "b2.dc2" in out.stdout and "a1.dc1" in out.stdout
            out = await asyncio.to_thread(_cli, a1, "info")
            assert "serf_wan:" in out.stdout and "b2.dc2=alive" in out.stdout, out.stdout
            out = await asyncio.to_thread(_cli, l1, "info")
            assert "local_wan_members = a1" in out.stdout, out.stdout

            # --- ?near= sorts by LAN coordinates: each node is nearest to itself -------------
            async def near_first(origin: str) -> Any:
                st, body, _ = await _get(s, a1, f"/v1/catalog/nodes?near={origin}")
                return st == 200 and body[0]["Node"]

            await eventually(lambda: _eq(near_first("l1"), "l1"), timeout=30, interval=0.5,
                             what="?near=l1 to put l1 first")
            assert await near_first("a1") == "a1"
            assert await near_first("_agent") == "a1"
            st, body, _ = await _get(s, a1, "/v1/catalog/nodes?near=nobody")
            assert st == 200 and {n["Node"] for n in body} == {"a1", "l1"}   # order unchanged

            # --- WAN coordinates: per datacenter, from a LAN-only agent too; rumor rtt -wan ----
            async def wan_coords() -> Any:
                st, body, _ = await _get(s, l1, "/v1/coordinate/datacenters")
                return st == 200 and {d["Datacenter"]: sorted(c["Node"] for c in d["Coordinates"])
                                      for d in body}

            await eventually(lambda: _eq(wan_coords(), {"dc1": ["a1.dc1"],
                                                         "dc2": ["b1.dc2", "b2.dc2"]}),
                             timeout=30, interval=0.5, what="WAN coordinates of both datacenters")
            out = await asyncio.to_thread(_cli, l1, "rtt", "-wan", "a1.dc1", "b2.dc2")
            assert out.returncode == 0 and "(using WAN coordinates)" in out.stdout, out.stdout
            assert a1.federation is not None and a1.federation.rtt("dc2") < 1.0

            # --- an unknown datacenter: Consul's 500 ----------------------------------------
            st, text, _ = await _get(s, l1, "/v1/catalog/nodes?dc=dc9")
            assert (st, text) == (500, "No path to datacenter\n")
            for odd in ("x" * 3000, "..%2F..%2Fetc", "d%C3%A9", "dc2%00"):
                st, text, _ = await _get(s, l1, f"/v1/catalog/nodes?dc={odd}")
                assert st == 500 and text.startswith("No path to datacenter"), (odd, st, text)
            st, text, _ = await _get(s, l1, "/v1/catalog/nodes?dc=dc2&index=abc")
            assert st == 400 and "index" in text          # refused before the hop

            # --- kill dc2's first WAN member: reads keep working through the second ---------
            await stop_agent(b1)
            agents.remove(b1)
            for _ in range(5):   # at once (b1 refuses connections), and after gossip's verdict
                st, body, _ = await _get(s, l1, "/v1/health/service/web?dc=dc2")
                assert st == 200, body
                assert {e["Node"]["Node"] for e in body} == {"bl"}

            # --- the metrics count the hops -------------------------------------------------
            _, prom, _ = await _get(s, a1, "/v1/agent/metrics?format=prometheus")
            assert 'rumor_federation_requests_total{dc="dc2"}' in prom
            assert 'rumor_federation_errors_total{dc="dc2"}' in prom

            # --- dc2's WAN members all down: a clear error, no hang -------------------------
            await stop_agent(b2)
            agents.remove(b2)
            started = time.monotonic()
            st, text, _ = await _get(s, l1, "/v1/catalog/nodes?dc=dc2&index=1&wait=5s")
            assert st == 500 and text.startswith("No path to datacenter dc2"), text
            assert time.monotonic() - started < 5 + 10 + 2   # wait + the forwarding slack

            async def all_down_known() -> bool:
                st, text, _ = await _get(s, l1, "/v1/catalog/nodes?dc=dc2")
                return st == 500 and "are all down" in text

            # With a lone survivor Lifeguard stretches the probe interval (no one to confirm),
            # so gossip's verdict takes up to ~20 s here; the error above did not wait for it.
            await eventually(all_down_known, timeout=60, interval=0.5,
                             what="gossip to declare dc2's WAN members down")
    finally:
        for a in agents:
            await stop_agent(a)


async def _eq(aw: Any, want: Any) -> bool:
    return bool(await aw == want)


def test_wan_config() -> None:
    base = {"node_name": "n", "data_dir": "/tmp/x"}
    assert not build(base).wan_member
    cfg = build({**base, "retry_join_wan": ["10.0.0.1"]})
    assert cfg.wan_member and cfg.wan_port == 8302
    cfg = build(normalize({**base, "ports": {"serf_wan": 9302}}, source="t"))
    assert cfg.wan_member and cfg.wan_port == 9302
    with pytest.raises(ConfigError, match="ports.serf_wan"):
        build(normalize({**base, "ports": {"serf_wan": 70000}}, source="t"))
    with pytest.raises(ConfigError, match="join_wan"):
        build({**base, "start_join_wan": ["10.0.0.1:99999"]})
    ns = argparse.Namespace(join_wan=["10.0.0.2"], retry_join_wan=["10.0.0.3:8302"],
                            serf_wan_port="8402")
    out = flags_to_settings(ns)
    assert (out["start_join_wan"], out["retry_join_wan"], out["serf_wan_port"]) == (
        ["10.0.0.2"], ["10.0.0.3:8302"], 8402)


async def test_lb_failover_to_another_datacenter(tmp_path: Path) -> None:
    """An HTTP listener in dc1 with ``Failover`` to dc2: dc1's instance goes (maintenance) ->
    requests keep succeeding, served by dc2, with no failure after the switch; it comes back ->
    traffic returns to dc1. Then dc1's backend dies with a slow check: passive health sends
    requests to dc2 at once, none fails, and they come back when it restarts."""
    from lb.testing import start_http_backend

    agents: list[Agent] = []
    back1 = await start_http_backend("in-dc1")
    back2 = await start_http_backend("in-dc2")
    key = base64.b64encode(bytes(range(32))).decode()   # the WAN pool is encrypted too
    try:
        a1 = await start_agent(tmp_path, "a1", datacenter="dc1", serf_wan_port=0,
                               enable_lb=True, encrypt=key, **LOCAL)
        agents.append(a1)
        assert a1.wan is not None and a1.wan.keyring is not None
        b1 = await start_agent(tmp_path, "b1", datacenter="dc2", serf_wan_port=0, encrypt=key,
                               start_join_wan=[f"127.0.0.1:{a1.wan.bound_port}"], **LOCAL)
        agents.append(b1)
        async with aiohttp.ClientSession() as s:
            async def call(a: Agent, method: str, path: str, body: Any = None) -> Any:
                async with s.request(method, f"http://127.0.0.1:{a.http_port}{path}",
                                     json=body) as r:
                    text = await r.text()
                    assert r.status == 200, text
                    return json.loads(text) if text else None

            await call(a1, "PUT", "/v1/agent/service/register",
                       {"Name": "web", "Port": back1.port, "Address": "127.0.0.1"})
            await call(b1, "PUT", "/v1/agent/service/register",
                       {"Name": "web", "Port": back2.port, "Address": "127.0.0.1"})
            info = await call(a1, "PUT", "/v1/lb/listener", {
                "Name": "web", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
                "Failover": {"Datacenters": ["dc2"]}})
            assert info["Failover"] == {"Datacenters": ["dc2"]}
            addr = info["Address"]

            async def served_by() -> str:
                async with s.get(f"http://{addr}/", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    return f"{r.status} {await r.text()}"

            async def served_by_or_error() -> str:
                try:
                    return await served_by()
                except (aiohttp.ClientError, TimeoutError) as e:
                    return f"error {type(e).__name__}"

            await eventually(lambda: _eq(served_by(), "200 in-dc1"), timeout=10,
                             what="dc1 to serve")
            wan_ring = await call(a1, "GET", "/v1/operator/keyring?wan=1")
            assert wan_ring[0]["WAN"] is True and wan_ring[0]["Keys"] == {key: 2}, wan_ring
            lan_ring = await call(a1, "GET", "/v1/operator/keyring")
            assert lan_ring[0]["WAN"] is False and lan_ring[0]["Keys"] == {key: 1}, lan_ring
            out = await asyncio.to_thread(_cli, a1, "keyring", "-wan", "-list")
            assert "WAN keyring (2/2 nodes answered)" in out.stdout, out.stdout
            # a key installed in the WAN pool stays there (its own keyring and file)
            key2 = base64.b64encode(bytes(range(32, 64))).decode()
            out = await asyncio.to_thread(_cli, a1, "keyring", "-wan", "-install", key2)
            assert out.returncode == 0, out.stdout + out.stderr
            wan_ring = await call(a1, "GET", "/v1/operator/keyring?wan=1")
            assert wan_ring[0]["Keys"] == {key: 2, key2: 2}
            assert (await call(a1, "GET", "/v1/operator/keyring"))[0]["Keys"] == {key: 1}
            assert key2 in (tmp_path / "b1" / "serf" / "remote.keyring").read_text()
            assert not (tmp_path / "b1" / "serf" / "local.keyring").exists()
            # dc2's copy is kept warm from the first refresh on
            await eventually(lambda: a1.remote_views is not None
                             and a1.remote_views.cached("dc2") is not None, timeout=10,
                             what="the copy of dc2")

            async def hammer(until: str) -> tuple[list[str], float]:
                """Requests in a row until ``until`` serves; what each got and when it switched."""
                seen: list[str] = []
                started = time.monotonic()
                while time.monotonic() - started < 15:
                    seen.append(await served_by())
                    if seen[-1] == f"200 {until}":
                        return seen, time.monotonic() - started
                raise AssertionError(f"never switched to {until}: {seen[-5:]}")

            await call(a1, "PUT", "/v1/agent/service/maintenance/web?enable=true")
            seen, took = await hammer("in-dc2")
            assert all(x == "200 in-dc1" for x in seen[:-1]), seen   # no failed request
            print(f"failover switch time {took:.3f}s")
            after = [await served_by() for _ in range(20)]
            assert after == ["200 in-dc2"] * 20      # zero failed requests after the switch
            await call(a1, "PUT", "/v1/agent/service/maintenance/web?enable=false")
            seen, took = await hammer("in-dc1")
            assert all(x == "200 in-dc2" for x in seen[:-1]), seen
            print(f"failback switch time {took:.3f}s")
            assert [await served_by() for _ in range(10)] == ["200 in-dc1"] * 10
            # one backend: the local one (the remote one is not mixed in)
            lst = await call(a1, "GET", "/v1/lb/listener/web")
            assert len(lst["Backends"]) == 1

            # --- the local instance really dies, long before its check notices -----------
            # A slow check (60 s): the catalog keeps saying passing. Passive health does the
            # switch: the first request's connect to dc1 is refused and the LB retries it on
            # the standby (dc2) within the same request, so no request fails at all; after
            # eject_after (3) refusals dc1 is ejected and dc2 serves without trying it.
            await call(a1, "PUT", "/v1/agent/service/register", {
                "Name": "web", "Port": back1.port, "Address": "127.0.0.1",
                "Check": {"HTTP": f"http://127.0.0.1:{back1.port}/", "Interval": "60s",
                          "Timeout": "0.5s"}})
            await eventually(lambda: _eq(served_by_or_error(), "200 in-dc1"), timeout=10,
                             what="dc1 to serve with its check")

            async def web_health() -> str:
                entries = await call(a1, "GET", "/v1/health/service/web")
                return str(entries[0]["Checks"][-1]["Status"]) if entries else "gone"

            await eventually(lambda: _eq(web_health(), "passing"), timeout=10,
                             what="the check to pass")
            port1 = back1.port
            await back1.close()
            killed = time.monotonic()
            after = [await served_by_or_error() for _ in range(30)]
            assert after == ["200 in-dc2"] * 30, after   # not one failed request
            print(f"30 requests after the kill, all served by dc2, in "
                  f"{time.monotonic() - killed:.2f}s")
            assert await web_health() == "passing"     # the check has not noticed
            lst = await call(a1, "GET", "/v1/lb/listener/web")
            assert [b["Ejected"] for b in lst["Backends"]] == [True], lst["Backends"]
            back1 = await start_http_backend("in-dc1", port=port1)   # it comes back
            started = time.monotonic()
            seen, took = await hammer("in-dc1")
            assert all(x == "200 in-dc2" for x in seen[:-1]), seen
            print(f"back to dc1 {time.monotonic() - started:.2f}s after the restart "
                  "(the ejection's back-off)")
            assert [await served_by() for _ in range(10)] == ["200 in-dc1"] * 10
    finally:
        for a in agents:
            await stop_agent(a)
        await back1.close()
        await back2.close()


async def test_ui_shows_another_datacenter(tmp_path: Path) -> None:
    """The web UI of a dc1 agent lists both datacenters in its selector; ``?dc=dc2`` shows
    dc2's services (a critical instance included), nodes and checks, read across the WAN."""
    agents: list[Agent] = []
    try:
        a1 = await start_agent(tmp_path, "a1", datacenter="dc1", serf_wan_port=0, **LOCAL)
        agents.append(a1)
        assert a1.wan is not None
        b1 = await start_agent(tmp_path, "b1", datacenter="dc2", serf_wan_port=0,
                               start_join_wan=[f"127.0.0.1:{a1.wan.bound_port}"], **LOCAL)
        agents.append(b1)
        async with aiohttp.ClientSession() as s:
            async with s.put(f"http://127.0.0.1:{b1.http_port}/v1/agent/service/register",
                             json={"Name": "pay", "ID": "pay1", "Port": 9,
                                   "Check": {"TTL": "60s", "Status": "critical"}}) as r:
                assert r.status == 200, await r.text()

            async def page(path: str) -> str:
                status, body, _ = await _get(s, a1, path)
                return body if status == 200 else f"{status} {body}"

            async def both_listed() -> bool:
                html = await page("/ui/")
                return '<option value="dc2"' in html and '<option value="dc1"' in html

            await eventually(both_listed, timeout=10, what="dc2 in the selector")
            local = await page("/ui/")
            assert 'data-key="svc:pay"' not in local and 'main id="main" data-dc="dc1"' in local
            html = await page("/ui/?dc=dc2")
            assert 'main id="main" data-dc="dc2"' in html, html[:500]
            assert '<option value="dc2" selected>' in html
            assert 'data-key="svc:pay"' in html and 'href="/ui/services/pay?dc=dc2"' in html
            html = await page("/ui/services/pay?dc=dc2")
            assert 'data-key="inst:b1/pay1" data-health="critical"' in html, html
            html = await page("/ui/nodes?dc=dc2")
            assert 'data-key="node:b1"' in html and 'data-key="node:a1"' not in html
            html = await page("/ui/checks?dc=dc2")
            assert 'data-key="chk:b1/service:pay1"' in html
            status, body, _ = await _get(s, a1, "/ui/?dc=nowhere")
            assert status == 500 and "No path to datacenter" in body, (status, body)
    finally:
        for a in agents:
            await stop_agent(a)

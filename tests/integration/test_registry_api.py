"""The Consul-compatible HTTP API driven by the real py-consul client and by raw HTTP.

Shapes follow Consul's API docs (agent/service, catalog, health): every documented field name is
present with Consul's casing. Blocking queries really block and wake on their own resource.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import consul
import pytest
from hypothesis import strategies as st

from registry.agent import Agent

from .registry_fixtures import agent_fixture

HEALTH_NODE_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta",
                    "CreateIndex", "ModifyIndex"}
HEALTH_SERVICE_KEYS = {"ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
                       "Weights", "EnableTagOverride", "Proxy", "Connect", "CreateIndex",
                       "ModifyIndex"}
CHECK_KEYS = {"Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition",
              "CreateIndex", "ModifyIndex"}
CATALOG_SERVICE_KEYS = {"ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta",
                        "ServiceID", "ServiceName", "ServiceTags", "ServiceAddress",
                        "ServiceTaggedAddresses", "ServiceWeights", "ServiceMeta", "ServicePort",
                        "ServiceEnableTagOverride", "ServiceProxy", "ServiceConnect",
                        "ServiceKind", "CreateIndex", "ModifyIndex"}
AGENT_SERVICE_KEYS = {"ID", "Service", "Tags", "Meta", "Port", "Address", "TaggedAddresses",
                      "Weights", "EnableTagOverride", "Datacenter"}


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async for a in agent_fixture(tmp_path, node_meta={"rack": "r1"}):
        yield a


def client(agent: Agent) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


async def call(fn: Any, *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)


async def http(agent: Agent, method: str, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"http://127.0.0.1:{agent.http_port}{path}", **kw) as r:
            body = await r.read()
            try:
                data: Any = await r.json(content_type=None)
            except ValueError:
                data = body.decode()
            return r.status, dict(r.headers), data


async def test_register_catalog_health_deregister_with_py_consul(agent: Agent) -> None:
    c = client(agent)
    ok = await call(c.agent.service.register, "web", service_id="web1", port=8080,
                    tags=["v1", "blue"], meta={"version": "1"}, address="10.1.1.1",
                    weights={"Passing": 3, "Warning": 1}, check=consul.Check.ttl("30s"))
    assert ok is True
    services = await call(c.agent.services)
    assert set(services["web1"]) >= AGENT_SERVICE_KEYS
    assert services["web1"]["Weights"] == {"Passing": 3, "Warning": 1}

    index, cat = await call(c.catalog.services)
    assert cat == {"web": ["blue", "v1"]} and int(index) >= 1
    _, nodes = await call(c.catalog.service, "web")
    assert set(nodes[0]) >= CATALOG_SERVICE_KEYS
    assert (nodes[0]["ServiceAddress"], nodes[0]["ServicePort"], nodes[0]["NodeMeta"]) == (
        "10.1.1.1", 8080, {"rack": "r1"})

    _, entries = await call(c.health.service, "web")
    e = entries[0]
    assert set(e) == {"Node", "Service", "Checks"}
    assert set(e["Node"]) >= HEALTH_NODE_KEYS and set(e["Service"]) >= HEALTH_SERVICE_KEYS
    assert all(set(ch) >= CHECK_KEYS for ch in e["Checks"])
    assert [ch["CheckID"] for ch in e["Checks"]] == ["serfHealth", "service:web1"]
    assert e["Checks"][1]["Status"] == "critical"  # Consul's initial status
    assert (await call(c.health.service, "web", passing=True))[1] == []

    await call(c.agent.check.ttl_pass, "service:web1", "all good")
    _, passing = await call(c.health.service, "web", passing=True)
    assert [x["Service"]["ID"] for x in passing] == ["web1"]
    assert passing[0]["Checks"][1]["Output"] == "all good"

    _, node = await call(c.catalog.node, agent.config.node_name)
    assert set(node) == {"Node", "Services"} and "web1" in node["Services"]
    _, checks = await call(c.health.node, agent.config.node_name)
    assert {x["CheckID"] for x in checks} == {"serfHealth", "service:web1"}
    _, svc_checks = await call(c.health.checks, "web")
    assert [x["CheckID"] for x in svc_checks] == ["service:web1"]
    _, state = await call(c.health.state, "passing")
    assert {x["CheckID"] for x in state} == {"serfHealth", "service:web1"}
    assert await call(c.catalog.datacenters) == ["dc1"]

    assert await call(c.agent.service.deregister, "web1") is True
    assert (await call(c.catalog.services))[1] == {}
    assert (await call(c.health.service, "web"))[1] == []
    assert await call(c.agent.checks) == {}


async def test_blocking_query_blocks_then_wakes_on_its_resource(agent: Agent) -> None:
    c = client(agent)
    await call(c.agent.service.register, "web", service_id="web1", port=80)
    await call(c.agent.service.register, "db", service_id="db1", port=5432)
    index, _ = await call(c.health.service, "web")

    async def later() -> None:
        await asyncio.sleep(0.4)
        await call(c.agent.service.register, "db", service_id="db1", port=5433)  # other resource
        await asyncio.sleep(0.4)
        await call(c.agent.service.register, "web", service_id="web2", port=81)

    t = time.monotonic()
    task = asyncio.create_task(later())
    new_index, entries = await call(c.health.service, "web", index=index, wait="10s")
    elapsed = time.monotonic() - t
    await task
    assert 0.6 < elapsed < 5.0, elapsed  # not woken by the db change, woken by the web one
    assert int(new_index) > int(index)
    assert sorted(x["Service"]["ID"] for x in entries) == ["web1", "web2"]

    # nothing changes: returns after wait (+ up to wait/16 jitter) with the same index
    t = time.monotonic()
    same, _ = await call(c.catalog.service, "web", index=new_index, wait="500ms")
    assert 0.45 < time.monotonic() - t < 3.0 and same == new_index

    # an index from the future (agent restarted) answers at once so the client resets
    t = time.monotonic()
    await call(c.catalog.services, index=str(10**9), wait="5s")
    assert time.monotonic() - t < 1.0


async def test_headers_and_index_always_at_least_one(agent: Agent) -> None:
    for path in ("/v1/catalog/services", "/v1/catalog/nodes", "/v1/catalog/service/nope",
                 "/v1/health/service/nope", "/v1/health/state/any", "/v1/agent/services",
                 "/v1/health/node/nope", "/v1/catalog/node/nope", "/v1/health/checks/nope"):
        status, h, _ = await http(agent, "GET", path)
        assert status == 200, path
        assert int(h["X-Consul-Index"]) >= 1, path
        assert h["X-Consul-KnownLeader"] == "true" and "X-Consul-LastContact" in h
    _, _, body = await http(agent, "GET", "/v1/catalog/node/nope")
    assert body is None  # Consul answers null for an unknown node


@pytest.mark.parametrize("method,path,body,status,needle", [
    ("PUT", "/v1/agent/service/register", b"{not json", 400, "Request decode failed"),
    ("PUT", "/v1/agent/service/register", b"[" * 100_000 + b"]" * 100_000, 400,
     "nested deeper than 64"),
    ("PUT", "/v1/agent/service/register", b"[" * 100_000, 400, "Request decode failed"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Meta": ' + b'{"a": ' * 70
     + b"1" + b"}" * 71, 400, "nested deeper than 64"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": NaN}', 400, "NaN"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": 1e400}', 400, "1e400"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": -Infinity}', 400,
     "Infinity"),
    ("PUT", "/v1/agent/service/register", b"\xff\xfe\x00garbage", 400, "Request decode failed"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": "eighty"}', 400, "Port"),
    ("PUT", "/v1/agent/service/register", b'{"Port": 80}', 400, "Missing service name"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Port": 70000}', 400, "not a port"),
    ("PUT", "/v1/agent/service/register", b'{"Name": "web", "Tags": "a"}', 400, "Tags"),
    ("PUT", "/v1/agent/service/register", b'[1, 2]', 400, "object"),
    ("PUT", "/v1/agent/service/register",
     b'{"Name": "web", "Check": {"Args": ["/bin/true"], "Interval": "10s"}}', 400, "enable_local_script_checks"),
    ("PUT", "/v1/agent/service/register",
     b'{"Name": "web", "Check": {"Interval": "10s"}}', 400, "Must provide"),
    ("PUT", "/v1/agent/service/register",
     b'{"Name": "web", "Check": {"HTTP": "http://x/", "Interval": "soon"}}', 400, "duration"),
    ("PUT", "/v1/agent/service/register",
     b'{"Name": "web", "Meta": {"bad key": "x"}}', 400, "Meta"),
    ("PUT", "/v1/agent/service/deregister/nope", b"", 404, "Unknown service ID"),
    ("PUT", "/v1/agent/check/deregister/nope", b"", 404, "Unknown check ID"),
    ("PUT", "/v1/agent/check/pass/nope", b"", 404, "Unknown check ID"),
    ("PUT", "/v1/agent/check/register", b'{"Name": "x", "TTL": "5s", "ServiceID": "nope"}', 400,
     "does not exist"),
    ("PUT", "/v1/agent/check/register", b'{"TTL": "5s"}', 400, "Name"),
    ("GET", "/v1/agent/service/register", b"", 405, "not allowed"),
    ("DELETE", "/v1/catalog/services", b"", 405, "not allowed"),
    ("GET", "/v1/agent/service/nope", b"", 404, "unknown service ID"),
    ("GET", "/v1/health/state/bogus", b"", 400, "Bad state"),
    ("GET", "/v1/health/service/web?index=abc", b"", 400, "Invalid index"),
    ("GET", "/v1/health/service/web?index=5&wait=forever", b"", 400, "Invalid wait"),
    ("GET", "/v1/health/service/web?filter=Service.ID%20%3D%3D", b"", 400, "expression"),
    # Consul's answer for a datacenter it has no path to (registry/federation.py)
    ("GET", "/v1/catalog/services?dc=elsewhere", b"", 500, "No path to datacenter"),
    ("PUT", "/v1/agent/maintenance", b"", 400, "enable"),
    ("PUT", "/v1/agent/maintenance?enable=maybe", b"", 400, "enable"),
    ("PUT", "/v1/catalog/register", b'{"Node": "other", "Service": {"Service": "x"}}', 400,
     "Must provide address"),  # an external node needs its address (Consul's message)
    # every node refused the key operation: the request's fault, not a 500
    ("POST", "/v1/operator/keyring", b'{"Key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}',
     400, "encryption not enabled"),
    ("PUT", "/v1/operator/keyring", b'{"Key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}',
     400, "encryption not enabled"),
])
async def test_bad_input_answers_4xx_with_reason(agent: Agent, method: str, path: str,
                                                 body: bytes, status: int, needle: str) -> None:
    got, h, text = await http(agent, method, path, data=body or None)
    assert got == status, (got, text)
    assert needle.lower() in str(text).lower(), text
    assert h["Content-Type"].startswith("text/plain")


async def test_oversized_body_is_413_and_nothing_half_applied(tmp_path: Path) -> None:
    async for a in agent_fixture(tmp_path, limits={"http_max_body": 4096}):
        status, _, text = await http(a, "PUT", "/v1/agent/service/register",
                                     data=b'{"Name": "web", "Tags": ["' + b"x" * 8000 + b'"]}')
        assert status == 413, text
        # one good check and one bad one: refused as a whole
        status, _, text = await http(a, "PUT", "/v1/agent/service/register", json={
            "Name": "web", "Checks": [{"TTL": "10s"}, {"HTTP": "ftp://x", "Interval": "1s"}]})
        assert status == 400 and "HTTP" in text
        _, _, services = await http(a, "GET", "/v1/agent/services")
        _, _, checks = await http(a, "GET", "/v1/agent/checks")
        assert services == {} and checks == {}


async def test_any_key_casing_and_snake_case(agent: Agent) -> None:
    status, _, _ = await http(agent, "PUT", "/v1/agent/service/register", json={
        "name": "api", "id": "api1", "PORT": 9000, "enable_tag_override": True,
        "tagged_addresses": {"lan": {"address": "10.0.0.9", "port": 9000}},
        "checks": [{"name": "ttl", "ttl": "10s", "status": "warning"},
                   {"check_id": "second", "name": "t2", "TTL": "10s", "Status": "passing"}],
    })
    assert status == 200
    _, _, svc = await http(agent, "GET", "/v1/agent/service/api1")
    assert svc["EnableTagOverride"] is True and svc["Port"] == 9000 and svc["ContentHash"]
    _, _, checks = await http(agent, "GET", "/v1/agent/checks")
    assert set(checks) == {"service:api1:1", "second"}
    assert checks["service:api1:1"]["Status"] == "warning"


async def test_ttl_update_and_maintenance(agent: Agent) -> None:
    c = client(agent)
    await call(c.agent.service.register, "web", service_id="web1", check=consul.Check.ttl("30s"))
    await call(c.agent.check.ttl_warn, "service:web1", "slow")
    _, e = await call(c.health.service, "web")
    assert e[0]["Checks"][1]["Status"] == "warning"
    status, _, _ = await http(agent, "PUT", "/v1/agent/check/update/service:web1",
                              json={"Status": "passing", "Output": "fine"})
    assert status == 200
    _, e = await call(c.health.service, "web", passing=True)
    assert e[0]["Checks"][1]["Output"] == "fine"
    # service maintenance, with a reason
    await call(c.agent.service.maintenance, "web1", "true", "deploying")
    _, e = await call(c.health.service, "web")
    maint = [x for x in e[0]["Checks"] if x["CheckID"] == "_service_maintenance:web1"][0]
    assert maint["Status"] == "critical" and maint["Notes"] == "deploying"
    assert (await call(c.health.service, "web", passing=True))[1] == []
    await call(c.agent.service.maintenance, "web1", "false")
    assert len((await call(c.health.service, "web", passing=True))[1]) == 1
    # node maintenance hits every instance
    await call(c.agent.maintenance, "true", "kernel upgrade")
    _, crit = await call(c.health.state, "critical")
    assert [x["Notes"] for x in crit] == ["kernel upgrade"]
    assert (await call(c.health.service, "web", passing=True))[1] == []
    await call(c.agent.maintenance, "false")
    assert len((await call(c.health.service, "web", passing=True))[1]) == 1


async def test_tags_filter_and_passing(agent: Agent) -> None:
    for i, (tags, meta) in enumerate([(["a", "b"], {"env": "prod"}), (["a"], {"env": "dev"}),
                                      (["b"], {"env": "prod"})]):
        await http(agent, "PUT", "/v1/agent/service/register", json={
            "Name": "web", "ID": f"w{i}", "Port": 100 + i, "Tags": tags, "Meta": meta,
            "Check": {"TTL": "30s", "Status": "passing" if i != 2 else "critical"}})

    async def ids(q: str) -> list[str]:
        _, _, data = await http(agent, "GET", "/v1/health/service/web" + q)
        return [x["Service"]["ID"] for x in data]

    assert await ids("?tag=a") == ["w0", "w1"]
    assert await ids("?tag=a&tag=b") == ["w0"]
    assert await ids("?passing") == ["w0", "w1"]
    assert await ids("?passing=false") == ["w0", "w1", "w2"]
    q = "?filter=" + aiohttp.helpers.quote('Service.Meta.env == "prod"', safe="")
    assert await ids(q) == ["w0", "w2"]
    q = "?filter=" + aiohttp.helpers.quote('"b" in Service.Tags and not (Service.Port == 102)',
                                           safe="")
    assert await ids(q) == ["w0"]
    q = "?filter=" + aiohttp.helpers.quote("Checks.Status == critical", safe="")
    assert await ids(q) == ["w2"]
    q = "?filter=" + aiohttp.helpers.quote('Node.Meta.rack != "r1" or Service.ID contains "1"',
                                           safe="")
    assert await ids(q) == ["w1"]
    _, _, cat = await http(agent, "GET", "/v1/catalog/service/web?tag=b&filter=" +
                           aiohttp.helpers.quote("ServicePort > 0 or ServiceID == w2", safe=""))
    assert isinstance(cat, str) or [x["ServiceID"] for x in cat] == ["w2"]
    _, _, agent_svcs = await http(agent, "GET", "/v1/agent/services?filter=" +
                                  aiohttp.helpers.quote('Meta.env == "dev"', safe=""))
    assert list(agent_svcs) == ["w1"]
    _, _, near = await http(agent, "GET", "/v1/health/service/web?near=_agent")
    assert len(near) == 3


async def test_catalog_register_local_node(agent: Agent) -> None:
    me = agent.config.node_name
    status, _, ok = await http(agent, "PUT", "/v1/catalog/register", json={
        "Node": me, "Address": "127.0.0.1", "Service": {"Service": "cache", "ID": "c1", "Port": 6379}})
    assert status == 200 and ok is True
    _, _, svcs = await http(agent, "GET", "/v1/agent/services")
    assert "c1" in svcs
    status, _, _ = await http(agent, "PUT", "/v1/catalog/deregister",
                              json={"Node": me, "ServiceID": "c1"})
    assert status == 200
    _, _, svcs = await http(agent, "GET", "/v1/agent/services")
    assert svcs == {}


async def test_agent_service_hash_blocking(agent: Agent) -> None:
    await http(agent, "PUT", "/v1/agent/service/register", json={"Name": "web", "ID": "w"})
    _, h, _ = await http(agent, "GET", "/v1/agent/service/w")
    digest = h["X-Consul-ContentHash"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        await http(agent, "PUT", "/v1/agent/service/register",
                   json={"Name": "web", "ID": "w", "Port": 1})
    task = asyncio.create_task(later())
    t = time.monotonic()
    _, h2, body = await http(agent, "GET", f"/v1/agent/service/w?hash={digest}&wait=5s")
    await task
    assert 0.25 < time.monotonic() - t < 4 and body["Port"] == 1
    assert h2["X-Consul-ContentHash"] != digest


async def test_acl_tokens(tmp_path: Path) -> None:
    acl = {"enabled": True, "default_policy": "deny",
           "tokens": {"ops": "write", "prom": "read", "initial_management": "root"}}
    async for a in agent_fixture(tmp_path, acl=acl):
        body = {"Name": "web"}
        # no token under default deny: Consul's answer, an empty list said to be filtered
        status, headers, seen = await http(a, "GET", "/v1/catalog/services")
        assert status == 200 and seen == {}
        assert (await http(a, "PUT", "/v1/agent/service/register", json=body))[0] == 403
        assert (await http(a, "GET", "/v1/catalog/services",
                           headers={"X-Consul-Token": "prom"}))[0] == 200
        assert (await http(a, "GET", "/v1/catalog/services?token=prom"))[0] == 200
        assert (await http(a, "GET", "/v1/catalog/services",
                           headers={"Authorization": "Bearer prom"}))[0] == 200
        status, _, text = await http(a, "GET", "/v1/catalog/services",
                                     headers={"X-Consul-Token": "nope"})
        assert status == 403 and "ACL not found" in text
        # a stray Basic header is ignored (so it falls to the default policy: deny)
        assert (await http(a, "PUT", "/v1/agent/service/register", json=body,
                           headers={"Authorization": "Basic dXNlcjpwdw=="}))[0] == 403
        assert (await http(a, "PUT", "/v1/agent/service/register", json=body,
                           headers={"X-Consul-Token": "prom"}))[0] == 403
        assert (await http(a, "PUT", "/v1/agent/service/register", json=body,
                           headers={"X-Consul-Token": "ops"}))[0] == 200
        assert (await http(a, "PUT", "/v1/agent/service/deregister/web",
                           headers={"X-Consul-Token": "root"}))[0] == 200
        c = consul.Consul(port=a.http_port, token="prom")
        assert (await call(c.catalog.services))[1] == {}
        assert (await http(a, "GET", "/v1/status/leader"))[0] == 200
        status, _, me = await http(a, "GET", "/v1/acl/token/self", headers={"X-Consul-Token": "ops"})
        assert status == 200 and me["SecretID"] == "ops"


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=20)
_keys = st.sampled_from(["Name", "name", "ID", "Port", "port", "Tags", "Meta", "Address", "Check",
                         "Checks", "Weights", "TaggedAddresses", "EnableTagOverride", "TTL",
                         "HTTP", "Interval", "TCP", "Status", "ServiceID", "Header", "Body"])
_bodies = st.dictionaries(_keys, _json, max_size=6) | _json


async def test_fuzzed_registrations_never_500(tmp_path: Path) -> None:
    """Random JSON at every write endpoint: 200 or a 4xx with a reason, never a 500."""
    import json as _json_mod

    from hypothesis import HealthCheck, given, settings

    async for a in agent_fixture(tmp_path):
        bodies: list[Any] = []

        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(_bodies)
        def collect(b: Any) -> None:
            bodies.append(b)
        collect()
        async with aiohttp.ClientSession() as s:
            for b in bodies:
                for path in ("/v1/agent/service/register", "/v1/agent/check/register",
                             "/v1/agent/check/update/x", "/v1/catalog/register"):
                    async with s.put(f"http://127.0.0.1:{a.http_port}{path}",
                                     data=_json_mod.dumps(b)) as r:
                        text = await r.text()
                        assert r.status < 500, (path, b, text)
                        if r.status >= 400:
                            assert text.strip(), (path, b)
        # the agent still answers and holds only what was accepted
        status, _, services = await http(a, "GET", "/v1/agent/services")
        assert status == 200 and isinstance(services, dict)


async def test_agent_checks_hash_blocking(agent: Agent) -> None:
    await http(agent, "PUT", "/v1/agent/check/register", json={"Name": "disk", "TTL": "60s"})
    _, h, _ = await http(agent, "GET", "/v1/agent/checks")
    digest = h["X-Consul-ContentHash"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        await http(agent, "PUT", "/v1/agent/check/pass/disk")
    task = asyncio.create_task(later())
    t = time.monotonic()
    _, h2, body = await http(agent, "GET", f"/v1/agent/checks?hash={digest}&wait=5s")
    await task
    assert 0.25 < time.monotonic() - t < 4 and body["disk"]["Status"] == "passing"
    assert h2["X-Consul-ContentHash"] != digest


async def test_service_names_match_case_insensitively(agent: Agent) -> None:
    await http(agent, "PUT", "/v1/agent/service/register", json={"Name": "Web", "ID": "w1"})
    for path in ("/v1/health/service/web", "/v1/catalog/service/WEB", "/v1/health/checks/web"):
        status, _, data = await http(agent, "GET", path)
        assert status == 200
    _, _, data = await http(agent, "GET", "/v1/health/service/wEb")
    assert [e["Service"]["Service"] for e in data] == ["Web"]


async def test_agent_self_and_status_report_what_this_agent_bound(tmp_path: Path) -> None:
    # The API is handed the subsystems, not the agent: what it reports must still be the
    # agent's own bound ports, node ID and data dir, and API-made LB listeners must persist.
    from .registry_fixtures import start_agent, stop_agent

    agent = await start_agent(tmp_path, "selfie", enable_dns=True, dns_port=0, enable_lb=True)
    try:
        status, _, me = await http(agent, "GET", "/v1/agent/self")
        assert status == 200
        assert agent.dns_port > 0 and agent.http_port > 0 and agent.gossip_port > 0
        assert me["DebugConfig"]["Ports"] == {
            "HTTP": agent.http_port, "HTTPS": -1, "DNS": agent.dns_port,
            "SerfLan": agent.gossip_port}
        assert agent.datadir is not None
        assert me["Config"]["NodeID"] == agent.datadir.node_id
        assert me["DebugConfig"]["DataDir"] == str(agent.datadir.path)
        assert me["Member"]["Name"] == "selfie" and me["Member"]["Port"] == agent.gossip_port
        assert me["Stats"]["serf_lan"]["members"] == "1"
        assert int(me["Stats"]["registry"]["local_services"]) == 0
        here = f"127.0.0.1:{agent.gossip_port}"
        assert (await http(agent, "GET", "/v1/status/leader"))[2] == here
        assert (await http(agent, "GET", "/v1/status/peers"))[2] == [here]
        status, _, info = await http(agent, "PUT", "/v1/lb/listener", json={
            "Name": "web", "Bind": "127.0.0.1:0", "Service": "web"})
        assert status == 200, info
    finally:
        await stop_agent(agent)
    agent = await start_agent(tmp_path, "selfie", enable_lb=True)
    try:
        status, _, info = await http(agent, "GET", "/v1/lb/listener/web")
        assert status == 200 and info["Name"] == "web", info
        assert (await http(agent, "DELETE", "/v1/lb/listener/web"))[0] == 200
    finally:
        await stop_agent(agent)
    agent = await start_agent(tmp_path, "selfie", enable_lb=True)
    try:
        assert (await http(agent, "GET", "/v1/lb/listener/web"))[0] == 404
    finally:
        await stop_agent(agent)


@pytest.mark.parametrize("ctype", ["multipart/form-data; boundary=xyz", "multipart/form-data"])
async def test_a_malformed_ui_token_form_is_400(agent: Agent, ctype: str) -> None:
    """POST /ui/token with a form body that is not one (found by test_http_api_fuzz)."""
    status, h, text = await http(agent, "POST", "/ui/token", data=b"{}",
                                 headers={"Content-Type": ctype})
    assert status == 400 and "Bad form body" in text, (status, text)
    assert h["Content-Type"].startswith("text/plain")

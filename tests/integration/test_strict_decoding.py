"""Strict, Consul-compatible decoding of request bodies and scope parameters (real HTTP server).

Unknown fields get Consul's 400 ``Request decode failed: json: unknown field "X"``; fields Consul
accepts are never refused; Connect, Proxy, PeerName and non-default namespaces/partitions get a
400 that says they are not supported. A refused request registers nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import consul
import pytest

from registry.agent import Agent

from .registry_fixtures import agent_fixture


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async for a in agent_fixture(tmp_path):
        yield a


async def http(agent: Agent, method: str, path: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"http://127.0.0.1:{agent.http_port}{path}", **kw) as r:
            return r.status, await r.text()


async def services(agent: Agent) -> dict[str, Any]:
    status, _ = await http(agent, "GET", "/v1/agent/services")
    assert status == 200
    c = consul.Consul(host="127.0.0.1", port=agent.http_port)
    return await asyncio.to_thread(c.agent.services)  # type: ignore[no-any-return]


@pytest.mark.parametrize("body, field", [
    ({"Name": "web", "Prot": 8087}, "Prot"),
    ({"Name": "web", "Port": 80, "Check": {"TTL": "10s", "Intervall": "1s"}}, "Intervall"),
    ({"Name": "web", "Checks": [{"TTL": "10s"}, {"HTTP": "http://x/", "Interval": "1s",
                                                 "Headers": {}}]}, "Headers"),
    ({"Name": "web", "Weights": {"Passing": 2, "Critical": 1}}, "Critical"),
    ({"Name": "web", "TaggedAddresses": {"lan": {"Address": "1.2.3.4", "Prt": 1}}}, "Prt"),
])
async def test_unknown_fields_refused_with_consuls_message(agent: Agent, body: dict[str, Any],
                                                           field: str) -> None:
    status, text = await http(agent, "PUT", "/v1/agent/service/register", json=body)
    assert (status, text) == (400, f'Request decode failed: json: unknown field "{field}"\n')
    assert await services(agent) == {}


@pytest.mark.parametrize("body, says", [
    ({"Name": "web", "Connect": {"Native": True}}, "Connect: service mesh"),
    ({"Name": "web", "Kind": "connect-proxy", "Proxy": {"DestinationServiceName": "x"}},
     "Proxy: Connect proxies are not supported"),
    ({"Name": "web", "Namespace": "team-a"}, "namespaces and admin partitions are not supported"),
    ({"Name": "web", "Partition": "p1"}, "namespaces and admin partitions are not supported"),
])
async def test_unsupported_fields_refused(agent: Agent, body: dict[str, Any], says: str) -> None:
    status, text = await http(agent, "PUT", "/v1/agent/service/register", json=body)
    assert status == 400 and says in text
    assert await services(agent) == {}


async def test_fields_consul_accepts_are_never_refused(agent: Agent) -> None:
    body = {
        "Name": "web", "ID": "web1", "Port": 8080, "Address": "10.0.0.5", "Tags": ["a"],
        "Meta": {"v": "1"}, "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 8080}},
        "Weights": {"Passing": 3, "Warning": 1}, "EnableTagOverride": True,
        "Locality": {"Region": "eu", "Zone": "eu-1a"}, "SocketPath": "", "Token": "",
        "Namespace": "default", "Partition": "", "Connect": None, "Proxy": {}, "Kind": "",
        "Check": {"CheckID": "c1", "Name": "ttl", "TTL": "30s", "Notes": "n", "Status": "passing",
                  "DeregisterCriticalServiceAfter": "90m", "FailuresBeforeWarning": 1,
                  "OutputMaxSize": 4096, "Token": ""},
        "Checks": [{"HTTP": "http://127.0.0.1:1/", "Interval": "10s", "Method": "GET",
                    "Header": {"X-A": ["1"]}, "TLSSkipVerify": True, "DisableRedirects": True,
                    "SuccessBeforePassing": 1, "FailuresBeforeCritical": 2, "Timeout": "1s"}],
    }
    status, text = await http(agent, "PUT", "/v1/agent/service/register", json=body)
    assert status == 200, text
    # snake_case and any casing, as Consul's decoder takes them
    status, text = await http(agent, "PUT", "/v1/agent/service/register", json={
        "name": "api", "port": 9000, "enable_tag_override": True,
        "tagged_addresses": {"wan": {"address": "1.2.3.4", "port": 1}},
        "check": {"ttl": "10s", "deregister_critical_service_after": "1m"}})
    assert status == 200, text
    assert set(await services(agent)) == {"web1", "api"}
    # py-consul's own register call, with the fields it sends
    c = consul.Consul(host="127.0.0.1", port=agent.http_port)
    ok = await asyncio.to_thread(
        c.agent.service.register, "db", service_id="db1", port=5432, tags=["x"],
        meta={"a": "b"}, weights={"Passing": 1, "Warning": 1}, enable_tag_override=True,
        tagged_addresses={"lan": {"Address": "10.0.0.1", "Port": 5432}},
        locality={"Region": "eu", "Zone": "z"}, check=consul.Check.ttl("10s"))
    assert ok is True


async def test_check_register_update_and_catalog_bodies(agent: Agent) -> None:
    status, text = await http(agent, "PUT", "/v1/agent/check/register",
                              json={"Name": "mem", "TTL": "10s", "Scrpt": "x"})
    assert (status, text) == (400, 'Request decode failed: json: unknown field "Scrpt"\n')
    status, _ = await http(agent, "PUT", "/v1/agent/check/register",
                           json={"Name": "mem", "ID": "mem", "TTL": "10s", "Namespace": "default"})
    assert status == 200
    status, text = await http(agent, "PUT", "/v1/agent/check/update/mem",
                              json={"Status": "passing", "Outptu": "x"})
    assert (status, text) == (400, 'Request decode failed: json: unknown field "Outptu"\n')
    me = agent.config.node_name
    status, text = await http(agent, "PUT", "/v1/catalog/register", json={
        "Node": me, "Address": "127.0.0.1", "Servic": {"Service": "x"}})
    assert (status, text) == (400, 'Request decode failed: json: unknown field "Servic"\n')
    status, text = await http(agent, "PUT", "/v1/catalog/register", json={
        "Node": me, "Address": "127.0.0.1", "Service": {"Service": "x", "Port": 1, "PeerName": "p"}})
    assert status == 400 and "peering is not supported" in text
    status, text = await http(agent, "PUT", "/v1/catalog/deregister", json={
        "Node": me, "ServiceID": "x", "Address": "127.0.0.1", "Datacenter": "dc1"})
    assert status == 404 and "Unknown service ID" in text  # decoded; there is no such service
    status, text = await http(agent, "PUT", "/v1/catalog/deregister", json={
        "Node": me, "ServiceId": "x", "CheckIDs": []})
    assert (status, text) == (400, 'Request decode failed: json: unknown field "CheckIDs"\n')
    assert await services(agent) == {}


@pytest.mark.parametrize("query, says", [
    ("ns=team-a", "namespaces and admin partitions are not supported"),
    ("partition=p1", "namespaces and admin partitions are not supported"),
    ("peer=other", "peering is not supported"),
])
async def test_scope_query_parameters(agent: Agent, query: str, says: str) -> None:
    for method, path in (("GET", "/v1/catalog/services"), ("GET", "/v1/health/service/web"),
                         ("GET", "/v1/kv/x"), ("PUT", "/v1/agent/service/register")):
        status, text = await http(agent, method, f"{path}?{query}", json={"Name": "web"})
        assert status == 400 and says in text, (path, text)
    assert await services(agent) == {}
    status, _ = await http(agent, "GET", "/v1/catalog/services?ns=default&partition=default")
    assert status == 200

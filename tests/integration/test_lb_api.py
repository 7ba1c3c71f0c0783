"""The LB's HTTP API and CLI against a real in-process agent: PUT/GET/DELETE listeners with an
aiohttp client, traffic through a listener that follows the agent's own catalog, 400 with a
reason for an address in use, and ``rumor lb`` end to end."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lb.testing import HttpBackend, start_http_backend, wait_for

from .registry_fixtures import start_agent, stop_agent

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Any]:
    a = await start_agent(tmp_path, enable_lb=True)
    try:
        yield a
    finally:
        await stop_agent(a)


@pytest.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    bs = [await start_http_backend(f"api{i}") for i in range(2)]
    yield bs
    for b in bs:
        await b.close()


async def call(agent: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.request(
            method, f"http://127.0.0.1:{agent.http_port}{path}", json=body) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


async def test_put_get_delete_and_traffic(agent: Any, backends: list[HttpBackend]) -> None:
    for i, b in enumerate(backends):
        st, _ = await call(agent, "PUT", "/v1/agent/service/register",
                           {"Name": "web", "ID": f"web{i}", "Port": b.port,
                            "Address": "127.0.0.1"})
        assert st == 200
    st, info = await call(agent, "PUT", "/v1/lb/listener",
                          {"name": "web", "bind": "127.0.0.1:0", "mode": "http",
                           "service": "web"})
    assert st == 200, info
    assert info["Name"] == "web" and info["Mode"] == "http"
    addr = info["Address"]
    await wait_for(lambda: len(agent.lb.listener("web")["Backends"]) == 2, timeout=5)
    async with aiohttp.ClientSession() as s:
        names = []
        for _ in range(4):
            async with s.get(f"http://{addr}/") as r:
                names.append(await r.text())
    assert sorted(names) == ["api0", "api0", "api1", "api1"]

    st, listing = await call(agent, "GET", "/v1/lb/listeners")
    assert st == 200 and [x["Name"] for x in listing] == ["web"]
    assert listing[0]["Counters"]["Requests"] == 4
    st, one = await call(agent, "GET", "/v1/lb/listener/web")
    assert st == 200 and one["Address"] == addr

    # a deregistered instance leaves the pool
    st, _ = await call(agent, "PUT", "/v1/agent/service/deregister/web1")
    await wait_for(lambda: len(agent.lb.listener("web")["Backends"]) == 1, timeout=5)

    st, body = await call(agent, "DELETE", "/v1/lb/listener/web")
    assert st == 200 and body is True
    st, listing = await call(agent, "GET", "/v1/lb/listeners")
    assert listing == []
    st, body = await call(agent, "DELETE", "/v1/lb/listener/web")
    assert st == 404 and "no listener named 'web'" in body
    st, body = await call(agent, "GET", "/v1/lb/listener/web")
    assert st == 404


async def test_bind_in_use_and_bad_spec_are_400(agent: Any) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        st, body = await call(agent, "PUT", "/v1/lb/listener",
                              {"Name": "x", "Bind": f"127.0.0.1:{port}", "Service": "web"})
        assert st == 400
        assert body.strip() == f"bind 127.0.0.1:{port}: address already in use"
    finally:
        busy.close()
    st, body = await call(agent, "PUT", "/v1/lb/listener",
                          {"Name": "x", "Bind": "127.0.0.1:1", "Mode": "udp", "Service": "w"})
    assert st == 400 and "Mode 'udp' is unknown" in body
    st, body = await call(agent, "PUT", "/v1/lb/listener", ["not", "an", "object"])
    assert st == 400


async def run_cli(agent: Any, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry.cli", "lb", *args, "-http-addr",
        f"127.0.0.1:{agent.http_port}", cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_add_list_remove(agent: Any) -> None:
    rc, out, err = await run_cli(agent, "add", "-name", "db", "-bind", "127.0.0.1:0",
                                 "-service", "pg", "-strategy", "least_conn")
    assert rc == 0, err
    assert out.startswith("listener db on 127.0.0.1:")
    rc, out, err = await run_cli(agent, "list")
    assert rc == 0 and "db" in out and "least_conn" in out
    rc, out, err = await run_cli(agent, "list", "-json")
    assert json.loads(out)[0]["Service"] == "pg"
    rc, out, err = await run_cli(agent, "remove", "db")
    assert rc == 0 and "removed" in out
    rc, out, err = await run_cli(agent, "remove", "db")
    assert rc == 1 and "no listener named 'db'" in err

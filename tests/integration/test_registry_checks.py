"""Each check kind against real local servers: HTTP that flips to 500, TCP that closes, TTL expiry."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from registry.catalog import Catalog, NodeInfo
from registry.definitions import parse_service
from registry.local import LocalState

from .registry_fixtures import eventually


@pytest.fixture
async def local() -> AsyncIterator[LocalState]:
    cat = Catalog(datacenter="dc1", local_node="n1")
    st = LocalState(cat, NodeInfo(name="n1", address="127.0.0.1"), None)
    await st.start()
    yield st
    await st.stop()


class Flippy:
    """A real HTTP server whose answer the test chooses."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.method, dict(request.headers), await request.read()))
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, text=f"status {self.status}")

    async def start(self) -> None:
        app = web.Application()
        async def dispatch(request: web.Request) -> web.Response:
            return await self.handle(request)  # looked up per request: tests may swap it
        app.router.add_route("*", "/{tail:.*}", dispatch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Flippy]:
    s = Flippy()
    await s.start()
    yield s
    await s.stop()


def status_of(local: LocalState, cid: str) -> str:
    return local.checks[cid].status


async def register(local: LocalState, body: dict[str, Any]) -> None:
    await local.register_service(parse_service(body))


async def test_http_check_follows_the_server(local: LocalState, server: Flippy) -> None:
    await register(local, {"Name": "web", "ID": "w", "Check": {
        "HTTP": f"http://127.0.0.1:{server.port}/health", "Interval": "100ms",
        "Method": "POST", "Header": {"X-Probe": ["yes"]}, "Body": "ping"}})
    await eventually(lambda: status_of(local, "service:w") == "passing", what="passing")
    assert "200 OK" in local.checks["service:w"].output
    assert "status 200" in local.checks["service:w"].output
    method, headers, body = server.seen[-1]
    assert (method, headers.get("X-Probe"), body) == ("POST", "yes", b"ping")
    server.status = 500
    await eventually(lambda: status_of(local, "service:w") == "critical", what="critical")
    assert local.catalog.instances("web") == []
    server.status = 429
    await eventually(lambda: status_of(local, "service:w") == "warning", what="warning")
    assert [i.health for i in local.catalog.instances("web")] == ["warning"]


async def test_http_timeout_and_refused(local: LocalState, server: Flippy) -> None:
    server.delay = 1.0
    await register(local, {"Name": "slow", "Check": {
        "HTTP": f"http://127.0.0.1:{server.port}/", "Interval": "100ms", "Timeout": "200ms",
        "Status": "passing"}})
    await eventually(lambda: status_of(local, "service:slow") == "critical", what="timeout")
    assert "timed out" in local.checks["service:slow"].output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    await register(local, {"Name": "gone", "Check": {
        "HTTP": f"http://127.0.0.1:{dead}/", "Interval": "100ms", "Status": "passing"}})
    await eventually(lambda: status_of(local, "service:gone") == "critical", what="refused")


async def test_https_skip_verify(local: LocalState) -> None:
    import ssl
    import subprocess
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp())
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem")], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    app = web.Application()
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="tls ok")
    app.router.add_get("/", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        await register(local, {"Name": "tls", "Checks": [
            {"CheckID": "verify", "HTTP": f"https://127.0.0.1:{port}/", "Interval": "100ms"},
            {"CheckID": "skip", "HTTP": f"https://127.0.0.1:{port}/", "Interval": "100ms",
             "TLSSkipVerify": True}]})
        await eventually(lambda: status_of(local, "skip") == "passing", what="skip verify")
        await asyncio.sleep(0.3)
        assert status_of(local, "verify") == "critical"  # self-signed: refused when verifying
    finally:
        await runner.cleanup()


async def test_tcp_check_port_that_closes(local: LocalState) -> None:
    srv = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    await register(local, {"Name": "db", "Check": {"TCP": f"127.0.0.1:{port}", "Interval": "100ms"}})
    await eventually(lambda: status_of(local, "service:db") == "passing", what="tcp passing")
    assert "Success" in local.checks["service:db"].output
    srv.close()
    await srv.wait_closed()
    await eventually(lambda: status_of(local, "service:db") == "critical", what="tcp critical")


async def test_ttl_expires_and_updates(local: LocalState) -> None:
    """An update sets the status and restarts the TTL: the check goes critical no sooner than
    a TTL after the last update. Only lower bounds on time are asserted, which a loaded
    machine cannot break (it only makes things later)."""
    loop = asyncio.get_running_loop()
    await register(local, {"Name": "job", "Check": {"TTL": "300ms"}})
    local.update_ttl("service:job", "passing", "alive")
    assert status_of(local, "service:job") == "passing"
    await asyncio.sleep(0.15)
    updated = loop.time()
    local.update_ttl("service:job", "warning", "hmm")  # restarts the TTL
    assert status_of(local, "service:job") == "warning"
    await eventually(lambda: status_of(local, "service:job") == "critical", what="ttl expiry")
    assert loop.time() - updated >= 0.299        # the TTL ran from the last update
    assert "TTL expired" in local.checks["service:job"].output


async def test_success_before_passing_and_failures_before_critical(
        local: LocalState, server: Flippy) -> None:
    await register(local, {"Name": "web", "Check": {
        "HTTP": f"http://127.0.0.1:{server.port}/", "Interval": "100ms",
        "SuccessBeforePassing": 3, "FailuresBeforeCritical": 3}})
    n0 = len(server.seen)
    await eventually(lambda: status_of(local, "service:web") == "passing", what="passing")
    assert len(server.seen) - n0 >= 3
    server.status = 500
    n1 = len(server.seen)
    await eventually(lambda: status_of(local, "service:web") == "critical", what="critical")
    assert len(server.seen) - n1 >= 3


async def test_deregister_critical_service_after(local: LocalState) -> None:
    await register(local, {"Name": "doomed", "Check": {
        "TTL": "10s", "DeregisterCriticalServiceAfter": "300ms"}})
    assert "doomed" in local.services
    await eventually(lambda: "doomed" not in local.services, timeout=5, what="reaped")
    assert local.catalog.entries("doomed") == ()


async def test_output_only_changes_are_throttled(server: Flippy) -> None:
    cat = Catalog(datacenter="dc1", local_node="n1")
    # Waits are for events (three more runs, the deferred publication), not for the clock;
    # the 2 s window only has to be longer than three 50 ms runs take on a loaded machine.
    interval = 2.0
    st = LocalState(cat, NodeInfo(name="n1"), None, output_update_interval=interval)
    await st.start()
    loop = asyncio.get_running_loop()
    try:
        counter = {"n": 0}

        async def counting(request: web.Request) -> web.Response:
            counter["n"] += 1
            return web.Response(text=f"run {counter['n']}")
        server.handle = counting  # type: ignore[method-assign]
        registered = loop.time()  # the passing status is published after this
        await register(st, {"Name": "web", "Check": {
            "HTTP": f"http://127.0.0.1:{server.port}/", "Interval": "50ms"}})
        await eventually(lambda: status_of(st, "service:web") == "passing", what="passing")
        idx = cat.key_index("svc:web")
        runs = counter["n"]
        await eventually(lambda: counter["n"] - runs >= 3, what="three more runs")
        index_now = cat.key_index("svc:web")
        assert loop.time() - registered < interval, "too slow to see inside the window"
        assert index_now == idx  # the check kept running, but its output alone did not move it
        await eventually(lambda: cat.key_index("svc:web") > idx, timeout=interval + 5,
                         what="deferred output")
        out = cat.entries("web")[0].checks[1].record.output
        assert "run " in out and out != f"run {runs}"
    finally:
        await st.stop()


async def test_concurrent_registrations_of_one_service_do_not_mix(
        local: LocalState, server: Flippy) -> None:
    url = f"http://127.0.0.1:{server.port}/"
    bodies = [{"Name": "web", "ID": "w", "Port": p, "Checks": [
        {"CheckID": f"c{p}-{i}", "HTTP": url, "Interval": "1s"} for i in range(3)]}
        for p in range(1, 9)]
    for _ in range(3):  # stopping HTTP runners yields to the loop: interleaving is possible
        await asyncio.gather(*(local.register_service(parse_service(b),
                                                      replace_existing_checks=True)
                               for b in bodies))
    port = local.services["w"].record.port
    assert sorted(local.checks) == [f"c{port}-{i}" for i in range(3)]
    assert sorted(c.check_id for c in local.catalog.node_checks("n1")[1:]) == sorted(local.checks)

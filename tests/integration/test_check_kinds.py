"""Script, gRPC, H2PING, UDP and HTTP-knob checks against real peers on loopback.

Peers: real processes for script checks, grpcio's own health servicer, hypercorn serving
HTTP/2 (cleartext and TLS), an asyncio UDP echo, aiohttp for redirects. Two real agents for
the alias check of a remote service and a real agent for the script-check settings.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import urllib.error
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from registry.catalog import Catalog, NodeInfo
from registry.definitions import parse_service
from registry.local import LocalState
from tests.harness.agents import AgentProcess, free_port, wait_for

from .registry_fixtures import eventually


@pytest.fixture
async def local() -> AsyncIterator[LocalState]:
    cat = Catalog(datacenter="dc1", local_node="n1")
    st = LocalState(cat, NodeInfo(name="n1", address="127.0.0.1"), None)
    await st.start()
    yield st
    await st.stop()


def status_of(local: LocalState, cid: str) -> str:
    return local.checks[cid].status


def output_of(local: LocalState, cid: str) -> str:
    return local.checks[cid].output


async def register(local: LocalState, body: dict[str, Any]) -> None:
    await local.register_service(parse_service(body))


@pytest.fixture
def certs() -> Iterator[tuple[Path, Path]]:
    d = Path(tempfile.mkdtemp(prefix="rumor-certs-"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem")], check=True, capture_output=True)
    yield d / "c.pem", d / "k.pem"
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


# --- script ------------------------------------------------------------------------------------

def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


async def test_script_follows_exit_codes(local: LocalState, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("0")
    script = write_script(tmp_path / "check.sh",
                          f'echo "run with $1"; echo to-stderr >&2; exit $(cat {code})\n')
    await register(local, {"Name": "job", "Check": {
        "Args": [str(script), "arg;$HOME"], "Interval": "100ms"}})
    cid = "service:job"
    await eventually(lambda: status_of(local, cid) == "passing", what="passing")
    out = output_of(local, cid)
    assert "run with arg;$HOME" in out and "to-stderr" in out  # no shell expanded the argument
    code.write_text("1")
    await eventually(lambda: status_of(local, cid) == "warning", what="warning")
    code.write_text("2")
    await eventually(lambda: status_of(local, cid) == "critical", what="critical")
    assert [i.health for i in local.catalog.entries("job")] == ["critical"]
    code.write_text("0")
    await eventually(lambda: status_of(local, cid) == "passing", what="passing again")


async def test_script_output_is_capped_and_missing_command_is_critical(
        local: LocalState, tmp_path: Path) -> None:
    script = write_script(tmp_path / "loud.sh", "head -c 200000 /dev/zero | tr '\\0' x\n")
    await register(local, {"Name": "loud", "Check": {
        "Args": [str(script)], "Interval": "100ms", "OutputMaxSize": 100, "Status": "critical"}})
    await eventually(lambda: status_of(local, "service:loud") == "passing", what="passing")
    out = output_of(local, "service:loud")
    assert out.startswith("x" * 100) and out.endswith("(output truncated)") and len(out) < 140
    await register(local, {"Name": "nope", "Check": {
        "Args": [str(tmp_path / "missing")], "Interval": "100ms", "Status": "passing"}})
    await eventually(lambda: status_of(local, "service:nope") == "critical", what="critical")
    assert "cannot run" in output_of(local, "service:nope")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent has not reaped it yet)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_script_past_timeout_is_killed_with_its_children(
        local: LocalState, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = write_script(tmp_path / "hang.sh",
                          f"sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; sleep 300\n")
    await register(local, {"Name": "hang", "Check": {
        "Args": [str(script)], "Interval": "10s", "Timeout": "500ms", "Status": "passing"}})
    await eventually(lambda: status_of(local, "service:hang") == "critical", timeout=10,
                     what="critical after the timeout")
    assert "Timed out (0.5s) running check" in output_of(local, "service:hang")
    seen = [int(x) for x in pids.read_text().split()]
    assert len(seen) == 2
    await eventually(lambda: not any(_alive(p) for p in seen), timeout=5,
                     what=f"script {seen[1]} and its child {seen[0]} killed")


async def test_script_runs_never_overlap(local: LocalState, tmp_path: Path) -> None:
    lock, log = tmp_path / "lock", tmp_path / "log"
    script = write_script(tmp_path / "slow.sh", (
        f"mkdir {lock} 2>/dev/null || {{ echo overlap >> {log}; exit 2; }}\n"
        f"echo run >> {log}; sleep 0.3; rmdir {lock}\n"))
    await register(local, {"Name": "slow", "Check": {
        "Args": [str(script)], "Interval": "100ms", "Timeout": "5s"}})
    await eventually(lambda: log.exists() and log.read_text().count("run") >= 4, timeout=10,
                     what="four runs")
    assert "overlap" not in log.read_text()


async def test_failure_and_success_counters(local: LocalState, tmp_path: Path) -> None:
    code, runs = tmp_path / "code", tmp_path / "runs"
    code.write_text("2")
    script = write_script(tmp_path / "c.sh", f"echo x >> {runs}; exit $(cat {code})\n")
    seen: list[tuple[str, int]] = []

    def on_change(_: Any) -> None:
        c = local.checks.get("service:damped")
        if c is not None and (not seen or seen[-1][0] != c.status):
            seen.append((c.status, len(runs.read_text().split()) if runs.exists() else 0))
    local.listeners.append(on_change)
    await register(local, {"Name": "damped", "Check": {
        "Args": [str(script)], "Interval": "100ms", "Status": "passing",
        "FailuresBeforeWarning": 2, "FailuresBeforeCritical": 4, "SuccessBeforePassing": 3}})
    await eventually(lambda: status_of(local, "service:damped") == "critical", timeout=10,
                     what="critical")
    code.write_text("0")
    await eventually(lambda: status_of(local, "service:damped") == "passing", timeout=10,
                     what="passing")
    statuses = [s for s, _ in seen]
    assert statuses == ["passing", "warning", "critical", "passing"], seen
    runs_at = {s: n for s, n in seen[1:]}
    assert runs_at["warning"] >= 2 and runs_at["critical"] >= 4
    assert runs_at["passing"] >= runs_at["critical"] + 3


# --- HTTP knobs --------------------------------------------------------------------------------

async def test_http_disable_redirects(local: LocalState) -> None:
    app = web.Application()

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="fine")
    app.router.add_get("/moved", moved)
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/moved"
        await register(local, {"Name": "follows", "Check": {"HTTP": url, "Interval": "100ms"}})
        await register(local, {"Name": "stays", "Check": {
            "HTTP": url, "Interval": "100ms", "DisableRedirects": True, "Status": "passing"}})
        await eventually(lambda: status_of(local, "service:follows") == "passing", what="followed")
        await eventually(lambda: status_of(local, "service:stays") == "critical", what="3xx")
        assert "302" in output_of(local, "service:stays")
        assert "fine" in output_of(local, "service:follows")
    finally:
        await runner.cleanup()


# --- gRPC --------------------------------------------------------------------------------------

@pytest.fixture
def grpc_health_server() -> Iterator[tuple[int, health.HealthServicer, grpc.Server]]:
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, servicer, server
    server.stop(0)


async def test_grpc_follows_the_health_servicer(
        local: LocalState,
        grpc_health_server: tuple[int, health.HealthServicer, grpc.Server]) -> None:
    port, servicer, server = grpc_health_server
    servicer.set("orders", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await register(local, {"Name": "orders", "Check": {
        "GRPC": f"127.0.0.1:{port}/orders", "Interval": "100ms"}})
    await register(local, {"Name": "whole", "Check": {
        "GRPC": f"127.0.0.1:{port}", "Interval": "100ms"}})
    await register(local, {"Name": "unknown", "Check": {
        "GRPC": f"127.0.0.1:{port}/nobody", "Interval": "100ms", "Status": "passing"}})
    await eventually(lambda: status_of(local, "service:orders") == "passing", what="SERVING")
    await eventually(lambda: status_of(local, "service:whole") == "passing", what="server")
    await eventually(lambda: status_of(local, "service:unknown") == "critical", what="NOT_FOUND")
    assert "gRPC status 5" in output_of(local, "service:unknown")
    servicer.set("orders", health_pb2.HealthCheckResponse.NOT_SERVING)
    await eventually(lambda: status_of(local, "service:orders") == "critical", what="NOT_SERVING")
    assert "NOT_SERVING" in output_of(local, "service:orders")
    servicer.set("orders", health_pb2.HealthCheckResponse.SERVING)
    await eventually(lambda: status_of(local, "service:orders") == "passing", what="back")
    server.stop(0)
    await eventually(lambda: status_of(local, "service:orders") == "critical", what="gone")


async def test_grpc_over_tls(local: LocalState, certs: tuple[Path, Path]) -> None:
    cert, key = certs
    servicer = health.HealthServicer()
    servicer.set("pay", health_pb2.HealthCheckResponse.SERVING)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        await register(local, {"Name": "pay", "Check": {
            "GRPC": f"127.0.0.1:{port}/pay", "GRPCUseTLS": True, "TLSSkipVerify": True,
            "Interval": "100ms"}})
        await register(local, {"Name": "pay-verify", "Check": {
            "GRPC": f"127.0.0.1:{port}/pay", "GRPCUseTLS": True, "Interval": "100ms",
            "Status": "passing"}})
        await register(local, {"Name": "pay-plain", "Check": {
            "GRPC": f"127.0.0.1:{port}/pay", "Interval": "100ms", "Status": "passing"}})
        await eventually(lambda: status_of(local, "service:pay") == "passing", what="TLS")
        # a self-signed certificate is refused unless TLSSkipVerify; h2c to a TLS port fails
        await eventually(lambda: status_of(local, "service:pay-verify") == "critical",
                         what="verify")
        await eventually(lambda: status_of(local, "service:pay-plain") == "critical",
                         what="plain")
    finally:
        server.stop(0)


# --- H2PING ------------------------------------------------------------------------------------

async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _hypercorn(port: int, certs: tuple[Path, Path] | None
                     ) -> tuple[asyncio.Task[None], asyncio.Event]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.loglevel = "WARNING"
    if certs is not None:
        cfg.certfile, cfg.keyfile = str(certs[0]), str(certs[1])
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(_asgi_app, cfg, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    return task, stop


async def _wait_port(port: int) -> None:
    async def up() -> bool:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        w.close()
        return True
    await eventually(up, what=f"port {port} listening")


async def test_h2ping_against_hypercorn(local: LocalState, certs: tuple[Path, Path]) -> None:
    plain, tls = free_port(), free_port()
    t1, stop1 = await _hypercorn(plain, None)
    t2, stop2 = await _hypercorn(tls, certs)
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    h1_port = runner.addresses[0][1]
    try:
        await _wait_port(plain)
        await _wait_port(tls)
        await register(local, {"Name": "h2c", "Check": {
            "H2PING": f"127.0.0.1:{plain}", "Interval": "100ms"}})
        await register(local, {"Name": "h2tls", "Check": {
            "H2PING": f"127.0.0.1:{tls}", "H2PingUseTLS": True, "TLSSkipVerify": True,
            "Interval": "100ms"}})
        await register(local, {"Name": "h1", "Check": {
            "H2PING": f"127.0.0.1:{h1_port}", "Interval": "100ms", "Status": "passing"}})
        # a gRPC check of a server that speaks only HTTP/1.1
        await register(local, {"Name": "notgrpc", "Check": {
            "GRPC": f"127.0.0.1:{h1_port}/x", "Interval": "100ms", "Status": "passing"}})
        await eventually(lambda: status_of(local, "service:h2c") == "passing", what="h2c ping")
        await eventually(lambda: status_of(local, "service:h2tls") == "passing", what="TLS ping")
        assert "successful" in output_of(local, "service:h2tls")
        await eventually(lambda: status_of(local, "service:h1") == "critical",
                         what="HTTP/1.1-only server")
        await eventually(lambda: status_of(local, "service:notgrpc") == "critical",
                         what="not a gRPC server")
        assert output_of(local, "service:notgrpc").startswith(f"gRPC check 127.0.0.1:{h1_port}/x: ")
        stop1.set()
        await t1
        await eventually(lambda: status_of(local, "service:h2c") == "critical", what="stopped")
    finally:
        stop1.set()
        stop2.set()
        await asyncio.gather(t1, t2, return_exceptions=True)
        await runner.cleanup()


# --- UDP ---------------------------------------------------------------------------------------

class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.seen = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.seen += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def test_udp_echo_and_refusal(local: LocalState) -> None:
    loop = asyncio.get_running_loop()
    transport, echo = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        await register(local, {"Name": "dns-ish", "Check": {
            "UDP": f"127.0.0.1:{port}", "Interval": "100ms", "Timeout": "1s"}})
        await eventually(lambda: status_of(local, "service:dns-ish") == "passing", what="echo")
        assert echo.seen >= 1
        transport.close()
        # nothing listens now: the kernel answers with ICMP port unreachable
        await eventually(lambda: status_of(local, "service:dns-ish") == "critical",
                         what="refused")
        assert "refused" in output_of(local, "service:dns-ish").lower()
    finally:
        transport.close()


# --- script settings on a real agent -----------------------------------------------------------

def _put(agent: AgentProcess, path: str, body: Any) -> tuple[int, str]:
    try:
        agent.http("PUT", path, body)
        return 200, ""
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_script_checks_need_a_setting(tmp_path: Path) -> None:
    body = {"Name": "cron", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}
    off = AgentProcess("off", tmp_path).start()
    try:
        code, text = _put(off, "/v1/agent/service/register", body)
        assert code == 400
        assert "enable_local_script_checks" in text and "enable_script_checks" in text
        code, text = _put(off, "/v1/agent/check/register", {
            "Name": "d", "DockerContainerID": "c1", "Args": ["true"], "Interval": "1s"})
        assert code == 400 and "enable_" in text
        assert "cron" not in off.http("GET", "/v1/agent/services")
    finally:
        off.stop()
    on = AgentProcess("on", tmp_path, extra_args=["-enable-local-script-checks"]).start()
    try:
        code, text = _put(on, "/v1/agent/service/register", body)
        assert code == 200, text
        wait_for(lambda: on.http("GET", "/v1/agent/checks")["service:cron"]["Status"]
                 == "passing", 10, what="script check passing")
        on.stop()
        # the stored check comes back after a restart with the setting ...
        on.start()
        wait_for(lambda: on.http("GET", "/v1/agent/checks")["service:cron"]["Status"]
                 == "passing", 10, what="restored script check passing")
    finally:
        on.stop()
    # ... and not without it (the service stays, the check is dropped with an error log)
    on.extra_args = []
    on.start()
    try:
        assert "service:cron" not in on.http("GET", "/v1/agent/checks")
        assert "enable_local_script_checks" in on.log_path.read_text()
    finally:
        on.stop()


def test_config_file_script_check_refused_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "svc.json"
    cfg.write_text('{"services": [{"name": "cron", "check": '
                   '{"args": ["/bin/true"], "interval": "1s"}}]}')
    a = AgentProcess("cfg", tmp_path, extra_args=["-config-file", str(cfg)])
    a.start(wait=False)
    assert a.proc is not None
    assert a.proc.wait(timeout=20) == 1
    assert "enable_local_script_checks" in a.log_tail()
    a.extra_args.append("-enable-local-script-checks")
    a.start()
    try:
        wait_for(lambda: a.http("GET", "/v1/agent/checks")["service:cron"]["Status"]
                 == "passing", 10, what="config script check passing")
    finally:
        a.stop()


# --- alias of a service on another agent -------------------------------------------------------

def test_alias_mirrors_a_remote_service(tmp_path: Path) -> None:
    b = AgentProcess("beta", tmp_path).start()
    a = AgentProcess("alpha", tmp_path, join=[b.gossip_addr]).start()
    try:
        b.http("PUT", "/v1/agent/service/register", {
            "Name": "db", "ID": "db1", "Port": 5432,
            "Check": {"CheckID": "db-ttl", "TTL": "60s", "Status": "passing"}})
        a.http("PUT", "/v1/agent/service/register", {
            "Name": "app", "Port": 80,
            "Check": {"AliasService": "db1", "AliasNode": "beta"}})
        a.http("PUT", "/v1/agent/service/register", {
            "Name": "ghost", "Check": {"AliasService": "nothere", "AliasNode": "beta",
                                       "Status": "passing"}})

        def status(cid: str) -> str:
            return str(a.http("GET", "/v1/agent/checks")[cid]["Status"])
        wait_for(lambda: status("service:app") == "passing", 15, what="alias passing")
        assert status("service:ghost") == "critical"
        b.http("PUT", "/v1/agent/check/fail/db-ttl?note=disk+full")
        wait_for(lambda: status("service:app") == "critical", 15, what="alias critical")
        assert "disk full" in a.http("GET", "/v1/agent/checks")["service:app"]["Output"]
        b.http("PUT", "/v1/agent/check/warn/db-ttl")
        wait_for(lambda: status("service:app") == "warning", 15, what="alias warning")
        b.http("PUT", "/v1/agent/check/pass/db-ttl")
        wait_for(lambda: status("service:app") == "passing", 15, what="alias passing again")
        # the remote agent dies: its serfHealth goes critical and the alias follows
        b.kill()
        wait_for(lambda: status("service:app") == "critical", 30, what="alias of a dead node")
    finally:
        a.stop()
        b.stop()



@pytest.mark.netns
def test_local_script_setting_refuses_callers_on_other_hosts(tmp_path: Path) -> None:
    """enable_local_script_checks trusts only this host; enable_script_checks trusts anyone
    who reaches the API (two hosts in network namespaces)."""
    from tests.harness import netns

    reason = netns.available()
    if reason:
        pytest.skip(reason)
    body = '{"Name": "cron", "Check": {"Args": ["/bin/true"], "Interval": "1s"}}'

    def register_from(host: netns.Host, agent: AgentProcess) -> tuple[int, str]:
        p = host.run("curl", "-sS", "-o", "/dev/stdout", "-w", "\n%{http_code}", "-X", "PUT",
                     "--max-time", "5", "--data-binary", body,
                     f"http://{agent.http_addr}/v1/agent/service/register", check=False)
        text, _, code = p.stdout.rpartition("\n")
        return int(code or 0), text

    with netns.Lab(2) as lab:
        server, client = lab.hosts
        local_only = AgentProcess("h0", tmp_path, host=server,
                                  extra_args=["-enable-local-script-checks"]).start()
        try:
            code, text = register_from(client, local_only)
            assert code == 400 and "enable_script_checks to true" in text, (code, text)
        finally:
            local_only.stop()
        anyone = AgentProcess("h0b", tmp_path, host=server,
                              extra_args=["-enable-script-checks"]).start()
        try:
            code, text = register_from(client, anyone)
            assert code == 200, (code, text)
        finally:
            anyone.stop()

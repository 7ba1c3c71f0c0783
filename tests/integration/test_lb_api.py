"""The LB's HTTP API and CLI against a real in-process agent: PUT/GET/DELETE listeners with an
aiohttp client, traffic through a listener that follows the agent's own catalog, 400 with a
reason for an address in use, and ``rumor lb`` end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from lb.testing import HttpBackend, start_http_backend, wait_for
from tests.harness.pki import make_pki

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


def _serial(port: int, ca: str, name: str = "web.example.com") -> int:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=name) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


async def test_tls_listener_put_bad_certificate_reload_and_metrics(
        agent: Any, backends: list[HttpBackend], tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    cert, key, serial1 = pki.issue("web", dns=("web.example.com",))
    other_cert, other_key, _ = pki.issue("other", dns=("other.example.com",))
    st, _ = await call(agent, "PUT", "/v1/agent/service/register",
                       {"Name": "web", "ID": "web0", "Port": backends[0].port,
                        "Address": "127.0.0.1"})
    spec = {"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
            "TLS": {"Certificates": [{"CertFile": cert, "KeyFile": key}]}}
    st, info = await call(agent, "PUT", "/v1/lb/listener", spec)
    assert st == 200, info
    assert info["TLS"]["Certificates"][0]["Names"] == ["web.example.com"]
    port = int(info["Address"].rsplit(":", 1)[1])
    assert await asyncio.to_thread(_serial, port, pki.ca) == serial1

    # bad certificates: 400 naming the file and the problem; the old listener untouched
    bad_cases = [
        ({"CertFile": cert, "KeyFile": other_key}, ["does not belong to the certificate",
                                                    other_key]),
        ({"CertFile": str(tmp_path / "missing.pem"), "KeyFile": key},
         ["missing.pem", "file not found"]),
        ({"CertFile": key, "KeyFile": key}, ["not a PEM certificate"]),
    ]
    (tmp_path / "expired.pem").write_text("")
    exp_cert, exp_key, _ = pki.issue("expired", days=-1, not_before_days=-3)
    bad_cases.append(({"CertFile": exp_cert, "KeyFile": exp_key}, ["expired", exp_cert]))
    for bad, words in bad_cases:
        st, body = await call(agent, "PUT", "/v1/lb/listener",
                              {**spec, "Bind": info["Address"],
                               "TLS": {"Certificates": [bad]}})
        assert st == 400, body
        assert "listener web: TLS.Certificates[0]" in body
        for w in words:
            assert w in body, body
    st, now = await call(agent, "GET", "/v1/lb/listener/web")
    assert now["TLS"]["Certificates"][0]["CertFile"] == cert
    assert await asyncio.to_thread(_serial, port, pki.ca) == serial1
    async with aiohttp.ClientSession() as s, s.get(
            f"https://127.0.0.1:{port}/", server_hostname="web.example.com",
            ssl=ssl.create_default_context(cafile=pki.ca)) as r:
        assert await r.text() == "api0"

    # a PUT with a second certificate (SNI) re-reads the files; the first stays the default
    st, info = await call(agent, "PUT", "/v1/lb/listener",
                          {**spec, "Bind": info["Address"], "TLS": {"Certificates": [
                              {"CertFile": cert, "KeyFile": key},
                              {"CertFile": other_cert, "KeyFile": other_key}]}})
    assert st == 200, info
    assert await asyncio.to_thread(_serial, port, pki.ca, "other.example.com") != serial1

    # the same spec again: nothing changes but the files are read anew (renewed certificate)
    _, _, serial_put = pki.issue("web", dns=("web.example.com",))
    st, again = await call(agent, "PUT", "/v1/lb/listener",
                           {**spec, "Bind": info["Address"], "TLS": {"Certificates": [
                               {"CertFile": cert, "KeyFile": key},
                               {"CertFile": other_cert, "KeyFile": other_key}]}})
    assert st == 200 and again["TLS"]["Reloads"] == 1, again     # the same listener, reloaded
    assert await asyncio.to_thread(_serial, port, pki.ca) == serial_put != serial1
    serial1 = serial_put

    # SIGHUP's reload: new handshakes present the renewed certificate
    _, _, serial2 = pki.issue("web", dns=("web.example.com",))
    await agent.reload()
    assert await asyncio.to_thread(_serial, port, pki.ca) == serial2 != serial1

    # the listener persists with its TLS section
    saved = json.loads(agent.datadir.file("lb-listeners.json").read_text())
    assert saved[0]["TLS"]["Certificates"][1]["CertFile"] == other_cert

    # plain HTTP to the TLS port: counted, and in the metrics
    def plain_http() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(OSError):
                s.recv(100)
    await asyncio.to_thread(plain_http)
    await wait_for(lambda: agent.lb.listener("web")["Counters"]["TLSHandshakeFailures"].get(
        "http_request") == 1, timeout=5)
    async with aiohttp.ClientSession() as s, s.get(
            f"http://127.0.0.1:{agent.http_port}/v1/agent/metrics?format=prometheus") as r:
        text = await r.text()
    assert 'rumor_lb_tls_handshake_failures_total{listener="web",reason="http_request"} 1.0' \
        in text, text[-2000:]
    assert 'rumor_lb_tls_handshakes_total{listener="web"}' in text


async def test_cli_tls_and_redirect(agent: Any, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a_cert, a_key, _ = pki.issue("a", dns=("a.example.com",))
    b_cert, b_key, _ = pki.issue("b", dns=("*.b.example.com",))
    rc, out, err = await run_cli(agent, "add", "-name", "edge", "-bind", "127.0.0.1:0",
                                 "-mode", "http", "-service", "web", "-tls-cert", a_cert,
                                 "-tls-key", a_key, "-tls-cert", b_cert, "-tls-key", b_key,
                                 "-tls-min-version", "TLSv1.3", "-backend-tls",
                                 "-backend-ca-file", pki.ca, "-backend-server-name", "api.local")
    assert rc == 0, err
    assert "(https)" in out
    info = agent.lb.listener("edge")
    assert info["TLS"]["MinVersion"] == "TLSv1.3"
    assert info["TLS"]["Certificates"][1]["Names"] == ["*.b.example.com"]
    assert info["BackendTLS"]["ServerName"] == "api.local"
    rc, out, err = await run_cli(agent, "add", "-name", "edge2", "-bind", "127.0.0.1:0",
                                 "-mode", "http", "-service", "web", "-tls-cert", a_cert,
                                 "-tls-key", b_key)
    assert rc == 1 and "does not belong" in err and b_key in err
    rc, out, err = await run_cli(agent, "add", "-name", "plain", "-bind", "127.0.0.1:0",
                                 "-mode", "http", "-redirect-https", "8443")
    assert rc == 0 and "redirects to https port 8443" in out, err

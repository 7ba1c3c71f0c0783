"""TLS at the load balancer, with certificates made by the test and real clients (openssl
s_client, curl, http.client, Python ssl): SNI with two certificates and a wildcard, keep-alive
through TLS, X-Forwarded-Proto https, a backend over TLS, a TCP listener terminating TLS, the
HTTP -> HTTPS redirect, reload, handshake failures counted by reason. Runs on both loops."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb.testing import HttpBackend, start_echo_backend, start_http_backend, wait_for
from tests.harness.pki import PKI, make_pki

pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test here runs on the default loop and on uvloop (what the agent uses)."""
    if request.param == "uvloop":
        import uvloop
        return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    p = make_pki(tmp_path)
    p.issue("a", dns=("a.example.com",))
    p.issue("b", dns=("b.example.com", "*.wild.example.com"))
    return p


@pytest.fixture
async def backend() -> AsyncIterator[HttpBackend]:
    b = await start_http_backend("plain")
    yield b
    await b.close()


def certs(pki: PKI, *names: str) -> dict[str, Any]:
    return {"Certificates": [{"CertFile": f"{pki.dir}/{n}.pem",
                              "KeyFile": f"{pki.dir}/{n}-key.pem"} for n in names]}


async def start_lb(view: MemoryView, **cfg: Any) -> LoadBalancer:
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, **cfg), view)
    await lb.start()
    return lb


def web_view(b: HttpBackend, *tags: str) -> MemoryView:
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", b.port, node="n1", service_id="web-1",
                                           tags=tags)])
    return view


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


async def run(*argv: str, stdin: bytes = b"", timeout: float = 20) -> tuple[int, str]:
    p = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                             stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(p.communicate(stdin), timeout)
    return p.returncode or 0, out.decode(errors="replace")


def client_ctx(pki: PKI) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca)


def presented(port: int, ctx: ssl.SSLContext, server_name: str | None) -> tuple[str, str]:
    """Handshake with Python's ssl; (the certificate's subject CN, the ALPN protocol)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as s:
        der = s.getpeercert(binary_form=True)
        assert der is not None
        cert = x509.load_der_x509_certificate(der)
        cn = cert.subject.rfc4514_string()
        return cn, s.selected_alpn_protocol() or ""


async def test_sni_picks_certificate_and_default(pki: PKI, backend: HttpBackend) -> None:
    lb = await start_lb(web_view(backend))
    try:
        info = await lb.add_listener({"Name": "tls", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "TLS": certs(pki, "a", "b")})
        port = port_of(info["Address"])
        assert info["TLS"]["Certificates"][1]["Names"] == ["b.example.com",
                                                           "*.wild.example.com"]
        # openssl s_client -servername: each name gets its certificate; no SNI the default
        for name, want in (("a.example.com", "CN = a"), ("b.example.com", "CN = b"),
                           ("x.wild.example.com", "CN = b"), ("other.test", "CN = a"),
                           ("y.x.wild.example.com", "CN = a")):
            rc, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                "-servername", name, "-CAfile", pki.ca, "-alpn", "http/1.1")
            assert f"subject={want}" in out.replace("subject=CN=", "subject=CN = "), out
            assert "ALPN protocol: http/1.1" in out
            assert "Verify return code: 0" in out or name == "other.test" \
                or name.startswith("y."), out
        _rc, out = await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                            "-noservername")
        assert "CN = a" in out.replace("CN=", "CN = "), out
        # Python's ssl, verifying the name
        ctx = client_ctx(pki)
        ctx.set_alpn_protocols(["http/1.1"])
        assert await asyncio.to_thread(presented, port, ctx, "b.example.com") == (
            "CN=b", "http/1.1")
        assert (await asyncio.to_thread(presented, port, ctx, "z.wild.example.com"))[0] == "CN=b"
        assert (await asyncio.to_thread(presented, port, ctx, "a.example.com"))[0] == "CN=a"
        # TLS 1.2 with a modern suite only
        ctx12 = client_ctx(pki)
        ctx12.maximum_version = ssl.TLSVersion.TLSv1_2

        def cipher() -> str:
            with socket.create_connection(("127.0.0.1", port)) as raw, \
                    ctx12.wrap_socket(raw, server_hostname="a.example.com") as s:
                c = s.cipher()
                assert c is not None
                return c[0]
        name = await asyncio.to_thread(cipher)
        assert name.startswith("ECDHE-ECDSA-") and ("GCM" in name or "CHACHA20" in name)
    finally:
        await lb.stop(1.0)


def keepalive_requests(port: int, ctx: ssl.SSLContext, n: int) -> list[dict[str, Any]]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    conn._server_hostname = "a.example.com"  # type: ignore[attr-defined]
    out = []
    sock_ids = set()
    try:
        for _ in range(n):
            conn.request("GET", "/headers", headers={"Host": "a.example.com"})
            r = conn.getresponse()
            assert r.status == 200
            out.append(json.loads(r.read()))
            sock_ids.add(id(conn.sock))
    finally:
        conn.close()
    assert len(sock_ids) == 1        # one TLS connection for all of them
    return out


async def test_keepalive_and_forwarded_proto(pki: PKI, backend: HttpBackend) -> None:
    lb = await start_lb(web_view(backend))
    try:
        info = await lb.add_listener({"Name": "tls", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "TLS": certs(pki, "a", "b")})
        port = port_of(info["Address"])
        answers = await asyncio.to_thread(keepalive_requests, port, client_ctx(pki), 5)
        heads = [{k.lower(): v for k, v in a["headers"]} for a in answers]
        assert all(h["x-forwarded-proto"] == "https" for h in heads)
        assert all("proto=https" in h["forwarded"] for h in heads)
        c = lb.listener("tls")["Counters"]  # type: ignore[index]
        assert c["Connections"] == 1 and c["Requests"] == 5 and c["TLSHandshakes"] == 1
        # curl over HTTP/1.1 keep-alive: two URLs, one connection
        rc, out = await run("curl", "-sv", "--cacert", pki.ca, "--resolve",
                            f"b.example.com:{port}:127.0.0.1",
                            f"https://b.example.com:{port}/", f"https://b.example.com:{port}/x")
        assert rc == 0, out
        assert out.count("left intact\nplain") == 2 and "Re-using existing connection" in out
        assert "ALPN: server accepted http/1.1" in out or "ALPN, server accepted" in out, out
        assert lb.listener("tls")["Counters"]["TLSHandshakes"] == 2  # type: ignore[index]
    finally:
        await lb.stop(1.0)


async def test_backend_over_tls_verified(pki: PKI, tmp_path: Path) -> None:
    bpki = make_pki(tmp_path, "backend-ca")
    bcert, bkey, _ = bpki.issue("backend", dns=("api.internal",), ips=())
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(bcert, bkey)
    secure = await start_http_backend("secure", ssl_context=sctx)
    view = web_view(secure)
    lb = await start_lb(view, connect_attempts=1)
    try:
        info = await lb.add_listener({
            "Name": "api", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
            "TLS": certs(pki, "a"),
            "BackendTLS": {"CAFile": bpki.ca, "ServerName": "api.internal"}})
        port = port_of(info["Address"])
        rc, out = await run("curl", "-s", "--cacert", pki.ca, "--resolve",
                            f"a.example.com:{port}:127.0.0.1", f"https://a.example.com:{port}/",
                            f"https://a.example.com:{port}/again")
        assert rc == 0 and out == "securesecure", out
        assert secure.hits == 2
        # the wrong name is refused by verification: 503, counted
        await lb.add_listener({
            "Name": "api", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
            "BackendTLS": {"CAFile": bpki.ca, "ServerName": "not-api.internal"}})
        addr = lb.listener("api")["Address"]  # type: ignore[index]
        rc, out = await run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                            f"http://{addr}/")
        assert out == "503"
        assert lb.counters.events["backend_tls_failed"] >= 1
        # a plain listener: instances with the tls tag get TLS (SkipVerify here, TaggedOnly)
        view.set_instances("web", [MemInstance("web", secure.port, node="n1",
                                               service_id="web-1", tags=("tls",))])
        await lb.add_listener({
            "Name": "tagged", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
            "BackendTLS": {"SkipVerify": True, "TaggedOnly": True}})
        addr = lb.listener("tagged")["Address"]  # type: ignore[index]
        rc, out = await run("curl", "-s", f"http://{addr}/")
        assert out == "secure"
    finally:
        await lb.stop(1.0)
        await secure.close()


async def test_tcp_listener_terminates_tls(pki: PKI) -> None:
    echo = await start_echo_backend("echo")
    view = MemoryView()
    view.set_instances("echo", [MemInstance("echo", echo.port, node="n1", service_id="e1")])
    lb = await start_lb(view)
    try:
        info = await lb.add_listener({"Name": "tcp-tls", "Bind": "127.0.0.1:0", "Mode": "tcp",
                                      "Service": "echo", "TLS": certs(pki, "a", "b")})
        port = port_of(info["Address"])
        ctx = client_ctx(pki)

        def talk() -> tuple[bytes, str, str]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="b.example.com") as s:
                payload = b"hello over tls " * 1000
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = s.recv(65536)
                    assert chunk
                    got += chunk
                der = s.getpeercert(binary_form=True)
                assert der is not None
                cn = x509.load_der_x509_certificate(der).subject.rfc4514_string()
                return got, cn, s.selected_alpn_protocol() or ""
        got, cn, alpn = await asyncio.to_thread(talk)
        assert got == b"hello over tls " * 1000 and cn == "CN=b" and alpn == ""
        assert echo.received == len(got)       # the backend saw plain bytes
        c = lb.listener("tcp-tls")["Counters"]  # type: ignore[index]
        assert c["TLSHandshakes"] == 1 and c["BytesIn"] == len(got)
    finally:
        await lb.stop(1.0)
        await echo.close()


def redirect_exchange(port: int) -> list[tuple[int, str | None, str | None]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    out = []
    try:
        conn.request("GET", "/path/x?q=1&r=2", headers={"Host": "shop.example.com:8080"})
        r = conn.getresponse()
        r.read()
        out.append((r.status, r.getheader("Location"), r.getheader("Connection")))
        conn.request("POST", "/form", body=b"a=1" * 100, headers={"Host": "shop.example.com"})
        r = conn.getresponse()
        r.read()
        out.append((r.status, r.getheader("Location"), r.getheader("Connection")))
    finally:
        conn.close()
    return out


async def test_redirect_to_https(backend: HttpBackend) -> None:
    lb = await start_lb(web_view(backend))
    try:
        info = await lb.add_listener({"Name": "redir", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "RedirectHTTPS": {"Port": 8443}})
        port = port_of(info["Address"])
        answers = await asyncio.to_thread(redirect_exchange, port)
        assert answers == [
            (308, "https://shop.example.com:8443/path/x?q=1&r=2", None),
            (308, "https://shop.example.com:8443/form", None)]
        c = lb.listener("redir")["Counters"]  # type: ignore[index]
        assert c["Connections"] == 1 and c["Requests"] == 2
        assert backend.hits == 0
        rc, out = await run("curl", "-sI", "-H", "Host: example.com", f"http://127.0.0.1:{port}/a")
        assert out.startswith("HTTP/1.1 308") and "Location: https://example.com:8443/a" in out
        # port 443 is left out; an unusable Host is a 400
        await lb.add_listener({"Name": "redir", "Bind": info["Address"], "Mode": "http",
                               "RedirectHTTPS": True})
        rc, out = await run("curl", "-sI", "-H", "Host: example.com", f"http://127.0.0.1:{port}/")
        assert "Location: https://example.com/\r" in out, out
        _rc, out = await run("curl", "-si", "-H", "Host: exa<mple", f"http://127.0.0.1:{port}/")
        assert out.startswith("HTTP/1.1 400"), out
    finally:
        await lb.stop(1.0)


async def test_reload_new_handshakes_new_cert_old_connection_lives(
        pki: PKI, backend: HttpBackend) -> None:
    lb = await start_lb(web_view(backend))
    try:
        info = await lb.add_listener({"Name": "tls", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "TLS": certs(pki, "a")})
        port = port_of(info["Address"])
        ctx = client_ctx(pki)

        def serial() -> int:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname="a.example.com") as s:
                der = s.getpeercert(binary_form=True)
                assert der is not None
                return x509.load_der_x509_certificate(der).serial_number

        old_serial = await asyncio.to_thread(serial)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        conn._server_hostname = "a.example.com"  # type: ignore[attr-defined]

        def get() -> str:
            conn.request("GET", "/", headers={"Host": "a.example.com"})
            r = conn.getresponse()
            return r.read().decode()
        assert await asyncio.to_thread(get) == "plain"
        sock_before = conn.sock
        _, _, new_serial = pki.issue("a", dns=("a.example.com",))     # new files, same paths
        assert await lb.reload_tls() == {}
        assert await asyncio.to_thread(serial) == new_serial != old_serial
        assert await asyncio.to_thread(get) == "plain"     # the open connection lives on
        assert conn.sock is sock_before
        conn.close()
        # a broken file on reload: refused, the listener keeps serving the last good one
        Path(pki.dir / "a-key.pem").write_text("not a key")
        errors = await lb.reload_tls()
        assert "tls" in errors and "a-key.pem" in errors["tls"]
        assert await asyncio.to_thread(serial) == new_serial
    finally:
        await lb.stop(1.0)


def plain_http(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return s.recv(100)
        except ConnectionError:
            return b""


async def test_handshake_failures_counted_by_reason(pki: PKI, backend: HttpBackend) -> None:
    lb = await start_lb(web_view(backend), tls_handshake_timeout=0.5)
    try:
        info = await lb.add_listener({"Name": "tls", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "TLS": certs(pki, "a")})
        port = port_of(info["Address"])

        def failures() -> dict[str, int]:
            return lb.listener("tls")["Counters"]["TLSHandshakeFailures"]  # type: ignore

        await asyncio.to_thread(plain_http, port)                       # plain HTTP
        await wait_for(lambda: failures().get("http_request") == 1)
        # TLS 1.1 only (the local OpenSSL allows it at security level 0)
        await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1", "-cipher",
                  "DEFAULT:@SECLEVEL=0")
        await wait_for(lambda: failures().get("unsupported_protocol") == 1)
        # TLS 1.2 with RSA key exchange only: nothing in common with ECDHE suites
        await run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                  "-cipher", "AES128-SHA")
        await wait_for(lambda: failures().get("no_shared_cipher") == 1)
        # a client that does not trust our CA
        await run("curl", "-s", f"https://127.0.0.1:{port}/")
        await wait_for(lambda: failures().get("unknown_ca") == 1)
        # silence until the handshake timeout; a client gone mid-handshake
        with socket.create_connection(("127.0.0.1", port)) as s:
            await wait_for(lambda: failures().get("timeout") == 1, timeout=5)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"\x16\x03\x01\x00\x50\x01")
        await wait_for(lambda: failures().get("eof") == 1)
        c = lb.listener("tls")["Counters"]  # type: ignore[index]
        assert c["TLSHandshakes"] == 0 and c["Connections"] == 0
        assert lb.counters.events["tls_handshake_http_request"] == 1
        # and a good handshake still works
        ctx = client_ctx(pki)
        assert (await asyncio.to_thread(presented, port, ctx, "a.example.com"))[0] == "CN=a"
    finally:
        await lb.stop(1.0)

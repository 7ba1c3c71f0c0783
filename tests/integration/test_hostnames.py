"""Host names as addresses, resolved with aiodns through a real dnsmasq used as recursor.

A service registered with a host name as its Address: DNS answers a CNAME to it, and an LB
listener (TCP and HTTP) reaches the backend by resolving the name with aiodns; ``-retry-join``
takes a host name; HTTP checks resolve names with aiohttp's AsyncResolver.
"""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from lb import HostCache
from tests.harness.agents import Cluster, free_port, wait_for

from .dns_runner import dnsmasq

FAST = ["-profile", "local"]


@pytest.fixture
def recursor() -> Iterator[int]:
    cm = dnsmasq("--host-record=backend.rumor-test,127.0.0.1",
                 "--host-record=seed.rumor-test,127.0.0.1", "--local-ttl=2")
    _, port = cm.__enter__()
    try:
        yield port
    finally:
        cm.__exit__(None, None, None)


@pytest.fixture
def backend() -> Iterator[int]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b"hello from the backend\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def test_hostname_backends_dns_join_and_checks(cluster: Cluster, recursor: int,
                                               backend: int) -> None:
    rec = ["-recursor", f"127.0.0.1:{recursor}"]
    a = cluster.add("seed", extra_args=FAST + rec).start()
    a.http("PUT", "/v1/agent/service/register", {
        "Name": "hostweb", "ID": "hw1", "Address": "backend.rumor-test", "Port": backend,
        "Check": {"HTTP": f"http://localhost:{backend}/", "Interval": "1s"}})
    wait_for(lambda: a.http("GET", "/v1/health/service/hostweb?passing"), 15,
             what="the HTTP check passing")
    # an HTTP check whose URL names a host only the recursor knows: it resolves through the
    # agent's recursors (aiohttp's AsyncResolver given them), not the system's resolv.conf
    a.http("PUT", "/v1/agent/service/register", {
        "Name": "bynamecheck", "Port": backend,
        "Check": {"HTTP": f"http://backend.rumor-test:{backend}/", "Interval": "1s"}})
    wait_for(lambda: a.http("GET", "/v1/health/service/bynamecheck?passing"), 15,
             what="the HTTP check by a host name only the recursor knows passing")

    # DNS: a CNAME to the registered name
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "+noall", "+answer",
                          "hostweb.service.rumor", "A"], capture_output=True, text=True,
                         timeout=10, check=False).stdout.split()
    assert out[3:] == ["CNAME", "backend.rumor-test."], out

    # the LB reaches the backend through the name (TCP and HTTP listeners); only the
    # recursor knows the name, so this goes through aiodns
    for mode in ("tcp", "http"):
        port = free_port()
        a.http("PUT", "/v1/lb/listener", {"Name": f"hw-{mode}", "Bind": f"127.0.0.1:{port}",
                                          "Mode": mode, "Service": "hostweb"})
        assert wait_for(lambda p=port: fetch(f"http://127.0.0.1:{p}/"), 10,
                        what=f"{mode} listener") == "hello from the backend\n"

    # -retry-join by host name: the system resolver does not know it, aiodns asks the recursor
    b = cluster.add("joiner", extra_args=FAST + rec + [
        "-retry-join", f"seed.rumor-test:{a.gossip_port}"]).start()
    wait_for(lambda: set(b.members()) == {"seed", "joiner"}, 20, what="b joined by name")


async def test_host_cache_ttl_refresh_and_negative(recursor: int) -> None:
    t = [0.0]
    cache = HostCache([f"127.0.0.1:{recursor}"], clock=lambda: t[0])
    assert await cache.resolve("backend.rumor-test") == ("127.0.0.1",)
    assert cache.counters["queries"] == 1
    assert await cache.resolve("backend.rumor-test") == ("127.0.0.1",)
    assert cache.counters["queries"] == 1 and cache.counters["hits"] == 1
    t[0] += 1.9  # within the last fifth of the 2 s TTL: answered, refreshed in the background
    assert cache.cached("backend.rumor-test") == ("127.0.0.1",)
    for _ in range(100):
        if cache.counters["queries"] == 2:
            break
        await asyncio.sleep(0.02)
    assert cache.counters["queries"] == 2 and cache.counters["refreshes"] == 1
    with pytest.raises(OSError):
        await cache.resolve("nope.rumor-test")
    with pytest.raises(OSError):  # remembered: no second query
        await cache.resolve("nope.rumor-test")
    assert cache.counters["failures"] == 1


def test_join_address_expansion_is_exercised() -> None:
    # a literal address passes through untouched (no resolver needed)
    from registry.joinaddr import expand

    got = asyncio.run(expand(["127.0.0.1:7000", "[::1]:7001"], HostCache()))
    assert got == ["127.0.0.1:7000", "[::1]:7001"]

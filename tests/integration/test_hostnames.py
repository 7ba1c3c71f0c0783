"""Host names as addresses, resolved with aiodns through a real dnsmasq used as recursor.

A service registered with a host name as its Address: DNS answers a CNAME to it, and an LB
listener (TCP and HTTP) reaches the backend by resolving the name with aiodns; ``-retry-join``
takes a host name; HTTP checks resolve names with aiohttp's AsyncResolver.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lb import HostCache
from tests.harness.agents import Cluster, free_port, wait_for

from .dns_runner import DIG, dnsmasq

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

    # DNS: a CNAME to the registered name, and its A from the recursor
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "+noall", "+answer",
                          "hostweb.service.rumor", "A"], capture_output=True, text=True,
                         timeout=10, check=False).stdout.split()
    assert out[3:5] == ["CNAME", "backend.rumor-test."], out
    assert out[5:] == ["backend.rumor-test.", "0", "IN", "A", "127.0.0.1"], out

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


def _metric(a: Any, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{a.http_port}/v1/agent/metrics"
                                "?format=prometheus", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _dig(port: int, name: str, rdtype: str, *opts: str) -> tuple[str, list[list[str]], float]:
    """dig's status, its answer and additional records (each split in fields), and how long
    it took."""
    started = time.monotonic()
    out = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), "+time=8", "+tries=1", *opts,
                          name, rdtype], capture_output=True, text=True, timeout=20,
                         check=False).stdout
    took = time.monotonic() - started
    status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else out
    recs: list[list[str]] = []
    section = ""
    for line in out.splitlines():
        if line.startswith(";; ") and "SECTION:" in line:
            section = line.split()[1]
        elif line and not line.startswith(";") and section in ("ANSWER", "ADDITIONAL"):
            f = line.split()
            recs.append([section, f[0], f[3], *f[4:]])
    return status, recs, took


def test_cname_chased_through_the_recursor_udp_tcp_and_without_it(cluster: Cluster,
                                                                   tmp_path: Path) -> None:
    """A CNAME to a host name outside Rumor's domain comes with the target's A from the
    agent's recursor (a real dnsmasq), over UDP and TCP; SRV carries it as additional. With the
    recursor gone the answer is the CNAME alone (NOERROR, never SERVFAIL), in about the
    recursor timeout; a catalog change is answered at once whatever was chased."""
    conf = tmp_path / "dns.json"
    conf.write_text(json.dumps({"dns_config": {"recursor_timeout": "500ms"}}))
    cm = dnsmasq("--address=/backend.example.test/127.0.0.42", "--local-ttl=1")
    proc, port = cm.__enter__()
    try:
        a = cluster.add("chaser", extra_args=FAST + ["-recursor", f"127.0.0.1:{port}",
                                                     "-config-file", str(conf)]).start()
        a.http("PUT", "/v1/agent/service/register", {
            "Name": "ext", "ID": "ext1", "Address": "backend.example.test", "Port": 8443})
        want = [["ANSWER", "ext.service.rumor.", "CNAME", "backend.example.test."],
                ["ANSWER", "backend.example.test.", "A", "127.0.0.42"]]
        for opts in ((), ("+tcp",), ("+noedns",)):
            status, recs, _ = _dig(a.dns_port, "ext.service.rumor", "A", *opts)
            assert (status, recs) == ("NOERROR", want), (opts, status, recs)
        # AAAA: the recursor has none; the CNAME alone
        status, recs, _ = _dig(a.dns_port, "ext.service.rumor", "AAAA")
        assert (status, recs) == ("NOERROR", want[:1]), recs
        # SRV: the target's A in the additional section
        status, recs, _ = _dig(a.dns_port, "ext.service.rumor", "SRV", "+tcp")
        assert status == "NOERROR" and recs[0][2:] == ["SRV", "1", "1", "8443",
                                                       "backend.example.test."], recs
        assert ["ADDITIONAL", "backend.example.test.", "A", "127.0.0.42"] in recs, recs
        # the metrics count the answers that waited for a chase (A and AAAA at least; SRV
        # finds both known unless the 1 s TTL ran out meanwhile)
        assert _metric(a, "rumor_dns_chases_total") >= 2
        assert _metric(a, "rumor_dns_chase_failures_total") == 0
    finally:
        cm.__exit__(None, None, None)
    assert proc.poll() is not None          # the recursor is gone
    time.sleep(1.1)                         # what it said (TTL 1 s) has expired
    for opts in ((), ("+tcp",)):
        status, recs, took = _dig(a.dns_port, "ext.service.rumor", "A", *opts)
        assert (status, recs) == ("NOERROR", want[:1]), (opts, status, recs)
        assert took < 5, took
    assert _metric(a, "rumor_dns_chase_failures_total") >= 1
    # a catalog change is seen at once, chased answers or not
    a.http("PUT", "/v1/agent/service/register", {
        "Name": "ext", "ID": "ext1", "Address": "127.0.0.7", "Port": 8443})
    status, recs, _ = _dig(a.dns_port, "ext.service.rumor", "A")
    assert (status, recs) == ("NOERROR", [["ANSWER", "ext.service.rumor.", "A", "127.0.0.7"]])

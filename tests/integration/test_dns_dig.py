"""The DNS server on real sockets, queried with the real dig and with dnspython."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver import DNSConfig, DNSServer, MemoryView

from .dns_runner import demo_view, dig

pytestmark = pytest.mark.skipif(not __import__("shutil").which("dig"), reason="needs dig")


@pytest.fixture
async def served() -> AsyncIterator[tuple[DNSServer, MemoryView]]:
    view = demo_view()
    server = DNSServer(DNSConfig(port=0, alt_domain="consul.",
                                 service_ttl={"*": 5}, node_ttl=10), view)
    await server.start()
    try:
        yield server, view
    finally:
        await server.stop()


def _answers(out: str) -> list[tuple[str, str, str]]:
    """(name, type, rdata) of the ANSWER section of dig's default output."""
    return _section(out, "ANSWER")


def _section(out: str, which: str) -> list[tuple[str, str, str]]:
    m = re.search(rf";; {which} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.DOTALL)
    if not m:
        return []
    rows = []
    for line in m.group(1).splitlines():
        parts = line.split(None, 4)
        rows.append((parts[0], parts[3], parts[4]))
    return rows


def _status(out: str) -> str:
    m = re.search(r"status: (\w+)", out)
    assert m, out
    return m.group(1)


def _flags(out: str) -> set[str]:
    m = re.search(r";; flags: ([a-z ]+);", out)
    assert m, out
    return set(m.group(1).split())


async def test_service_a_forms(served: tuple[DNSServer, MemoryView]) -> None:
    server, _ = served
    p = server.udp_port
    web = {"10.0.0.1", "10.1.1.2", "10.0.0.3"}
    for name in ("web.service.rumor", "web.service.dc1.rumor", "WeB.SeRvIcE.RuMoR",
                 "web.service.consul"):
        out = await dig(p, name)
        assert _status(out) == "NOERROR"
        assert {r[2] for r in _answers(out)} == web, out
        assert "aa" in _flags(out)
    out = await dig(p, "v1.web.service.rumor", "+short")
    assert set(out.split()) == {"10.0.0.1", "10.0.0.3"}
    out = await dig(p, "WeB.SeRvIcE.RuMoR")
    assert _answers(out)[0][0] == "WeB.SeRvIcE.RuMoR."        # 0x20 case echoed
    assert "5\tIN\tA" in out.replace(" ", "\t") or re.search(r"\s5\s+IN\s+A\s", out)


async def test_srv_with_additional(served: tuple[DNSServer, MemoryView]) -> None:
    server, _ = served
    for name in ("_web._tcp.service.rumor", "_web._tcp.rumor", "web.service.dc1.rumor"):
        out = await dig(server.udp_port, name, "SRV")
        srv = sorted(r[2] for r in _answers(out))
        assert srv == ["1 10 8080 n1.node.dc1.rumor.", "1 10 8082 n3.node.dc1.rumor.",
                       "1 2 8081 0a010102.addr.dc1.rumor."], out
        add = sorted((r[0], r[2]) for r in _section(out, "ADDITIONAL"))
        assert add == [("0a010102.addr.dc1.rumor.", "10.1.1.2"),
                       ("n1.node.dc1.rumor.", "10.0.0.1"), ("n3.node.dc1.rumor.", "10.0.0.3")]
    out = await dig(server.udp_port, "web.service.consul", "SRV")
    assert "n1.node.dc1.consul." in out and "rumor." not in out.split("ANSWER SECTION")[1]


async def test_node_addr_reverse_soa_ns_any(served: tuple[DNSServer, MemoryView]) -> None:
    p = served[0].udp_port
    assert (await dig(p, "n2.node.rumor", "+short")).split() == ["10.0.0.2"]
    assert (await dig(p, "n2.node.dc1.rumor", "+short")).split() == ["10.0.0.2"]
    assert (await dig(p, "n1.node.rumor", "TXT", "+short")).split() == ['"rack=r1"']
    assert (await dig(p, "v6.node.rumor", "AAAA", "+short")).split() == ["fd00::6"]
    assert (await dig(p, "0a000003.addr.rumor", "+short")).split() == ["10.0.0.3"]
    assert (await dig(p, "-x", "10.0.0.1", "+short")).split() == ["n1.node.dc1.rumor."]
    assert (await dig(p, "-x", "10.1.1.2", "+short")).split() == ["web.service.dc1.rumor."]
    assert (await dig(p, "-x", "fd00::6", "+short")).split() == ["v6.node.dc1.rumor."]
    soa = (await dig(p, "rumor", "SOA", "+short")).split()
    assert soa[:2] == ["ns.rumor.", "hostmaster.rumor."] and soa[3:] == ["3600", "600",
                                                                          "86400", "0"]
    out = await dig(p, "rumor", "NS")
    assert _answers(out) == [("rumor.", "NS", "ns.rumor.")]
    assert _section(out, "ADDITIONAL") == [("ns.rumor.", "A", "127.0.0.1")]
    out = await dig(p, "rumor", "ANY")
    assert {r[1] for r in _answers(out)} == {"SOA", "NS"}
    out = await dig(p, "n1.node.rumor", "ANY")
    assert {r[1] for r in _answers(out)} == {"A", "TXT"}


async def test_negatives(served: tuple[DNSServer, MemoryView]) -> None:
    p = served[0].udp_port
    out = await dig(p, "web.service.rumor", "AAAA")                    # NODATA
    assert _status(out) == "NOERROR" and "ANSWER: 0" in out
    assert _section(out, "AUTHORITY")[0][:2] == ("rumor.", "SOA")
    out = await dig(p, "nope.service.rumor")                           # NXDOMAIN + SOA
    assert _status(out) == "NXDOMAIN"
    assert _section(out, "AUTHORITY")[0][:2] == ("rumor.", "SOA")
    out = await dig(p, "example.com")                                  # outside, no recursors
    assert _status(out) == "REFUSED" and "ra" not in _flags(out)


async def test_transports_and_sizes(served: tuple[DNSServer, MemoryView]) -> None:
    p = served[0].udp_port
    for extra in (["+tcp"], ["+noedns"], ["+bufsize=1232"], ["+tcp", "+noedns"]):
        out = await dig(p, "web.service.rumor", *extra)
        assert len(_answers(out)) == 3, (extra, out)
    out = await dig(p, "web.service.rumor", "+noedns")
    assert "OPT PSEUDOSECTION" not in out
    out = await dig(p, "web.service.rumor", "+bufsize=1232")
    assert "udp: 4096" in out


async def test_40_instances_truncation_then_tcp(served: tuple[DNSServer, MemoryView]) -> None:
    server, _ = served
    p = server.udp_port
    out = await dig(p, "big.service.rumor", "+noedns", "+ignore")       # UDP only, keep TC
    assert "tc" in _flags(out)
    n = len(_answers(out))
    assert 0 < n < 40, out
    assert int(re.search(r"MSG SIZE\s+rcvd: (\d+)", out).group(1)) <= 512  # type: ignore[union-attr]
    out = await dig(p, "big.service.rumor", "+noedns")                  # dig retries over TCP
    assert "Truncated, retrying in TCP mode" in out
    assert len(_answers(out)) == 40 and "(TCP)" in out
    out = await dig(p, "big.service.rumor", "+tcp")
    assert len(_answers(out)) == 40
    out = await dig(p, "big.service.rumor", "SRV", "+bufsize=1232", "+ignore")
    assert "tc" in _flags(out) and 0 < len(_answers(out)) < 40
    assert server.counters.snapshot()["truncated"] >= 2


async def test_round_robin_over_the_wire(served: tuple[DNSServer, MemoryView]) -> None:
    p = served[0].udp_port
    firsts = {(await dig(p, "web.service.rumor", "+short")).split()[0] for _ in range(6)}
    assert firsts == {"10.0.0.1", "10.1.1.2", "10.0.0.3"}


async def test_health_changes_show_on_next_query(served: tuple[DNSServer, MemoryView]) -> None:
    server, view = served
    p = server.udp_port
    assert len((await dig(p, "web.service.rumor", "+short")).split()) == 3
    view.set_health("n3", "web", "critical")
    assert set((await dig(p, "web.service.rumor", "+short")).split()) == {"10.0.0.1",
                                                                          "10.1.1.2"}
    view.set_node_status("n1", "failed")
    assert (await dig(p, "web.service.rumor", "+short")).split() == ["10.1.1.2"]
    srv = await dig(p, "web.service.rumor", "SRV", "+short")
    assert srv.split() == ["1", "2", "8081", "0a010102.addr.dc1.rumor."]
    view.set_health("n2", "web", "critical")
    assert _status(await dig(p, "web.service.rumor")) == "NXDOMAIN"
    view.set_health("n3", "web", "passing")
    assert (await dig(p, "web.service.rumor", "+short")).split() == ["10.0.0.3"]


async def test_dnspython_client(served: tuple[DNSServer, MemoryView]) -> None:
    p = served[0].udp_port
    q = dns.message.make_query("web.service.rumor.", "SRV")
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=p, timeout=3)
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer[0]) == 3 and len(r.additional) == 3
    q = dns.message.make_query("big.service.rumor.", "A", use_edns=False)
    r, used_tcp = await dns.asyncquery.udp_with_fallback(q, "127.0.0.1", port=p, timeout=3)
    assert used_tcp and len(r.answer[0]) == 40
    r = await dns.asyncquery.tcp(dns.message.make_query("rumor.", "AXFR"), "127.0.0.1", port=p,
                                 timeout=3)
    assert r.rcode() == dns.rcode.NOTIMP
    q = dns.message.make_query("big.service.rumor.", "A", use_edns=0, payload=4096)
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=p, timeout=3)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 40


async def test_garbage_does_not_hurt(served: tuple[DNSServer, MemoryView]) -> None:
    import asyncio
    import os
    server, _ = served
    loop = asyncio.get_running_loop()
    tr, _p = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                remote_addr=("127.0.0.1", server.udp_port))
    for i in range(300):
        tr.sendto(os.urandom(i % 80) + b"\xc0\x0c" * (i % 3))
    tr.close()
    out = await dig(server.udp_port, "web.service.rumor", "+short")
    assert len(out.split()) == 3
    assert sum(server.counters.drops.values()) > 0
    assert "internal_error" not in server.counters.drops


async def test_subprocess_runner_on_uvloop() -> None:
    """The same server in its own process on uvloop (as the agent runs it)."""
    import asyncio
    import sys
    pytest.importorskip("uvloop")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.dns_runner", "--uvloop",
        stdout=asyncio.subprocess.PIPE, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 15))
        out = await dig(port, "big.service.rumor", "+noedns")
        assert len(_answers(out)) == 40 and "Truncated, retrying in TCP mode" in out
        out = await dig(port, "_web._tcp.rumor", "SRV", "+short")
        assert len(out.splitlines()) == 3
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


async def test_counters_after_traffic(served: tuple[DNSServer, MemoryView]) -> None:
    server, _ = served
    p = server.udp_port
    for _ in range(3):
        await dig(p, "web.service.rumor")
    await dig(p, "web.service.rumor", "SRV", "+tcp")
    await dig(p, "nope.service.rumor")
    snap = server.counters.snapshot()
    assert snap["qtypes"]["A"] >= 4 and snap["qtypes"]["SRV"] >= 1
    assert snap["rcodes"]["NOERROR"] >= 4 and snap["rcodes"]["NXDOMAIN"] >= 1
    assert snap["cache_hits"] >= 2 and snap["cache_misses"] >= 3
    assert sum(snap["latency_buckets_us"].values()) >= 1 and snap["latency_sum_s"] > 0  # TCP
    before = sum(snap["latency_buckets_us"].values())
    for _ in range(16):                   # UDP latency is sampled one query in 8, weighted
        await dns.asyncquery.udp(dns.message.make_query("web.service.rumor.", "A"),
                                 "127.0.0.1", port=p, timeout=3)
    after = server.counters.snapshot()["latency_buckets_us"]
    assert sum(after.values()) - before == 16
    assert snap["tcp_connections"] == 0

"""Response-rate limiting on real sockets: a flood from one network is limited, another network
is still answered, and a real client behind the flooded network gets its answer over TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import dns.flags
import dns.message
import pytest

from dnsserver import DNSConfig, DNSServer

from .dns_runner import demo_view, dig

RATE = 20


@pytest.fixture
async def limited() -> AsyncIterator[DNSServer]:
    cfg = DNSConfig.from_dict({"rate_limit": {"responses_per_second": RATE, "slip": 2,
                                              "window": "5s"}}, port=0)
    server = DNSServer(cfg, demo_view())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _blast(port: int, source: str, count: int) -> tuple[int, int]:
    """Send ``count`` A queries from ``source`` at once; (full answers, truncated) received."""
    q = dns.message.make_query("web.service.rumor", "A")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)   # hold every answer
    s.bind((source, 0))
    s.settimeout(0.5)
    full = tc = 0
    try:
        for i in range(count):
            q.id = i
            s.sendto(q.to_wire(), ("127.0.0.1", port))
        while True:
            try:
                data = s.recv(4096)
            except TimeoutError:
                break
            r = dns.message.from_wire(data)
            if r.flags & dns.flags.TC:
                assert not r.answer
                tc += 1
            else:
                assert r.answer
                full += 1
    finally:
        s.close()
    return full, tc


async def test_flood_is_limited_and_other_network_answered(limited: DNSServer) -> None:
    port = limited.udp_port
    full, tc = await asyncio.to_thread(_blast, port, "127.0.0.1", 300)
    # The burst (RATE, plus what refilled while the 300 arrived) is answered in full; of the
    # rest every second one slips (TC) and the others get nothing.
    assert RATE <= full < 100, (full, tc)
    assert tc >= (300 - full) // 2 - 5, (full, tc)
    assert full + tc < 300
    snap = limited.counters.snapshot()
    assert snap["rate_limited_dropped"] > 100 and snap["rate_limited_slipped"] == tc
    assert snap["drops"]["rate_limited"] == snap["rate_limited_dropped"]
    # Another /24 (127.0.1.0/24) is answered in full while 127.0.0.0/24 is in debt.
    full2, tc2 = await asyncio.to_thread(_blast, port, "127.0.1.1", 10)
    assert (full2, tc2) == (10, 0)


async def test_real_client_behind_flooded_network_retries_over_tcp(limited: DNSServer) -> None:
    await asyncio.to_thread(_blast, limited.udp_port, "127.0.0.1", 300)   # 127.0.0.0/24 in debt
    # dig from the flooded network: the UDP answers are dropped or slipped (TC); on a slipped
    # one dig retries over TCP, which is not rate limited, and gets every record.
    outs = [await dig(limited.udp_port, "web.service.rumor", "A", "+tries=3")
            for _ in range(3)]
    over_tcp = [o for o in outs if "Truncated, retrying in TCP mode" in o]
    assert over_tcp, outs
    for o in over_tcp:
        assert "status: NOERROR" in o and "ANSWER: 3" in o and "(TCP)" in o, o


async def test_off_by_default_answers_every_query() -> None:
    server = DNSServer(DNSConfig(port=0), demo_view())
    await server.start()
    try:
        full, tc = await asyncio.to_thread(_blast, server.udp_port, "127.0.0.1", 300)
        assert (full, tc) == (300, 0)
    finally:
        await server.stop()

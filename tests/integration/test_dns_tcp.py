"""DNS over TCP (RFC 7766): pipelining, idle timeout, connection cap, frame cap, hostile bytes."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator

import dns.message
import pytest

from dnsserver import DNSConfig, DNSServer

from .dns_runner import demo_view, dig


@pytest.fixture
async def server() -> AsyncIterator[DNSServer]:
    s = DNSServer(DNSConfig(port=0, tcp_idle_timeout=0.4, max_tcp_connections=4,
                            max_tcp_frame=1024), demo_view())
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    ln = struct.unpack("!H", await reader.readexactly(2))[0]
    return await reader.readexactly(ln)


async def _closed(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        data = await asyncio.wait_for(reader.read(100), within)
    except (TimeoutError, ConnectionResetError):
        return reader.at_eof()
    return data == b""


async def test_pipelined_queries(server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    names = ["web.service.rumor.", "big.service.rumor.", "n1.node.rumor.", "nope.rumor."] * 25
    queries = [dns.message.make_query(n, "A", id=i + 1) for i, n in enumerate(names)]
    writer.write(b"".join(struct.pack("!H", len(w)) + w for w in
                          (q.to_wire() for q in queries)))
    await writer.drain()
    got = {}
    for _ in queries:
        m = dns.message.from_wire(await asyncio.wait_for(_read_frame(reader), 5))
        got[m.id] = m
    for q in queries:
        assert got[q.id].question == q.question
    assert len(got[queries[1].id].answer[0]) == 40
    writer.close()


async def test_byte_by_byte_frame(server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    wire = dns.message.make_query("web.service.rumor.", "A").to_wire()
    for b in struct.pack("!H", len(wire)) + wire:
        writer.write(bytes([b]))
        await writer.drain()
    m = dns.message.from_wire(await asyncio.wait_for(_read_frame(reader), 5))
    assert len(m.answer[0]) == 3
    writer.close()


async def test_idle_timeout(server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(b"\x00")             # half a length prefix, then silence (slowloris)
    await writer.drain()
    assert await _closed(reader, 3)
    assert server.counters.tcp_idle_closed == 1
    writer.close()


async def test_connection_cap() -> None:
    # Its own server: a long idle timeout so that a slow machine cannot free a slot early.
    server = DNSServer(DNSConfig(port=0, tcp_idle_timeout=60, max_tcp_connections=4),
                       demo_view())
    await server.start()
    try:
        conns = [await asyncio.open_connection("127.0.0.1", server.tcp_port) for _ in range(4)]

        async def _count(n: int) -> None:
            while server.counters.tcp_connections != n:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(_count(4), 5)
        r5, w5 = await asyncio.open_connection("127.0.0.1", server.tcp_port)
        assert await _closed(r5, 5)
        assert server.counters.tcp_rejected >= 1
        for _r, w in conns:
            w.close()
        w5.close()
        # once they are gone, new connections work again
        await asyncio.wait_for(_count(0), 5)
        out = await dig(server.tcp_port, "web.service.rumor", "+tcp", "+short")
        assert len(out.split()) == 3
    finally:
        await server.stop()


async def test_frame_cap_and_zero_frame(server: DNSServer) -> None:
    for prefix in (struct.pack("!H", 60000) + b"x" * 100, b"\x00\x00"):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
        writer.write(prefix)
        await writer.drain()
        assert await _closed(reader, 2)
        writer.close()
    assert server.counters.drops["tcp_frame"] == 2


async def test_garbage_frames_get_formerr_or_nothing(server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    frames = [os.urandom(n) for n in (3, 11, 12, 30, 200)] + [b"\x12\x34" + b"\x01\x00" +
                                                              b"\x00\x02" + b"\x00" * 6]
    good = dns.message.make_query("web.service.rumor.", "A")
    for f in frames:
        writer.write(struct.pack("!H", len(f)) + f)
    writer.write(struct.pack("!H", len(good.to_wire())) + good.to_wire())
    await writer.drain()
    while True:     # the good one comes back after any FORMERRs
        m = dns.message.from_wire(await asyncio.wait_for(_read_frame(reader), 5))
        if m.id == good.id and m.question == good.question:
            break
    assert len(m.answer[0]) == 3
    writer.close()
    assert "internal_error" not in server.counters.drops


async def test_ipv6_loopback() -> None:
    import socket
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    s = DNSServer(DNSConfig(port=0, bind_addr="::1"), demo_view())
    await s.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            "dig", "@::1", "-p", str(s.udp_port), "+short", "+time=2", "web.service.rumor",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert len(out.split()) == 3
        reader, writer = await asyncio.open_connection("::1", s.tcp_port)  # NS glue = bind addr
        wire = dns.message.make_query("rumor.", "NS").to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
        m = dns.message.from_wire(await asyncio.wait_for(_read_frame(reader), 5))
        assert m.additional[0][0].to_text() == "::1"
        writer.close()
    finally:
        await s.stop()


async def test_trickle_does_not_defeat_idle_timeout(server: DNSServer) -> None:
    """A client sending one byte at a time, never finishing a frame, is closed when idle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(b"\x00\x40")                   # a 64-byte frame is announced...
    closed = False
    for _ in range(30):                         # ...and trickled for up to 3 s
        writer.write(b"x")
        try:
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if await _closed(reader, 0.1):
            closed = True
            break
    assert closed
    writer.close()

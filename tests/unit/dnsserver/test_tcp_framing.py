"""The TCP framing of the server, driven without sockets: any byte stream, in any chunks."""

from __future__ import annotations

import asyncio
import struct

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver import DNSConfig, DNSServer
from dnsserver.server import _TCP

from .conftest import populated_view


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _frames(out: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos + 2 <= len(out):
        n = struct.unpack_from("!H", out, pos)[0]
        frames.append(out[pos + 2:pos + 2 + n])
        pos += 2 + n
    assert pos == len(out)
    return frames


async def _feed(stream: bytes, cuts: list[int]) -> tuple[_FakeTransport, DNSServer]:
    server = DNSServer(DNSConfig(port=0, max_tcp_frame=1024), populated_view())
    proto = _TCP(server)
    tr = _FakeTransport()
    proto.connection_made(tr)
    pos = 0
    for c in sorted(set(cuts)) + [len(stream)]:
        if c > pos:
            proto.data_received(stream[pos:c])
            pos = c
    proto.connection_lost(None)
    return tr, server


async def test_pipelined_in_odd_chunks() -> None:
    queries = [dns.message.make_query(n, "A", id=i + 1) for i, n in enumerate(
        ["web.service.rumor.", "big.service.rumor.", "nope.rumor.", "n1.node.rumor."] * 5)]
    stream = b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries))
    tr, server = await _feed(stream, list(range(0, len(stream), 7)))
    answers = [dns.message.from_wire(f) for f in _frames(bytes(tr.out))]
    assert [a.id for a in answers] == [q.id for q in queries]
    assert not tr.closed and server.counters.tcp_connections == 0


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(stream=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=20))
async def test_any_stream_is_safe(stream: bytes, cuts: list[int]) -> None:
    tr, server = await _feed(stream, cuts)
    assert "internal_error" not in server.counters.drops
    for frame in _frames(bytes(tr.out)):
        dns.message.from_wire(frame)           # every answer is well formed
    # an oversized or empty frame closes the connection
    if len(stream) >= 2:
        first = struct.unpack_from("!H", stream)[0]
        if first > 1024 or first == 0:
            assert tr.closed and tr.out == b""

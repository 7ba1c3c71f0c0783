"""The asyncio-protocol byte pump over in-memory stream pairs: order, half-close both ways,
backpressure, reset propagation. Cheap checks before the real-socket tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lb.tcp import PumpSide

from .memstream import Endpoint, MemTransport, pair


class Owner:
    def __init__(self) -> None:
        self.activity = False
        self.counted = {"client": 0, "server": 0}
        self.closed: list[str] = []

    def count(self, side: PumpSide, n: int) -> None:
        self.counted[side.name] += n

    def side_closed(self, side: PumpSide) -> None:
        self.closed.append(side.name)


def build() -> tuple[Owner, Endpoint, Endpoint, MemTransport, MemTransport, PumpSide, PumpSide]:
    loop = asyncio.get_running_loop()
    owner = Owner()
    cside, sside = PumpSide(owner, "client"), PumpSide(owner, "server")
    client, server = Endpoint(), Endpoint()
    ct, _ = pair(loop, client, cside)      # client <-> pump's client side
    st, _ = pair(loop, server, sside)      # pump's server side <-> server
    cside.link(sside)
    return owner, client, server, ct, st, cside, sside


async def until(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0)


async def test_bytes_flow_both_ways_in_order() -> None:
    owner, client, server, ct, st, *_ = build()
    for i in range(100):
        ct.write(b"%d," % i)
    st.write(b"hello")
    want = b"".join(b"%d," % i for i in range(100))
    await until(lambda: bytes(server.data) == want and bytes(client.data) == b"hello")
    assert owner.counted == {"client": len(want), "server": 5}
    assert owner.activity


async def test_client_half_close_still_gets_reply() -> None:
    owner, client, server, ct, st, *_ = build()
    ct.write(b"request")
    ct.write_eof()
    await until(lambda: server.eof)
    assert bytes(server.data) == b"request"
    assert client.lost is False                 # the client's read side is still open
    st.write(b"reply after eof")
    st.write_eof()
    await until(lambda: client.eof)
    assert bytes(client.data) == b"reply after eof"
    await until(lambda: sorted(owner.closed) == ["client", "server"])


async def test_server_half_close_first() -> None:
    owner, client, server, ct, st, *_ = build()
    st.write(b"banner")
    st.write_eof()
    await until(lambda: client.eof)
    ct.write(b"late data")
    await until(lambda: bytes(server.data) == b"late data")
    ct.write_eof()
    await until(lambda: server.eof and sorted(owner.closed) == ["client", "server"])


async def test_backpressure_pauses_the_source_and_loses_nothing() -> None:
    _owner, _client, server, ct, st, cside, _sside = build()
    server.transport.pause_reading()            # a slow backend
    chunk = b"x" * 16384
    for _ in range(64):                         # 1 MiB
        ct.write(chunk)
    await until(lambda: not cside.transport.is_reading())  # type: ignore[union-attr]
    # the pump stopped reading the client: the bytes wait in the client's own buffer
    assert st.peer.inbox_bytes <= MemTransport.HIGH + len(chunk)
    server.transport.resume_reading()
    await until(lambda: len(server.data) == 64 * len(chunk))
    assert cside.transport.is_reading()  # type: ignore[union-attr]


async def test_reset_propagates() -> None:
    _owner, client, server, ct, st, *_ = build()
    ct.write(b"abc")
    await until(lambda: bytes(server.data) == b"abc")
    st.abort()
    await until(lambda: client.lost is not False)
    assert isinstance(client.lost, ConnectionResetError)


async def test_data_before_link_is_delivered() -> None:
    loop = asyncio.get_running_loop()
    owner = Owner()
    cside, sside = PumpSide(owner, "client"), PumpSide(owner, "server")
    client, server = Endpoint(), Endpoint()
    ct, _ = pair(loop, client, cside)
    ct.write(b"early")
    ct.write_eof()
    await asyncio.sleep(0.01)
    pair(loop, server, sside)
    cside.link(sside)
    await until(lambda: bytes(server.data) == b"early" and server.eof)

"""Memberlist cores over real loopback sockets via the asyncio driver (gossip/transport.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from gossip import codec
from gossip.config import MemberlistConfig
from gossip.delegate import NodeLeft
from gossip.messages import AckResp, Ping, PushPull
from gossip.security import Keyring
from gossip.state import NodeStatus
from gossip.transport import MemberlistTransport


def fast(name: str, **kw: object) -> MemberlistConfig:
    return MemberlistConfig.local(
        name=name, bind_addr="127.0.0.1", bind_port=0, probe_interval=0.2, probe_timeout=0.1,
        gossip_interval=0.05, push_pull_interval=2.0, tcp_timeout=1.0, **kw)


async def wait_for(cond: Callable[[], bool], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def statuses(t: MemberlistTransport) -> dict[str, NodeStatus]:
    return {n.name: n.status for n in t.core.all_nodes()}


async def test_cluster_converges_and_detects_stopped_node() -> None:
    nodes = [MemberlistTransport(fast(f"n{i}")) for i in range(4)]
    for t in nodes:
        await t.start()
    try:
        assert len({t.port for t in nodes}) == 4
        for t in nodes[1:]:
            jc = await t.join([nodes[0].address])
            assert jc.num_joined == 1, jc.errors
        await wait_for(lambda: all(len(t.core.members()) == 4 for t in nodes), 10.0)
        left: list[str] = []
        nodes[0].add_listener(lambda ev: left.append(ev.node.name)
                              if isinstance(ev, NodeLeft) else None)
        await nodes[3].close()  # crash: no leave message
        await wait_for(lambda: all(statuses(t).get("n3") == NodeStatus.DEAD
                                   for t in nodes[:3]), 15.0)
        assert left == ["n3"]
        # graceful leave is seen as LEFT
        assert await nodes[2].leave(2.0)
        await nodes[2].close()
        await wait_for(lambda: all(statuses(t).get("n2") == NodeStatus.LEFT
                                   for t in nodes[:2]), 10.0)
    finally:
        for t in nodes:
            await t.close()


async def test_encrypted_cluster_and_raw_clients() -> None:
    key = bytes(range(32))
    a = MemberlistTransport(fast("a", secret_keys=(key,)))
    b = MemberlistTransport(fast("b", secret_keys=(key,)))
    c = MemberlistTransport(fast("c"))  # no key: must not get in
    for t in (a, b, c):
        await t.start()
    try:
        assert (await b.join([a.address])).num_joined == 1
        jc = await c.join([a.address])
        assert jc.num_joined == 0
        await wait_for(lambda: len(a.core.members()) == 2 and len(b.core.members()) == 2, 5.0)
        assert a.core.node("c") is None

        ring = Keyring([key])
        # raw TCP ping to a (encrypted), as serf's fallback ping would do
        reader, writer = await asyncio.open_connection(*a.address)
        writer.write(codec.encode_stream(Ping(77, "a"), compress=True, keyring=ring))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
        ack = codec.decode_stream(data, ring)
        assert isinstance(ack, AckResp) and ack.seq_no == 77

        # raw UDP ping from an ephemeral socket: the ack comes back to the source address
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.sendto(codec.encode_packet([Ping(5, "a")], keyring=ring), a.address)
        pkt = await asyncio.wait_for(loop.sock_recv(sock, 65536), 2.0)
        sock.close()
        dec = codec.decode_packet(pkt, ring)
        assert any(isinstance(m, AckResp) and m.seq_no == 5 for m in dec.messages)
    finally:
        for t in (a, b, c):
            await t.close()


async def test_plain_push_pull_and_garbage_streams() -> None:
    a = MemberlistTransport(fast("a"))
    await a.start()
    try:
        # garbage on TCP and UDP never breaks the node
        for junk in (b"\xff" * 100, b"\x06\x83", b"\x0a\x00\x00\x00\x10abc"):
            r, w = await asyncio.open_connection(*a.address)
            w.write(junk)
            await w.drain()
            w.write_eof()
            await asyncio.wait_for(r.read(), 3.0)
            w.close()
        # a real push/pull answered with our state
        r, w = await asyncio.open_connection(*a.address)
        w.write(codec.encode_stream(PushPull(join=True)))
        await w.drain()
        data = await asyncio.wait_for(r.read(), 3.0)
        w.close()
        pp = codec.decode_stream(data)
        assert isinstance(pp, PushPull)
        assert [s.name for s in pp.states] == ["a"]
        assert tuple(pp.states[0].vsn) == (1, 5, 2, 2, 5, 4)
        assert sum(a.core.counters.drops.values()) >= 2
    finally:
        await a.close()


@pytest.mark.parametrize("count", [3])
async def test_port_zero_binds_same_port_for_udp_and_tcp(count: int) -> None:
    ts = [MemberlistTransport(fast(f"p{i}")) for i in range(count)]
    try:
        for t in ts:
            await t.start()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(1.0)
            s.connect(t.address)
            s.close()
    finally:
        for t in ts:
            await t.close()

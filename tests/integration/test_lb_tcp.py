"""TCP mode over real loopback sockets, on the splice pump and the asyncio-protocol pump:
distribution, half-close, bulk transfer with backpressure, PROXY protocol, caps, timeouts,
retries, draining."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb import tcp as lb_tcp
from lb.testing import EchoBackend, start_echo_backend, wait_for

# pytest-asyncio wants loop factories from a conftest hook now; this module-local override is
# the way to run one module on both loops without touching the shared conftest.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Overriding the \"event_loop_policy\" fixture:DeprecationWarning")


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test here runs on the default loop and on uvloop (what the bench uses)."""
    if request.param == "uvloop":
        import uvloop
        return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]
    return asyncio.DefaultEventLoopPolicy()


def inst(b: EchoBackend, service: str = "echo") -> MemInstance:
    return MemInstance(service, b.port, node=b.name, service_id=f"{service}-{b.name}")


@pytest.fixture(params=["splice", "splice-os", "protocol"])
async def env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[
        tuple[LoadBalancer, MemoryView, list[EchoBackend]]]:
    """splice: the C reader of lb/_splicec.c when it is built; splice-os: the os.splice
    reference path (what runs without the C extension); protocol: the asyncio pump."""
    if request.param == "splice-os":
        monkeypatch.setattr(lb_tcp, "_Pump", None)
    bs = [await start_echo_backend(f"e{i}", "reply-on-eof") for i in range(3)]
    view = MemoryView()
    view.set_instances("echo", [inst(b) for b in bs])
    cfg = LBConfig(sweep_interval=0.05, drain_timeout=0.6,
                   splice=request.param.startswith("splice"))
    lb = LoadBalancer(cfg, view)
    await lb.start()
    yield lb, view, bs
    await lb.stop(1.0)
    for b in bs:
        await b.close()


async def add(lb: LoadBalancer, **kw: object) -> tuple[str, int]:
    spec = {"Name": "t", "Bind": "127.0.0.1:0", "Mode": "tcp", "Service": "echo", **kw}
    info = await lb.add_listener(spec)
    host, port = info["Address"].rsplit(":", 1)
    return host, int(port)


async def half_close_exchange(addr: tuple[str, int], payload: bytes) -> bytes:
    r, w = await asyncio.open_connection(*addr)
    w.write(payload)
    await w.drain()
    w.write_eof()                          # shut our write side, keep reading
    async with asyncio.timeout(10):
        reply = await r.read()
    w.close()
    return reply


async def test_half_close_and_round_robin_per_connection(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, _bs = env
    addr = await add(lb)
    names: Counter[str] = Counter()
    for i in range(9):
        reply = await half_close_exchange(addr, b"x" * (i + 1))
        name, _, rest = reply.decode().partition(" got ")
        assert rest == f"{i + 1} bytes"
        names[name] += 1
    assert names == {"e0": 3, "e1": 3, "e2": 3}
    await wait_for(lambda: lb.listeners()[0]["Counters"]["Active"] == 0)
    c = lb.listeners()[0]["Counters"]
    assert c["Connections"] == 9 and c["Requests"] == 9 and c["BytesIn"] == sum(range(1, 10))


async def test_bulk_echo_with_backpressure(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, bs = env
    for b in bs:
        b.mode = "echo"
    addr = await add(lb)
    r, w = await asyncio.open_connection(*addr)
    block = bytes(range(256)) * 4096                    # 1 MiB
    total = 24 * len(block)

    async def send() -> None:
        for _ in range(24):
            w.write(block)
            await w.drain()
        w.write_eof()

    sender = asyncio.create_task(send())
    got = 0
    async with asyncio.timeout(30):
        while got < total:
            data = await r.read(1 << 20)
            assert data, "connection ended early"
            assert data[0] == block[got % len(block)]
            got += len(data)
        assert await r.read() == b""                    # the backend's FIN came through
    await sender
    w.close()
    assert got == total


async def test_proxy_protocol_headers(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, bs = env
    for version, prefix in (("v1", b"PROXY TCP4 127.0.0.1 127.0.0.1 "),
                            ("v2", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01")):
        for b in bs:
            b.peer_headers.clear()
        addr = await add(lb, ProxyProtocol=version)
        reply = await half_close_exchange(addr, b"hello")
        assert b" got " in reply
        got = [h for b in bs for h in b.peer_headers if h]
        assert len(got) == 1 and got[0].startswith(prefix), got
        assert got[0].endswith(b"hello")
        if version == "v1":
            assert got[0].split(b"\r\n")[0].endswith(b" %d" % addr[1])


async def test_connect_failure_retried_and_ejected(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, bs = env
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()
    view.set_instances("echo", [MemInstance("echo", dead, node="a", service_id="dead"),
                                inst(bs[0])])
    addr = await add(lb)
    for _ in range(6):
        assert (await half_close_exchange(addr, b"q")).startswith(b"e0 got")
    be = {b["ServiceID"]: b for b in lb.listeners()[0]["Backends"]}
    assert be["dead"]["Ejections"] == 1 and be["dead"]["Errors"] == 3
    assert be["echo-e0"]["Requests"] == 6


async def test_no_backend_closes_connection(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, _bs = env
    view.set_instances("echo", [])
    addr = await add(lb)
    r, w = await asyncio.open_connection(*addr)
    async with asyncio.timeout(5):
        assert await r.read() == b""
    w.close()
    assert lb.listeners()[0]["Counters"]["ErrorReasons"] == {"no_backend": 1}


async def test_max_connections_cap(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, _bs = env
    addr = await add(lb, MaxConnections=2)
    conns = [await asyncio.open_connection(*addr) for _ in range(2)]
    await wait_for(lambda: lb.listeners()[0]["Counters"]["Active"] == 2)
    r, _w = await asyncio.open_connection(*addr)
    async with asyncio.timeout(5):
        assert await r.read() == b""            # closed at once
    assert lb.listeners()[0]["Counters"]["Rejected"] == 1
    for r2, w2 in conns:
        w2.close()


async def test_idle_timeout(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, _bs = env
    addr = await add(lb, IdleTimeout=0.2)
    r, w = await asyncio.open_connection(*addr)
    w.write(b"abc")
    async with asyncio.timeout(5):
        assert await r.read() == b""
    assert lb.listeners()[0]["Counters"]["Events"].get("idle_timeout") == 1


async def test_draining_connection_survives_then_is_cut(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, bs = env
    for b in bs:
        b.mode = "echo"
    addr = await add(lb)
    r, w = await asyncio.open_connection(*addr)                 # -> e0
    w.write(b"ping")
    assert await r.readexactly(4) == b"ping"
    view.set_instances("echo", [inst(bs[1]), inst(bs[2])])
    await wait_for(lambda: any(b["Draining"] for b in lb.listeners()[0]["Backends"]))
    w.write(b"still")                                          # still served while draining
    assert await r.readexactly(5) == b"still"
    before = bs[0].connections
    r2, w2 = await asyncio.open_connection(*addr)
    w2.write(b"new")
    assert await r2.readexactly(3) == b"new"
    assert bs[0].connections == before                          # new ones go elsewhere
    w2.close()
    async with asyncio.timeout(5):                              # drain_timeout 0.6 s
        assert await r.read() == b""
    w.close()


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A port whose accept queue is full: SYNs are dropped, so connects hang (loopback only)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(srv.getsockname())
        fillers.append(c)
    return srv, fillers


async def test_connect_timeout_moves_on(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, bs = env
    srv, fillers = blackhole()
    try:
        view.set_instances("echo", [MemInstance("echo", srv.getsockname()[1], node="a",
                                                service_id="hole"), inst(bs[0])])
        addr = await add(lb, ConnectTimeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        reply = await half_close_exchange(addr, b"abc")       # first pick: the black hole
        assert reply == b"e0 got 3 bytes"
        assert 0.25 < loop.time() - t0 < 3.0
        be = {b["ServiceID"]: b for b in lb.listeners()[0]["Backends"]}
        assert be["hole"]["Errors"] == 1
    finally:
        srv.close()
        for c in fillers:
            c.close()


async def test_backend_given_by_host_name(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, bs = env
    view.set_instances("echo", [MemInstance("echo", bs[0].port, address="localhost",
                                            node="n", service_id="byname")])
    addr = await add(lb)
    assert await half_close_exchange(addr, b"12345") == b"e0 got 5 bytes"


async def test_replace_in_place_and_remove_drains(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, bs = env
    for b in bs:
        b.mode = "echo"
    addr = await add(lb)
    r, w = await asyncio.open_connection(*addr)
    w.write(b"one")
    assert await r.readexactly(3) == b"one"
    # replace on the same address: same socket, new settings, the open connection lives on
    info = await lb.add_listener({"Name": "t", "Bind": f"{addr[0]}:{addr[1]}", "Mode": "tcp",
                                  "Service": "echo", "Strategy": "random"})
    assert info["Strategy"] == "random" and info["Address"] == f"{addr[0]}:{addr[1]}"
    r2, w2 = await asyncio.open_connection(*addr)
    w2.write(b"two")
    assert await r2.readexactly(3) == b"two"
    w.write(b"old")
    assert await r.readexactly(3) == b"old"
    # remove: no new connections, open ones drain until drain_timeout (0.6 s here)
    await lb.remove_listener("t")
    with pytest.raises(OSError):
        await asyncio.open_connection(*addr)
    w2.write(b"still")
    assert await r2.readexactly(5) == b"still"
    async with asyncio.timeout(5):
        assert await r2.read() == b""
        assert await r.read() == b""
    w.close()
    w2.close()

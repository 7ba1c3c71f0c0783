"""Hostile clients and backends: every case gets a clean error answer (or a cut), is counted,
and the proxy keeps serving everyone else."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb.testing import HttpBackend, start_http_backend, wait_for

CFG = LBConfig(sweep_interval=0.05, header_timeout=0.4, response_timeout=0.5,
               max_header_bytes=8192, max_headers=50, max_request_line=2048, max_body=100_000)


@pytest.fixture
async def good() -> AsyncIterator[HttpBackend]:
    b = await start_http_backend("good")
    yield b
    await b.close()


@pytest.fixture
async def proxy(good: HttpBackend) -> AsyncIterator[tuple[LoadBalancer, MemoryView, str]]:
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", good.port, node="good")])
    lb = LoadBalancer(CFG, view)
    await lb.start()
    info = await lb.add_listener({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                  "Service": "web"})
    yield lb, view, info["Address"]
    await lb.stop(1.0)


async def still_serving(addr: str) -> None:
    async with aiohttp.ClientSession() as s, s.get(f"http://{addr}/") as r:
        assert r.status == 200 and await r.text() == "good"


async def send_raw(addr: str, data: bytes, *, trickle: float = 0.0,
                   timeout: float = 5.0) -> bytes:
    """Send ``data`` (byte by byte with ``trickle``), then return all that comes back."""
    host, port = addr.rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    got = bytearray()

    async def reader() -> None:
        try:
            while chunk := await r.read(65536):
                got.extend(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass

    task = asyncio.create_task(reader())
    try:
        step = 1 if trickle else len(data)
        for i in range(0, len(data), step):
            if task.done():
                break
            w.write(data[i:i + step])
            await w.drain()
            if trickle:
                await asyncio.sleep(trickle)
    except (ConnectionResetError, BrokenPipeError):
        pass
    try:
        async with asyncio.timeout(timeout):
            await task
    finally:
        w.close()
    return bytes(got)


def status_of(resp: bytes) -> int:
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", resp)
    assert m, resp[:200]
    return int(m.group(1))


@pytest.mark.parametrize("payload, status", [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage-tls-hello\r\n\r\n", 400),
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(80)) + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n", 413),
    (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 405),
    (b"GET / HTTP/1.1\r\nHost: good\r\nHost: evil\r\n\r\n", 400),
], ids=["tls", "garbage", "version", "clen", "badheader", "longurl", "bigheader",
        "manyheaders", "bigbody", "connect", "twohosts"])
async def test_bad_requests(proxy, payload: bytes, status: int) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr = proxy
    resp = await send_raw(addr, payload)
    assert status_of(resp) == status
    assert b"Connection: close" in resp
    await still_serving(addr)
    assert lb.listeners()[0]["Counters"]["Errors"] == 1


async def test_header_flood_without_end(proxy) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr = proxy
    flood = b"GET / HTTP/1.1\r\n" + b"X-Flood: " + b"a" * 200_000      # never ends
    resp = await send_raw(addr, flood)
    assert status_of(resp) == 431
    await still_serving(addr)


async def test_chunked_body_over_limit(proxy) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr = proxy
    body = b"".join(b"%x\r\n%s\r\n" % (10_000, b"z" * 10_000) for _ in range(15)) + b"0\r\n\r\n"
    resp = await send_raw(addr, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert status_of(resp) == 413
    assert lb.listeners()[0]["Counters"]["ErrorReasons"].get("body_too_large") == 1
    await still_serving(addr)


async def test_slowloris_gets_408(proxy) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr = proxy
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    resp = await send_raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 200,
                          trickle=0.02, timeout=5)
    assert status_of(resp) == 408
    assert loop.time() - t0 < 3.0
    await still_serving(addr)


async def test_random_garbage_never_breaks_the_proxy(proxy) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr = proxy
    rng = random.Random(1234)
    for i in range(40):
        n = rng.randrange(1, 3000)
        if i % 2:
            payload = bytes(rng.randrange(256) for _ in range(n))
        else:   # plausible start, then noise
            payload = b"GET /" + os.urandom(n) + b"\r\n\r\n"
        resp = await send_raw(addr, payload, timeout=3)
        if resp:
            assert status_of(resp) in (400, 404, 405, 408, 413, 414, 431, 200)
    await still_serving(addr)
    assert "internal_error" not in lb.counters.snapshot()


async def test_client_leaving_mid_head_frees_its_slot_at_once(good: HttpBackend) -> None:
    """A client that half-closes or closes in the middle of a head is gone: its connection
    is closed then, not held until header_timeout (10 s here)."""
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", good.port, node="good")])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, header_timeout=10.0), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web"})
        host, port = info["Address"].rsplit(":", 1)

        def active() -> int:
            return int(lb.listeners()[0]["Counters"]["Active"])

        for how in ("half-close", "close"):
            r, w = await asyncio.open_connection(host, int(port))
            w.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ")
            await w.drain()
            await wait_for(lambda: active() == 1, timeout=3)
            if how == "half-close":
                w.write_eof()
                assert await asyncio.wait_for(r.read(), 3) == b""   # closed by the proxy
            w.close()
            await wait_for(lambda: active() == 0, timeout=3)
        await still_serving(info["Address"])
    finally:
        await lb.stop(1.0)


# -- hostile backends ------------------------------------------------------------------------

async def start_raw_backend(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                              Awaitable[None]]) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def raw_backend_listener(lb: LoadBalancer, view: MemoryView, name: str,
                               handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                                 Awaitable[None]]) -> AsyncIterator[str]:
    """An HTTP listener ``name`` whose one backend is ``handler`` on a raw socket; yields the
    listener's address and closes the backend after."""
    server, port = await start_raw_backend(handler)
    try:
        view.set_instances(name, [MemInstance(name, port, node=name)])
        await lb.add_listener({"Name": name, "Bind": "127.0.0.1:0", "Mode": "http",
                               "Service": name})
        yield lb.listener(name)["Address"]  # type: ignore[index]
    finally:
        server.close()


async def read_head(r: asyncio.StreamReader) -> bytes:
    return await r.readuntil(b"\r\n\r\n")


async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    w.write(b"SSH-2.0-OpenSSH_9.0 this is not http\r\n\r\n")
    await w.drain()
    await asyncio.sleep(0.2)
    w.close()


async def drop_mid_response(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
    await w.drain()
    w.close()


async def drop_before_answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    w.close()


async def never_answer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    await asyncio.sleep(3)
    w.close()


async def header_bomb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    w.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)))
    await w.drain()
    await asyncio.sleep(0.3)
    w.close()


async def endless_head(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await read_head(r)
    w.write(b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 200_000)
    await w.drain()
    await asyncio.sleep(0.5)
    w.close()


async def connection_names_a_field(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        try:
            await read_head(r)
        except asyncio.IncompleteReadError:
            return
        w.write(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: private\r\n"
                b"X-Kept: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()


async def test_fields_the_backend_connection_names_are_dropped(proxy) -> None:  # type: ignore[no-untyped-def]
    """RFC 9110 7.6.1: the fields a response's Connection names are hop-by-hop, like
    Keep-Alive: not forwarded to the client."""
    lb, view, _addr = proxy
    async with raw_backend_listener(lb, view, "named", connection_names_a_field) as baddr:
        for _ in range(2):      # the second one on the pooled backend connection
            resp = await send_raw(baddr, b"GET / HTTP/1.1\r\nHost: x\r\n"
                                         b"Connection: close\r\n\r\n")
            head = resp.split(b"\r\n\r\n", 1)[0].lower()
            assert status_of(resp) == 200 and resp.endswith(b"\r\n\r\nok")
            assert b"\r\nx-kept: 1" in head
            assert b"x-hop" not in head and b"keep-alive" not in head


@pytest.mark.parametrize("handler, method, expect", [
    (garbage, "GET", 502),
    (endless_head, "GET", 502),
    (drop_before_answer, "POST", 502),
    (never_answer, "GET", 504),
    (header_bomb, "GET", 502),
    (drop_mid_response, "GET", "cut"),
])
async def test_hostile_backend(proxy, good: HttpBackend, handler, method: str,  # type: ignore[no-untyped-def]
                               expect: int | str) -> None:
    lb, view, addr = proxy
    async with raw_backend_listener(lb, view, "bad", handler) as baddr:
        async with aiohttp.ClientSession() as s:
            if expect == "cut":
                with pytest.raises(aiohttp.ClientPayloadError):
                    async with s.get(f"http://{baddr}/") as r:
                        assert r.status == 200
                        await r.read()
            else:
                async with s.request(method, f"http://{baddr}/", data=b"d" if method ==
                                     "POST" else None) as r:
                    assert r.status == expect
                    text = await r.text()
                    assert str(expect) in text
        await still_serving(addr)
        counters = lb.listener("bad")["Counters"]  # type: ignore[index]
        assert counters["Errors"] >= 1


async def test_client_keepalive_timeout_and_connection_cap(good: HttpBackend) -> None:
    """The cap is held by clients in the middle of a request head (the 10 s header timeout
    applies to them, not the 0.3 s keep-alive one), so a slow machine cannot free a slot
    before the third client arrives. Their requests then complete, and the keep-alive close
    is timed from the moment they were sent: a lower bound, which load only makes later."""
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", good.port, node="good")])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, client_keepalive_timeout=0.3), view)
    await lb.start()
    loop = asyncio.get_running_loop()
    try:
        info = await lb.add_listener({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "MaxConnections": 2})
        host, port = info["Address"].rsplit(":", 1)

        def counters() -> dict[str, Any]:
            return lb.listener("h")["Counters"]  # type: ignore[index,no-any-return]

        conns = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        for _, w in conns:
            w.write(b"GET / HTTP/1.1\r\n")          # a head begun, not finished
            await w.drain()
        await wait_for(lambda: counters()["Active"] == 2)
        r3, w3 = await asyncio.open_connection(host, int(port))
        async with asyncio.timeout(5):
            assert await r3.read() == b""                   # over the cap: closed at once
        w3.close()
        assert counters()["Rejected"] == 1
        # the heads completed and answered, both are idle keep-alive connections, closed
        # after client_keepalive_timeout
        sent = loop.time()
        for _, w in conns:
            w.write(b"Host: x\r\n\r\n")
            await w.drain()
        for r, w in conns:
            async with asyncio.timeout(10):
                got = await r.read()                        # the answer, then the close
            w.close()
            assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"good"), got
        # the LB reads its clock once per sweep (sweep_interval, 50 ms), so "last active" may
        # be stamped up to one sweep before the answer went out
        assert loop.time() - sent >= 0.3 - 0.05
        assert counters()["Events"].get("keepalive_timeout") == 2
    finally:
        await lb.stop(1.0)


async def test_backend_blackhole_gives_503_after_connect_timeout() -> None:
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(srv.getsockname())
        fillers.append(c)
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", srv.getsockname()[1], node="hole")])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, connect_timeout=0.2), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "h", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web"})
        resp = await send_raw(info["Address"], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(resp) == 503
        assert b"accepted a connection" in resp
    finally:
        await lb.stop(1.0)
        srv.close()
        for c in fillers:
            c.close()

"""HTTP mode against real backends on loopback: distribution, view changes, draining, 503,
header rewriting, routing, chunked and streamed bodies, WebSocket, pipelining (curl + aiohttp)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lb import LBConfig, LoadBalancer, MemInstance, MemoryView
from lb.testing import HttpBackend, start_http_backend, wait_for

CURL = "/usr/bin/curl"


@pytest.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    bs = [await start_http_backend(f"b{i}") for i in range(3)]
    yield bs
    for b in bs:
        await b.close()

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


def inst(b: HttpBackend, service: str = "web", **kw: object) -> MemInstance:
    return MemInstance(service, b.port, node=b.name, service_id=f"{service}-{b.name}",
                       **kw)  # type: ignore[arg-type]


@pytest.fixture
async def env(backends: list[HttpBackend]) -> AsyncIterator[tuple[LoadBalancer, MemoryView,
                                                                  str, list[HttpBackend]]]:
    view = MemoryView()
    view.set_instances("web", [inst(b) for b in backends])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, drain_timeout=2.0), view)
    await lb.start()
    info = await lb.add_listener({"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http",
                                  "Service": "web"})
    yield lb, view, info["Address"], backends
    await lb.stop(1.0)


async def get_names(addr: str, n: int, path: str = "/") -> Counter[str]:
    async with aiohttp.ClientSession() as s:
        c: Counter[str] = Counter()
        for _ in range(n):
            async with s.get(f"http://{addr}{path}") as r:
                assert r.status == 200, await r.text()
                c[await r.text()] += 1
        return c


async def curl(*args: str) -> tuple[int, str, str]:
    p = await asyncio.create_subprocess_exec(CURL, "-sS", "--max-time", "10", *args,
                                             stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    return p.returncode or 0, out.decode(), err.decode()


async def test_equal_distribution_aiohttp(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr, _bs = env
    assert await get_names(addr, 30) == {"b0": 10, "b1": 10, "b2": 10}
    info = lb.listeners()[0]
    assert info["Counters"]["Requests"] == 30
    assert sorted(b["Requests"] for b in info["Backends"]) == [10, 10, 10]
    # keep-alive on the backend side: far fewer backend connections than requests
    assert sum(b["Connections"] for b in info["Backends"]) <= 6


async def test_equal_distribution_curl(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    rc, out, err = await curl(*[f"http://{addr}/"] * 12)        # one keep-alive connection
    assert rc == 0, err
    assert Counter(re.findall(r"b\d", out)) == {"b0": 4, "b1": 4, "b2": 4}
    # and separate connections
    names: Counter[str] = Counter()
    for _ in range(6):
        rc, out, err = await curl(f"http://{addr}/")
        names[out] += 1
    assert names == {"b0": 2, "b1": 2, "b2": 2}


async def test_new_instance_takes_traffic(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, _bs = env
    extra = await start_http_backend("b3")
    try:
        view.add_instance(inst(extra))
        await wait_for(lambda: len(lb.listeners()[0]["Backends"]) == 4)
        assert await get_names(addr, 40) == {"b0": 10, "b1": 10, "b2": 10, "b3": 10}
    finally:
        await extra.close()


async def test_removed_instance_gets_no_traffic(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, bs = env
    await get_names(addr, 6)
    before = bs[1].hits
    view.remove_instance("web", "web-b1")              # its check failed
    await wait_for(lambda: len(lb.listeners()[0]["Backends"]) == 2)
    assert await get_names(addr, 20) == {"b0": 10, "b2": 10}
    assert bs[1].hits == before


async def test_draining_keeps_open_requests(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, bs = env
    async with aiohttp.ClientSession() as s:
        slow = asyncio.create_task(s.get(f"http://{addr}/slow?d=0.6"))   # goes to b0
        await wait_for(lambda: bs[0].hits == 1)
        view.set_instances("web", [inst(bs[1]), inst(bs[2])])
        await wait_for(lambda: any(b["Draining"] for b in lb.listeners()[0]["Backends"]))
        r = await slow
        assert r.status == 200 and await r.text() == "b0"
        r.release()
    assert await get_names(addr, 10) == {"b1": 5, "b2": 5}
    await wait_for(lambda: not any(b["Draining"] for b in lb.listeners()[0]["Backends"]))


async def test_no_healthy_instance_is_503(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, bs = env
    view.set_instances("web", [])
    await wait_for(lambda: not lb.listeners()[0]["Backends"])
    rc, out, err = await curl("-i", f"http://{addr}/")
    assert rc == 0, err
    assert out.startswith("HTTP/1.1 503")
    assert "no healthy instance of service 'web'" in out
    view.set_instances("web", [inst(bs[2])])
    await wait_for(lambda: len(lb.listeners()[0]["Backends"]) == 1)
    assert await get_names(addr, 2) == {"b2": 2}


async def test_dead_port_in_view_is_retried_elsewhere(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, bs = env
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = s.getsockname()[1]
    s.close()                                          # nothing listens there
    view.set_instances("web", [MemInstance("web", dead, node="a0", service_id="dead"),
                               inst(bs[0])])
    await wait_for(lambda: len(lb.listeners()[0]["Backends"]) == 2)
    assert await get_names(addr, 10) == {"b0": 10}
    be = {b["ServiceID"]: b for b in lb.listeners()[0]["Backends"]}
    assert be["dead"]["Errors"] >= 3 and be["dead"]["Ejections"] == 1


async def raw_exchange(addr: str, request: bytes, read_until_close: bool = False) -> bytes:
    host, port = addr.rsplit(":", 1)
    r, w = await asyncio.open_connection(host, int(port))
    w.write(request)
    await w.drain()
    data = b""
    try:
        async with asyncio.timeout(5):
            if read_until_close:
                data = await r.read()
            else:
                head = await r.readuntil(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: (\d+)", head)
                body = await r.readexactly(int(m.group(1))) if m else b""
                data = head + body
    finally:
        w.close()
    return data


async def test_forwarded_headers_and_hop_by_hop(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    req = (b"GET /headers?x=1 HTTP/1.1\r\nHost: app.example.com\r\n"
           b"X-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\n"
           b"Connection: keep-alive, X-Secret\r\nX-Secret: drop-me\r\nKeep-Alive: timeout=5\r\n"
           b"Proxy-Connection: keep-alive\r\nTE: trailers\r\nX-Custom: kept\r\n\r\n")
    resp = await raw_exchange(addr, req)
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    data = json.loads(body)
    h = {k.lower(): v for k, v in data["headers"]}
    assert data["path"] == "/headers?x=1"
    assert h["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert h["x-forwarded-proto"] == "http"
    assert h["x-forwarded-host"] == "app.example.com"
    assert h["forwarded"] == 'for=203.0.113.9, for=127.0.0.1;proto=http;host="app.example.com"'
    assert h["x-custom"] == "kept" and h["host"] == "app.example.com"
    for gone in ("x-secret", "keep-alive", "proxy-connection", "te"):
        assert gone not in h
    assert h.get("connection", "keep-alive").lower() != "close"
    # response hop-by-hop fields are ours, not the backend's
    assert b"keep-alive: timeout" not in head.lower()


async def test_pipelined_requests_answered_in_order(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    req = b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5))
    req += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(addr, req, read_until_close=True)
    assert data.count(b"HTTP/1.1 200 OK") == 6
    bodies = re.findall(rb"\r\n\r\n(b\d)", data)
    assert bodies == [b"b0", b"b1", b"b2", b"b0", b"b1", b"b2"]


async def test_head_and_keepalive(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.head(f"http://{addr}/big?n=5000&cl=1") as r:
                assert r.status == 200
                assert r.headers["Content-Length"] == "5000"
            async with s.get(f"http://{addr}/") as r:
                assert r.status == 200


async def test_chunked_upload_and_download(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    import hashlib
    h = hashlib.sha256()
    total = 0

    async def gen() -> AsyncIterator[bytes]:
        nonlocal total
        for i in range(200):
            piece = bytes([i % 256]) * (1000 + i * 37)
            h.update(piece)
            total += len(piece)
            yield piece

    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://{addr}/echo", data=gen()) as r:
            data = await r.json()
        assert data["len"] == total and data["sha256"] == h.hexdigest()
        assert data["chunked"] == "chunked"
        async with s.get(f"http://{addr}/big?n=3000000") as r:   # chunked answer
            assert r.headers.get("Transfer-Encoding") == "chunked"
            body = await r.read()
        assert len(body) == 3000000 and body[:256] == bytes(range(256))
    # HTTP/1.0 client gets a close-delimited body instead of chunks
    data = await raw_exchange(addr, b"GET /big?n=100000 HTTP/1.0\r\n\r\n", read_until_close=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and len(body) == 100000


async def test_websocket_echo(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr, _bs = env
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(f"http://{addr}/ws") as ws:
            await ws.send_str("hello")
            msg = await ws.receive(timeout=5)
            assert msg.data == "b0:hello"
            payload = bytes(range(256)) * 1000
            await ws.send_bytes(payload)
            msg = await ws.receive(timeout=5)
            assert msg.data == payload
        # the listener keeps serving plain requests
        async with s.get(f"http://{addr}/") as r:
            assert r.status == 200
    await wait_for(lambda: lb.listeners()[0]["Counters"]["Active"] == 0)


async def test_routes_by_host_prefix_and_urlprefix_tags(backends) -> None:  # type: ignore[no-untyped-def]
    b0, b1, b2 = backends
    view = MemoryView()
    view.set_instances("web", [inst(b0)])
    view.set_instances("api", [inst(b1, "api")])
    view.set_instances("shop", [inst(b2, "shop", tags=("urlprefix-shop.example.com/",))])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "edge", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web", "URLPrefix": True,
                                      "Routes": [{"PathPrefix": "/api", "Service": "api"}]})
        addr = info["Address"]
        async with aiohttp.ClientSession() as s:
            async def name(path: str, host: str | None = None) -> str:
                hdrs = {"Host": host} if host else {}
                async with s.get(f"http://{addr}{path}", headers=hdrs) as r:
                    return await r.text()
            assert await name("/") == "b0"
            assert await name("/api/users") == "b1"
            assert await name("/api/users", "shop.example.com") == "b2"
            assert await name("/", "other.example.com") == "b0"
            # a tag appearing later in the view becomes a route
            view.set_instances("api", [inst(b1, "api", tags=("urlprefix-/v2",))])
            await wait_for(lambda: any(b["Tag"] == "urlprefix-/v2"
                                       for b in lb.listeners()[0]["Backends"]))
            assert await name("/v2/x") == "b1"
    finally:
        await lb.stop(1.0)


async def test_replace_and_remove_listener(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr, _bs = env
    info = await lb.add_listener({"Name": "web", "Bind": addr, "Mode": "http",
                                  "Service": "web", "Strategy": "least_conn"})
    assert info["Address"] == addr and info["Strategy"] == "least_conn"
    assert len(lb.listeners()) == 1
    assert sum((await get_names(addr, 9)).values()) == 9
    await lb.remove_listener("web")
    assert lb.listeners() == []
    rc, _out, _err = await curl(f"http://{addr}/")
    assert rc != 0


async def test_removed_listener_drains_in_flight_request(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr, bs = env
    async with aiohttp.ClientSession() as s:
        slow = asyncio.create_task(s.get(f"http://{addr}/slow?d=0.5"))
        await wait_for(lambda: bs[0].hits == 1)
        await lb.remove_listener("web")
        rc, _out, _err = await curl(f"http://{addr}/")            # no longer accepting
        assert rc != 0
        r = await slow                                          # but the open one finishes
        assert r.status == 200 and await r.text() == "b0"
        r.release()


async def test_curl_upload_with_expect_100_continue(env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    import hashlib
    data = bytes(range(256)) * 8192                              # 2 MiB: curl sends Expect
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    rc, out, err = await curl("-v", "-T", str(f), f"http://{addr}/echo")
    assert rc == 0, err
    assert "Expect: 100-continue" in err and "HTTP/1.1 100 Continue" in err
    got = json.loads(out)
    assert got["len"] == len(data) and got["sha256"] == hashlib.sha256(data).hexdigest()
    # chunked upload from curl (Transfer-Encoding set by hand)
    rc, out, err = await curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{f}",
                              f"http://{addr}/echo")
    got = json.loads(out)
    assert got["len"] == len(data) and got["chunked"] == "chunked"


async def test_te_and_cl_never_both_forwarded(env) -> None:  # type: ignore[no-untyped-def]
    _lb, _view, addr, _bs = env
    req = (b"POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    resp = await raw_exchange(addr, req)
    if resp.startswith(b"HTTP/1.1 400"):
        return                                                  # refused outright: fine
    _head, _, body = resp.partition(b"\r\n\r\n")
    h = {k.lower() for k, v in json.loads(body)["headers"]}
    assert not ("content-length" in h and "transfer-encoding" in h)


async def test_drain_timeout_cuts_requests_and_tunnels(backends) -> None:  # type: ignore[no-untyped-def]
    view = MemoryView()
    view.set_instances("web", [inst(b) for b in backends])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05, drain_timeout=0.3), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web"})
        addr = info["Address"]
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(f"http://{addr}/ws")                    # -> b0
            await ws.send_str("x")
            assert (await ws.receive(timeout=5)).data == "b0:x"
            slow = asyncio.create_task(s.get(f"http://{addr}/slow?d=1.5")) # -> b1
            await wait_for(lambda: backends[1].hits == 1)
            view.set_instances("web", [inst(backends[2])])
            r = await asyncio.wait_for(slow, 3)
            assert r.status == 502 and "drain time ran out" in await r.text()
            msg = await ws.receive(timeout=3)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.ERROR)
            await ws.close()
        counters = lb.listeners()[0]["Counters"]
        assert counters["Events"].get("drain_cut", 0) == 2              # request + tunnel
        assert counters["ErrorReasons"].get("drain_timeout", 0) == 1    # the 502 answer
    finally:
        await lb.stop(1.0)


async def test_ipv6_listener_and_forwarded_quoting(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, _addr, _bs = env
    import socket as _s
    try:
        probe = _s.socket(_s.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    info = await lb.add_listener({"Name": "v6", "Bind": "[::1]:0", "Mode": "http",
                                  "Service": "web"})
    assert info["Address"].startswith("[::1]:")
    rc, out, err = await curl("-g", f"http://{info['Address']}/headers")
    assert rc == 0, err
    h = {k.lower(): v for k, v in json.loads(out)["headers"]}
    assert h["x-forwarded-for"] == "::1"
    assert h["forwarded"].startswith('for="[::1]";proto=http')


async def test_slow_reader_backpressure_bounds_proxy_buffers(env) -> None:  # type: ignore[no-untyped-def]
    lb, _view, addr, _bs = env
    import socket as _s
    listener = next(iter(lb._listeners.values()))
    host, port = addr.rsplit(":", 1)
    sock = _s.socket()
    sock.setsockopt(_s.SOL_SOCKET, _s.SO_RCVBUF, 65536)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    size = 20 * 1024 * 1024
    await loop.sock_sendall(sock, f"GET /big?n={size}&cl=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = 0
    peak = 0
    try:
        async with asyncio.timeout(60):
            while got < size + 100:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    break
                got += len(data)
                if got % (1 << 20) < 65536:
                    await asyncio.sleep(0.01)          # a slow reader
                for c in list(listener.conns):
                    t = getattr(c, "transport", None)
                    if t is not None and not t.is_closing():
                        peak = max(peak, t.get_write_buffer_size())
                if got >= size:
                    break
    finally:
        sock.close()
    assert got >= size
    print(f"peak proxy write buffer {peak}")
    assert 0 < peak < 4 * 1024 * 1024, f"proxy buffered {peak} bytes for a slow client"


async def test_slow_backend_upload_backpressure(backends) -> None:  # type: ignore[no-untyped-def]
    size = 16 * 1024 * 1024

    async def slow_sink(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readuntil(b"\r\n\r\n")
        n = 0
        while n < size:
            chunk = await r.read(65536)
            if not chunk:
                break
            n += len(chunk)
            if n % (1 << 20) < 65536:
                await asyncio.sleep(0.01)
        body = str(n).encode()
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await w.drain()
        w.close()

    server = await asyncio.start_server(slow_sink, "127.0.0.1", 0)
    view = MemoryView()
    view.set_instances("sink", [MemInstance("sink", server.sockets[0].getsockname()[1])])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05), view)
    await lb.start()
    peak = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            for pool in lb._listeners["up"].pools.values():
                for b in pool.backends:
                    for u in list(b.conns):
                        t = getattr(u, "transport", None)
                        if t is not None and not t.is_closing():
                            peak = max(peak, t.get_write_buffer_size())
            await asyncio.sleep(0.005)

    try:
        info = await lb.add_listener({"Name": "up", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "sink"})
        sampler = asyncio.create_task(sample())
        block = b"u" * (1 << 20)

        async def gen() -> AsyncIterator[bytes]:
            for _ in range(16):
                yield block

        async with aiohttp.ClientSession() as s, s.post(
                f"http://{info['Address']}/", data=gen(),
                headers={"Content-Length": str(size)}) as r:
            assert await r.text() == str(size)
        sampling = False
        await sampler
        assert peak < 4 * 1024 * 1024, f"proxy buffered {peak} bytes for a slow backend"
    finally:
        await lb.stop(1.0)
        server.close()


def stuck_backend() -> socket.socket:
    """A backend that never takes our request (nobody accepts, tiny receive window): a
    cut-off node looks the same from here, nothing we send is acknowledged."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return sock


BIG_GET = {f"X-Pad-{i}": "p" * 3000 for i in range(20)}   # more than the stuck receive window


@pytest.mark.parametrize("how", ["sweep", "view"])
async def test_unacknowledged_request_moves_elsewhere(backends, how: str) -> None:  # type: ignore[no-untyped-def]
    """A backend that never takes our request does not hold a safe request hostage: it is resent to a healthy backend,
    after a connect timeout (sweep) or at once when the view drops that backend."""
    server = stuck_backend()
    port = server.getsockname()[1]
    view = MemoryView()
    view.set_instances("web", [MemInstance("web", port, node="a-stuck", service_id="stuck"),
                               inst(backends[0])])
    cfg = LBConfig(sweep_interval=0.05, connect_timeout=0.3 if how == "sweep" else 30,
                   max_header_bytes=100_000)
    lb = LoadBalancer(cfg, view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "web", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "web"})
        async with aiohttp.ClientSession() as s:
            req = asyncio.create_task(s.get(f"http://{info['Address']}/", headers=BIG_GET))
            await wait_for(lambda: any(b["ServiceID"] == "stuck" and b["Active"] == 1
                                       for b in lb.listeners()[0]["Backends"]))
            await asyncio.sleep(0.1)
            if how == "view":
                view.set_instances("web", [inst(backends[0])])
            r = await asyncio.wait_for(req, 5)
            assert r.status == 200 and await r.text() == "b0"
            r.release()
        counters = lb.listeners()[0]["Counters"]
        assert counters["Events"].get("retried_elsewhere") == 1
        if how == "sweep":
            stuck = next(b for b in lb.listeners()[0]["Backends"] if b["ServiceID"] == "stuck")
            assert stuck["Errors"] == 1
    finally:
        await lb.stop(1.0)
        server.close()


async def test_slow_backend_that_took_the_request_keeps_it_when_removed(env) -> None:  # type: ignore[no-untyped-def]
    lb, view, addr, bs = env
    async with aiohttp.ClientSession() as s:
        slow = asyncio.create_task(s.get(f"http://{addr}/slow?d=0.5"))   # -> b0, acknowledged
        await wait_for(lambda: bs[0].hits == 1)
        view.set_instances("web", [inst(bs[1])])
        r = await slow
        assert r.status == 200 and await r.text() == "b0"              # drained, not resent
        r.release()
    assert "retried_elsewhere" not in lb.listeners()[0]["Counters"]["Events"]


async def test_tag_and_passing_only_filters(backends) -> None:  # type: ignore[no-untyped-def]
    b0, b1, b2 = backends
    view = MemoryView()
    view.set_instances("web", [inst(b0, tags=("v1",)), inst(b1, tags=("v2",)),
                               inst(b2, tags=("v2",), health="warning")])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05), view)
    await lb.start()
    try:
        v2 = await lb.add_listener({"Name": "v2", "Bind": "127.0.0.1:0", "Mode": "http",
                                    "Service": "web", "Tag": "V2"})
        strict = await lb.add_listener({"Name": "strict", "Bind": "127.0.0.1:0",
                                        "Mode": "http", "Service": "web",
                                        "PassingOnly": True})
        assert await get_names(v2["Address"], 6) == {"b1": 3, "b2": 3}
        assert await get_names(strict["Address"], 6) == {"b0": 3, "b1": 3}
    finally:
        await lb.stop(1.0)


async def test_proxy_protocol_in_http_mode_keeps_connections_per_client() -> None:
    """With ProxyProtocol an HTTP listener sends the header once per backend connection and
    never lets two clients share one (each connection speaks for one client address)."""
    seen: list[bytes] = []

    async def backend(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(await r.readline())                    # the PROXY v1 line
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                body = b"conn%d" % len(seen)
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await w.drain()
                assert head.startswith(b"GET ")
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()

    server = await asyncio.start_server(backend, "127.0.0.1", 0)
    view = MemoryView()
    view.set_instances("pp", [MemInstance("pp", server.sockets[0].getsockname()[1])])
    lb = LoadBalancer(LBConfig(sweep_interval=0.05), view)
    await lb.start()
    try:
        info = await lb.add_listener({"Name": "pp", "Bind": "127.0.0.1:0", "Mode": "http",
                                      "Service": "pp", "ProxyProtocol": "v1"})
        port = int(info["Address"].rsplit(":", 1)[1])
        for _client in range(2):
            async with aiohttp.ClientSession() as s:
                bodies = []
                for _ in range(3):
                    async with s.get(f"http://{info['Address']}/") as r:
                        bodies.append(await r.text())
                assert len(set(bodies)) == 1                 # one backend connection each
        assert len(seen) == 2
        for line in seen:
            assert line.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
            assert line.endswith(b" %d\r\n" % port)
        assert seen[0] != seen[1]                            # two client source ports
    finally:
        await lb.stop(1.0)
        server.close()

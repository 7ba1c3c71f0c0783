"""registry/web: the agent's HTTP/1.1 server, over real loopback sockets, spoken to in raw bytes
(what curl and Consul's clients send, and what they must not be able to break)."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator

import pytest

from registry import web
from registry.api.base import error_middleware
from registry.web.app import Router
from registry.web.server import split_target

routes = web.RouteTableDef()
SEEN: list[str] = []


@routes.get("/v1/agent/service/{id}")
async def service(request: web.Request) -> web.Response:
    return web.Response(text=f"service {request.match_info['id']}")


@routes.put("/v1/agent/service/register")
async def register(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"registered {len(body)}")


@routes.route("*", "/v1/kv/{key:.*}")
async def kv(request: web.Request) -> web.Response:
    return web.json_response({"key": request.match_info["key"], "method": request.method,
                              "q": request.query.getall("tag", []),
                              "recurse": "recurse" in request.query})


@routes.get("/slow/{n}")
async def slow(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    await asyncio.sleep(0.05 * n)
    SEEN.append(request.match_info["n"])
    return web.Response(text=f"slow {n}")


@routes.get("/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    for i in range(3):
        await resp.write(f"line {i}\n".encode())
    return resp


@routes.get("/boom")
async def boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


@routes.get("/echo")
async def echo(request: web.Request) -> web.Response:
    return web.Response(text="echo", headers={"X-Echo": request.query.get("v", "")})


@routes.get("/moved")
async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/elsewhere")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    app = web.Application(middlewares=[error_middleware], client_max_size=1000,
                          handler_args={"max_field_size": 2000, "max_line_size": 2000})
    app.router.add_routes(routes)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


async def exchange(port: int, data: bytes, *, until_close: bool = True,
                   timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if until_close:
            return await asyncio.wait_for(reader.read(), timeout)
        return await asyncio.wait_for(reader.read(65536), timeout)
    finally:
        writer.close()


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of Content-Length-delimited responses."""
    out = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out


def test_exact_paths_win_over_patterns_and_405_names_the_methods() -> None:
    r = Router()
    r.add_routes(routes)
    handler, match = r.resolve("GET", "/v1/agent/service/web")
    assert handler is service and match == {"id": "web"}
    handler, match = r.resolve("PUT", "/v1/agent/service/register")
    assert handler is register and match == {}
    handler, _ = r.resolve("DELETE", "/v1/agent/service/web")
    assert handler.kind is web.HTTPMethodNotAllowed and handler.args[1] == {"GET", "HEAD"}
    handler, _ = r.resolve("GET", "/v1/nothing")
    assert handler.kind is web.HTTPNotFound
    handler, match = r.resolve("GET", "/v1/kv/a/b%2Fc%25d")
    assert handler is kv and match == {"key": "a/b/c%d"}
    assert match.route.resource is not None
    assert match.route.resource.canonical == "/v1/kv/{key:.*}"      # what the ACL rules key on
    assert r.resolve("GET", "/v1/nothing")[1].route.resource is None


def test_request_targets_are_decoded_with_slashes_kept_apart() -> None:
    assert split_target(b"/v1/kv/a%2Fb?x=1") == ("/v1/kv/a%2Fb?x=1", "/v1/kv/a/b",
                                                 "/v1/kv/a%2Fb", "x=1")
    assert split_target(b"/a%20b%252F") == ("/a%20b%252F", "/a b%2F", "/a b%252F", "")
    assert split_target(b"http://h:1/p?q")[1:] == ("/p", "/p", "q")
    assert split_target(b"/v1/kv/%ff")[1] == "/v1/kv/\ufffd"     # as yarl decodes it


async def test_keep_alive_pipelining_answers_in_order(server: int) -> None:
    SEEN.clear()
    raw = await exchange(server, b"GET /slow/3 HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"GET /slow/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                 b"GET /v1/kv/k?tag=a&tag=b&recurse HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
    got = responses(raw)
    assert [s for s, _, _ in got] == [200, 200, 200]
    assert got[0][2] == b"slow 3" and got[1][2] == b"slow 1"
    assert SEEN == ["3", "1"]               # one at a time, in the order sent
    assert b'"q": ["a", "b"]' in got[2][2] and b'"recurse": true' in got[2][2]
    assert got[2][1]["connection"] == "close"


async def test_bodies_expect_continue_and_the_size_limit(server: int) -> None:
    raw = await exchange(server, b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert responses(raw)[0][2] == b"registered 5"
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                 b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == \
        b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"abc")
    rest = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert responses(rest)[0][2] == b"registered 3"
    chunked = b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n" \
              b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
                  b"%x\r\n%s\r\n" % (400, b"x" * 400) for _ in range(3)) + b"0\r\n\r\n"
    for req in (chunked, b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 5000\r\n\r\n" + b"y" * 5000):
        status, _, body = responses(await exchange(server, req))[0]
        assert status == 413 and b"the limit is 1000 bytes" in body


async def test_malformed_and_oversized_requests_get_4xx_and_the_server_lives(server: int
                                                                             ) -> None:
    for bad, status in ((b"GARBAGE\r\n\r\n", 400),
                        (b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n", 400),
                        (b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\n\r\n", 414),
                        (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 3000 + b"\r\n\r\n", 431)):
        got = responses(await exchange(server, bad))
        assert got[0][0] == status, (bad[:40], got)
        assert got[0][1]["content-type"].startswith("text/plain")
    got = responses(await exchange(server, b"GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert got[0][0] == 500 and got[0][2] == b"internal error; see the agent log\n"
    got = responses(await exchange(server, b"GET /v1/agent/service/web HTTP/1.0\r\n\r\n"))
    assert got[0][0] == 200 and got[0][2] == b"service web"


async def test_head_404_405_redirects_and_http10(server: int) -> None:
    raw = await exchange(server, b"HEAD /v1/agent/service/web HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\n")
    assert b"Content-Length: 11\r\n" in raw
    got = responses(await exchange(server, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert got[0][0] == 404 and got[0][2] == b"404 page not found\n"
    got = responses(await exchange(server, b"POST /v1/agent/service/web HTTP/1.1\r\n"
                                           b"Connection: close\r\n\r\n"))
    assert got[0][0] == 405 and got[0][2] == b"method POST not allowed\n"
    got = responses(await exchange(server, b"GET /moved HTTP/1.1\r\nConnection: close\r\n\r\n"))
    assert got[0][0] == 302 and got[0][1]["location"] == "/elsewhere"
    raw = await exchange(server, b"GET /v1/agent/service/a HTTP/1.0\r\nConnection: keep-alive"
                                 b"\r\n\r\n", until_close=False)
    assert b"Connection: keep-alive\r\n" in raw


async def test_a_streamed_response_is_chunked(server: int) -> None:
    raw = await exchange(server, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"7\r\nline 0\n\r\n7\r\nline 1\n\r\n7\r\nline 2\n\r\n0\r\n\r\n"


async def test_idle_and_stalled_connections_are_closed_after_the_keepalive_timeout() -> None:
    app = web.Application()
    app.router.add_routes(routes)
    runner = web.AppRunner(app, keepalive_timeout=0.3)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    try:
        for sent in (b"GET /v1/agent/service/a HTTP/1.1\r\nHost: x\r\n\r\n",   # then idle
                     b"GET /v1/agent/service/a HTTP/1.1\r\nHost: x\r\n",        # stalls
                     b""):                                                       # says nothing
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            data = await asyncio.wait_for(reader.read(), 5)     # returns at the server's close
            assert loop.time() - t0 < 2, sent
            assert (b"service a" in data) == sent.endswith(b"\r\n\r\n"), (sent, data)
            writer.close()
    finally:
        await runner.cleanup()


VALID = (b"GET /v1/kv/k?tag=a HTTP/1.1\r\nHost: x\r\n\r\n",
         b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
         (b"PUT /v1/agent/service/register HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          b"\r\n5\r\nhello\r\n0\r\n\r\n"),
         b"GET /stream HTTP/1.0\r\n\r\n")
NASTY = (b"\r\n", b"\n", b"\x00", b" ", b":", b"%", b"%ff", b"\xff", b"-1", b"99999999999999999999",
         b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Expect: 100-continue\r\n",
         b"Upgrade: websocket\r\nConnection: Upgrade\r\n", b"HTTP/9.9", b"{", b"?" * 40)


def _mutate(rng: random.Random) -> bytes:
    data = bytearray(b"".join(rng.choice(VALID) for _ in range(rng.randint(1, 3))))
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(data) + 1)
        kind = rng.randrange(4)
        if kind == 0:
            data[pos:pos] = rng.choice(NASTY)
        elif kind == 1 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif kind == 2 and pos < len(data):
            data[pos] = rng.randrange(256)
        else:
            data = data[:pos]                          # cut short
    return bytes(data)


async def test_mangled_requests_get_an_answer_or_a_close_and_never_break_the_server(
        server: int, caplog: pytest.LogCaptureFixture) -> None:
    """Bad input is answered (4xx, or 2xx for what is still a valid request) or the connection
    closes; no handler-less 5xx, no unhandled error logged, and the server answers after."""
    rng = random.Random(20261207)
    for _ in range(300):
        data = _mutate(rng)
        reader, writer = await asyncio.open_connection("127.0.0.1", server)
        writer.write(data)
        writer.write_eof()
        got = await asyncio.wait_for(reader.read(), 5)      # the server ends the connection
        writer.close()
        for status in re.findall(rb"^HTTP/1\.1 (\d{3}) ", got, re.MULTILINE):
            assert int(status) < 500, (data, got[:300])
    assert not [r for r in caplog.records if r.name == "registry.web"]
    got = responses(await exchange(server, b"GET /v1/agent/service/ok HTTP/1.1\r\n"
                                           b"Connection: close\r\n\r\n"))
    assert got[0][:1] == (200,) and got[0][2] == b"service ok"


async def test_a_header_value_with_cr_or_lf_is_a_500_not_an_injected_header(server: int
                                                                             ) -> None:
    got = responses(await exchange(server, b"GET /echo?v=a HTTP/1.1\r\nConnection: close"
                                           b"\r\n\r\n"))
    assert got[0][0] == 200 and got[0][1]["x-echo"] == "a"
    raw = await exchange(server, b"GET /echo?v=a%0D%0ASet-Cookie:%20x=1 HTTP/1.1\r\n"
                                 b"Connection: close\r\n\r\n")
    got = responses(raw)
    assert got[0][0] == 500 and b"Set-Cookie" not in raw
    assert got[0][2] == b"internal error; see the agent log\n"

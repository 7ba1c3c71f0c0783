"""Helpers for tests and the benchmark: small real backends and a proxy runner.

* :func:`start_http_backend` - an aiohttp server that names itself in every answer and has
  endpoints for echoing, streaming, slow answers, headers and WebSocket echo.
* :func:`start_echo_backend` - a TCP echo server that answers after the client half-closes.
* ``python -m lb.testing http-backend NAME`` - the HTTP backend in its own process; prints
  ``PORT <n>`` (for kill -9 tests).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = [
    "EchoBackend",
    "HttpBackend",
    "start_echo_backend",
    "start_http_backend",
    "wait_for",
]


async def wait_for(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Wait until ``cond()`` is true, or raise TimeoutError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


@dataclass
class HttpBackend:
    name: str
    port: int
    runner: web.AppRunner
    hits: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)

    async def close(self) -> None:
        await self.runner.cleanup()


def _app(backend_ref: list[HttpBackend]) -> web.Application:
    def me() -> HttpBackend:
        return backend_ref[0]

    async def hello(request: web.Request) -> web.StreamResponse:
        b = me()
        b.hits += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            b.peers.add(tuple(peer[:2]))
        return web.Response(text=b.name)

    async def echo(request: web.Request) -> web.StreamResponse:
        me().hits += 1
        h = hashlib.sha256()
        n = 0
        async for chunk in request.content.iter_any():
            h.update(chunk)
            n += len(chunk)
        return web.json_response({"name": me().name, "len": n, "sha256": h.hexdigest(),
                                  "chunked": request.headers.get("Transfer-Encoding", "")})

    async def headers(request: web.Request) -> web.StreamResponse:
        me().hits += 1
        return web.json_response({"name": me().name, "headers": list(request.raw_headers and [
            [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers]),
            "path": request.path_qs, "method": request.method})

    async def slow(request: web.Request) -> web.StreamResponse:
        me().hits += 1
        await asyncio.sleep(float(request.query.get("d", "1")))
        return web.Response(text=me().name)

    async def big(request: web.Request) -> web.StreamResponse:
        """Stream n bytes of a repeating pattern (chunked unless ?cl=1)."""
        me().hits += 1
        n = int(request.query.get("n", "1048576"))
        resp = web.StreamResponse()
        if request.query.get("cl"):
            resp.content_length = n
        await resp.prepare(request)
        block = bytes(range(256)) * 256          # 64 KiB
        left = n
        while left > 0:
            part = block[:min(left, len(block))]
            await resp.write(part)
            left -= len(part)
        await resp.write_eof()
        return resp

    async def ws(request: web.Request) -> web.StreamResponse:
        me().hits += 1
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == WSMsgType.TEXT:
                await sock.send_str(f"{me().name}:{msg.data}")
            elif msg.type == WSMsgType.BINARY:
                await sock.send_bytes(msg.data)
        return sock

    app = web.Application(client_max_size=1 << 31)
    app.router.add_get("/", hello)
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/headers", headers)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    app.router.add_get("/ws", ws)
    app.router.add_get("/{tail:.*}", hello)
    return app


async def start_http_backend(name: str, host: str = "127.0.0.1", port: int = 0,
                             ssl_context: ssl.SSLContext | None = None) -> HttpBackend:
    """The backend on ``host:port`` (0: a free port); HTTPS when ``ssl_context`` is given."""
    ref: list[HttpBackend] = []
    runner = web.AppRunner(_app(ref), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server: Any = site._server
    real_port = server.sockets[0].getsockname()[1]
    ref.append(HttpBackend(name, real_port, runner))
    return ref[0]


class _Echo(asyncio.Protocol):
    def __init__(self, owner: EchoBackend) -> None:
        self.owner = owner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.owner.connections += 1
        self.owner.peer_headers.append(b"")

    def data_received(self, data: bytes) -> None:
        self.owner.received += len(data)
        if self.owner.mode == "echo":
            assert self.transport is not None
            self.transport.write(data)
        else:
            self.buf += data
            if len(self.owner.peer_headers[-1]) < 256:
                self.owner.peer_headers[-1] = self.owner.peer_headers[-1] + data[:256]

    def eof_received(self) -> bool:
        assert self.transport is not None
        if self.owner.mode == "reply-on-eof":
            self.transport.write(b"%s got %d bytes" % (self.owner.name.encode(), len(self.buf)))
        self.transport.write_eof()
        return True


@dataclass
class EchoBackend:
    """TCP server. mode 'echo': echo as it comes; 'reply-on-eof': collect until the client
    half-closes, then answer "<name> got N bytes" and close its side."""

    name: str
    mode: str = "echo"
    port: int = 0
    server: asyncio.AbstractServer | None = None
    connections: int = 0
    received: int = 0
    peer_headers: list[bytes] = field(default_factory=list)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def start_echo_backend(name: str, mode: str = "echo") -> EchoBackend:
    b = EchoBackend(name, mode)
    loop = asyncio.get_running_loop()
    b.server = await loop.create_server(lambda: _Echo(b), "127.0.0.1", 0)
    b.port = b.server.sockets[0].getsockname()[1]
    return b


async def _serve_forever(name: str) -> None:
    b = await start_http_backend(name)
    print(f"PORT {b.port}", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "http-backend":
        try:
            asyncio.run(_serve_forever(argv[1]))
        except KeyboardInterrupt:
            pass
        return 0
    print(json.dumps({"usage": "python -m lb.testing http-backend NAME"}))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

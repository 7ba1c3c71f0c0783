"""The HTTP/1.1 server under the agent's API: httptools (llhttp) parses, asyncio carries.

One :class:`_Conn` per connection. Requests are read whole (the body up to the application's
``client_max_size``; a larger one is counted and dropped, and the handler's ``read()`` answers
413), queued, and answered one after the other in order, so pipelined requests get their answers
in the order sent. Keep-alive as HTTP/1.1 says (``Connection: close`` and HTTP/1.0 honoured); a
connection idle for ``keepalive_timeout`` (no request being answered, no byte received) is
closed, whether between requests or stalled part-way through one. ``Expect: 100-continue`` is answered
before the body is read. Malformed requests get a 400 in plain text and the connection closes.

Handlers are not cancelled when their client goes away (aiohttp's default too): a write in
progress completes; a streamed response's next ``write`` raises ``ConnectionResetError``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from .multidict import Headers
from .request import Request
from .response import HTTPException, Response, StreamResponse, reason_of

if TYPE_CHECKING:
    import ssl

    from .app import Application

log = logging.getLogger("registry.web")

__all__ = ["AppRunner", "SockSite", "TCPSite"]

KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept (aiohttp's and nginx's default)."""
MAX_QUEUED = 16
"""Pipelined requests read ahead of the one being answered before reading pauses."""

_SAFE_SEP = re.compile(r"%2[fF]|%25")
_BREAKS_HEAD = re.compile(r"[\r\n\0]")
_NO_BODY = frozenset((204, 304))

_date_cache: list[Any] = [0, b""]
_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct",
           b"Nov", b"Dec")


def _date() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        t = time.gmtime(now)
        _date_cache[1] = b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
            _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year, t.tm_hour, t.tm_min,
            t.tm_sec)
    return _date_cache[1]  # type: ignore[no-any-return]


class PlainError(Exception):
    """An answer the server gives by itself, in plain text (a malformed request, a response
    that cannot be sent)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def split_target(target: bytes) -> tuple[str, str, str, str]:
    """(raw path with query, decoded path, path with only %2F/%25 kept encoded, query)."""
    if not target.startswith(b"/"):
        if target == b"*":
            return "*", "*", "*", ""
        try:
            parsed = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise PlainError(400, "invalid request target") from None
        path_b = parsed.path or b"/"
        target = path_b + (b"?" + parsed.query if parsed.query else b"")
    try:
        raw = target.decode("ascii")
    except UnicodeDecodeError:
        raw = target.decode("utf-8", "surrogateescape")
    raw_path, _, query = raw.partition("?")
    raw_path = raw_path.partition("#")[0]
    query = query.partition("#")[0]
    if "%" not in raw_path:
        return raw, raw_path, raw_path, query
    # Invalid UTF-8 after %-decoding becomes U+FFFD, as yarl (aiohttp) decodes it: the handler
    # refuses the value with its own reason (e.g. "Bad address").
    path = unquote(raw_path, errors="replace")
    pieces = _SAFE_SEP.split(raw_path)
    if len(pieces) == 1:
        safe = path
    else:
        seps = _SAFE_SEP.findall(raw_path)
        safe = unquote(pieces[0], errors="replace") + "".join(
            sep.upper() + unquote(p, errors="replace") for sep, p in zip(seps, pieces[1:]))
    return raw, path, safe, query


class _Stream:
    """The body writer of a prepared :class:`StreamResponse` (chunked on HTTP/1.1)."""

    __slots__ = ("_chunked", "_conn", "_head_only", "ended")

    def __init__(self, conn: _Conn, chunked: bool, head_only: bool) -> None:
        self._conn = conn
        self._chunked = chunked
        self._head_only = head_only
        self.ended = False

    async def drain(self) -> None:
        await self._conn.drain()

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn.closed:
            raise ConnectionResetError("the client closed the connection")
        if data and not self._head_only:
            if self._chunked:
                conn.transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            else:
                conn.transport.write(data)
        await conn.drain()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        conn = self._conn
        if self._chunked and not self._head_only and not conn.closed:
            conn.transport.write(b"0\r\n\r\n")


class _Conn(asyncio.Protocol):
    def __init__(self, runner: AppRunner) -> None:
        self._runner = runner
        self._app = runner.app
        self._max_body, self._max_field, self._max_line = runner.limits
        self._parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.closed = False
        self._queue: deque[tuple[Request | None, str, PlainError | None]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._reading = True
        self._broken = False
        self._eof = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._decoded = Headers()
        self._body: list[bytes] | None = []
        self._body_size = 0
        self._error: PlainError | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self._runner._conns.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._runner._conns.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._queue.clear()
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        if self._write_paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
            self._drain = None
            if self.closed:
                raise ConnectionResetError("the client closed the connection")

    def data_received(self, data: bytes) -> None:
        if self._broken:
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade (WebSocket, h2c) is not offered: the request was queued as a plain
            # one; what follows it on the connection is not HTTP/1.1 and is not read.
            self._set_reading(False)
        except httptools.HttpParserError as e:
            self._fail(self._error or PlainError(400, f"malformed request: {_reason(e)}"))
        except PlainError as e:
            self._fail(e)
        else:
            if self._task is None:
                # Mid-request with nothing being answered: a client that stalls part-way
                # through its headers or body is let go after the same idle time.
                self._arm_idle()

    def eof_received(self) -> bool | None:
        # A client that half-closes after its requests still gets their answers; with none
        # pending (or only part of one, which can no longer complete) the connection ends.
        self._eof = True
        self._set_reading(False)
        return self._task is not None

    # -- the parser's callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._max_line:
            self._error = PlainError(414, f"the request target is longer than "
                                          f"{self._max_line} bytes")
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self._max_field:
            self._error = PlainError(431, f"header {name[:64].decode('latin-1')!r} is longer "
                                          f"than {self._max_field} bytes")
            raise self._error
        self._headers.append((name, value))
        if len(self._headers) > 200:
            self._error = PlainError(431, "more than 200 header fields")
            raise self._error

    def on_headers_complete(self) -> None:
        length = None
        expect = False
        items = self._decoded._items
        for name, value in self._headers:
            items.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))
            lname = name.lower()
            if lname == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif lname == b"expect" and value.lower() == b"100-continue":
                expect = True
        if length is not None and length > self._max_body:
            self._body = None
            self._body_size = length
        elif expect and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        body = self._body
        if body is None:
            return
        self._body_size += len(chunk)
        if self._body_size > self._max_body:
            self._body = None
        else:
            body.append(chunk)

    def on_message_complete(self) -> None:
        parser = self._parser
        try:
            raw, path, safe, query = split_target(self._url)
        except PlainError as e:
            self._fail(e)
            return
        body = self._body
        version = (1, 1) if parser.get_http_version() == "1.1" else (1, 0)
        request = Request(
            method=parser.get_method().decode("ascii", "replace"), raw_path=raw, path=path,
            query_string=query, headers=self._decoded, version=version,
            keep_alive=parser.should_keep_alive(), app=self._app, transport=self.transport,
            conn=self, body=None if body is None else b"".join(body),
            body_size=self._body_size)
        self._queue.append((request, safe, None))
        self._reset_message()
        if len(self._queue) >= MAX_QUEUED:
            self._set_reading(False)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    # -- answering --------------------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            while self._queue and not self.closed:
                request, safe, error = self._queue.popleft()
                if not (self._reading or self._broken or self._eof) \
                        and len(self._queue) < MAX_QUEUED // 2:
                    self._set_reading(True)
                if error is not None or request is None:
                    assert error is not None
                    self._send_error(error)
                    return
                resp = await self._respond(request, safe)
                if self.closed:
                    return
                stream = resp._stream
                if stream is None:
                    self._send(resp, request)
                else:
                    stream.end()
                if not request.keep_alive or request._body is None:
                    self.transport.close()
                    return
        finally:
            self._task = None
            if not self.closed and not self._queue:
                if self._broken or self._eof:
                    self.transport.close()
                else:
                    self._arm_idle()

    async def _respond(self, request: Request, safe: str) -> StreamResponse:
        try:
            return await self._app._handle(request, safe)
        except HTTPException as e:
            return e
        except asyncio.CancelledError:
            raise
        except ConnectionResetError:
            return Response(status=500, text="connection reset\n")
        except Exception:
            log.exception("unhandled error in an HTTP handler path=%s method=%s",
                          request.path, request.method)
            return Response(status=500, text="internal error; see the agent log\n")

    def _head(self, resp: StreamResponse, request: Request, length: int | None,
              chunked: bool) -> bytearray:
        status = resp.status
        out = bytearray(b"HTTP/1.1 %d %b\r\n" % (status, (resp.reason or reason_of(status))
                                                      .encode("latin-1", "replace")))
        for name, value in resp.headers._items:
            lname = name.lower()
            if lname in ("content-length", "transfer-encoding", "connection", "date"):
                continue
            if _BREAKS_HEAD.search(name) or _BREAKS_HEAD.search(value):
                raise ValueError(f"header {name[:64]!r}: CR, LF or NUL in a header")
            out += b"%b: %b\r\n" % (name.encode("latin-1", "replace"),
                                    value.encode("utf-8", "surrogateescape"))
        if chunked:
            out += b"Transfer-Encoding: chunked\r\n"
        elif length is not None and status != 204 and not 100 <= status < 200:
            out += b"Content-Length: %d\r\n" % length
        out += b"Date: %b\r\n" % _date()
        if not request.keep_alive:
            if request.version >= (1, 1):
                out += b"Connection: close\r\n"
        elif request.version < (1, 1):
            out += b"Connection: keep-alive\r\n"
        out += b"\r\n"
        return out

    def _send(self, resp: StreamResponse, request: Request) -> None:
        body = resp._body if isinstance(resp, Response) else b""
        try:
            head = self._head(resp, request, len(body), chunked=False)
        except (ValueError, UnicodeEncodeError) as e:
            log.error("a handler's response cannot be sent path=%s: %s", request.path, e)
            self._send_error(PlainError(500, "internal error; see the agent log"))
            return
        if body and request.method != "HEAD" and resp.status not in _NO_BODY:
            head += body
        self.transport.write(head)

    def start_stream(self, resp: StreamResponse, request: Request) -> _Stream:
        if self.closed:
            raise ConnectionResetError("the client closed the connection")
        chunked = request.version >= (1, 1) and "Content-Length" not in resp.headers
        if not chunked and "Content-Length" not in resp.headers:
            request.keep_alive = False          # HTTP/1.0: the body ends with the connection
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        self.transport.write(self._head(resp, request, length, chunked))
        return _Stream(self, chunked, request.method == "HEAD")

    # -- errors and flow --------------------------------------------------------------------

    def _fail(self, error: PlainError) -> None:
        """Stop reading; answer ``error`` once the requests before it are answered."""
        self._broken = True
        self._set_reading(False)
        self._queue.append((None, "", error))
        if self._task is None and not self.closed:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    def _send_error(self, error: PlainError) -> None:
        body = (error.message.rstrip("\n") + "\n").encode("utf-8", "replace")
        self.transport.write(
            b"HTTP/1.1 %d %b\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\nDate: %b\r\n\r\n%b"
            % (error.status, reason_of(error.status).encode(), len(body), _date(), body))
        self.transport.close()

    def _set_reading(self, on: bool) -> None:
        if self._reading != on and not self.closed:
            self._reading = on
            try:
                (self.transport.resume_reading if on else self.transport.pause_reading)()
            except (AttributeError, RuntimeError):
                pass

    def _arm_idle(self) -> None:
        if self._idle is None and not self.closed:
            self._idle = asyncio.get_running_loop().call_later(
                self._runner.keepalive_timeout, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if self._task is None and not self.closed:
            self.transport.close()

    @property
    def busy(self) -> bool:
        return self._task is not None


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text[:200]


class AppRunner:
    """Serves an :class:`Application` on the sites started with it."""

    def __init__(self, app: Application, *, shutdown_timeout: float = 60.0,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.app = app
        self.limits = (app.client_max_size, int(app.handler_args.get("max_field_size", 8190)),
                       int(app.handler_args.get("max_line_size", 8190)))
        """(body, header field, request line) sizes; each connection reads them."""
        self.shutdown_timeout = shutdown_timeout
        self.keepalive_timeout = keepalive_timeout
        self._conns: set[_Conn] = set()
        self._servers: list[asyncio.base_events.Server] = []
        self._ready = False

    async def setup(self) -> None:
        self.app.router._frozen = True
        self._ready = True

    @property
    def addresses(self) -> list[Any]:
        return [s.getsockname() for srv in self._servers for s in (srv.sockets or ())]

    def _factory(self) -> _Conn:
        return _Conn(self)

    async def _serve_on(self, sock: socket.socket | None, host: str | None, port: int | None,
                        ssl_context: ssl.SSLContext | None, backlog: int) -> None:
        if not self._ready:
            raise RuntimeError("call setup() first")
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(self._factory, sock=sock, ssl=ssl_context,
                                              backlog=backlog)
        else:
            server = await loop.create_server(self._factory, host, port or 0, ssl=ssl_context,
                                              backlog=backlog, reuse_address=True)
        self._servers.append(server)

    async def cleanup(self) -> None:
        """Stop listening, close idle connections, give busy ones ``shutdown_timeout``."""
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            if not conn.busy:
                conn.transport.close()
        deadline = time.monotonic() + self.shutdown_timeout
        while any(c.busy for c in self._conns) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self._conns):
            task = conn._task
            if task is not None:
                task.cancel()
            conn.transport.close()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except TimeoutError:
                pass
        self._servers.clear()


class SockSite:
    def __init__(self, runner: AppRunner, sock: socket.socket, *,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        self._runner = runner
        self._sock = sock
        self._ssl = ssl_context
        self._backlog = backlog

    async def start(self) -> None:
        await self._runner._serve_on(self._sock, None, None, self._ssl, self._backlog)


class TCPSite:
    def __init__(self, runner: AppRunner, host: str | None = None, port: int | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, backlog: int = 128) -> None:
        self._runner = runner
        self._host = host
        self._port = port if port is not None else (8443 if ssl_context else 8080)
        self._ssl = ssl_context
        self._backlog = backlog

    async def start(self) -> None:
        await self._runner._serve_on(None, self._host, self._port, self._ssl, self._backlog)

"""HTTP/1.1 mode: a purpose-built reverse proxy on httptools parsers and asyncio Protocols.

Theory of operation
-------------------
A :class:`ClientConn` parses requests with ``httptools.HttpRequestParser``. Each request
becomes an :class:`Exchange`; exchanges queue in arrival order (pipelining) and only the first
is in flight. When a request head is complete the proxy

1. rewrites the head (:func:`lb.httphead.rewrite_request_head`, a pure function): hop-by-hop
   fields (Connection and the fields it names, Keep-Alive, Proxy-Connection, TE, Trailer,
   Transfer-Encoding, Upgrade) are dropped, X-Forwarded-For, X-Forwarded-Proto,
   X-Forwarded-Host and Forwarded are added (appended to when present), or refuses it;
2. routes it by Host and longest path prefix (:mod:`lb.routes`) to a pool;
3. picks a backend (strategy, per request) and takes an idle keep-alive connection to it
   from the backend's idle list, or opens a new one (a failed connect is reported to passive
   health and retried on the next backend; none left -> 503);
4. streams the body as it arrives: Content-Length bodies byte for byte, chunked ones re-framed
   chunk by chunk. Nothing is buffered beyond ``pipeline_buffer`` (reading pauses), and
   transport backpressure (``pause_writing``) pauses the other side's reading.

An :class:`UpstreamConn` parses the response with ``httptools.HttpResponseParser``, rewrites
its head the same way and streams its body back (re-chunking when the backend sends chunked
or close-delimited bodies to an HTTP/1.1 client). On completion the backend connection goes
back to the idle list when both sides allow keep-alive, and the next queued exchange starts.

A ``101 Switching Protocols`` answer to an Upgrade request switches both connections to plain
byte pumping (WebSocket and friends), with half-close passed through.

Errors: no route 404, no healthy instance or none accepting 503, a backend answering garbage
or dropping before the answer 502 (after the head has gone out the client connection is cut,
since nothing else can tell it), no response head within ``response_timeout`` 504, a head not
complete within ``header_timeout`` 408, oversize URL 414, oversize or too many header fields
431, oversize body 413, unparsable request 400. Error answers close the client connection.
Nothing raised by a peer's bytes leaves a protocol callback: the parsers' errors are caught in
``data_received`` and turned into one of these answers, counted by reason.

Timeouts are enforced by the listener's sweep (every ``sweep_interval``) from timestamps set
once per request, so the hot path arms no timer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import sys
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httptools

try:
    import fcntl
    import termios
    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):   # not Linux/Unix: no unacknowledged-bytes probe
    _TIOCOUTQ = None

from .httphead import (
    ForwardingFields,
    Rejection,
    forwarding_fields,
    redirect_response,
    rewrite_request_head,
)
from .listener import Listener
from .proxyproto import proxy_header

if TYPE_CHECKING:
    from .pool import Pool
    from .strategy import Backend

log = logging.getLogger(__name__)

__all__ = ["ClientConn", "HttpListener", "UpstreamConn"]

# response fields we drop or rewrite; the value says what to do with it (the request's
# are in lb.httphead)
_SKIP, _CLEN, _TE, _CONN, _UPG = range(5)
_RESP_SPECIAL = {
    b"content-length": _CLEN, b"transfer-encoding": _TE, b"connection": _CONN,
    b"upgrade": _UPG, b"keep-alive": _SKIP, b"proxy-connection": _SKIP, b"te": _SKIP,
    b"trailer": _SKIP,
}
_BENIGN_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade", b""})  # name no other field
_STATUS_LINES = {int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode())
                 for s in HTTPStatus}

_LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_NO_FIELDS = forwarding_fields("", b"")   # until connection_made
_LINGER = 2.0   # seconds to drain a client's input after an error answer

# reasons the client side pauses reading (bit mask)
_P_PIPELINE, _P_BACKPRESSURE, _P_PENDING, _P_UPGRADE = 1, 2, 4, 8


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def error_response(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
    body = f"{status} {phrase}: {message}\n".encode()
    return (_status_line(status) + b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


class Exchange:
    """One request and its response."""

    __slots__ = (
        "backend",
        "body_seen",
        "chunked",
        "close_after",
        "connecting",
        "dispatched",
        "error",
        "has_body",
        "head",
        "http10",
        "idempotent",
        "is_head",
        "keep_alive",
        "local",
        "pending",
        "pending_bytes",
        "pool",
        "req_done",
        "resp_done",
        "resp_started",
        "retries",
        "sent_at",
        "tried",
        "upgrade",
        "upstream",
    )

    def __init__(self) -> None:
        self.head = b""
        self.pool: Pool | None = None
        self.keep_alive = True
        self.is_head = False
        self.http10 = False
        self.chunked = False
        self.has_body = False
        self.body_seen = 0
        self.upgrade = False
        self.pending: list[bytes] = []      # body bytes (framed) waiting for the upstream
        self.pending_bytes = 0
        self.req_done = False
        self.upstream: UpstreamConn | None = None
        self.backend: Backend | None = None
        self.tried: list[Backend] = []
        self.sent_at = 0.0
        self.resp_started = False
        self.resp_done = False
        self.close_after = False
        self.dispatched = False
        self.connecting: asyncio.Task[None] | None = None
        self.error: tuple[int, str, str] | None = None
        self.idempotent = False
        self.retries = 0
        self.local: bytes | None = None     # an answer of our own (a redirect): not proxied


class HttpListener(Listener):
    """Serves HTTP/1.1 clients, one backend pool per route target."""

    server: asyncio.AbstractServer | None = None

    @property
    def host_header(self) -> bytes:
        h, p = self.local_addr
        return (f"[{h}]:{p}" if ":" in h else f"{h}:{p}").encode()

    async def start(self) -> None:
        if self.terminates_tls:
            # accept ourselves so that a failed handshake reaches us and is counted
            self.watch_accept()
        else:
            self.sock.setblocking(False)
            self.server = await self.loop.create_server(lambda: ClientConn(self),
                                                        sock=self.sock, backlog=1024)
            self.accepting = True
        self.start_sweeper()

    def stop_accepting(self) -> None:
        if self.server is None:
            self.unwatch_accept()
        elif self.accepting:
            self.accepting = False
            self.server.close()

    def _accepted(self, csock: socket.socket, caddr: Any) -> None:
        self.spawn_handshake(self.tls_accept(lambda: ClientConn(self), csock))

    def refresh(self, view: Any) -> None:
        pools = self.every_pool()
        super().refresh(view)
        # idle keep-alive connections to backends that left carry no request: close them now
        for pool in {*pools, *self.every_pool()}:
            left, pool.left = pool.left, []
            for b in left:
                self._close_idle(b)
                # a request the backend that left never even acknowledged (its node is cut
                # off) and that is safe to resend goes elsewhere now; everything else on it
                # drains (keeps waiting for its answer until drain_timeout)
                for up in list(b.conns):
                    if isinstance(up, UpstreamConn) and up.request_unacked():
                        up.retry_elsewhere()

    @staticmethod
    def _close_idle(b: Backend) -> None:
        idle, b.idle = b.idle, []
        for up in idle:
            up.close()

    def _sweep(self) -> None:
        now = self.now = self.loop.time()
        limit = self.config.pool_idle_timeout
        for pool in self.every_pool():
            for b in pool.backends:
                if b.idle and now - b.idle[0].idle_since > limit:
                    keep = [u for u in b.idle if now - u.idle_since <= limit]
                    for u in b.idle:
                        if now - u.idle_since > limit:
                            u.close()
                    b.idle = keep
        super()._sweep()

    def begin_close(self, drain_timeout: float) -> None:
        super().begin_close(drain_timeout)
        for b in self.all_backends():
            self._close_idle(b)


class ClientConn(asyncio.Protocol):
    """One client connection in HTTP mode."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.loop = listener.loop
        self.config = listener.config
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client_ip = ""
        self.fields: ForwardingFields = _NO_FIELDS
        self.exchanges: deque[Exchange] = deque()
        self.cur: Exchange | None = None
        self.out: list[bytes] = []
        self.paused = 0
        self.write_paused = False
        self.in_head = False
        self.head_started = 0.0
        self.head_bytes = 0
        self.last_active = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.tunnel: UpstreamConn | None = None
        self.eof = False
        self.closed = False
        self.dead = False         # parser stopped: an error answer is due or was sent
        self.abnormal = False     # tunnel, dead or holding post-Upgrade bytes: slow path
        self.feed_len = 0
        self.lingering = 0.0
        self.draining = False
        # PROXY protocol listeners keep their backend connections per client connection
        # the previous request's fields, whether it asked to upgrade, and what the rewrite
        # made of them after the request line (see on_headers_complete)
        self.last_rewrite: tuple[list[tuple[bytes, bytes]], bool, tuple[
            bytes, bytes | None, bool, bool, bool]] | None = None
        self.own_idle: dict[Backend, UpstreamConn] | None = (
            {} if listener.spec.proxy_protocol else None)

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        listener = self.listener
        st = listener.stats
        st.connections += 1
        if len(listener.conns) >= listener.max_connections:
            st.rejected += 1
            listener.counters.problem("max_connections", "listener=%s limit=%d",
                                      listener.spec.name, listener.max_connections)
            self.closed = True
            self.transport.abort()
            return
        listener.conns.add(self)
        st.active += 1
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        self.fields = forwarding_fields(self.client_ip, listener.host_header, listener.proto)
        self.last_active = self.loop.time()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed and self not in self.listener.conns:
            return
        self.closed = True
        listener = self.listener
        if self in listener.conns:
            listener.conns.discard(self)
            listener.stats.active -= 1
        for ex in self.exchanges:
            if ex.connecting is not None:
                ex.connecting.cancel()
            up = ex.upstream
            if up is not None and not ex.resp_done:
                up.abort()
        if self.tunnel is not None:
            if exc is None:
                self.tunnel.close()
            else:
                self.tunnel.abort()
        self.exchanges.clear()
        if self.own_idle:
            for up in self.own_idle.values():
                up.close()
            self.own_idle.clear()

    def _upstream_now(self) -> UpstreamConn | None:
        up = self.tunnel
        if up is None and self.exchanges:
            up = self.exchanges[0].upstream
        return up if up is not None and not up.closed else None

    def pause_writing(self) -> None:
        self.write_paused = True
        up = self._upstream_now()
        if up is not None:
            up.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        up = self._upstream_now()
        if up is not None:
            up.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        if self.lingering:
            return False
        if self.tunnel is not None:
            t = self.tunnel.transport
            if t.can_write_eof():
                t.write_eof()
            return not self.tunnel.eof
        if self.in_head and len(self.exchanges) <= 1:
            # the client gave up in the middle of a head and nothing else is in flight:
            # close now rather than hold its slot until header_timeout
            self.in_head = False
            return False
        # answer what is in flight, then close (an SSL transport closes on EOF regardless)
        return bool(self.exchanges) and not self.dead and not self.listener.terminates_tls

    def data_received(self, data: bytes) -> None:
        listener = self.listener
        n = len(data)
        listener.stats.bytes_in += n
        if self.abnormal:
            if self.tunnel is not None:
                self.tunnel.transport.write(data)
                self.tunnel.backend.bytes_in += n
            elif not self.dead and self.exchanges:
                # bytes after an Upgrade request, before the backend's 101: hold them
                self._hold(self.exchanges[0], data)
            return
        was_in_head = self.in_head
        self.feed_len = n
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            off = e.args[0] if e.args else len(data)
            ex = self.cur
            if ex is not None and ex.local is not None:
                # an upgrade asked of a redirecting listener: answer, then close
                ex.req_done = True
                self.dead = self.abnormal = True
                self._answer_locals()
                return
            if ex is not None and off < len(data):
                self._hold(ex, data[off:])
            self.abnormal = True
            self._pause(_P_UPGRADE)
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            if isinstance(ctx, Rejection):
                self._refuse(ctx.status, ctx.reason, ctx.counter)
            else:
                listener.counters.problem("internal_error", "listener=%s err=%r",
                                          listener.spec.name, ctx)
                log.error("lb http callback failed", exc_info=ctx)
                self._refuse(500, "internal proxy error", "internal_error")
        except httptools.HttpParserError as e:
            reason = (e.args[0] if e.args else "malformed request")
            self._refuse(400, f"malformed request ({reason})", "bad_request")
        except Exception as e:     # never let anything escape a protocol callback
            log.exception("lb http data_received failed")
            self._refuse(500, f"internal proxy error ({type(e).__name__})", "internal_error")
        else:
            if self.listener.redirect is not None and self.exchanges:
                self._answer_locals()
            if self.in_head:
                # still inside a head: count what it has taken so far (an upper bound when
                # this read also held the end of the previous message)
                self.head_bytes = self.head_bytes + len(data) if was_in_head else len(data)
            if self.in_head and self.head_bytes > self.config.max_header_bytes:
                self._refuse(431, f"request head larger than {self.config.max_header_bytes} "
                             "bytes", "header_too_large")
            elif self.in_head and len(self.headers) > self.config.max_headers:
                self._refuse(431, f"more than {self.config.max_headers} header fields",
                             "too_many_headers")
        exchanges = self.exchanges
        if exchanges:
            if len(exchanges) > 1:
                self._pause(_P_PIPELINE)
            up = exchanges[0].upstream     # (flush_all, inline: once per read)
            if up is not None and up.out:
                up.flush()
        if self.out:
            self.flush()

    def _answer_locals(self) -> None:
        """Answer the requests at the head of the queue that we answer ourselves."""
        while self.exchanges and not self.closed:
            ex = self.exchanges[0]
            if ex.local is None or not ex.req_done or ex.error is not None:
                return
            self.out.append(ex.local)
            ex.resp_done = True
            ex.close_after = not ex.keep_alive
            self.exchange_done(ex)
            self.flush()

    def flush_all(self) -> None:
        """Write what this connection's current exchange queued, both directions."""
        if self.exchanges:
            up = self.exchanges[0].upstream
            if up is not None and up.out:
                up.flush()
        if self.out:
            self.flush()

    def _hold(self, ex: Exchange, data: bytes) -> None:
        if ex.upstream is not None and ex.upstream.tunnel:
            ex.upstream.transport.write(data)
        else:
            ex.pending.append(data)
            ex.pending_bytes += len(data)
            if ex.pending_bytes > self.config.pipeline_buffer:
                self._pause(_P_PENDING)

    # -- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self) -> None:
        ex = Exchange()
        self.cur = ex
        self.exchanges.append(ex)
        self.in_head = True
        self.head_started = self.listener.now
        self.head_bytes = 0
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.config.max_request_line:
            raise Rejection(414, f"request target longer than {self.config.max_request_line} "
                          "bytes", "uri_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))     # counted in on_headers_complete/data_received

    def on_headers_complete(self) -> None:
        self.in_head = False
        ex = self.cur
        assert ex is not None
        parser = self.parser
        method = parser.get_method()
        ex.is_head = method == b"HEAD"
        ex.idempotent = method in (b"GET", b"HEAD", b"OPTIONS")
        ex.keep_alive = keep_alive = parser.should_keep_alive()
        headers = self.headers
        # HTTP/1.0 keeps the connection only when a Connection field says keep-alive, and 1.1
        # unless one says close: with keep-alive and no Connection field the request is 1.1,
        # and the version (a str the parser formats on every call) is not asked for
        if not keep_alive:
            ex.http10 = parser.get_http_version() == "1.0"
        else:
            for name, _ in headers:
                if len(name) == 10 and name.lower() == b"connection":
                    ex.http10 = parser.get_http_version() == "1.0"
                    break
        redirect = self.listener.redirect
        if redirect is not None:
            host = None
            for name, value in headers:
                if name.lower() == b"host":
                    host = value
            if parser.should_upgrade():
                ex.keep_alive = False
            # raises Rejection (400) for a Host that cannot go into a URL
            ex.local = redirect_response(redirect.code, host, self.url, redirect.port,
                                         self.listener.local_addr[0].encode(), ex.keep_alive,
                                         ex.http10)
            return
        url = self.url
        upgrade = parser.should_upgrade()
        seen = self.head_bytes + self.feed_len
        last = self.last_rewrite
        if (last is not None and headers == last[0] and upgrade == last[1]
                and url[:1] == b"/" and method != b"CONNECT"
                and seen <= self.config.max_header_bytes):
            # The same fields as this connection's previous request (keep-alive clients
            # repeat them): for an origin-form target the rewrite is a function of the fields
            # alone after the request line, so only that line is new. (The size limit is
            # out of the picture below max_header_bytes, CONNECT and absolute form differ.)
            rest, host, ex.upgrade, ex.chunked, ex.has_body = last[2]
            ex.head = b"%s %s HTTP/1.1\r\n%s" % (method, url, rest)
        else:
            # raises Rejection, which stops the parser and is answered in data_received
            ex.head, host, url, ex.upgrade, ex.chunked, ex.has_body = rewrite_request_head(
                method, url, headers, upgrade, self.fields, self.config, seen)
            if url is self.url and url[:1] == b"/":
                self.last_rewrite = (headers, upgrade, (
                    ex.head[len(method) + len(url) + 12:], host, ex.upgrade, ex.chunked,
                    ex.has_body))
        listener = self.listener
        routes = listener.routes
        if routes is None:
            target = None
        else:
            target = routes.single
            if target is None:
                target = routes.match(host, url)
        if target is None:
            raise Rejection(404, "no route for host "
                          f"{(host or b'').decode('latin-1')!r} path "
                          f"{url.decode('latin-1')[:200]!r}", "no_route")
        ex.pool = listener.pools.get(target)
        if ex is self.exchanges[0]:
            self.dispatch(ex)

    def on_body(self, data: bytes) -> None:
        ex = self.cur
        assert ex is not None
        if ex.local is not None:
            return      # the body of a request we answer ourselves is read and dropped
        if ex.chunked:
            ex.body_seen += len(data)
            if self.config.max_body and ex.body_seen > self.config.max_body:
                raise Rejection(413, "chunked request body larger than the limit of "
                              f"{self.config.max_body} bytes", "body_too_large")
            framed: tuple[bytes, ...] = (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            framed = (data,)
        up = ex.upstream
        if up is not None and up.ready:
            up.out.extend(framed)
        else:
            ex.pending.extend(framed)
            ex.pending_bytes += len(data)
            if ex.pending_bytes > self.config.pipeline_buffer:
                self._pause(_P_PENDING)

    def on_message_complete(self) -> None:
        ex = self.cur
        assert ex is not None
        ex.req_done = True
        if ex.chunked:
            up = ex.upstream
            if up is not None and up.ready:
                up.out.append(b"0\r\n\r\n")
            else:
                ex.pending.append(b"0\r\n\r\n")

    # -- flow -----------------------------------------------------------------------------
    def dispatch(self, ex: Exchange) -> None:
        """Send ``ex`` to a backend: an idle pooled connection, else a new one."""
        if ex.error is not None:
            self._answer_error(*ex.error)
            return
        pool = ex.pool
        listener = self.listener
        now = self.listener.now
        while True:
            b = pool.pick(now, ex.tried) if pool is not None else None
            if b is None or len(ex.tried) >= self.config.connect_attempts:
                service = pool.service if pool is not None else listener.spec.service
                if not ex.tried:
                    self._fail(ex, 503, f"no healthy instance of service {service!r}",
                               "no_backend")
                else:
                    self._fail(ex, 503, f"no instance of service {service!r} accepted a "
                               f"connection (tried {len(ex.tried)})", "connect_failed")
                return
            ex.backend = b
            ex.dispatched = True
            if self.own_idle is not None:
                # PROXY protocol: backend connections carry this client's address, so they
                # are kept per client connection, never shared through the backend's pool
                mine = self.own_idle.pop(b, None)
                if mine is not None and not mine.closed:
                    mine.attach(self, ex)
                    return
                ex.tried.append(b)
                ex.connecting = self.loop.create_task(self._connect(ex, b))
                return
            idle = b.idle
            while idle:
                up = idle.pop()
                if not up.closed:
                    up.attach(self, ex)
                    return
            ex.tried.append(b)
            ex.connecting = self.loop.create_task(self._connect(ex, b))
            return

    async def _connect(self, ex: Exchange, b: Backend) -> None:
        listener = self.listener
        b.connections += 1
        try:
            async with asyncio.timeout(listener.connect_timeout):
                host = b.host
                if b.sockaddr is None and listener.resolver is not None:
                    host = (await listener.resolver.resolve(host))[0]  # aiodns, TTL-cached
                _, up = await self.loop.create_connection(
                    lambda: UpstreamConn(listener, b), host, b.port,
                    **listener.tls.backend_ssl(listener.spec, b, listener.connect_timeout))
        except asyncio.CancelledError:
            raise
        except (OSError, TimeoutError) as e:
            ex.connecting = None
            if isinstance(e, ssl.SSLError):
                listener.counters.problem("backend_tls_failed", "listener=%s backend=%s:%d "
                                          "err=%s", listener.spec.name, b.host, b.port, e)
            if getattr(e, "errno", None) in _LOCAL_ERRNOS:
                # our own shortage (descriptors, memory), not the backend's fault
                listener.counters.problem("local_resources", "listener=%s err=%s",
                                          listener.spec.name, e)
                if not self.closed and self.exchanges and self.exchanges[0] is ex:
                    self._fail(ex, 503, "the proxy is out of resources", "local_resources")
                return
            log.debug("lb http connect failed backend=%s:%d err=%s", b.host, b.port, e)
            if ex.pool is not None:
                ex.pool.report_failure(b, self.loop.time())
            if not self.closed and self.exchanges and self.exchanges[0] is ex:
                self.dispatch(ex)
                self.flush_all()
            return
        ex.connecting = None
        if self.closed or not self.exchanges or self.exchanges[0] is not ex:
            up.close()
            return
        pp = listener.spec.proxy_protocol
        if pp:
            peer = self.transport.get_extra_info("peername")
            up.out.append(proxy_header(pp, peer[:2], listener.local_addr))
            up.owner = self
        up.attach(self, ex)
        self.flush_all()

    def _pause(self, why: int) -> None:
        if not self.paused and not self.closed:
            self.transport.pause_reading()
        self.paused |= why

    def _resume(self, why: int) -> None:
        if self.paused & why:
            self.paused &= ~why
            if not self.paused and not self.closed:
                self.transport.resume_reading()

    def flush(self) -> None:
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.listener.stats.bytes_out += len(data)
            if not self.closed:
                self.transport.write(data)

    def exchange_done(self, ex: Exchange) -> None:
        """The response to the first exchange has been fully relayed."""
        if self.exchanges and self.exchanges[0] is ex:
            self.exchanges.popleft()
        self.listener.stats.requests += 1
        self.last_active = self.listener.now
        if (ex.close_after or not ex.keep_alive or self.eof or self.draining
                or not ex.req_done):
            self.flush()
            self.close()
            return
        if self.exchanges:
            nxt = self.exchanges[0]
            if nxt.error is not None:
                self.flush()
                self._answer_error(*nxt.error)
                return
            if nxt.pool is not None or nxt.head:
                self.dispatch(nxt)
        if self.paused & _P_PIPELINE and len(self.exchanges) <= 1:
            self._resume(_P_PIPELINE)

    def _refuse(self, status: int, reason: str, counter: str) -> None:
        """The client's request cannot be served: answer once its turn comes, then close."""
        self.dead = True
        self.abnormal = True
        self.in_head = False
        ex = self.cur
        if ex is not None and ex.dispatched and not ex.resp_done and ex in self.exchanges:
            # mid-body (e.g. a chunked body over the limit): this exchange is in flight
            if ex.connecting is not None:
                ex.connecting.cancel()
            if ex.upstream is not None:
                ex.upstream.abort()
            self._fail(ex, status, reason, counter)
            return
        if ex is None or ex.resp_done or ex not in self.exchanges:
            ex = Exchange()
            self.exchanges.append(ex)
        ex.error = (status, reason, counter)
        if ex is self.exchanges[0]:
            self._answer_error(status, reason, counter)
        else:
            self._pause(_P_PIPELINE)

    def _answer_error(self, status: int, reason: str, counter: str) -> None:
        listener = self.listener
        listener.stats.error(counter)
        listener.counters.problem(counter, "listener=%s client=%s status=%d reason=%s",
                                  listener.spec.name, self.client_ip, status, reason)
        self.dead = True
        self.abnormal = True
        self.out.append(error_response(status, reason))
        self.flush()
        self._linger()

    def _linger(self) -> None:
        """Half-close after an error answer and discard what the client still sends, so the
        kernel does not reset the connection (and lose the answer) over unread input; the
        sweep closes it for good after ``_LINGER`` seconds."""
        if self.closed:
            return
        if self.tunnel is None and self.transport.can_write_eof():
            self.lingering = self.loop.time()
            self._resume(0xFF)
            self.transport.write_eof()
            for ex in self.exchanges:
                if ex.connecting is not None:
                    ex.connecting.cancel()
                if ex.upstream is not None and not ex.resp_done:
                    ex.upstream.abort()
            self.exchanges.clear()
        else:
            self.close()

    def _fail(self, ex: Exchange, status: int, reason: str, counter: str) -> None:
        """Exchange ``ex`` failed: answer ``status`` if nothing of its response went out,
        else cut the connection (the only way left to tell the client)."""
        if ex.resp_started:
            self.listener.stats.error(counter)
            self.listener.counters.problem(counter, "listener=%s status=%d reason=%s (cut)",
                                           self.listener.spec.name, status, reason)
            self.flush()
            self.abort()
        else:
            self._answer_error(status, reason, counter)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()
            self.connection_lost(None)

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abort()
            self.connection_lost(None)

    def begin_drain(self) -> None:
        self.draining = True
        if not self.exchanges and self.tunnel is None:
            self.close()

    def sweep(self, now: float) -> None:
        cfg = self.config
        if self.lingering:
            if now - self.lingering > _LINGER:
                self.close()
            return
        if self.in_head:
            if now - self.head_started > cfg.header_timeout:
                self._refuse(408, f"request head not received within {cfg.header_timeout}s",
                             "header_timeout")
            return
        if self.tunnel is not None:
            return
        if not self.exchanges:
            if now - self.last_active > cfg.client_keepalive_timeout:
                self.listener.stats.events["keepalive_timeout"] += 1
                self.close()
            return
        ex = self.exchanges[0]
        up = ex.upstream
        if (up is not None and ex.sent_at and not ex.resp_started and not up.got_bytes
                and now - ex.sent_at > self.listener.connect_timeout
                and now - ex.sent_at <= cfg.response_timeout and up.request_unacked()):
            # the backend has not even acknowledged the request for a connect timeout:
            # treat it like a failed connect (passive health) and resend if that is safe
            if ex.pool is not None:
                ex.pool.report_failure(up.backend, now)
            if up.retry_elsewhere():
                return
        if ex.sent_at and not ex.resp_started and now - ex.sent_at > cfg.response_timeout:
            up = ex.upstream
            if up is not None:
                if ex.pool is not None:
                    ex.pool.report_failure(up.backend, now)
                up.abort()
            self._fail(ex, 504, f"backend did not answer within {cfg.response_timeout}s",
                       "response_timeout")


class UpstreamConn(asyncio.Protocol):
    """One connection to a backend; serves one exchange at a time, then idles in the pool."""

    def __init__(self, listener: HttpListener, backend: Backend) -> None:
        self.listener = listener
        self.backend = backend
        self.loop = listener.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpResponseParser(self)
        self.client: ClientConn | None = None
        self.ex: Exchange | None = None
        self.out: list[bytes] = []
        self.ready = False
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self.got_bytes = False
        self.tunnel = False
        self.eof = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.rechunk = False
        self.until_close = False
        self.fresh_parser = False
        self.write_paused = False
        self.head_bytes = 0
        self.owner: ClientConn | None = None    # PROXY protocol: the one client it serves

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def attach(self, client: ClientConn, ex: Exchange) -> None:
        b = self.backend
        self.client = client
        self.ex = ex
        ex.upstream = self
        self.got_bytes = False
        self.headers = []
        self.head_bytes = 0
        if self.fresh_parser:
            self.parser = httptools.HttpResponseParser(self)
            self.fresh_parser = False
        b.active += 1
        b.requests += 1
        b.conns.add(self)
        self.ready = True
        ex.sent_at = self.listener.now
        if ex.pending:
            self.out += (ex.head, *ex.pending)
            ex.pending = []
            ex.pending_bytes = 0
        else:
            self.out.append(ex.head)
        if client.paused & _P_PENDING:
            client._resume(_P_PENDING)
        if self.write_paused:
            client._pause(_P_BACKPRESSURE)
        if client.write_paused:
            self.transport.pause_reading()

    def flush(self) -> None:
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.backend.bytes_in += len(data)
            if not self.closed:
                self.transport.write(data)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.client is not None:
            self.client._pause(_P_BACKPRESSURE)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.client is not None:
            self.client._resume(_P_BACKPRESSURE)

    def eof_received(self) -> bool:
        self.eof = True
        if self.tunnel and self.client is not None and not self.client.closed:
            t = self.client.transport
            if t.can_write_eof():
                t.write_eof()
            return not self.client.eof
        return False

    def data_received(self, data: bytes) -> None:
        client = self.client
        self.backend.bytes_out += len(data)
        if self.tunnel:
            if client is not None and not client.closed:
                client.listener.stats.bytes_out += len(data)
                client.transport.write(data)
            return
        ex = self.ex
        if ex is None or client is None:
            # a backend talking while idle in the pool: not reusable
            self.close()
            return
        self.got_bytes = True
        if not ex.resp_started:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            off = e.args[0] if e.args else len(data)
            if self.tunnel and off < len(data):
                client.out.append(data[off:])
        except httptools.HttpParserCallbackError as e:
            ctx = e.__context__
            reason = ctx.reason if isinstance(ctx, Rejection) else f"proxy error {ctx!r}"
            self._bad_response(ex, client, reason)
        except httptools.HttpParserError as e:
            self._bad_response(ex, client, "backend sent an invalid HTTP response ("
                               f"{e.args[0] if e.args else 'parse error'})")
        except Exception as e:
            log.exception("lb upstream data_received failed")
            self._bad_response(ex, client, f"proxy error {type(e).__name__}")
        else:
            if not ex.resp_started and self.head_bytes > self.listener.config.max_header_bytes:
                self._bad_response(ex, client, "backend sent an oversize response head")
        exchanges = client.exchanges     # (client.flush_all, inline)
        if exchanges:
            up = exchanges[0].upstream      # this one, or the next request's when it went on
            if up is not None and up.out:
                up.flush()
        if client.out:
            client.flush()

    def _bad_response(self, ex: Exchange, client: ClientConn, reason: str) -> None:
        if ex.pool is not None:
            ex.pool.report_failure(self.backend, self.loop.time())
        self.abort()
        if not ex.resp_done:
            client._fail(ex, 502, reason, "bad_response")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        b = self.backend
        if self in b.idle:
            b.idle.remove(self)
        ex = self.ex
        client = self.client
        self._detach()
        b.conns.discard(self)
        if self.tunnel:
            if client is not None and not client.closed:
                client.flush()
                if exc is None:
                    client.close()
                else:
                    client.abort()
            return
        if ex is None or client is None or ex.resp_done or client.closed:
            return
        if self.until_close and ex.resp_started:
            # close-delimited response: the close is its end
            if self.rechunk:
                client.out.append(b"0\r\n\r\n")
            ex.resp_done = True
            ex.close_after = True
            client.exchange_done(ex)
            return
        if (not ex.resp_started and not self.got_bytes and not ex.has_body and not ex.upgrade
                and (self.reused or ex.idempotent)
                and ex.retries < self.listener.config.connect_attempts):
            # Nothing came back and resending is safe (RFC 9112 9.3.1: a pooled connection the
            # backend closed as we reused it, or an idempotent request whose backend died)
            ex.retries += 1
            if not self.reused:
                if ex.pool is not None:
                    ex.pool.report_failure(b, self.loop.time())
                if b not in ex.tried:
                    ex.tried.append(b)
            ex.upstream = None
            ex.sent_at = 0.0
            client.dispatch(ex)
            client.flush_all()
            return
        if ex.pool is not None:
            ex.pool.report_failure(b, self.loop.time())
        if not ex.resp_started:
            client._fail(ex, 502, "backend closed the connection before answering",
                         "backend_closed")
        else:
            client._fail(ex, 502, "backend closed the connection mid-response",
                         "backend_closed")

    def _detach(self) -> None:
        if self.ex is not None:
            self.ex = None
            b = self.backend
            b.active -= 1
            b.conns.discard(self)
        self.ready = False

    # -- httptools callbacks --------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))     # counted in on_headers_complete/data_received

    def on_headers_complete(self) -> None:
        ex = self.ex
        client = self.client
        if ex is None or client is None:
            return
        parser = self.parser
        status = parser.get_status_code()
        headers, self.headers = self.headers, []
        if len(headers) > self.listener.config.max_headers:
            raise Rejection(502, "backend sent too many header fields", "bad_response")
        if 100 <= status < 200 and status != 101:
            if not ex.http10:     # interim answer (100 Continue...): relay, wait for the next
                client.out.append(_status_line(status) + b"\r\n")
            return
        self.status = status
        out = [_STATUS_LINES.get(status) or _status_line(status)]
        special = _RESP_SPECIAL
        clen = False
        te = False
        upg = None
        conn: list[bytes] | None = None
        for name, value in headers:
            kind = special.get(name.lower())
            if kind is None:
                out += (name, b": ", value, b"\r\n")
            elif kind == _CLEN:
                clen = True
                out += (name, b": ", value, b"\r\n")
            elif kind == _TE:
                te = True
            elif kind == _UPG:
                upg = value
            elif kind == _CONN and value.lower() not in _BENIGN_TOKENS:   # (keep-alive)
                conn = [value] if conn is None else [*conn, value]
        if conn is not None:
            named = {t.strip().lower() for v in conn for t in v.split(b",")} - _BENIGN_TOKENS
            if named:
                # the fields the backend's Connection names are hop-by-hop too (RFC 9110 7.6.1)
                out = [out[0]]
                for name, value in headers:
                    low = name.lower()
                    kind = special.get(low)
                    if (kind is None or kind == _CLEN) and (kind == _CLEN or low not in named):
                        out += (name, b": ", value, b"\r\n")
        limit = self.listener.config.max_header_bytes
        if self.head_bytes > limit and sum(len(k) + len(v) + 4 for k, v in headers) > limit:
            raise Rejection(502, "backend sent an oversize response head", "bad_response")
        no_body = ex.is_head or status in (204, 304) or status == 101
        self.rechunk = False
        self.until_close = False
        close = not ex.keep_alive or client.draining or client.eof or not ex.req_done
        if status == 101:
            out += (b"Connection: upgrade\r\nUpgrade: ", upg or b"", b"\r\n")
        elif not no_body and not clen:
            if not te:
                self.until_close = True
            if ex.http10:
                close = True
            else:
                self.rechunk = True
                out.append(b"Transfer-Encoding: chunked\r\n")
        if ex.upgrade and status != 101:
            close = True
        if close:
            ex.close_after = True
            out.append(b"Connection: close\r\n\r\n")
        elif ex.http10:
            out.append(b"Connection: keep-alive\r\n\r\n")
        else:
            out.append(b"\r\n")
        client.out += out       # joined with the body by flush: one join per answer
        ex.resp_started = True
        self.head_bytes = 0
        if status == 101 and ex.upgrade:
            self._switch_to_tunnel(ex, client)
        elif ex.is_head:
            # the parser would wait for a body the backend never sends after HEAD
            self.fresh_parser = True
            self._finish(ex, client, parser.should_keep_alive())

    def on_body(self, data: bytes) -> None:
        client = self.client
        if client is None or self.ex is None:
            return
        if self.rechunk:
            client.out += (b"%x\r\n" % len(data), data, b"\r\n")
        else:
            client.out.append(data)

    def on_message_complete(self) -> None:
        ex = self.ex
        client = self.client
        if ex is None or client is None or not ex.resp_started:
            return
        if self.rechunk:
            client.out.append(b"0\r\n\r\n")
        self._finish(ex, client, self.parser.should_keep_alive() and not self.until_close)

    def _finish(self, ex: Exchange, client: ClientConn, keep_alive: bool) -> None:
        ex.resp_done = True
        b = self.backend
        if ex.pool is not None and b.fails:
            ex.pool.report_success(b)
        self.ex = None          # (_detach, inline)
        b.active -= 1
        b.conns.discard(self)
        self.ready = False
        if self.write_paused:
            client._resume(_P_BACKPRESSURE)     # our buffer no longer concerns this client
        self.client = None
        listener = self.listener
        reusable = (keep_alive and ex.req_done and not b.draining and not listener.closing
                    and not self.eof)
        if self.owner is not None:
            if reusable and not client.closed and client.own_idle is not None:
                self.reused = True
                old = client.own_idle.get(b)
                client.own_idle[b] = self
                if old is not None and old is not self:
                    old.close()
            else:
                self.close()
        elif reusable and len(b.idle) < listener.config.pool_size:
            self.reused = True
            self.idle_since = self.listener.now
            b.idle.append(self)
        else:
            self.close()
        client.exchange_done(ex)

    def _switch_to_tunnel(self, ex: Exchange, client: ClientConn) -> None:
        self.tunnel = True
        client.tunnel = self
        client.abnormal = True
        ex.resp_done = True
        client.exchanges.clear()
        client.listener.stats.requests += 1
        self.backend.active -= 1     # no longer an in-flight request; stays in conns to drain
        self.ex = None
        self.ready = False
        if ex.pending:
            self.transport.write(b"".join(ex.pending))
            ex.pending = []
        client._resume(_P_UPGRADE | _P_PENDING | _P_PIPELINE)

    # -- closing --------------------------------------------------------------------------
    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._detach()
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self._detach()
            self.backend.conns.discard(self)
            if self.transport is not None:
                self.transport.abort()

    def request_unacked(self) -> bool:
        """True when bytes we sent on this connection still wait for the backend's TCP
        acknowledgement (Linux SIOCOUTQ): the backend is unreachable, not merely slow."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None or _TIOCOUTQ is None:
            return False
        try:
            buf = fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0")
        except (OSError, ValueError):
            return False
        return int.from_bytes(buf, sys.byteorder) > 0

    def retry_elsewhere(self) -> bool:
        """Resend the waiting request on another backend when that is safe: nothing of the
        answer came back, no body, idempotent method (RFC 9110 9.2.2)."""
        ex, client = self.ex, self.client
        if (ex is None or client is None or client.closed or self.tunnel or self.got_bytes
                or ex.resp_started or ex.has_body or ex.upgrade or not ex.idempotent
                or not ex.req_done):
            return False
        b = self.backend
        self.abort()
        client.listener.stats.events["retried_elsewhere"] += 1
        ex.upstream = None
        ex.sent_at = 0.0
        if b not in ex.tried:
            ex.tried.append(b)
        client.dispatch(ex)
        client.flush_all()
        return True

    def cut(self) -> None:
        """Drain timeout of a backend that left the pool: end this connection and tell the
        client the only way left (502 before the answer began, else a cut)."""
        ex, client = self.ex, self.client
        self.abort()
        if client is None or client.closed:
            return
        client.listener.stats.events["drain_cut"] += 1
        if self.tunnel:
            client.abort()
        elif ex is not None and not ex.resp_done:
            client._fail(ex, 502, "backend left the pool and its drain time ran out",
                         "drain_timeout")

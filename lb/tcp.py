"""TCP mode: full-duplex byte pumping between a client and one backend per connection.

Two pumps do the same job:

* :class:`SpliceConn` (Linux): the listening socket is watched with ``add_reader`` and every
  direction moves bytes socket -> pipe -> socket with ``os.splice``, so payload never enters
  Python. Each direction (:class:`_SpliceFlow`) reads only while its pipe is empty; when the
  destination is full it stops reading the source and waits for the destination to become
  writable (backpressure). End of file on a source becomes ``shutdown(SHUT_WR)`` on the
  destination once the pipe is empty (half-close); the connection closes when both directions
  have ended, or at once on an error.
* :class:`PumpSide` (anywhere): a pair of asyncio Protocols writing into each other's
  transports, with ``pause_reading`` driven by the peer's ``pause_writing`` and
  ``write_eof`` for half-close. It is the fallback, and what the in-memory tests drive.

Backend connects are non-blocking and tried on the next instance on failure (passive health
counts the failure). Idle time is checked by the listener's sweep from an activity flag, so
the hot path never reads the clock.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
from typing import TYPE_CHECKING, Any

from .listener import Listener
from .proxyproto import proxy_header

if TYPE_CHECKING:
    from .pool import Pool
    from .strategy import Backend

log = logging.getLogger(__name__)

__all__ = ["HAVE_SPLICE", "PumpSide", "SpliceConn", "TcpListener"]

HAVE_SPLICE = hasattr(os, "splice") and hasattr(os, "SPLICE_F_NONBLOCK")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if HAVE_SPLICE else 0
_F_SETPIPE_SZ = 1031


def _load_pump() -> Any:
    """``Pump`` of the C extension (lb/_splicec.c: the reader callback itself, both splices
    of a readable event in C with no Python frame in the common case), or None: not built
    here, or ``RUMOR_PURE_PYTHON`` is set (on_readable's os.splice path, the reference)."""
    if not HAVE_SPLICE or os.environ.get("RUMOR_PURE_PYTHON"):
        return None
    try:
        from . import _splicec  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return getattr(_splicec, "Pump", None)     # (None from a stale build of an older one)


_Pump = _load_pump()


def _make_pipe(size: int) -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    if size:
        try:
            import fcntl
            fcntl.fcntl(w, _F_SETPIPE_SZ, size)
        except OSError:
            pass   # above /proc/sys/fs/pipe-max-size: keep the default 64 KiB
    return r, w


class TcpListener(Listener):
    """Accepts clients and proxies each to one backend of the listener's service."""

    async def start(self) -> None:
        # TLS on either side needs the asyncio pump: splice moves bytes it cannot decrypt
        tls = self.tls
        self.use_splice = (HAVE_SPLICE and self.config.splice and tls.server is None
                           and self.spec.backend_tls is None)
        self.watch_accept()
        self.start_sweeper()

    def stop_accepting(self) -> None:
        self.unwatch_accept()

    def info(self) -> dict[str, Any]:
        for c in self.conns:    # byte counts the C splice readers hold: into the counters
            if isinstance(c, SpliceConn):
                c.take()
        return super().info()

    def _accepted(self, csock: socket.socket, caddr: Any) -> None:
        self.stats.connections += 1
        if self.use_splice:
            SpliceConn(self, csock, caddr).start()
        elif self.terminates_tls:
            self.spawn_handshake(_pump_connection(self, csock, caddr))
        else:
            self.loop.create_task(_pump_connection(self, csock, caddr))


class _SpliceFlow:
    """One direction of a SpliceConn: src socket -> pipe -> dst socket."""

    __slots__ = (
        "conn",
        "dfd",
        "done",
        "dsock",
        "eof",
        "in_pipe",
        "pending",
        "pr",
        "pw",
        "reader",
        "reading",
        "sfd",
        "size",
        "stats",
        "upstream",
        "writing",
    )

    def __init__(self, conn: SpliceConn, src: socket.socket, dst: socket.socket,
                 pipe: tuple[int, int], size: int, upstream: bool) -> None:
        self.conn = conn
        self.sfd = src.fileno()
        self.dfd = dst.fileno()
        self.dsock = dst
        self.pr, self.pw = pipe
        self.size = size
        self.in_pipe = 0
        self.eof = False
        self.done = False
        self.reading = False
        self.writing = False
        self.upstream = upstream     # client -> backend
        self.pending = b""           # bytes to send before spliced ones (PROXY header)
        self.stats = conn.listener.stats
        # the reader callback: the C one when built (it counts bytes for take(), and sets no
        # activity flag: the sweep sees activity in what take() returns)
        self.reader: Any = (self.on_readable if _Pump is None else
                            _Pump(self.sfd, self.pw, self.pr, self.dfd, size, self.on_slow))

    def on_slow(self, n: int, left: int) -> None:
        """What the C reader (``self.reader``, a lb/_splicec.c Pump) does not handle itself:
        (0, 0) end of file, (n, left) the destination is full with ``left`` bytes in the
        pipe, (-1, errno) an error. It counted the bytes (``take``)."""
        conn = self.conn
        conn.activity = True
        if n > 0:
            self.in_pipe = left
            self.flush()        # still full: stops reading and waits for the destination
        elif n == 0:
            self.eof = True
            self.stop_reading()
            self.finish()
        else:
            conn.fail(OSError(left, os.strerror(left)))

    def take(self) -> int:
        """Add what the C reader moved since last time to the byte counters; returns it."""
        reader = self.reader
        if reader is None or _Pump is None:
            return 0
        n: int = reader.take()
        if n:
            b = self.conn.backend
            if self.upstream:
                self.stats.bytes_in += n
                b.bytes_in += n
            else:
                self.stats.bytes_out += n
                b.bytes_out += n
        return n

    def on_readable(self) -> None:
        conn = self.conn
        conn.activity = True
        try:
            n = os.splice(self.sfd, self.pw, self.size, None, None, _SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            conn.fail(e)
            return
        if n == 0:
            self.eof = True
            self.stop_reading()
            if not self.in_pipe:
                self.finish()
            return
        self.in_pipe = n
        if self.upstream:
            conn.listener.stats.bytes_in += n
            conn.backend.bytes_in += n
        else:
            conn.listener.stats.bytes_out += n
            conn.backend.bytes_out += n
        self.flush()

    def flush(self) -> None:
        try:
            if self.pending:
                sent = self.dsock.send(self.pending)
                self.pending = self.pending[sent:]
                if self.pending:
                    raise BlockingIOError
            while self.in_pipe:
                self.in_pipe -= os.splice(self.pr, self.dfd, self.in_pipe, None, None,
                                          _SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            # destination full: stop reading the source until it drains (backpressure)
            if self.reading:
                self.stop_reading()
            if not self.writing:
                self.writing = True
                self.conn.loop.add_writer(self.dfd, self.on_writable)
            return
        except OSError as e:
            self.conn.fail(e)
            return
        if self.writing:
            self.writing = False
            self.conn.loop.remove_writer(self.dfd)
        if self.eof:
            self.finish()
        elif not self.reading:
            self.start_reading()

    def on_writable(self) -> None:
        self.conn.activity = True
        self.flush()

    def start_reading(self) -> None:
        self.reading = True
        self.conn.loop.add_reader(self.sfd, self.reader)

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.conn.loop.remove_reader(self.sfd)

    def finish(self) -> None:
        """Source ended and everything was delivered: half-close the destination."""
        if self.done:
            return
        self.done = True
        try:
            self.dsock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.conn.flow_done()

    def unregister(self) -> None:
        loop = self.conn.loop
        if self.reading:
            self.reading = False
            loop.remove_reader(self.sfd)
        if self.writing:
            self.writing = False
            loop.remove_writer(self.dfd)
        self.take()
        self.reader = None      # (the C reader holds on_slow: no cycle left behind)
        for fd in (self.pr, self.pw):
            try:
                os.close(fd)
            except OSError:
                pass


class SpliceConn:
    """One proxied TCP connection on the splice path."""

    __slots__ = (
        "_timer",
        "activity",
        "backend",
        "bsock",
        "caddr",
        "closed",
        "csock",
        "down",
        "draining",
        "idle_since",
        "listener",
        "loop",
        "pool",
        "state",
        "tried",
        "up",
    )

    def __init__(self, listener: TcpListener, csock: socket.socket, caddr: Any) -> None:
        self.listener = listener
        self.loop = listener.loop
        self.csock = csock
        self.caddr = caddr
        self.bsock: socket.socket | None = None
        self.backend: Backend = None  # type: ignore[assignment]
        self.pool: Pool | None = listener.default_pool
        self.up: _SpliceFlow | None = None
        self.down: _SpliceFlow | None = None
        self.activity = True
        self.idle_since = 0.0
        self.tried: list[Backend] = []
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.state = "connecting"
        self.draining = False

    def start(self) -> None:
        listener = self.listener
        listener.conns.add(self)
        listener.stats.active += 1
        self._connect_next()

    # -- connecting -------------------------------------------------------------------------
    def _connect_next(self) -> None:
        listener = self.listener
        pool = self.pool
        now = self.loop.time()
        b = pool.pick(now, self.tried) if pool is not None else None
        if b is None or len(self.tried) >= listener.config.connect_attempts:
            reason = "no_backend" if not self.tried else "connect_failed"
            listener.stats.error(reason)
            listener.counters.problem(
                reason, "listener=%s service=%s tried=%d", listener.spec.name,
                listener.spec.service, len(self.tried))
            self.close()
            return
        self.tried.append(b)
        self.backend = b
        addr: tuple[Any, ...] | None = b.sockaddr
        if addr is None:
            # a host name (Consul allows them in Address): resolve off the loop, then connect
            self.loop.create_task(self._resolve_and_connect(b))
            return
        self._connect_to(b, addr)

    async def _resolve_and_connect(self, b: Backend) -> None:
        resolver = self.listener.resolver
        try:
            async with asyncio.timeout(self.listener.connect_timeout):
                if resolver is not None:
                    # aiodns, cached by the records' TTL (IPv4 first)
                    ip = (await resolver.resolve(b.host))[0]
                    infos = await self.loop.getaddrinfo(ip, b.port, type=socket.SOCK_STREAM,
                                                        flags=socket.AI_NUMERICHOST)
                else:
                    infos = await self.loop.getaddrinfo(b.host, b.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as e:
            if not self.closed:
                self._connect_failed(OSError(f"cannot resolve {b.host!r}: {e}"))
            return
        if not self.closed:
            # IPv4 first when the name has both: "localhost" backends usually listen on it
            infos.sort(key=lambda i: i[0] != socket.AF_INET)
            self._connect_to(b, infos[0][4])

    def _connect_to(self, b: Backend, addr: tuple[Any, ...]) -> None:
        listener = self.listener
        try:
            bsock = socket.socket(socket.AF_INET6 if len(addr) == 4 else socket.AF_INET,
                                  socket.SOCK_STREAM)
        except OSError as e:
            listener.counters.problem("socket_error", "err=%s", e)
            self.close()
            return
        self.bsock = bsock
        bsock.setblocking(False)
        bsock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        b.connections += 1
        err = bsock.connect_ex(addr)
        if err == 0:
            self._connected()
        elif err == errno.EINPROGRESS:
            self.loop.add_writer(bsock.fileno(), self._on_connect)
            self._timer = self.loop.call_later(listener.connect_timeout, self._on_connect_timeout)
        else:
            self._connect_failed(OSError(err, os.strerror(err)))

    def _on_connect(self) -> None:
        bsock = self.bsock
        assert bsock is not None
        self.loop.remove_writer(bsock.fileno())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        err = bsock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._connect_failed(OSError(err, os.strerror(err)))
        else:
            self._connected()

    def _on_connect_timeout(self) -> None:
        self._timer = None
        if self.bsock is not None:
            self.loop.remove_writer(self.bsock.fileno())
        self._connect_failed(TimeoutError("connect timeout"))

    def _connect_failed(self, exc: BaseException) -> None:
        b = self.backend
        log.debug("lb connect failed backend=%s:%d err=%s", b.host, b.port, exc)
        if self.pool is not None:
            self.pool.report_failure(b, self.loop.time())
        if self.bsock is not None:
            self.bsock.close()
            self.bsock = None
        if self.closed:
            return
        self._connect_next()

    def _connected(self) -> None:
        b = self.backend
        listener = self.listener
        bsock = self.bsock
        assert bsock is not None and self.pool is not None
        self.pool.report_success(b)
        b.active += 1
        b.requests += 1
        b.conns.add(self)
        listener.stats.requests += 1
        size = listener.config.pipe_size
        try:
            p1 = _make_pipe(size)
            try:
                p2 = _make_pipe(size)
            except OSError:
                os.close(p1[0])
                os.close(p1[1])
                raise
        except OSError as e:
            listener.counters.problem("pipe_error", "err=%s", e)
            self.state = "open"
            self.close()
            return
        self.state = "open"
        self.up = _SpliceFlow(self, self.csock, bsock, p1, size or 65536, True)
        self.down = _SpliceFlow(self, bsock, self.csock, p2, size or 65536, False)
        pp = listener.spec.proxy_protocol
        if pp:
            self.up.pending = proxy_header(pp, self.caddr[:2], listener.local_addr)
            self.up.flush()
        else:
            self.up.start_reading()
        self.down.start_reading()

    # -- life -------------------------------------------------------------------------------
    def flow_done(self) -> None:
        if self.up is not None and self.down is not None and self.up.done and self.down.done:
            self.close()

    def fail(self, exc: BaseException) -> None:
        if not isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            self.listener.counters.problem("tcp_io_error", "err=%s", exc)
        self.listener.stats.events["reset"] += 1
        self.close()

    def take(self) -> int:
        """Fold the bytes the C readers moved into the counters (see _SpliceFlow.take)."""
        n = 0
        if self.up is not None:
            n += self.up.take()
        if self.down is not None:
            n += self.down.take()
        if n:
            self.activity = True    # (whoever folds them, the idle sweep must see it)
        return n

    def sweep(self, now: float) -> None:
        self.take()
        if self.activity:
            self.activity = False
            self.idle_since = now
        elif self.listener.idle_timeout and now - self.idle_since >= self.listener.idle_timeout:
            self.listener.stats.events["idle_timeout"] += 1
            self.close()

    def begin_drain(self) -> None:
        self.draining = True

    def abort(self) -> None:
        self.close()

    def cut(self) -> None:
        """Drain timeout of its backend: end it."""
        self.listener.stats.events["drain_cut"] += 1
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        listener = self.listener
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.up is not None:
            self.up.unregister()
        if self.down is not None:
            self.down.unregister()
        if self.bsock is not None:
            if self.state == "connecting":
                try:
                    self.loop.remove_writer(self.bsock.fileno())
                except (ValueError, OSError):
                    pass
            self.bsock.close()
        self.csock.close()
        listener.conns.discard(self)
        listener.stats.active -= 1
        b = self.backend
        if b is not None and self in b.conns:
            b.conns.discard(self)
            b.active -= 1


# ---------------------------------------------------------------------------------------------
# asyncio Protocol pump (fallback, and the in-memory-testable one)

class PumpSide(asyncio.Protocol):
    """One end of a bidirectional pump; ``peer`` is the other end. ``owner`` gets
    ``side_closed(side)`` and ``count(side, n)`` calls and an ``activity`` flag."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner = owner
        self.name = name
        self.peer: PumpSide | None = None
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost = False
        self.tls = False    # an SSL transport: asyncio closes it on EOF whatever we answer
        self._pending: list[bytes] = []     # data that arrived before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def link(self, peer: PumpSide) -> None:
        """Connect two sides; flushes what arrived before the link existed."""
        self.peer = peer
        peer.peer = self
        for side in (self, peer):
            if side._pending:
                data = b"".join(side._pending)
                side._pending.clear()
                side.data_received(data)
            if side.eof:
                side.eof = False
                if not side.eof_received():
                    side.transport.close()  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None or peer.transport is None:
            self._pending.append(data)
            return
        self.owner.activity = True
        self.owner.count(self, len(data))
        if not peer.lost:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        peer = self.peer
        if peer is None or peer.transport is None:
            return not self.tls
        pt = peer.transport
        if peer.lost:
            return False
        if pt.can_write_eof():
            pt.write_eof()      # after everything buffered before it
        else:
            pt.close()
        if peer.eof:
            # both directions ended: close both (close() flushes what is buffered)
            pt.close()
            return False
        return not self.tls     # (an SSL transport cannot stay half-open in asyncio)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            if exc is not None:
                peer.transport.abort()
            else:
                peer.transport.close()
        self.owner.side_closed(self)


class _PumpConn:
    """A proxied connection on the asyncio-protocol path."""

    def __init__(self, listener: TcpListener) -> None:
        self.listener = listener
        self.activity = True
        self.idle_since = 0.0
        self.backend: Backend | None = None
        self.client = PumpSide(self, "client")
        self.server = PumpSide(self, "server")
        self.closed = False
        self.draining = False

    def count(self, side: PumpSide, n: int) -> None:
        b = self.backend
        st = self.listener.stats
        if side is self.client:
            st.bytes_in += n
            if b is not None:
                b.bytes_in += n
        else:
            st.bytes_out += n
            if b is not None:
                b.bytes_out += n

    def side_closed(self, side: PumpSide) -> None:
        if self.client.lost and (self.server.lost or self.server.transport is None):
            self._done()

    def _done(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.listener.conns.discard(self)
        self.listener.stats.active -= 1
        b = self.backend
        if b is not None and self in b.conns:
            b.conns.discard(self)
            b.active -= 1

    def sweep(self, now: float) -> None:
        if self.activity:
            self.activity = False
            self.idle_since = now
        elif self.listener.idle_timeout and now - self.idle_since >= self.listener.idle_timeout:
            self.listener.stats.events["idle_timeout"] += 1
            self.abort()

    def begin_drain(self) -> None:
        self.draining = True

    def cut(self) -> None:
        self.listener.stats.events["drain_cut"] += 1
        self.abort()

    def abort(self) -> None:
        for side in (self.client, self.server):
            if side.transport is not None and not side.lost:
                side.transport.abort()
        if self.server.transport is None:
            self._done()


async def _pump_connection(listener: TcpListener, csock: socket.socket, caddr: Any) -> None:
    loop = listener.loop
    conn = _PumpConn(listener)
    if listener.terminates_tls:
        conn.client.tls = True
        tls_trans = await listener.tls_accept(lambda: conn.client, csock)
        if tls_trans is None:
            return
        ctrans: Any = tls_trans
        listener.conns.add(conn)
        listener.stats.active += 1
    else:
        listener.conns.add(conn)
        listener.stats.active += 1
        try:
            ctrans, _ = await loop.connect_accepted_socket(lambda: conn.client, csock)
        except OSError:
            conn._done()
            csock.close()
            return
    ctrans.pause_reading()
    pool = listener.default_pool
    tried: list[Backend] = []
    while not conn.client.lost:
        b = pool.pick(loop.time(), tried) if pool is not None else None
        if b is None or len(tried) >= listener.config.connect_attempts:
            listener.stats.error("no_backend" if not tried else "connect_failed")
            ctrans.close()
            conn._done()
            return
        tried.append(b)
        b.connections += 1
        try:
            async with asyncio.timeout(listener.connect_timeout):
                host = b.host
                if b.sockaddr is None and listener.resolver is not None:
                    host = (await listener.resolver.resolve(host))[0]
                await loop.create_connection(
                    lambda: conn.server, host, b.port,
                    **listener.tls.backend_ssl(listener.spec, b, listener.connect_timeout))
        except (OSError, TimeoutError) as e:
            if isinstance(e, ssl.SSLError):
                listener.counters.problem("backend_tls_failed", "listener=%s backend=%s:%d "
                                          "err=%s", listener.spec.name, b.host, b.port, e)
            log.debug("lb connect failed backend=%s:%d err=%s", b.host, b.port, e)
            assert pool is not None
            pool.report_failure(b, loop.time())
            continue
        assert pool is not None
        pool.report_success(b)
        conn.backend = b
        b.active += 1
        b.requests += 1
        b.conns.add(conn)
        listener.stats.requests += 1
        if listener.spec.proxy_protocol:
            assert conn.server.transport is not None
            conn.server.transport.write(proxy_header(listener.spec.proxy_protocol, caddr[:2],
                                                     listener.local_addr))
        conn.client.link(conn.server)
        if conn.client.lost and conn.server.transport is not None:
            conn.server.transport.close()
        else:
            ctrans.resume_reading()
        return
    conn._done()

"""The asyncio driver: UDP and TCP listeners around the sans-I/O :class:`Resolver`.

Runs on whatever loop is running (uvloop when the agent installed it, asyncio otherwise).
UDP, three paths giving the same answers byte for byte:

* the C thread (the default when the C extension ``dnsserver/_udpc.c`` is built, rate limiting
  is off and the view can report its changes synchronously, ``subscribe``; the agent's can):
  a thread of the extension, which never takes the GIL, blocks in ``recvmmsg`` and answers the
  cache hits it holds a copy of, exact by a generation the view bumps in every change; all
  else is handed to the loop through an eventfd and answered as below (:class:`_ThreadUDP`);
* batched (with the extension, without ``subscribe`` or with ``RUMOR_DNS_NO_THREAD`` set):
  on each wake-up one ``recvmmsg`` takes what is queued (never waiting for more), cache
  hits on the exact query bytes are answered in C, the rest by the resolver, and one
  ``sendmmsg`` sends the answers (:class:`_BatchUDP`);
* the reference (without the extension, with ``RUMOR_PURE_PYTHON`` set, or with rate
  limiting): an asyncio datagram transport, one datagram in, at most one out, answered inline
  in ``datagram_received`` (no task per query).

TCP (RFC 7766): length-prefixed frames, pipelined queries answered as they come (those
forwarded upstream may finish out of order, which the RFC allows), an idle timeout, a cap on
connections and on the frame size. Nothing a peer sends can raise out of a receive callback.

Queries forwarded to a recursor are the only work that outlives a callback. Each runs as a task
of one ``asyncio.TaskGroup`` that the server holds from ``start()`` to ``stop()`` (inside a
task of its own, so a failing forward can never cancel whoever called ``start()``); ``stop()``
cancels that group, which cancels and awaits every forward still in flight.
"""

from __future__ import annotations

import asyncio
import bisect
import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Self

from .chase import Labels, query_packet
from .config import DNSConfig
from .counters import LATENCY_BUCKETS_US, LATENCY_SAMPLE, DNSCounters
from .errors import MalformedQuery
from .resolver import Forward, Resolver
from .rrl import RateLimiter, Verdict
from .view import RemoteViews, View
from .wire import NOERROR, NXDOMAIN, SERVFAIL, header_only, parse_query

if TYPE_CHECKING:
    from .forward import Forwarder  # imported only with recursors (start-up cost, issue 13)

__all__ = ["DNSServer"]

log = logging.getLogger(__name__)

_BUCKETS_NS = tuple(b * 1000 for b in LATENCY_BUCKETS_US)
_SAMPLE_MASK = LATENCY_SAMPLE - 1
_SAMPLE_SHIFT = LATENCY_SAMPLE.bit_length() - 1
_BATCH = 64           # datagrams per recvmmsg at most (what is queued now; never waited for)


def _load_udpc() -> Any:
    """The C extension (dnsserver/_udpc.c: recvmmsg/sendmmsg), or None: not built here, or
    ``RUMOR_PURE_PYTHON`` is set (the asyncio transport path, the reference, is used then)."""
    if os.environ.get("RUMOR_PURE_PYTHON"):
        return None
    try:
        from . import _udpc  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    return _udpc


_udpc = _load_udpc()
HAVE_BATCH = _udpc is not None
"""Whether the batched UDP path (recvmmsg/sendmmsg) is available to :class:`DNSServer`."""


class _UDP(asyncio.DatagramProtocol):
    """One datagram in, at most one out, inline (the hot path: every attribute pre-bound)."""

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.handle = server.resolver.handle
        self.lat = server.counters.latency
        self.counters = server.counters
        self.turn = 0
        self.send: Callable[[bytes, Any], None] = _closed_send

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send = transport.sendto  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.send = _closed_send

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.turn += 1
        if self.turn & _SAMPLE_MASK:
            # Most queries: untimed (two clock reads would be ~3% of the CPU per query).
            out = self.handle(data, False)
            if out.__class__ is bytes:
                try:
                    self.send(out, addr)
                except Exception as exc:  # noqa: BLE001 - e.g. a closed transport during stop
                    log.debug("udp send failed to=%s err=%r", addr, exc)
            elif out is not None:
                self.server._forward_udp(out, addr)  # type: ignore[arg-type]
            return
        # One query in LATENCY_SAMPLE: timed (answer + send), weighted to stand for all.
        t0 = _now()
        out = self.handle(data, False)
        if out.__class__ is bytes:
            try:
                self.send(out, addr)
            except Exception as exc:  # noqa: BLE001
                log.debug("udp send failed to=%s err=%r", addr, exc)
            dt = _now() - t0
            self.counters.latency_sum_ns += dt * LATENCY_SAMPLE
            self.lat[bisect.bisect_left(_BUCKETS_NS, dt)] += LATENCY_SAMPLE
        elif out is not None:
            self.server._forward_udp(out, addr)  # type: ignore[arg-type]

    def error_received(self, exc: Exception) -> None:
        log.debug("udp socket error err=%r", exc)


class _BatchUDP:
    """The batched UDP path. On each wake-up one C call (``_udpc.serve``) takes every datagram
    queued (one ``recvmmsg``, up to ``_BATCH``; it never waits for more, so at low rates a batch
    is one query and no latency is added), answers those whose exact bytes the resolver's
    level-1 index already holds (as :meth:`Resolver.handle` does: the client's ID + the cached
    packet of the entry's turn, ``hits`` counted on the entry), hands every other datagram to
    :meth:`miss` (the resolver's full path), and sends all the answers with one ``sendmmsg``.
    The catalog index is checked (and the cache flushed when it moved) before each batch, so
    no answer is staler than the catalog. Peers stay raw sockaddr bytes from the kernel to the
    send. Answers are byte-for-byte those of :class:`_UDP`, the reference path
    (tests/unit/dnsserver/test_udp_batch.py)."""

    def __init__(self, server: DNSServer, sock: socket.socket) -> None:
        assert _udpc is not None
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        res = server.resolver
        self.resolver = res
        self.handle = res.handle
        self.counters = server.counters
        self.lat = server.counters.latency
        self.size = server.config.max_query_size
        self.turn = 0
        self.serve = _udpc.serve
        self.send = _udpc.send

    def readable(self) -> None:
        res = self.resolver
        idx = res.view.index
        if idx != res._index:
            res._flush(idx)
        t0 = _now()
        try:
            n = self.serve(self.fd, _BATCH, self.size, res._exact, self.miss)
        except OSError as exc:       # e.g. ECONNREFUSED left by an ICMP error: read again later
            log.debug("udp receive failed err=%r", exc)
            return
        if not n:
            return
        # One query in LATENCY_SAMPLE is timed: here the batch it is in (answers + send), which
        # is what the batch's last query waited: an upper bound for the others.
        turn = self.turn
        self.turn = turn + n
        timed = (self.turn >> _SAMPLE_SHIFT) - (turn >> _SAMPLE_SHIFT)
        if timed:
            dt = _now() - t0
            self.counters.latency_sum_ns += dt * LATENCY_SAMPLE * timed
            self.lat[bisect.bisect_left(_BUCKETS_NS, dt)] += LATENCY_SAMPLE * timed

    def miss(self, data: bytes, addr: bytes) -> bytes | None:
        """A datagram the C side did not answer: the resolver's full path (never raises)."""
        try:
            out = self.handle(data, False)
            if out.__class__ is bytes or out is None:
                return out
            self.server._forward_udp(out, addr)  # type: ignore[arg-type]
        except Exception:  # never out of the C loop
            log.exception("dns udp miss failed")
        return None

    def sendto(self, data: bytes, addr: bytes) -> None:
        """Send one answer (a forwarded query's) to a raw sockaddr."""
        try:
            self.send(self.fd, [(data, addr)])
        except Exception as exc:  # noqa: BLE001
            log.debug("udp send failed err=%r", exc)


class _ThreadUDP(_BatchUDP):
    """Cache hits answered on a C thread, off the event loop and without the GIL
    (``_udpc.Server``): it blocks in recvmmsg on the (blocking) socket and answers every
    datagram whose exact bytes after the ID it holds at the current generation with one
    sendmmsg per batch; every other datagram is queued for Python, and its eventfd, watched by
    the loop, calls :meth:`readable`. There the resolver answers them (its full path, the
    reference), and every answer that is now a level-1 entry with all its rotations assembled
    is copied to the thread (``put``) with the generation it was built at.

    Exactness: the view's ``subscribe`` (see :class:`dnsserver.view.Subscribable`) calls
    ``bump()`` inside every catalog change, before the change is reported to anyone; the thread
    answers from an entry only while its generation is the current one (read after the
    datagram arrived), so a query sent after a change returned gets an answer built after it.
    Hits answered by the thread are folded into the resolver's entries (and so the counters)
    when the counters are synced or the cache is flushed; the sampled latencies likewise."""

    def __init__(self, server: DNSServer, sock: socket.socket,
                 subscribe: Callable[[Callable[[], object]], Callable[[], None]]) -> None:
        super().__init__(server, sock)
        assert _udpc is not None
        cfg = server.config
        # (the C side makes the socket blocking, with a receive timeout of one second)
        self.native = _udpc.Server(self.fd, self.size, cfg.max_udp_size, cfg.cache_max_entries,
                                   [int(b) for b in _BUCKETS_NS if b != float("inf")],
                                   LATENCY_SAMPLE, cfg.cache_max_bytes)
        self.efd: int = self.native.eventfd
        self.dropped = 0
        self._unsubscribe = subscribe(self.native.bump)
        self.resolver.native = self.pull

    def readable(self) -> None:
        """The datagrams the thread queued: answered by the resolver, sent with one sendmmsg;
        answers that became level-1 entries are handed to the thread."""
        native = self.native
        items = native.take()
        if not items:
            return
        t0 = _now()
        gen = native.generation
        res = self.resolver
        handle = self.handle
        exact = res._exact
        put = native.put
        out = []
        for data, addr in items:
            try:
                ans = handle(data, False)
                if ans.__class__ is bytes:
                    out.append((ans, addr))
                    e = exact.get(data[2:])
                    if e is not None and e.n:
                        tails = e.tails[:e.n]
                        if len(tails) == e.n and None not in tails:
                            put(data[2:], gen, tails, e.hits, e)
                elif ans is not None:
                    self.server._forward_udp(ans, addr)  # type: ignore[arg-type]
            except Exception:  # never out of a loop callback
                log.exception("dns udp miss failed")
        if out:
            try:
                self.send(self.fd, out)
            except Exception as exc:  # noqa: BLE001
                log.debug("udp send failed err=%r", exc)
        # One sampling sequence for both sides: the batch is timed when it holds a sampled turn.
        timed = native.tick(len(items))
        if timed:
            dt = _now() - t0
            self.counters.latency_sum_ns += dt * LATENCY_SAMPLE * timed
            self.lat[bisect.bisect_left(_BUCKETS_NS, dt)] += LATENCY_SAMPLE * timed

    def pull(self, flush: bool) -> None:
        """Fold the thread's hits into the resolver's entries (emptying its table on a flush),
        its sampled latencies and its drops into the counters."""
        native = self.native
        fold = self.resolver.fold
        c = self.counters
        for e, k in (native.clear() if flush else native.hits()):
            fold(e, k)
            c.native_hits += k
        total, counts = native.latency()
        if total:
            c.latency_sum_ns += total
            lat = c.latency
            for i, k in enumerate(counts):
                if k:
                    lat[i] += k
        dropped = native.dropped
        if dropped > self.dropped:
            c.drops["udp_queue"] = c.drops.get("udp_queue", 0) + dropped - self.dropped
            self.dropped = dropped

    def close(self) -> None:
        """Stop the thread (waits for it), fold what it counted; the caller closes the socket."""
        self._unsubscribe()
        self.native.stop()
        self.pull(True)
        self.resolver.native = None


class _UDPLimited(_UDP):
    """The UDP protocol with response-rate limiting: each datagram first spends its client
    network's credit (see :mod:`dnsserver.rrl`); a limited one is dropped before any work is
    done for it, or slipped (an empty answer with TC set, so a real client retries over TCP)."""

    def __init__(self, server: DNSServer, limiter: RateLimiter) -> None:
        super().__init__(server)
        self.check = limiter.check
        self.clock = asyncio.get_running_loop().time

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            verdict = self.check(addr[0], self.clock())
        except (OSError, ValueError):            # an address we cannot group: not limited
            verdict = Verdict.SEND
        if verdict is Verdict.SEND:
            super().datagram_received(data, addr)
            return
        c = self.counters
        if verdict is Verdict.DROP:
            c.rate_limited_dropped += 1
            if c.drop("rate_limited"):
                log.warning("dns answers rate limited client=%s (counted in "
                            "rumor_dns_rate_limited; logged once)", addr[0])
            return
        try:
            q = parse_query(data, max_size=self.server.config.max_query_size)
        except MalformedQuery:
            c.drop("malformed_limited")
            return
        out = header_only(data, NOERROR, q.question)
        if out is None:
            return
        c.rate_limited_slipped += 1
        c.truncated += 1
        try:
            self.send(out[:2] + bytes([out[2] | 0x02]) + out[3:], addr)     # TC
        except Exception as exc:  # noqa: BLE001
            log.debug("udp send failed to=%s err=%r", addr, exc)


def _closed_send(data: bytes, addr: Any) -> None:
    """Sending after the transport closed: nothing to do."""


_now = time.perf_counter_ns


class _TCP(asyncio.Protocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.cfg = server.config
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.last = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.pending = 0
        self.paused = False
        self.write_paused = False
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        c = self.server.counters
        if c.tcp_connections >= self.cfg.max_tcp_connections:
            c.tcp_rejected += 1
            if c.drop("tcp_conn_cap"):
                log.warning("dns tcp connection refused reason=cap max=%s",
                            self.cfg.max_tcp_connections)
            transport.abort()  # type: ignore[attr-defined]
            return
        self.counted = True
        c.tcp_connections += 1
        self.server._conns.add(self)
        loop = asyncio.get_running_loop()
        self.last = loop.time()
        self.timer = loop.call_later(self.cfg.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        due = self.last + self.cfg.tcp_idle_timeout
        if self.pending == 0 and loop.time() >= due:
            self.server.counters.tcp_idle_closed += 1
            self.transport.close()
            return
        self.timer = loop.call_later(max(due - loop.time(), 0.05), self._idle)

    def data_received(self, data: bytes) -> None:
        try:
            self._data(data)
        except Exception:
            log.exception("dns tcp receive failed")
            self.server.counters.drop("internal_error")
            if self.transport is not None:
                self.transport.abort()

    def _data(self, data: bytes) -> None:
        tr = self.transport
        if tr is None or tr.is_closing():
            return
        buf = self.buf
        buf += data
        handle = self.server.resolver.handle
        cap = self.cfg.max_tcp_frame
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            ln = (buf[pos] << 8) | buf[pos + 1]
            if ln > cap or ln == 0:
                c = self.server.counters
                if c.drop("tcp_frame"):
                    log.warning("dns tcp frame refused reason=size len=%s max=%s", ln, cap)
                tr.abort()
                return
            if n - pos - 2 < ln:
                break
            q = bytes(buf[pos + 2:pos + 2 + ln])
            pos += 2 + ln
            t0 = time.perf_counter_ns()
            out = handle(q, True)
            if out is None:
                continue
            if out.__class__ is bytes:
                tr.write(len(out).to_bytes(2, "big") + out)
                self.server.counters.observe_latency_ns(time.perf_counter_ns() - t0)
            else:
                self.pending += 1
                if self.pending >= self.cfg.max_tcp_pipelined and not self.paused:
                    self.paused = True
                    tr.pause_reading()
                if not self.server._spawn(self._forward(out)):  # type: ignore[arg-type]
                    self.pending -= 1
        if pos:
            del buf[:pos]
            # Idle means "no complete query": trickling bytes does not keep a connection open.
            self.last = asyncio.get_running_loop().time()

    async def _forward(self, fwd: Forward) -> None:
        try:
            out = await self.server._resolve_forward(fwd)
            tr = self.transport
            if out is not None and tr is not None and not tr.is_closing():
                tr.write(len(out).to_bytes(2, "big") + out)
        finally:
            self.pending -= 1
            if self.paused and self.pending < self.cfg.max_tcp_pipelined and not self.write_paused:
                self.paused = False
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.resume_reading()

    def pause_writing(self) -> None:
        # The client is not reading its answers: stop reading its questions.
        self.write_paused = True
        if self.transport is not None and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.paused and self.pending < self.cfg.max_tcp_pipelined and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.counted = False
            self.server.counters.tcp_connections -= 1
            self.server._conns.discard(self)
        self.transport = None


class DNSServer:
    """UDP + TCP DNS server answering from ``view``; ``await start()``, ``await stop()``."""

    def __init__(self, config: DNSConfig, view: View, *,
                 counters: DNSCounters | None = None, udp_batch: bool | None = None,
                 udp_thread: bool | None = None, remote: RemoteViews | None = None) -> None:
        self.config = config.validate()
        self.view = view
        self.counters = counters if counters is not None else DNSCounters()
        self.remote = remote
        """Other datacenters' views (None: their names are NXDOMAIN)."""
        self.resolver = Resolver(config, view, counters=self.counters,
                                 remote=remote is not None)
        self._remote_resolvers: dict[str, Resolver] = {}
        self.forwarder: Forwarder | None = None
        if config.recursors:
            from .forward import Forwarder

            self.forwarder = Forwarder(config, self.counters)
        self._udp: asyncio.DatagramTransport | None = None
        self._batch: _BatchUDP | None = None
        self._thread: _ThreadUDP | None = None
        self._tcp: asyncio.base_events.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None   # forwards in flight; see the docstring
        self._tasks_owner: asyncio.Task[None] | None = None
        self._conns: set[_TCP] = set()
        self._inflight_udp = 0
        self._chasing: dict[tuple[Labels, int], asyncio.Future[None]] = {}
        self.limiter = RateLimiter(config.rate_limit) if config.rate_limit.enabled else None
        """The response-rate limiter of UDP answers (None when rate limiting is off)."""
        if udp_batch is None:
            udp_batch = HAVE_BATCH and self.limiter is None
        elif udp_batch and not HAVE_BATCH:
            raise RuntimeError("udp_batch=True needs the C extension dnsserver/_udpc.c")
        elif udp_batch and self.limiter is not None:
            raise ValueError("udp_batch=True does not rate-limit: use the default path")
        self.udp_batch = udp_batch
        """UDP through recvmmsg/sendmmsg (:class:`_BatchUDP`) rather than an asyncio transport;
        by default when the C extension is built and rate limiting is off."""
        subscribe = getattr(view, "subscribe", None)
        can_thread = (udp_batch and callable(subscribe)
                      and not os.environ.get("RUMOR_DNS_NO_THREAD"))
        if udp_thread is None:
            udp_thread = bool(can_thread)
        elif udp_thread and not (udp_batch and callable(subscribe)):
            raise ValueError("udp_thread=True needs the batched path and a view with subscribe()")
        self.udp_thread = udp_thread
        """Cache hits answered on a C thread (:class:`_ThreadUDP`), the rest on the loop; by
        default on the batched path when the view can say when it changed (``subscribe``) and
        ``RUMOR_DNS_NO_THREAD`` is not set."""
        self.udp_port = 0
        """The bound UDP port (after start)."""
        self.tcp_port = 0
        """The bound TCP port (after start)."""

    async def start(self) -> None:
        """Bind UDP and TCP on ``bind_addr:port`` (the same port; 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        host = self.config.bind_addr
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        limiter = self.limiter

        def protocol() -> _UDP:
            return _UDP(self) if limiter is None else _UDPLimited(self, limiter)

        for attempt in range(20):
            if self.udp_batch:
                sock = socket.socket(fam, socket.SOCK_DGRAM)
                try:
                    sock.setblocking(False)
                    sock.bind((host, self.config.port))
                except OSError:
                    sock.close()
                    raise
                port = sock.getsockname()[1]
                tr = None
            else:
                tr, _ = await loop.create_datagram_endpoint(
                    protocol, local_addr=(host, self.config.port), family=fam)
                port = tr.get_extra_info("sockname")[1]
                sock = tr.get_extra_info("socket")
            try:
                self._tcp = await loop.create_server(
                    lambda: _TCP(self), host=host, port=port, family=fam, reuse_address=True,
                    backlog=1024)
            except OSError as exc:
                if tr is not None:
                    tr.close()
                else:
                    sock.close()
                if exc.errno == errno.EADDRINUSE and self.config.port == 0 and attempt < 19:
                    continue              # the UDP port we got is taken over TCP: try another
                raise
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            except OSError:
                pass
            if tr is None and self.udp_thread:
                self._batch = self._thread = _ThreadUDP(
                    self, sock, self.view.subscribe)  # type: ignore[attr-defined]
                loop.add_reader(self._thread.efd, self._thread.readable)
            elif tr is None:
                self._batch = _BatchUDP(self, sock)
                loop.add_reader(sock.fileno(), self._batch.readable)
            else:
                self._udp = tr
            self.udp_port = self.tcp_port = port
            break
        if self.forwarder is not None:
            await self.forwarder.start()
        ready: asyncio.Future[None] = loop.create_future()
        self._tasks_owner = loop.create_task(self._own_tasks(ready), name="dns-forwards")
        await ready
        log.info("dns server listening addr=%s port=%s domain=%s alt_domain=%s recursors=%s",
                 host, self.udp_port, self.config.domain, self.config.alt_domain or "-",
                 ",".join(self.config.recursors) or "-")

    async def stop(self) -> None:
        """Close the listeners, open TCP connections and forwards in flight."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._thread is not None:
            asyncio.get_running_loop().remove_reader(self._thread.efd)
            self._thread.close()
            self._thread = None
        elif self._batch is not None:
            asyncio.get_running_loop().remove_reader(self._batch.fd)
        if self._batch is not None:
            self._batch.sock.close()
            self._batch = None
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.abort()
            try:
                async with asyncio.timeout(2):
                    await self._tcp.wait_closed()
            except TimeoutError:
                log.warning("dns tcp listener did not close in time")
            self._tcp = None
        owner, self._tasks_owner = self._tasks_owner, None
        if owner is not None:
            owner.cancel()          # the group cancels every forward and waits for them
            await asyncio.gather(owner, return_exceptions=True)
            self._inflight_udp = 0  # a forward cancelled before its first step ran no finally
        if self.forwarder is not None:
            self.forwarder.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- forwarding -------------------------------------------------------------------------
    async def _own_tasks(self, ready: asyncio.Future[None]) -> None:
        """Hold the task group until ``stop()`` cancels this task."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                ready.set_result(None)
                await asyncio.get_running_loop().create_future()   # until cancelled
        finally:
            self._tasks = None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        """Run ``coro`` in the server's task group; False (and not run) once stopped."""
        tg = self._tasks
        if tg is None:
            coro.close()
            return False
        tg.create_task(self._guarded(coro))
        return True

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        # A bug in forwarding must not abort the group (and with it every other forward).
        try:
            await coro
        except Exception:
            if self.counters.drop("internal_error"):
                log.exception("dns forward failed")
            else:
                log.debug("dns forward failed", exc_info=True)

    async def _resolve_remote(self, fwd: Forward, question: bytes) -> bytes | None:
        """Answer a name of another datacenter from that datacenter's view: NXDOMAIN when it
        is unknown or unreachable (Consul's answer for an unknown datacenter)."""
        view = None
        if self.remote is not None:
            try:
                if fwd.query:
                    view = await self.remote.query_view(fwd.query)
                else:
                    view = await self.remote.view_of(fwd.datacenter)
            except Exception as exc:  # noqa: BLE001 - whatever the embedder raised
                log.warning("remote view failed dc=%s query=%s err=%r", fwd.datacenter,
                            fwd.query, exc)
        if view is None or (not fwd.query and view.datacenter.lower() != fwd.datacenter):
            self.counters.rcodes[NXDOMAIN] += 1
            out = header_only(fwd.data, NXDOMAIN, question)
            return None if out is None else out[:2] + bytes([out[2] | 0x04]) + out[3:]  # AA
        key = f"?{fwd.query}" if fwd.query else fwd.datacenter
        res = self._remote_resolvers.get(key)
        if res is None or res.view is not view:
            # A resolver per remote view: its own answer cache, flushed by that view's index.
            res = self._remote_resolvers[key] = Resolver(
                self.config, view, counters=DNSCounters(), forwarding=False,
                query_view=bool(fwd.query))
        ans = res.handle(fwd.data, fwd.tcp)
        if not isinstance(ans, bytes):
            return None
        self.counters.rcodes[ans[3] & 0xF] += 1
        return ans

    @property
    def forwards_in_flight(self) -> int:
        """Queries waiting for a recursor's answer, over UDP and TCP."""
        return self._inflight_udp + sum(c.pending for c in self._conns)

    def _forward_udp(self, fwd: Forward, addr: Any) -> None:
        if self._inflight_udp >= self.config.max_forward_inflight:
            if self.counters.drop("forward_cap"):
                log.warning("dns forward dropped reason=cap max=%s",
                            self.config.max_forward_inflight)
            return
        if self._spawn(self._forward_udp_task(fwd, addr)):
            self._inflight_udp += 1

    async def _forward_udp_task(self, fwd: Forward, addr: Any) -> None:
        try:
            out = await self._resolve_forward(fwd)
            if out is not None:
                if self._udp is not None:
                    self._udp.sendto(out, addr)
                elif self._batch is not None:
                    self._batch.sendto(out, addr)     # addr: the raw sockaddr of the batch path
        finally:
            self._inflight_udp -= 1

    async def _complete_chase(self, fwd: Forward) -> bytes | None:
        """Ask the recursors for the CNAME targets the answer lacks, then answer from the
        resolver (with the CNAME alone for a target they did not give in time)."""
        await asyncio.gather(*(self._chase(name, rtype) for name, rtype in fwd.chase))
        return self.resolver.complete(fwd.data, fwd.tcp)

    async def _chase(self, name: Labels, rtype: int) -> None:
        """Learn (name, rtype) from the recursors into the resolver's chase cache; one query
        in flight per (name, rtype), whoever else needs it waits for that one."""
        key = (name, rtype)
        running = self._chasing.get(key)
        if running is not None:
            await asyncio.shield(running)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chasing[key] = done
        try:
            out = None
            if self.forwarder is not None:
                pkt = query_packet(name, rtype)
                question = pkt[12:len(pkt) - 11]          # the name, type and class
                out = await self.forwarder.ask(pkt, False, question)
                if out is not None and len(out) > 3 and out[2] & 0x02:     # TC: again by TCP
                    out = await self.forwarder.ask(pkt, True, question) or out
            if out is None:
                self.counters.chase_failures += 1
            res = self.resolver
            res.chased.learn(name, rtype, out, res.clock())
        finally:
            self._chasing.pop(key, None)
            if not done.done():
                done.set_result(None)

    async def _resolve_forward(self, fwd: Forward) -> bytes | None:
        """The recursor's answer, or SERVFAIL with the question when they all failed."""
        if fwd.chase:
            return await self._complete_chase(fwd)
        try:
            q = parse_query(fwd.data, max_size=65535)
        except MalformedQuery:      # cannot happen: the resolver parsed it already
            return None
        if fwd.datacenter or fwd.query:
            return await self._resolve_remote(fwd, q.question)
        out = None
        if self.forwarder is not None:
            out = await self.forwarder.forward(fwd.data, fwd.tcp, q.question)
        if out is None:
            self.counters.rcodes[SERVFAIL] += 1
            out = header_only(fwd.data, SERVFAIL, q.question)
            if out is not None and self.forwarder is not None:
                out = out[:3] + bytes([out[3] | 0x80]) + out[4:]      # RA: we do recurse
        else:
            self.counters.rcodes[out[3] & 0xF] += 1
        return out

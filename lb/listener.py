"""What TCP and HTTP listeners share: the bound socket, pools that follow the view, counters,
connection bookkeeping, timeouts swept on a timer, and draining on removal."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .config import LBConfig, ListenerSpec, Route
from .counters import LBCounters, ListenerStats
from .pool import Pool
from .resolve import HostCache
from .routes import RouteTable, urlprefix_routes
from .tls import ListenerTLS, handshake_failure_reason
from .view import CatalogView, Instance

if TYPE_CHECKING:
    from .strategy import Backend

log = logging.getLogger(__name__)

_ACCEPT_RETRY = 0.2     # seconds to stop accepting after running out of descriptors

PoolKey = tuple[str, "str | None"]


class Conn(Protocol):
    def abort(self) -> None: ...
    def sweep(self, now: float) -> None: ...
    def begin_drain(self) -> None: ...


class Listener:
    """Base of :class:`lb.tcp.TcpListener` and :class:`lb.http.HttpListener`."""

    def __init__(self, spec: ListenerSpec, config: LBConfig, sock: socket.socket,
                 counters: LBCounters, rng: random.Random | None = None,
                 tls: ListenerTLS | None = None) -> None:
        self.spec = spec
        self.tls = tls or ListenerTLS()
        self.terminates_tls = self.tls.server is not None
        self.proto = b"https" if self.terminates_tls else b"http"
        self.redirect = spec.redirect_https
        self.handshaking = 0     # accepted sockets still in their TLS handshake
        self._handshakes: set[asyncio.Task[Any]] = set()
        self.config = config
        self.sock = sock
        self.counters = counters
        self.stats = ListenerStats()
        self.loop = asyncio.get_running_loop()
        self.rng = rng or random.Random()
        self.pools: dict[PoolKey, Pool] = {}
        self.conns: set[Conn] = set()
        self.local_addr: tuple[str, int] = sock.getsockname()[:2]
        self.connect_timeout = spec.connect_timeout or config.connect_timeout
        self.resolver: HostCache | None = None
        """Resolves backends registered by host name (set by the LoadBalancer)."""
        self.idle_timeout = (spec.idle_timeout if spec.idle_timeout is not None
                             else config.idle_timeout)
        self.max_connections = spec.max_connections or config.max_connections
        self.routes: RouteTable | None = None
        self.default_pool: Pool | None = None
        self.accepting = False
        self.closing = False
        self.drain_deadline = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        # A coarse clock for the hot path, refreshed by every sweep: the timeouts it feeds
        # are enforced by the sweep anyway, so they have sweep_interval granularity.
        self.now = self.loop.time()

    # -- pools ------------------------------------------------------------------------------
    def _new_pool(self, service: str, tag: str | None) -> Pool:
        c = self.config
        return Pool(service, tag, self.spec.strategy, eject_after=c.eject_after,
                    eject_backoff=c.eject_backoff, eject_backoff_max=c.eject_backoff_max,
                    drain_timeout=c.drain_timeout, rng=self.rng)

    def refresh(self, view: CatalogView) -> None:
        """Bring routes and pools in line with the view (called when its index rises)."""
        now = self.loop.time()
        spec = self.spec
        routes: list[Route] = list(spec.routes)
        if spec.urlprefix:
            routes.extend(urlprefix_routes(view.services()))
        if spec.service:
            routes.append(Route(service=spec.service, tag=spec.tag))
        table = RouteTable(routes)
        wanted = table.targets
        for key in wanted:
            pool = self.pools.get(key)
            if pool is None:
                pool = self.pools[key] = self._new_pool(*key)
            insts = view.instances(key[0], key[1], passing_only=spec.passing_only)
            standby: Sequence[Instance] = ()
            if spec.failover and key == (spec.service, spec.tag):
                failover = getattr(view, "failover_instances", None)
                if failover is not None:   # a lb.view.FailoverView
                    if insts:   # the failover datacenter stands by for passive health
                        standby = failover(key[0], key[1], spec.failover,
                                           passing_only=spec.passing_only, local=())
                    else:
                        insts = failover(key[0], key[1], spec.failover,
                                         passing_only=spec.passing_only, local=insts)
            pool.update(insts, now)
            if standby and pool.standby is None:
                pool.standby = self._new_pool(*key)
            if pool.standby is not None:
                pool.standby.update(standby, now)
        for key in list(self.pools):
            if key not in wanted:
                pool = self.pools[key]
                pool.update((), now)
                if not pool.draining:
                    del self.pools[key]
        self.routes = table
        self.default_pool = self.pools.get((spec.service, spec.tag)) if spec.service else None
        self._cut_overdue(now)

    def _cut_overdue(self, now: float) -> None:
        for key, pool in list(self.pools.items()):
            overdue = pool.expire_drains(now)
            if pool.standby is not None:
                overdue += pool.standby.expire_drains(now)
            for b in overdue:
                log.info("drain timeout, cutting connections listener=%s addr=%s:%d n=%d",
                         self.spec.name, b.host, b.port, len(b.conns))
                for c in list(b.conns):
                    c.cut()     # type: ignore[attr-defined]
            if key not in (self.routes.targets if self.routes else ()) and not pool.draining \
                    and not pool.backends:
                del self.pools[key]

    def every_pool(self) -> list[Pool]:
        """The pools, with their standby pools (a listener's ``Failover``)."""
        out = list(self.pools.values())
        out.extend(p.standby for p in self.pools.values() if p.standby is not None)
        return out

    def all_backends(self) -> Iterable[Backend]:
        for pool in self.every_pool():
            yield from pool.backends
            yield from pool.draining.values()

    # -- accepting ourselves (TLS listeners, and TCP) ----------------------------------------
    def watch_accept(self) -> None:
        self.sock.setblocking(False)
        self.loop.add_reader(self.sock.fileno(), self._on_accept)
        self.accepting = True

    def unwatch_accept(self) -> None:
        if self.accepting:
            self.accepting = False
            try:
                self.loop.remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
            self.sock.close()

    def _resume_accepting(self) -> None:
        if self.accepting:
            self.loop.add_reader(self.sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        for _ in range(64):
            try:
                csock, caddr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # EMFILE/ENFILE/ENOBUFS/ENOMEM: out of resources. The listening socket stays
                # readable, so stop watching it for a moment instead of spinning on it.
                self.counters.problem("accept_error", "listener=%s err=%s", self.spec.name, e)
                if self.accepting:
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(_ACCEPT_RETRY, self._resume_accepting)
                return
            if len(self.conns) + self.handshaking >= self.max_connections:
                self.stats.rejected += 1
                self.counters.problem("max_connections", "listener=%s limit=%d",
                                      self.spec.name, self.max_connections)
                csock.close()
                continue
            try:
                csock.setblocking(False)
                csock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._accepted(csock, caddr)
            except Exception:
                log.exception("lb accept failed listener=%s", self.spec.name)
                csock.close()

    def _accepted(self, csock: socket.socket, caddr: Any) -> None:
        raise NotImplementedError

    def spawn_handshake(self, coro: Any) -> None:
        """Run a connection's TLS handshake (and what follows) as a task the listener owns."""
        task = self.loop.create_task(coro)
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def tls_accept(self, factory: Any, csock: socket.socket) -> asyncio.BaseTransport | None:
        """Handshake with an accepted client; the transport, or None after counting why the
        handshake failed (``TLSHandshakeFailures`` by reason)."""
        server = self.tls.server
        assert server is not None
        self.handshaking += 1
        try:
            transport, _ = await self.loop.connect_accepted_socket(
                factory, csock, ssl=server.outer,
                ssl_handshake_timeout=self.config.tls_handshake_timeout)
        except asyncio.CancelledError:
            csock.close()
            raise
        except Exception as e:  # noqa: BLE001 - a client's failure never escapes: count it
            reason = handshake_failure_reason(e)
            self.stats.tls_failures[reason] += 1
            self.counters.problem("tls_handshake_" + reason, "listener=%s err=%s",
                                  self.spec.name, e)
            csock.close()
            return None
        finally:
            self.handshaking -= 1
        self.stats.tls_handshakes += 1
        return transport

    # -- lifecycle --------------------------------------------------------------------------
    def start_sweeper(self) -> None:
        self._sweeper = self.loop.call_later(self.config.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        now = self.now = self.loop.time()
        try:
            for c in list(self.conns):
                c.sweep(now)
            self._cut_overdue(now)
            if self.closing and now >= self.drain_deadline:
                for c in list(self.conns):
                    c.abort()
        except Exception:   # a sweep must never kill the timer chain
            log.exception("lb sweep failed listener=%s", self.spec.name)
        if not (self.closing and not self.conns):
            self._sweeper = self.loop.call_later(self.config.sweep_interval, self._sweep)
        else:
            self._sweeper = None

    def stop_accepting(self) -> None:
        raise NotImplementedError

    def begin_close(self, drain_timeout: float) -> None:
        """Stop accepting; open connections finish (idle HTTP ones close) within the timeout."""
        self.stop_accepting()
        for task in list(self._handshakes):
            task.cancel()
        self.closing = True
        self.drain_deadline = self.loop.time() + drain_timeout
        for c in list(self.conns):
            c.begin_drain()
        if self._sweeper is None and self.conns:
            self.start_sweeper()

    async def wait_closed(self, timeout: float) -> None:
        deadline = self.loop.time() + timeout
        while self.conns and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for c in list(self.conns):
            c.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def info(self) -> dict[str, Any]:
        now = self.loop.time()
        d = self.spec.to_dict()
        d["Bind"] = self.spec.bind
        h, p = self.local_addr
        d["Address"] = f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
        d["Counters"] = self.stats.to_dict()
        server = self.tls.server
        if server is not None and d.get("TLS"):
            for cert, names in zip(d["TLS"]["Certificates"], server.names, strict=False):
                cert["Names"] = list(names)
            d["TLS"]["Reloads"] = server.reloads
        d["Backends"] = [dict(b.stats(now), Service=pool.service, Tag=pool.tag)
                         for pool in self.pools.values() for b in pool.backends]
        d["Backends"].extend(dict(b.stats(now), Service=pool.service, Tag=pool.tag)
                             for pool in self.pools.values() for b in pool.draining.values())
        return d

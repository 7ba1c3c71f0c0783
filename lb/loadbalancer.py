"""The :class:`LoadBalancer`: owns listeners, follows the catalog view, reports counters."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import LBConfig, ListenerSpec
from .counters import LBCounters
from .errors import ConfigError, ListenerError
from .resolve import HostCache
from .view import CatalogView

if TYPE_CHECKING:
    from .listener import Listener
    from .tls import CertificateLoader

# The proxies (lb.http, lb.tcp, lb.listener) and lb.tls are imported by the first listener
# added: an agent with the balancer on but no listener (the default) never loads them
# (issue 13: start-up cost).

log = logging.getLogger(__name__)

__all__ = ["LoadBalancer", "listeners_from_config"]


def listeners_from_config(section: Mapping[str, Any] | None) -> list[ListenerSpec]:
    """The ``listeners`` list of the agent's ``lb`` config section, as validated specs."""
    if not section:
        return []
    raw = None
    for k, v in section.items():
        if str(k).lower() == "listeners":
            raw = v
    if raw is None:
        return []
    if isinstance(raw, (str, Mapping)) or not hasattr(raw, "__iter__"):
        raise ConfigError("lb.listeners: must be a list of listener objects")
    specs = [ListenerSpec.from_dict(item) for item in raw]
    names = [s.name for s in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"lb.listeners: name {min(dup)!r} is used twice; names are "
                          "unique")
    return specs


def _bind(spec: ListenerSpec) -> socket.socket:
    host, port = spec.address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        why = (e.strerror or str(e)).lower()
        raise ListenerError(f"bind {spec.bind}: {why}") from e
    return sock


class LoadBalancer:
    """Round-robin (and friends) TCP and HTTP proxy whose backends follow a catalog view.

    ``await start()`` begins following the view; listeners come and go with
    ``add_listener`` / ``remove_listener``; ``await stop()`` closes everything.
    """

    def __init__(self, config: LBConfig | None, view: CatalogView, *,
                 counters: LBCounters | None = None, rng: random.Random | None = None,
                 cert_loader: CertificateLoader | None = None,
                 resolver: HostCache | None = None) -> None:
        self.config = (config or LBConfig()).validate()
        if cert_loader is None:
            from .tls import DefaultCertificateLoader

            cert_loader = DefaultCertificateLoader()
        self.cert_loader: CertificateLoader = cert_loader
        self.resolver = resolver or HostCache()
        """For backends registered by host name (aiodns, cached by TTL)."""
        self.view = view
        self.counters = counters or LBCounters()
        self.rng = rng or random.Random()
        self._listeners: dict[str, Listener] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._index = 0
        self._stopping = False
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        """Set when a listener is added: the watcher waits for the view only while one is up."""

    async def start(self) -> None:
        if self._watcher is None:
            self._stopping = False
            self._index = self.view.index
            self._watcher = asyncio.get_running_loop().create_task(self._watch(),
                                                                   name="lb-view-watch")

    async def _watch(self) -> None:
        view = self.view
        while not self._stopping:
            if not self._listeners:
                # Nothing to refresh: sleep until a listener is added instead of waking at
                # every catalog change (a join storm is hundreds of them). The first wait after
                # is answered at once (index -1): a change between the new listener's own read
                # of the view and this wake-up is not missed.
                self._wanted.clear()
                await self._wanted.wait()
                self._index = -1
                continue
            try:
                new = await view.wait(self._index, self.config.watch_timeout)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lb view wait failed; retrying in 1s")
                await asyncio.sleep(1.0)
                continue
            if new != self._index:
                self._index = new
                self._refresh_all()

    def _refresh_all(self) -> None:
        for listener in self._listeners.values():
            try:
                listener.refresh(self.view)
            except Exception:
                log.exception("lb refresh failed listener=%s", listener.spec.name)

    async def add_listener(self, spec: ListenerSpec | Mapping[str, Any]) -> dict[str, Any]:
        """Create the listener, or replace the one with the same name; returns its info.

        The same spec again (a deploy script or config management re-applying it) changes
        nothing: the running listener keeps its socket, connections and counters; only its
        certificate and CA files, if any, are read again (a PUT renews certificates).
        Raises :class:`ConfigError` for a bad spec or certificate file and
        :class:`ListenerError` when the address cannot be bound; in both cases the previous
        listener of that name, if any, is left running as it was.
        """
        from .http import HttpListener
        from .tcp import TcpListener
        from .tls import prepare_listener_tls

        if not isinstance(spec, ListenerSpec):
            spec = ListenerSpec.from_dict(spec)
        spec.validate()
        async with self._lock:
            old = self._listeners.get(spec.name)
            if old is not None and old.spec == spec and old.accepting:
                if spec.tls is not None or spec.backend_tls is not None:
                    await asyncio.to_thread(old.tls.reload, spec, self.cert_loader)
                return old.info()
            # certificates and CAs first, off the loop: a bad file leaves the old listener
            tls = await asyncio.to_thread(prepare_listener_tls, spec, self.cert_loader)
            host, port = spec.address
            if old is not None and port != 0 and old.accepting and (
                    old.spec.address == (host, port) or old.local_addr == (host, port)):
                sock = old.sock.dup()       # keep the bound socket: no gap, no bind race
                sock.setblocking(False)
            else:
                sock = _bind(spec)
            cls = HttpListener if spec.mode == "http" else TcpListener
            listener = cls(spec, self.config, sock, self.counters, self.rng, tls)
            listener.resolver = self.resolver
            try:
                listener.refresh(self.view)
                await listener.start()
            except BaseException:
                listener.stop_accepting()
                sock.close()
                raise
            if old is not None:
                self._retire(old)
            self._listeners[spec.name] = listener
            self._wanted.set()
            log.info("lb listener up name=%s bind=%s mode=%s service=%s", spec.name,
                     listener.local_addr, spec.mode, spec.service)
            return listener.info()

    async def reload_tls(self) -> dict[str, str]:
        """Read every listener's certificate and CA files again (SIGHUP). New handshakes get
        the new certificates; open connections keep theirs. Returns {listener: error} for the
        listeners whose files were refused (they keep the old ones)."""
        errors: dict[str, str] = {}
        for name, listener in list(self._listeners.items()):
            spec = listener.spec
            if spec.tls is None and spec.backend_tls is None:
                continue
            try:
                await asyncio.to_thread(listener.tls.reload, spec, self.cert_loader)
            except ConfigError as e:
                errors[name] = str(e)
                log.error("lb tls reload refused, keeping the old files listener=%s error=%s",
                          name, e)
            else:
                log.info("lb tls reloaded listener=%s", name)
        return errors

    async def remove_listener(self, name: str) -> None:
        """Stop accepting on ``name``; its open connections drain (``drain_timeout``)."""
        async with self._lock:
            listener = self._listeners.pop(name, None)
            if listener is None:
                raise ListenerError(f"no listener named {name!r}", 404)
            self._retire(listener)
            log.info("lb listener removed name=%s", name)

    def _retire(self, listener: Listener) -> None:
        listener.begin_close(self.config.drain_timeout)

        async def finish() -> None:
            await listener.wait_closed(self.config.drain_timeout + 1.0)

        task = asyncio.get_running_loop().create_task(finish())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def listener(self, name: str) -> dict[str, Any] | None:
        lst = self._listeners.get(name)
        return lst.info() if lst is not None else None

    def listeners(self) -> list[dict[str, Any]]:
        """Spec, bound address and counters (listener and per backend) of every listener."""
        return [self._listeners[n].info() for n in sorted(self._listeners)]

    async def stop(self, timeout: float = 5.0) -> None:
        """Close every listener; open connections get ``timeout`` seconds to finish."""
        self._stopping = True
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            watcher.cancel()
            # A view whose wait() swallows a cancellation (asyncio.wait_for on 3.11 can) must
            # not hang the shutdown: give the watcher a moment, then leave it cancelled.
            done, _ = await asyncio.wait({watcher}, timeout=1.0)
            if not done:
                watcher.cancel()
                log.warning("lb view watcher did not stop in time; left cancelled")
            elif not watcher.cancelled() and watcher.exception() is not None:
                log.error("lb view watcher ended with an error", exc_info=watcher.exception())
        listeners = list(self._listeners.values())
        self._listeners.clear()
        for lst in listeners:
            lst.begin_close(timeout)
        await asyncio.gather(*(lst.wait_closed(timeout) for lst in listeners),
                             return_exceptions=True)
        for task in list(self._closing):
            task.cancel()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

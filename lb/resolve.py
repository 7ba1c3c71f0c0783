"""Host names to addresses for backends registered by name, cached by the records' TTL.

Consul allows a host name as a service's ``Address``. The balancer resolves it with aiodns
(c-ares' getaddrinfo: the hosts file, then DNS for A and AAAA; asynchronous, no thread pool)
and keeps the answer for the records' TTL (clamped to ``min_ttl``..``max_ttl``). An answer in the last fifth of its TTL, or
expired, is still served while a refresh runs in the background, so connections never wait for
DNS once a name is known; a name that does not resolve is remembered for ``negative_ttl``.
Nothing here knows the registry: give it the recursors to ask (``ip`` or ``ip:port``), or none
for the system's (``/etc/resolv.conf``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["HostCache", "ResolveError"]


class ResolveError(OSError):
    """The name has no A or AAAA record (or the recursors did not answer)."""


@dataclass(slots=True)
class _Entry:
    addrs: tuple[str, ...]
    expires: float
    refresh_at: float
    stale_until: float


class HostCache:
    def __init__(self, nameservers: Sequence[str] = (), *, min_ttl: float = 1.0,
                 max_ttl: float = 300.0, negative_ttl: float = 5.0, stale_grace: float = 60.0,
                 timeout: float = 3.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.nameservers = list(nameservers)
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.stale_grace = stale_grace
        self.timeout = timeout
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[tuple[str, ...]]] = {}
        self._resolver: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.counters = {"queries": 0, "hits": 0, "refreshes": 0, "failures": 0}

    def _aiodns(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._resolver is None or self._loop is not loop:
            import aiodns

            self._resolver = aiodns.DNSResolver(nameservers=self.nameservers or None, loop=loop,
                                                timeout=self.timeout, tries=2)
            self._loop = loop
        return self._resolver

    async def _query(self, host: str) -> tuple[tuple[str, ...], float]:
        """c-ares getaddrinfo (the hosts file, then DNS: A and AAAA); the addresses (IPv4
        first) and the smallest TTL (a hosts-file answer has none: ``min_ttl``)."""
        self.counters["queries"] += 1
        try:
            res = await self._aiodns().getaddrinfo(host, family=socket.AF_UNSPEC,
                                                   type=socket.SOCK_STREAM)
        except Exception as e:  # noqa: BLE001 - aiodns.error.DNSError and c-ares' own
            raise ResolveError(f"cannot resolve {host!r}: {e}") from None
        addrs: list[str] = []
        ttl = self.max_ttl
        for node in res.nodes:
            raw = node.addr[0]
            addrs.append(raw.decode() if isinstance(raw, bytes) else str(raw))
            ttl = min(ttl, float(node.ttl))
        if not addrs:
            raise ResolveError(f"cannot resolve {host!r}: no A or AAAA record")
        addrs.sort(key=lambda a: ipaddress.ip_address(a).version)
        return tuple(dict.fromkeys(addrs)), max(self.min_ttl, min(self.max_ttl, ttl))

    async def _fetch(self, host: str) -> tuple[str, ...]:
        fut = self._inflight.get(host)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[host] = fut
        try:
            addrs, ttl = await self._query(host)
        except Exception as e:  # noqa: BLE001 - c-ares raises its own types; all are failures
            self.counters["failures"] += 1
            now = self.clock()
            old = self._entries.get(host)
            if old is not None and old.addrs and now < old.stale_until:
                old.refresh_at = now + self.negative_ttl   # keep serving the last answer
                fut.set_result(old.addrs)
                return old.addrs
            self._entries[host] = _Entry((), now + self.negative_ttl, now + self.negative_ttl,
                                         now + self.negative_ttl)
            err = e if isinstance(e, ResolveError) else ResolveError(f"cannot resolve {host!r}: {e}")
            fut.set_exception(err)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise err from None
        finally:
            self._inflight.pop(host, None)
        now = self.clock()
        self._entries[host] = _Entry(addrs, now + ttl, now + ttl * 0.8,
                                     now + ttl + self.stale_grace)
        fut.set_result(addrs)
        return addrs

    def cached(self, host: str) -> tuple[str, ...] | None:
        """The addresses known now (maybe stale), starting a background refresh when due; None
        when nothing usable is known."""
        e = self._entries.get(host)
        now = self.clock()
        if e is None:
            return None
        if now >= e.refresh_at and host not in self._inflight:
            self.counters["refreshes"] += 1
            try:
                task = asyncio.get_running_loop().create_task(self._fetch(host))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            except RuntimeError:
                pass
        if e.addrs and now < e.stale_until:
            return e.addrs
        return None if now >= e.expires else e.addrs or None

    async def resolve(self, host: str) -> tuple[str, ...]:
        """The addresses of ``host`` (IPv4 first); raises :class:`ResolveError`."""
        got = self.cached(host)
        if got:
            self.counters["hits"] += 1
            return got
        e = self._entries.get(host)
        if e is not None and not e.addrs and self.clock() < e.expires:
            raise ResolveError(f"cannot resolve {host!r} (remembered for {self.negative_ttl}s)")
        return await self._fetch(host)

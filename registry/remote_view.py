"""Other datacenters' catalogs as DNS views: a cached copy per datacenter, kept fresh by a
blocking read across the WAN hop.

Why this design. ``dnsserver`` answers from a view and imports nothing of ours
(shared/DESIGN.md), and its answers are pure functions of (question, view) cached by the
view's index. So a name of another datacenter (``web.service.dc2.rumor``) is answered the same
way, from a *view of dc2*: the resolver hands the query back as ``Forward(datacenter="dc2")``
(as it does for a recursor), the server awaits :meth:`RemoteViews.view_of` and answers from the
view it gets, with its own answer cache.

The view is a ``dnsserver.MemoryView`` built from one compact document that a WAN member of
dc2 serves from its replica (``GET /v1/internal/rumor/view?dc=dc2``, forwarded like any
``?dc=`` read, so it takes the same path, failover and metrics). The first question about a
datacenter waits for that document (bounded by :data:`FIRST_TIMEOUT`, so a DNS client is
answered before it gives up); after that a watcher keeps the copy fresh with a blocking read of
the same document (``index=``), so answers follow changes in dc2 within one hop, and questions
cost nothing across the WAN. A datacenter nobody asked about for :data:`IDLE` seconds is
dropped, watcher and all. An unknown or unreachable datacenter gives None: NXDOMAIN, as Consul.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gossip.dclass import dataclass

from .errors import RequestError
from .federation import Federation

if TYPE_CHECKING:
    from dnsserver import MemoryView  # imported by the first remote view (start-up, issue 13)

log = logging.getLogger(__name__)

VIEW_PATH = "/v1/internal/rumor/view"
FIRST_TIMEOUT = 3.0
"""Seconds the first question about a datacenter waits for its view."""
IDLE = 300.0
"""Seconds without a question after which a datacenter's copy and watcher are dropped."""
WAIT = 60.0
"""Seconds each blocking read of the watcher waits on the remote index."""
RETRY = 2.0
"""Seconds between the watcher's attempts while the datacenter cannot be reached."""
STALE = 30.0
"""Seconds a copy is still served while its datacenter cannot be reached; then dropped, and
the datacenter's names are NXDOMAIN until it answers again."""
QUERY_TTL = 1.0
"""Seconds a prepared query's results are reused for DNS answers."""
NEGATIVE = 5.0
"""Seconds an unknown or unreachable datacenter is remembered as such (no fetch per question)."""


def view_document(view: Any) -> dict[str, Any]:
    """What a WAN member serves at :data:`VIEW_PATH`: its datacenter's nodes and healthy
    instances (the View protocol, as plain JSON)."""
    nodes = [{"Node": n.name, "Address": n.address, "Meta": dict(n.meta), "Status": n.status}
             for n in view.nodes()]
    instances = []
    for name in sorted(view.services()):
        for i in view.instances(name, passing_only=False):
            instances.append({
                "Node": i.node, "ID": i.service_id, "Service": i.service, "Tags": list(i.tags),
                "Address": i.address, "Port": i.port, "Meta": dict(i.meta),
                "Weights": [i.weight_passing, i.weight_warning], "Health": i.health})
    return {"Datacenter": view.datacenter, "Nodes": nodes, "Instances": instances}


def view_from_document(dc: str, doc: Mapping[str, Any]) -> MemoryView:
    """A MemoryView of ``dc`` from :func:`view_document`'s output (bad entries are skipped)."""
    from dnsserver import MemoryView

    v = MemoryView(dc)
    for n in _items(doc, "Nodes"):
        try:
            v.add_node(str(n["Node"]), str(n["Address"]), meta=dict(n.get("Meta") or {}),
                       status=str(n.get("Status") or "alive"))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    for i in _items(doc, "Instances"):
        try:
            wp, ww = i.get("Weights") or (1, 1)
            v.register(str(i["Node"]), str(i["Service"]), service_id=str(i["ID"]),
                       port=int(i.get("Port") or 0), address=str(i.get("Address") or ""),
                       tags=tuple(str(t) for t in i.get("Tags") or ()),
                       meta=dict(i.get("Meta") or {}), weight_passing=int(wp),
                       weight_warning=int(ww), status=str(i.get("Health") or "passing"))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return v


def _items(doc: Mapping[str, Any], key: str) -> list[Any]:
    """``doc[key]`` when it is a list, else nothing (a peer's document is not trusted)."""
    got = doc.get(key) if isinstance(doc, Mapping) else None
    return got if isinstance(got, list) else []


def results_view(name: str, result: Mapping[str, Any]) -> MemoryView:
    """A prepared query's execution result (health entries) as a view where they are the
    instances of a service called ``name``."""
    from dnsserver import MemoryView

    v = MemoryView(str(result.get("Datacenter") or ""))
    for e in _items(result, "Nodes"):
        try:
            n, s = e["Node"], e["Service"]
            if v.node(n["Node"]) is None:
                v.add_node(str(n["Node"]), str(n["Address"]), meta=dict(n.get("Meta") or {}))
            statuses = [c.get("Status") for c in e.get("Checks") or ()]
            w = s.get("Weights") or {}
            v.register(str(n["Node"]), name, service_id=str(s["ID"]),
                       port=int(s.get("Port") or 0), address=str(s.get("Address") or ""),
                       tags=tuple(s.get("Tags") or ()), meta=dict(s.get("Meta") or {}),
                       weight_passing=int(w.get("Passing", 1)),
                       weight_warning=int(w.get("Warning", 1)),
                       status="warning" if "warning" in statuses else "passing")
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return v


@dataclass
class _Copy:
    view: MemoryView
    index: int
    used: float
    task: asyncio.Task[None] | None = None


class RemoteViews:
    """``dnsserver.RemoteViews`` over the federation (see the module docstring)."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self._copies: dict[str, _Copy] = {}
        self._pending: dict[str, asyncio.Future[_Copy | None]] = {}
        self._failed: dict[str, float] = {}
        self._pinned: set[str] = set()
        self.on_change: Callable[[], None] | None = None
        """Called whenever a copy appears, changes or is dropped (the LB's view follows)."""
        self.query_runner: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
        """Executes a prepared query by name (set by the agent once the HTTP API exists)."""
        self._query_cache: dict[str, tuple[float, MemoryView]] = {}
        self.fetches = 0
        self.failures = 0

    async def query_view(self, name: str) -> MemoryView | None:
        """The results of prepared query ``name`` as a view (its instances under the service
        name ``name``, in the datacenter that answered); kept for :data:`QUERY_TTL`."""
        key = name.lower()
        hit = self._query_cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < QUERY_TTL:
            return hit[1]
        if self.query_runner is None:
            return None
        try:
            result = await asyncio.wait_for(self.query_runner(name), FIRST_TIMEOUT)
        except (RequestError, TimeoutError):
            result = None
        if result is None:
            return None
        view = results_view(name, result)
        if len(self._query_cache) > 1024:
            self._query_cache.clear()
        self._query_cache[key] = (now, view)
        return view

    def cached(self, datacenter: str) -> MemoryView | None:
        """The copy of ``datacenter`` if there is one (no fetch)."""
        c = self._copies.get(datacenter.lower())
        return c.view if c is not None else None

    def pin(self, datacenter: str) -> None:
        """Keep a copy of ``datacenter`` fresh for good (LB failover chains): fetch it now if
        need be, and never drop it for being idle."""
        dc = datacenter.lower()
        if dc in self._pinned or dc == self.federation.datacenter.lower():
            return
        self._pinned.add(dc)
        asyncio.get_running_loop().create_task(self._keep(dc), name=f"remote-view-pin-{dc}")

    async def _keep(self, dc: str) -> None:
        while dc in self._pinned:
            c = self._copies.get(dc)
            if c is not None and c.task is not None and not c.task.done():
                await asyncio.wait([c.task])   # returns when the copy is dropped
                continue
            self._failed.pop(dc, None)
            if await self.view_of(dc) is None:
                await asyncio.sleep(RETRY)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def view_of(self, datacenter: str) -> MemoryView | None:
        dc = datacenter.lower()
        if dc == self.federation.datacenter.lower():
            return None   # ours is answered from the local view, never here
        c = self._copies.get(dc)
        if c is not None:
            c.used = time.monotonic()
            return c.view
        if time.monotonic() - self._failed.get(dc, -NEGATIVE) < NEGATIVE:
            return None
        fut = self._pending.get(dc)
        if fut is None:
            fut = asyncio.ensure_future(self._first(dc))
            self._pending[dc] = fut
            fut.add_done_callback(lambda _f: self._pending.pop(dc, None))
        try:
            c = await asyncio.wait_for(asyncio.shield(fut), FIRST_TIMEOUT)
        except TimeoutError:
            return None
        return c.view if c is not None else None

    async def _fetch(self, dc: str, index: int, wait: float | None,
                     timeout: float | None) -> tuple[dict[str, Any], int] | None:
        path = f"{VIEW_PATH}?dc={dc}"
        if wait is not None:
            path += f"&index={index}&wait={int(wait)}s"
        self.fetches += 1
        try:
            coro = self.federation.forward(dc, "GET", path, {}, b"", forwarded=False, wait=wait)
            reply = await (asyncio.wait_for(coro, timeout) if timeout else coro)
        except (RequestError, TimeoutError) as e:
            self.failures += 1
            log.debug("remote view not fetched dc=%s error=%s", dc, e)
            return None
        if reply.status != 200:
            self.failures += 1
            return None
        try:
            doc = json.loads(reply.body)
            new_index = int(reply.headers.get("X-Consul-Index", "0"))
        except ValueError:
            self.failures += 1
            return None
        return (doc, new_index) if isinstance(doc, dict) else None

    async def _first(self, dc: str) -> _Copy | None:
        got = await self._fetch(dc, 0, None, FIRST_TIMEOUT)
        if got is None:
            self._failed[dc] = time.monotonic()
            return None
        self._failed.pop(dc, None)
        doc, index = got
        c = _Copy(view_from_document(dc, doc), index, time.monotonic())
        self._copies[dc] = c
        c.task = asyncio.get_running_loop().create_task(self._watch(dc, c),
                                                        name=f"remote-view-{dc}")
        self._changed()
        return c

    async def _watch(self, dc: str, c: _Copy) -> None:
        """Keep the copy fresh with blocking reads until nobody asks about ``dc``."""
        last_ok = time.monotonic()
        try:
            while dc in self._pinned or time.monotonic() - c.used < IDLE:
                got = await self._fetch(dc, c.index, WAIT, None)
                if got is None:
                    if time.monotonic() - last_ok > STALE:
                        self._failed[dc] = time.monotonic()
                        return
                    await asyncio.sleep(RETRY)
                    continue
                last_ok = time.monotonic()
                doc, index = got
                if index != c.index:
                    c.view = view_from_document(dc, doc)
                    c.index = index
                    self._changed()
        finally:
            if self._copies.get(dc) is c:
                del self._copies[dc]
                self._changed()

    async def close(self) -> None:
        self._pinned.clear()
        self.on_change = None
        tasks = [c.task for c in self._copies.values() if c.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception) as e:  # noqa: BLE001 - stopping
                log.debug("remote view watcher stopped error=%r", e)
        for f in list(self._pending.values()):
            f.cancel()


class FederatedView:
    """The view the load balancer reads: the local catalog, plus other datacenters' instances
    for listeners with ``Failover`` (``lb.view.FailoverView``).

    ``failover_instances`` pins the listed datacenters in :class:`RemoteViews` (so their copies
    are kept fresh by blocking reads from then on) and, when the local datacenter has no
    instance, answers from the nearest listed one that has some (nearest by the federation's
    RTT estimate, then the listed order). Its ``index`` rises with the local catalog's and with
    every change of a remote copy, so LB pools follow both, and switch back as soon as a
    local instance is healthy again.
    """

    def __init__(self, local: Any, remote: RemoteViews) -> None:
        self.local = local
        self.remote = remote
        self.datacenter: str = local.datacenter
        self._remote_changes = 0
        self._changed = asyncio.Event()
        remote.on_change = self._on_remote_change

    def _on_remote_change(self) -> None:
        self._remote_changes += 1
        self._changed.set()

    @property
    def index(self) -> int:
        return int(self.local.index) + self._remote_changes

    def services(self) -> Mapping[str, frozenset[str]]:
        return self.local.services()   # type: ignore[no-any-return]

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[Any]:
        return self.local.instances(service, tag, passing_only=passing_only)  # type: ignore[no-any-return]

    def failover_instances(self, service: str, tag: str | None, datacenters: Sequence[str], *,
                           passing_only: bool, local: Sequence[Any]) -> Sequence[Any]:
        for dc in datacenters:
            self.remote.pin(dc)
        if local:
            return local
        fed = self.remote.federation
        order = sorted(enumerate(datacenters), key=lambda p: (fed.rtt(p[1]), p[0]))
        for _, dc in order:
            view = self.remote.cached(dc)
            if view is None:
                continue
            found = view.instances(service, tag, passing_only=passing_only)
            if found:
                return found
        return ()

    async def wait(self, index: int, timeout: float) -> int:
        if self.index > index:
            return self.index
        self._changed.clear()
        local = asyncio.ensure_future(self.local.wait(self.local.index, timeout))
        remote = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait([local, remote], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (local, remote):
                t.cancel()
        return self.index

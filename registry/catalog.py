"""The catalog: every node's services and checks, with per-resource indexes and blocking waits.

Theory of operation
-------------------
The catalog holds one entry per node (this agent's own and the ones learned over gossip). An
entry is the node's published info (ID, address, meta), its gossip status, and its services and
checks. Nothing here knows about the network: the local state (``local.py``) and the replicator
(``replication.py``) call the mutators, always inside :meth:`Catalog.batch` so that one logical
change moves the indexes once.

Indexes follow Consul's model. One counter (``index``) rises on every visible change; each
*resource* remembers the counter value of its last change:

* ``services``          the set of service names or their tags (``/v1/catalog/services``)
* ``nodes``             the set of nodes or their address/meta (``/v1/catalog/nodes``)
* ``svc:<name>``        any instance of that service, its checks, or its node's health
* ``node:<name>``       anything on that node
* ``checks``            any check status anywhere (``/v1/health/state/*``)

A blocking query on ``/v1/health/service/web?index=N`` waits on ``svc:web`` only, so a change to
``db`` never wakes a ``web`` watcher (Consul's per-table watch sets give the same behaviour).
``X-Consul-Index`` for a read is that resource's index, always >= 1.

Health: every node has a synthesized ``serfHealth`` check (passing while gossip says the node is
alive, critical when it failed). An instance's health is the worst of its node's checks
(serfHealth and node-level checks such as ``_node_maintenance``) and its own service checks.
:meth:`Catalog.instances` (the view read by DNS and the LB) only ever returns instances that
are not critical.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import field
from typing import Any

from gossip.dclass import dataclass

from .compact import SHARED

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
STATUSES = (PASSING, WARNING, CRITICAL)
_RANK = {PASSING: 0, WARNING: 1, CRITICAL: 2}

SERF_CHECK_ID = "serfHealth"
SERF_CHECK_NAME = "Serf Health Status"
NODE_MAINT_CHECK_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"

#: gossip statuses under which a node still counts as alive for health
_LIVE = frozenset({"alive", "leaving"})
EXTERNAL = "external"
"""Status of an external node (registered through the catalog API for a host that runs no
agent, see ``registry/external.py``): it has no serfHealth check; its health is its checks."""


def health_rank(status: str) -> int:
    """0 passing, 1 warning, 2 critical (the index in ``STATUSES``); unknown counts as critical."""
    return _RANK.get(status, 2)


def worst(statuses: Iterable[str]) -> str:
    """The worst of some check statuses, passing when there are none."""
    return STATUSES[max(map(health_rank, statuses), default=0)]


# --- records published by a node (what replicates) -------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """What a node says about itself."""

    name: str
    node_id: str = ""
    address: str = ""
    datacenter: str = "dc1"
    meta: Mapping[str, str] = field(default_factory=dict)
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRecord:
    """One service instance as registered on its node."""

    id: str
    service: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    weight_passing: int = 1
    weight_warning: int = 1
    tagged_addresses: Mapping[str, Any] = field(default_factory=dict)
    enable_tag_override: bool = False
    kind: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckRecord:
    """One check and its current result as published by its node."""

    check_id: str
    name: str
    status: str = CRITICAL
    output: str = ""
    notes: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""


# --- what readers get --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A node as readers see it (satisfies the ``Node`` protocol of docs/contracts.md)."""

    name: str
    address: str
    datacenter: str
    meta: Mapping[str, str]
    status: str
    node_id: str = ""
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """A check as readers see it: the record plus its node and catalog indexes."""

    node: str
    record: CheckRecord
    create_index: int
    modify_index: int

    @property
    def check_id(self) -> str:
        return self.record.check_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def service_id(self) -> str:
        return self.record.service_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """A service instance with its health (satisfies the ``Instance`` protocol)."""

    node: str
    node_address: str
    datacenter: str
    service_id: str
    service: str
    tags: tuple[str, ...]
    address: str
    port: int
    meta: Mapping[str, str]
    weight_passing: int
    weight_warning: int
    health: str
    # extras for the HTTP API
    node_obj: Node
    record: ServiceRecord
    checks: tuple[Check, ...]
    create_index: int
    modify_index: int


# --- the catalog -------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Item:
    value: Any
    create_index: int
    modify_index: int


@dataclass(slots=True)
class _NodeEntry:
    info: NodeInfo
    status: str
    create_index: int
    modify_index: int
    status_index: int
    services: dict[str, _Item] = field(default_factory=dict)
    checks: dict[str, _Item] = field(default_factory=dict)
    node_obj: Node | None = None
    serf_check: Check | None = None


class Catalog:
    """All nodes' services and checks; also the ``View`` of docs/contracts.md."""

    def __init__(self, *, datacenter: str, local_node: str) -> None:
        self.datacenter = datacenter
        self.local_node = local_node
        self._nodes: dict[str, _NodeEntry] = {}  # keyed by lowercase name
        self._index = 1
        self._next_index = 2
        self._keys: dict[str, int] = {}
        self._batch_depth = 0
        self._pending: set[str] = set()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # caches, each valid for one resource index
        self._svc_cache: dict[str, tuple[int, tuple[Instance, ...]]] = {}
        self._services_cache: tuple[int, dict[str, frozenset[str]]] | None = None
        self._nodes_cache: tuple[int, tuple[Node, ...]] | None = None
        self._by_service: dict[str, dict[_Item, str]] = {}  # lc name -> {item: lc node name}
        self.counters: dict[str, int] = {"changes": 0, "wakeups": 0}
        self._listeners: list[Callable[[], object]] = []

    # --- indexes ----------------------------------------------------------------------------

    @property
    def index(self) -> int:
        return self._index

    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` synchronously on every index step (before anyone is woken, so before
        any answer about the change goes out); returns the function that undoes it. The DNS
        server's C thread uses it to stop serving answers built before the change."""
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)
        return unsubscribe

    def key_index(self, key: str) -> int:
        """Index of a resource's last change; for a never-seen resource, the catalog's index
        when its collection last changed (so a watcher on an unknown service wakes when it
        appears), never below 1."""
        v = self._keys.get(key)
        if v is not None:
            return v
        if key.startswith("svc:"):
            return max(1, self._keys.get("services", 1))
        if key.startswith("node:"):
            return max(1, self._keys.get("nodes", 1))
        return 1

    def _touch(self, *keys: str) -> int:
        """Mark resources changed in the current batch; returns the index they will get."""
        self._pending.update(keys)
        nxt = self._next_index
        if nxt != self._index + 1:
            # one int object per batch, shared by every item it stamps (not one per item)
            nxt = self._next_index = self._index + 1
        return nxt

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group mutations so that they become visible with one index step."""
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0 and self._pending:
                self._commit()

    def _commit(self) -> None:
        keys = self._pending
        self._pending = set()
        self._index += 1
        self.counters["changes"] += 1
        for fn in self._listeners:
            fn()
        idx = self._index
        keys.add("*")
        for k in keys:
            self._keys[k] = idx
        for k in keys:
            waiters = self._waiters.pop(k, None)
            if waiters:
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
                        self.counters["wakeups"] += 1

    async def wait_keys(self, keys: Sequence[str], index: int, timeout: float) -> int:
        """Return as soon as any of ``keys`` has an index above ``index`` (or on timeout).

        Returns the highest index among ``keys`` at that moment."""
        current = max(self.key_index(k) for k in keys)
        if current > index or timeout <= 0:
            return current
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for k in keys:
            self._waiters.setdefault(k, set()).add(fut)
        try:
            # asyncio.timeout, not wait_for(shield(...)): on 3.11 the latter can swallow a
            # cancellation that races with a wake-up, and a stopping agent would then hang.
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            for k in keys:
                ws = self._waiters.get(k)
                if ws is not None:
                    ws.discard(fut)
                    if not ws:
                        del self._waiters[k]
            if not fut.done():
                fut.cancel()
        return max(self.key_index(k) for k in keys)

    async def wait(self, index: int, timeout: float) -> int:
        """View protocol: return once ``self.index > index`` or after ``timeout``."""
        await self.wait_keys(("*",), index, timeout)
        return self._index

    def waiter_count(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    # --- mutators (call inside batch()) -----------------------------------------------------

    def _entry_keys(self, e: _NodeEntry) -> list[str]:
        name = e.info.name.lower()
        out = [f"node:{name}"]
        out.extend(f"svc:{it.value.service.lower()}" for it in e.services.values())
        return out

    def put_node(self, info: NodeInfo, status: str | None = None) -> None:
        """Add a node or update its published info (and optionally its gossip status)."""
        key = info.name.lower()
        with self.batch():
            e = self._nodes.get(key)
            if e is None:
                idx = self._touch("nodes", f"node:{key}", "checks")
                self._nodes[key] = _NodeEntry(info=info, status=status or "alive",
                                              create_index=idx, modify_index=idx,
                                              status_index=idx)
                return
            changed = False
            if e.info != info:
                idx = self._touch("nodes", *self._entry_keys(e))
                e.info = info
                e.modify_index = idx
                changed = True
            if status is not None and status != e.status:
                self.set_status(info.name, status)
            elif changed:
                e.node_obj = None
                e.serf_check = None

    def set_status(self, name: str, status: str) -> None:
        """Record the node's gossip status; its instances' health follows at once."""
        e = self._nodes.get(name.lower())
        if e is None or e.status == status:
            return
        with self.batch():
            was_live = e.status in _LIVE
            e.status = status
            e.node_obj = None
            e.serf_check = None
            if was_live != (status in _LIVE):
                idx = self._touch("checks", *self._entry_keys(e))
                e.status_index = idx
            else:
                self._touch(f"node:{name.lower()}")

    def remove_node(self, name: str) -> bool:
        key = name.lower()
        e = self._nodes.get(key)
        if e is None:
            return False
        with self.batch():
            self._touch("nodes", "checks", *self._entry_keys(e))
            if e.services:
                self._touch("services")
            for it in e.services.values():
                self._unindex_service(it)
            del self._nodes[key]
        return True

    def put_service(self, node: str, rec: ServiceRecord) -> None:
        e = self._nodes[node.lower()]
        it = e.services.get(rec.id)
        if it is not None and it.value == rec:
            return
        with self.batch():
            keys = [f"node:{node.lower()}", f"svc:{rec.service.lower()}", "services"]
            if it is not None and it.value.service.lower() != rec.service.lower():
                keys.append(f"svc:{it.value.service.lower()}")
                self._unindex_service(it)
            idx = self._touch(*keys)
            if it is None:
                it = e.services[rec.id] = _Item(rec, idx, idx)
            else:
                it.value = rec
                it.modify_index = idx
            # keyed by the item itself: no (node, id) tuple per instance
            self._by_service.setdefault(rec.service.lower(), {})[it] = SHARED.value(node.lower())

    def remove_service(self, node: str, service_id: str) -> bool:
        e = self._nodes.get(node.lower())
        if e is None or service_id not in e.services:
            return False
        with self.batch():
            it = e.services.pop(service_id)
            self._touch(f"node:{node.lower()}", f"svc:{it.value.service.lower()}", "services")
            self._unindex_service(it)
        return True

    def _unindex_service(self, it: _Item) -> None:
        service = it.value.service.lower()
        m = self._by_service.get(service)
        if m is not None:
            m.pop(it, None)
            if not m:
                del self._by_service[service]

    def put_check(self, node: str, rec: CheckRecord) -> None:
        e = self._nodes[node.lower()]
        svc = e.services.get(rec.service_id) if rec.service_id else None
        if svc is not None and svc.value.id is not rec.service_id:
            # one string for the ID the service and its check both name (100,000 of them)
            rec = dataclasses.replace(rec, service_id=svc.value.id)
        it = e.checks.get(rec.check_id)
        if it is not None and it.value == rec:
            return
        with self.batch():
            keys = self._check_keys(e, rec)
            if it is not None:
                keys.extend(self._check_keys(e, it.value))
            idx = self._touch("checks", *keys)
            if it is None:
                e.checks[rec.check_id] = _Item(rec, idx, idx)
            else:
                it.value = rec
                it.modify_index = idx

    def remove_check(self, node: str, check_id: str) -> bool:
        e = self._nodes.get(node.lower())
        if e is None or check_id not in e.checks:
            return False
        with self.batch():
            it = e.checks.pop(check_id)
            self._touch("checks", *self._check_keys(e, it.value))
        return True

    def _check_keys(self, e: _NodeEntry, rec: CheckRecord) -> list[str]:
        if not rec.service_id:
            return self._entry_keys(e)  # a node check changes every instance's health
        keys = [f"node:{e.info.name.lower()}"]
        svc = e.services.get(rec.service_id)
        if svc is not None:
            keys.append(f"svc:{svc.value.service.lower()}")
        if rec.service_name:
            keys.append(f"svc:{rec.service_name.lower()}")
        return keys

    def replace_node(self, info: NodeInfo, services: Mapping[str, ServiceRecord],
                     checks: Mapping[str, CheckRecord]) -> None:
        """Make a node's services and checks exactly these (for full-state merges)."""
        with self.batch():
            self.put_node(info)
            e = self._nodes[info.name.lower()]
            for sid in [s for s in e.services if s not in services]:
                self.remove_service(info.name, sid)
            for cid in [c for c in e.checks if c not in checks]:
                self.remove_check(info.name, cid)
            for rec in services.values():
                self.put_service(info.name, rec)
            for crec in checks.values():
                self.put_check(info.name, crec)

    # --- raw reads (for replication and the API) --------------------------------------------

    def has_node(self, name: str) -> bool:
        return name.lower() in self._nodes

    def node_info(self, name: str) -> NodeInfo | None:
        e = self._nodes.get(name.lower())
        return e.info if e else None

    def node_services(self, name: str) -> dict[str, ServiceRecord]:
        e = self._nodes.get(name.lower())
        return {k: it.value for k, it in e.services.items()} if e else {}

    def node_check_records(self, name: str) -> dict[str, CheckRecord]:
        e = self._nodes.get(name.lower())
        return {k: it.value for k, it in e.checks.items()} if e else {}

    def node_names(self) -> list[str]:
        return sorted(e.info.name for e in self._nodes.values())

    def node_status(self, name: str) -> str | None:
        e = self._nodes.get(name.lower())
        return e.status if e else None

    # --- the View ---------------------------------------------------------------------------

    def _node_obj(self, e: _NodeEntry) -> Node:
        if e.node_obj is None:
            i = e.info
            e.node_obj = Node(name=i.name, address=i.address, datacenter=i.datacenter,
                              meta=i.meta, status=e.status, node_id=i.node_id,
                              tagged_addresses=i.tagged_addresses,
                              create_index=e.create_index, modify_index=e.modify_index)
        return e.node_obj

    def _serf_check(self, e: _NodeEntry) -> Check:
        if e.serf_check is None:
            live = e.status in _LIVE
            rec = CheckRecord(
                check_id=SERF_CHECK_ID, name=SERF_CHECK_NAME,
                status=PASSING if live else CRITICAL,
                output="Agent alive and reachable" if live else "Agent not live or unreachable",
                type="",
            )
            e.serf_check = Check(node=e.info.name, record=rec, create_index=e.create_index,
                                 modify_index=e.status_index)
        return e.serf_check

    def services(self) -> Mapping[str, frozenset[str]]:
        """Every registered service name (healthy or not) -> union of its instances' tags."""
        idx = self.key_index("services")
        if self._services_cache is not None and self._services_cache[0] == idx:
            return self._services_cache[1]
        out: dict[str, set[str]] = {}
        for e in self._nodes.values():
            for it in e.services.values():
                out.setdefault(it.value.service, set()).update(it.value.tags)
        frozen = {k: frozenset(v) for k, v in sorted(out.items())}
        self._services_cache = (idx, frozen)
        return frozen

    def entries(self, service: str) -> tuple[Instance, ...]:
        """All instances of ``service`` (any health), sorted by node then service ID."""
        key = service.lower()
        idx = self.key_index(f"svc:{key}")
        cached = self._svc_cache.get(key)
        if cached is not None and cached[0] == idx:
            return cached[1]
        out: list[Instance] = []
        for it, node_key in self._by_service.get(key, {}).items():
            e = self._nodes.get(node_key)
            if e is None or e.services.get(it.value.id) is not it:
                continue
            out.append(self._instance(e, it))
        out.sort(key=lambda i: (i.node, i.service_id))
        result = tuple(out)
        if len(self._svc_cache) > 4096:
            self._svc_cache.clear()
        self._svc_cache[key] = (idx, result)
        return result

    def _instance(self, e: _NodeEntry, it: _Item) -> Instance:
        rec: ServiceRecord = it.value
        checks = [] if e.status == EXTERNAL else [self._serf_check(e)]
        node_name = e.info.name
        for cit in e.checks.values():
            c: CheckRecord = cit.value
            if not c.service_id or c.service_id == rec.id:
                checks.append(Check(node=node_name, record=c, create_index=cit.create_index,
                                    modify_index=cit.modify_index))
        health = worst([c.record.status for c in checks])
        node = self._node_obj(e)
        return Instance(
            node=node_name, node_address=e.info.address, datacenter=e.info.datacenter,
            service_id=rec.id, service=rec.service, tags=rec.tags, address=rec.address,
            port=rec.port, meta=rec.meta, weight_passing=rec.weight_passing,
            weight_warning=rec.weight_warning, health=health, node_obj=node, record=rec,
            checks=tuple(checks), create_index=it.create_index, modify_index=it.modify_index,
        )

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[Instance]:
        """Healthy instances only (never critical); ``passing_only`` also drops warnings."""
        out = []
        tl = tag.lower() if tag is not None else None
        for inst in self.entries(service):
            if inst.health == CRITICAL or (passing_only and inst.health != PASSING):
                continue
            if tl is not None and not any(t.lower() == tl for t in inst.tags):
                continue
            out.append(inst)
        return out

    def nodes(self) -> Sequence[Node]:
        # keyed by the global index, not by "nodes": a status change does not move "nodes",
        # yet it changes the Node objects listed here
        if self._nodes_cache is not None and self._nodes_cache[0] == self._index:
            return self._nodes_cache[1]
        result = tuple(sorted((self._node_obj(e) for e in self._nodes.values()),
                              key=lambda n: n.name))
        self._nodes_cache = (self._index, result)
        return result

    def node(self, name: str) -> Node | None:
        e = self._nodes.get(name.lower())
        return self._node_obj(e) if e else None

    def node_service_items(self, name: str) -> list[tuple[ServiceRecord, int, int]]:
        e = self._nodes.get(name.lower())
        if e is None:
            return []
        return [(it.value, it.create_index, it.modify_index)
                for _, it in sorted(e.services.items())]

    def node_checks(self, name: str) -> list[Check]:
        """All checks on a node, serfHealth first (Consul's order)."""
        e = self._nodes.get(name.lower())
        if e is None:
            return []
        out = [] if e.status == EXTERNAL else [self._serf_check(e)]
        for cid, cit in sorted(e.checks.items()):
            out.append(Check(node=e.info.name, record=cit.value, create_index=cit.create_index,
                             modify_index=cit.modify_index))
        return out

    def all_checks(self) -> list[Check]:
        out: list[Check] = []
        for name in self.node_names():
            out.extend(self.node_checks(name))
        return out

    def service_checks(self, service: str) -> list[Check]:
        """Checks attached to instances of ``service`` (not node checks), like Consul."""
        out: list[Check] = []
        for inst in self.entries(service):
            out.extend(c for c in inst.checks if c.record.service_id == inst.service_id)
        return out

    def stats(self) -> dict[str, int]:
        return {
            "nodes": len(self._nodes),
            "services": len(self._by_service),   # distinct names (as indexed: case-insensitively)
            "instances": sum(len(e.services) for e in self._nodes.values()),
            "checks": sum(len(e.checks) for e in self._nodes.values()),
            "index": self._index,
            "blocking_waiters": self.waiter_count(),
            **self.counters,
        }

    def digest(self) -> str:
        """A hash of everything replicated (records, not indexes): equal on converged agents."""
        import hashlib
        import json

        h = hashlib.sha256()
        for name in self.node_names():
            e = self._nodes[name.lower()]
            i = e.info
            h.update(json.dumps([i.name, i.node_id, i.address, i.datacenter, sorted(i.meta.items()),
                                 e.status in _LIVE], sort_keys=True).encode())
            for sid, it in sorted(e.services.items()):
                r = it.value
                h.update(json.dumps([sid, r.service, list(r.tags), r.address, r.port,
                                     sorted(r.meta.items()), r.weight_passing,
                                     r.weight_warning], sort_keys=True).encode())
            for cid, it in sorted(e.checks.items()):
                c = it.value
                h.update(json.dumps([cid, c.name, c.status, c.service_id, c.notes],
                                    sort_keys=True).encode())
        return h.hexdigest()

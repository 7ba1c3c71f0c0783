"""An in-memory catalog view satisfying :class:`dnsserver.view.View`.

It is a real, small catalog (nodes, service instances with a health status and maintenance
flag, an index that rises on every change, ``wait``), used by the DNS tests and benchmarks and
by anyone embedding the DNS server without Rumor's registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

__all__ = ["MemInstance", "MemNode", "MemoryView"]

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MemNode:
    """A node: name, address, datacenter, meta, gossip status."""

    name: str
    address: str
    datacenter: str = "dc1"
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    status: str = "alive"


@dataclass(frozen=True, slots=True)
class MemInstance:
    """A service instance as the view returns it."""

    node: str
    node_address: str
    datacenter: str
    service_id: str
    service: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    weight_passing: int = 1
    weight_warning: int = 1
    health: str = "passing"


@dataclass(slots=True)
class _Reg:
    """A registration: instance fields plus its check status and maintenance flag."""

    service_id: str
    service: str
    tags: tuple[str, ...]
    address: str
    port: int
    meta: Mapping[str, str]
    weight_passing: int
    weight_warning: int
    status: str = "passing"          # worst check: passing | warning | critical
    maintenance: bool = False


class MemoryView:
    """A mutable in-memory catalog; every mutation raises ``index`` by one."""

    def __init__(self, datacenter: str = "dc1") -> None:
        self.datacenter = datacenter
        self._index = 1
        self._nodes: dict[str, MemNode] = {}          # lower name -> node
        self._regs: dict[str, dict[str, _Reg]] = {}   # lower node -> service_id -> reg
        self._waiters: list[asyncio.Future[None]] = []
        self._listeners: list[Callable[[], object]] = []

    # -- the View protocol ------------------------------------------------------------------
    @property
    def index(self) -> int:
        return self._index

    def services(self) -> Mapping[str, frozenset[str]]:
        out: dict[str, set[str]] = {}
        for regs in self._regs.values():
            for r in regs.values():
                out.setdefault(r.service, set()).update(r.tags)
        return {k: frozenset(v) for k, v in out.items()}

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[MemInstance]:
        s = service.lower()
        t = tag.lower() if tag is not None else None
        out: list[MemInstance] = []
        for key, regs in self._regs.items():
            node = self._nodes[key]
            if node.status != "alive":
                continue
            for r in regs.values():
                if r.service.lower() != s or r.maintenance or r.status == "critical":
                    continue
                if passing_only and r.status != "passing":
                    continue
                if t is not None and t not in (x.lower() for x in r.tags):
                    continue
                out.append(MemInstance(
                    node=node.name, node_address=node.address, datacenter=node.datacenter,
                    service_id=r.service_id, service=r.service, tags=r.tags, address=r.address,
                    port=r.port, meta=r.meta, weight_passing=r.weight_passing,
                    weight_warning=r.weight_warning, health=r.status))
        out.sort(key=lambda i: (i.node, i.service_id))
        return out

    def nodes(self) -> Sequence[MemNode]:
        return sorted(self._nodes.values(), key=lambda n: n.name)

    def node(self, name: str) -> MemNode | None:
        return self._nodes.get(name.lower())

    async def wait(self, index: int, timeout: float) -> int:
        if self._index > index:
            return self._index
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return self._index

    # -- mutations ----------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` synchronously on every mutation; returns the undo (see View)."""
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)
        return unsubscribe

    def _bump(self) -> None:
        self._index += 1
        for fn in self._listeners:
            fn()
        waiters, self._waiters = self._waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def add_node(self, name: str, address: str, *, meta: Mapping[str, str] | None = None,
                 status: str = "alive") -> MemNode:
        """Add or replace a node (keeps its services)."""
        n = MemNode(name, address, self.datacenter, MappingProxyType(dict(meta or {})), status)
        self._nodes[name.lower()] = n
        self._regs.setdefault(name.lower(), {})
        self._bump()
        return n

    def set_node_status(self, name: str, status: str) -> None:
        """Set a node's gossip status ('alive', 'suspect', 'failed', 'left')."""
        n = self._nodes[name.lower()]
        self._nodes[name.lower()] = replace(n, status=status)
        self._bump()

    def remove_node(self, name: str) -> None:
        """Forget a node and its services (reaped)."""
        self._nodes.pop(name.lower(), None)
        self._regs.pop(name.lower(), None)
        self._bump()

    def register(self, node: str, service: str, *, service_id: str = "", port: int = 0,
                 address: str = "", tags: tuple[str, ...] | list[str] = (),
                 meta: Mapping[str, str] | None = None, weight_passing: int = 1,
                 weight_warning: int = 1, status: str = "passing") -> None:
        """Register (or replace) an instance on an existing node."""
        regs = self._regs[node.lower()]
        sid = service_id or service
        regs[sid] = _Reg(sid, service, tuple(tags), address, port,
                         MappingProxyType(dict(meta or {})), weight_passing, weight_warning, status)
        self._bump()

    def deregister(self, node: str, service_id: str) -> None:
        """Remove an instance."""
        self._regs[node.lower()].pop(service_id, None)
        self._bump()

    def set_health(self, node: str, service_id: str, status: str) -> None:
        """Set an instance's worst check status: 'passing', 'warning' or 'critical'."""
        self._regs[node.lower()][service_id].status = status
        self._bump()

    def set_maintenance(self, node: str, service_id: str, on: bool) -> None:
        """Put an instance in or out of maintenance."""
        self._regs[node.lower()][service_id].maintenance = on
        self._bump()

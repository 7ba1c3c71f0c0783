"""A working in-memory catalog view: the load balancer's test double and stand-alone feed.

It satisfies :class:`lb.view.CatalogView` (and the wider view of docs/contracts.md): every
change bumps ``index`` and wakes the tasks blocked in :meth:`MemoryView.wait`. Only healthy
instances are stored here: "removing because a check failed" is removing it from the view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["MemInstance", "MemoryView"]


@dataclass(frozen=True, slots=True)
class MemInstance:
    """An immutable service instance as the catalog hands it out."""

    service: str
    port: int
    address: str = "127.0.0.1"
    node: str = "node1"
    node_address: str = "127.0.0.1"
    datacenter: str = "dc1"
    service_id: str = ""
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    weight_passing: int = 1
    weight_warning: int = 1
    health: str = "passing"

    def __post_init__(self) -> None:
        if not self.service_id:
            object.__setattr__(self, "service_id", f"{self.service}-{self.port}")


class MemoryView:
    """Holds instances per service; ``set_instances`` replaces one service's set atomically."""

    def __init__(self, datacenter: str = "dc1") -> None:
        self.datacenter = datacenter
        self._index = 1
        self._services: dict[str, tuple[MemInstance, ...]] = {}
        self._waiters: list[asyncio.Future[int]] = []

    @property
    def index(self) -> int:
        return self._index

    def services(self) -> Mapping[str, frozenset[str]]:
        return {name: frozenset(t for inst in insts for t in inst.tags)
                for name, insts in self._services.items()}

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[MemInstance]:
        insts = self._services.get(service.lower(), ())
        out = []
        for inst in insts:
            if tag is not None and tag.lower() not in (t.lower() for t in inst.tags):
                continue
            if passing_only and inst.health != "passing":
                continue
            out.append(inst)
        return out

    def set_instances(self, service: str, instances: Iterable[MemInstance]) -> int:
        """Replace the healthy instances of ``service``; returns the new index."""
        insts = tuple(sorted(instances, key=lambda i: (i.node, i.service_id)))
        if insts:
            self._services[service.lower()] = insts
        else:
            self._services.pop(service.lower(), None)
        return self._bump()

    def add_instance(self, inst: MemInstance) -> int:
        cur = [i for i in self._services.get(inst.service.lower(), ())
               if (i.node, i.service_id) != (inst.node, inst.service_id)]
        return self.set_instances(inst.service, [*cur, inst])

    def remove_instance(self, service: str, service_id: str) -> int:
        cur = [i for i in self._services.get(service.lower(), ()) if i.service_id != service_id]
        return self.set_instances(service, cur)

    def _bump(self) -> int:
        self._index += 1
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(self._index)
        return self._index

    async def wait(self, index: int, timeout: float) -> int:
        """Return as soon as ``index`` has risen past ``index``, or after ``timeout`` seconds."""
        if self._index > index:
            return self._index
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the result, leaving the caller's task unstoppable
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return self._index

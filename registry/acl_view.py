"""The catalog as one ACL token sees it: the view the registry hands to the DNS server.

``dnsserver`` knows nothing of ACLs (it imports nothing of ours); it answers from whatever view it
is given. This view lists only the services the DNS token (Consul's ``tokens.dns``, else
``tokens.default``, else the anonymous token) may read, and only instances and nodes on nodes it
may read, so anything else is NXDOMAIN. ``index`` adds the ACL generation to the catalog's, so a
reload that changes the rules also flushes the DNS answer cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .acl import ACL, READ, Identity
from .catalog import Catalog, Check, Instance, Node


class ACLView:
    """A read-only ``View`` (docs/contracts.md) of ``catalog`` filtered for one token: the DNS
    token by default, or ``who()`` (the web UI's pages pass the request's identity)."""

    def __init__(self, catalog: Catalog, acl: ACL,
                 who: Callable[[], Identity] | None = None) -> None:
        self.catalog = catalog
        self.acl = acl
        self.datacenter = catalog.datacenter
        self._ident = who or acl.dns_identity
        self._services: tuple[tuple[int, int, str], Mapping[str, frozenset[str]]] | None = None

    def _who(self) -> Identity | None:
        """None when ACLs are off (everything is visible)."""
        if not self.acl.enabled:
            return None
        return self._ident()

    @property
    def index(self) -> int:
        return self.catalog.index + self.acl.generation

    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` synchronously whenever ``index`` rises (a catalog change or an ACL
        reload); returns the function that undoes it (docs/contracts.md)."""
        undo = (self.catalog.subscribe(fn), self.acl.subscribe(fn))

        def unsubscribe() -> None:
            for u in undo:
                u()
        return unsubscribe

    async def wait(self, index: int, timeout: float) -> int:
        gen = self.acl.generation
        return await self.catalog.wait(index - gen, timeout) + gen

    def services(self) -> Mapping[str, frozenset[str]]:
        who = self._who()
        all_services = self.catalog.services()
        if who is None:
            return all_services
        key = (self.catalog.key_index("services"), self.acl.generation, who.accessor_id)
        if self._services is not None and self._services[0] == key:
            return self._services[1]
        out = {n: t for n, t in all_services.items() if who.allowed("service", n, READ)}
        self._services = (key, out)
        return out

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[Instance]:
        insts = self.catalog.instances(service, tag, passing_only=passing_only)
        who = self._who()
        if who is None or not insts:
            return insts
        if not who.allowed("service", insts[0].service, READ):
            return []
        return [i for i in insts if who.allowed("node", i.node, READ)]

    def nodes(self) -> Sequence[Node]:
        who = self._who()
        if who is None:
            return self.catalog.nodes()
        return [n for n in self.catalog.nodes() if who.allowed("node", n.name, READ)]

    def node(self, name: str) -> Node | None:
        n = self.catalog.node(name)
        who = self._who()
        if n is None or who is None or who.allowed("node", n.name, READ):
            return n
        return None

    # --- what the web UI's model also reads ---------------------------------------------------

    def key_index(self, key: str) -> int:
        return self.catalog.key_index(key)

    def entries(self, service: str) -> Sequence[Instance]:
        """Every instance (any health) the token may see: service:read and node:read."""
        insts = self.catalog.entries(service)
        who = self._who()
        if who is None:
            return insts
        return [i for i in insts if who.allowed("service", i.service, READ)
                and who.allowed("node", i.node, READ)]

    def node_checks(self, name: str) -> list[Check]:
        return [c for c in self.catalog.node_checks(name) if self._sees_check(c)]

    def all_checks(self) -> list[Check]:
        return [c for c in self.catalog.all_checks() if self._sees_check(c)]

    def _sees_check(self, c: Check) -> bool:
        who = self._who()
        if who is None:
            return True
        svc = c.record.service_name
        return who.allowed("node", c.node, READ) and (not svc or who.allowed("service", svc, READ))

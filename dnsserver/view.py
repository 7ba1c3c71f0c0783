"""What the DNS server reads from a catalog: the protocols of docs/contracts.md.

``dnsserver`` imports nothing from the rest of Rumor; the registry's catalog view satisfies
these protocols structurally, and :mod:`dnsserver.memview` is a small in-memory implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol


class Instance(Protocol):
    """One healthy service instance (immutable)."""

    @property
    def node(self) -> str: ...
    @property
    def node_address(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def service_id(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def meta(self) -> Mapping[str, str]: ...
    @property
    def weight_passing(self) -> int: ...
    @property
    def weight_warning(self) -> int: ...
    @property
    def health(self) -> str: ...


class Node(Protocol):
    """One node of the catalog (immutable)."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def datacenter(self) -> str: ...
    @property
    def meta(self) -> Mapping[str, str]: ...
    @property
    def status(self) -> str: ...


class View(Protocol):
    """The catalog as the DNS server sees it (docs/contracts.md)."""

    datacenter: str

    @property
    def index(self) -> int:
        """Rises on every visible change; >= 1."""
        ...

    def services(self) -> Mapping[str, frozenset[str]]:
        """Every registered service name (healthy or not) -> union of its instances' tags."""
        ...

    def instances(
        self, service: str, tag: str | None = None, *, passing_only: bool = False
    ) -> Sequence[Instance]:
        """Healthy instances only, matched case-insensitively, sorted by (node, service_id)."""
        ...

    def nodes(self) -> Sequence[Node]: ...

    def node(self, name: str) -> Node | None:
        """The node called ``name`` (case-insensitive), or None."""
        ...

    async def wait(self, index: int, timeout: float) -> int:
        """Return as soon as ``self.index > index``, or after ``timeout``; returns the index."""
        ...


class Subscribable(View, Protocol):
    """A view that can also say, synchronously, that ``index`` rose (optional: the DNS
    server serves cache hits from its C thread only for such a view, since that thread cannot
    read ``index`` itself)."""

    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` inside every change that raises ``index``, before the change's
        outcome is reported to anyone; returns the function that undoes the subscription."""
        ...


class RemoteViews(Protocol):
    """Other datacenters' catalogs, for ``<name>.service.<dc>`` and ``<name>.node.<dc>``.

    Whoever embeds the server supplies it (Rumor's registry does, reaching the other
    datacenter through its WAN members); the DNS server only reads the view it hands back."""

    async def view_of(self, datacenter: str) -> View | None:
        """That datacenter's view, or None when it is unknown or cannot be reached."""
        ...

    async def query_view(self, name: str) -> View | None:
        """The results of the prepared query ``name`` as a view in which they are the
        instances of a service called ``name``; None when there is no such query."""
        ...

"""What the load balancer reads from the catalog (docs/contracts.md), as ``typing.Protocol``s.

``lb`` imports nothing from the rest of Rumor: the registry's catalog view satisfies these
protocols structurally, and :mod:`lb.memview` is a small working implementation for tests and
for running the proxy on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class CatalogView(Protocol):
    """The catalog as the load balancer sees it."""

    @property
    def index(self) -> int: ...

    def services(self) -> Mapping[str, frozenset[str]]: ...

    def instances(self, service: str, tag: str | None = None, *,
                  passing_only: bool = False) -> Sequence[Instance]: ...

    async def wait(self, index: int, timeout: float) -> int: ...


class FailoverView(CatalogView, Protocol):
    """A view that can also read other datacenters, for listeners with ``Failover``."""

    def failover_instances(self, service: str, tag: str | None, datacenters: Sequence[str], *,
                           passing_only: bool, local: Sequence[Instance]) -> Sequence[Instance]:
        """``local`` when it is not empty, else the instances of the nearest of
        ``datacenters`` that has some (empty when none has). A change in those datacenters
        raises the view's ``index`` like a local one."""
        ...

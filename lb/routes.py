"""HTTP routing table: (Host, path) -> the pool key (service, tag). Pure and unit-tested.

Rules with a host win over rules without one; among them the longest path prefix wins.
Hosts compare case-insensitively and without the port. fabio-style ``urlprefix-host/path``
tags on instances become rules whose target is (service, that tag), so only the instances
carrying the tag receive the traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .config import Route, split_urlprefix

__all__ = ["RouteTable", "urlprefix_routes"]

Target = tuple[str, "str | None"]


class RouteTable:
    __slots__ = ("_any", "_by_host", "single", "targets")

    def __init__(self, routes: Iterable[Route]) -> None:
        by_host: dict[str, list[tuple[str, Target]]] = {}
        anyhost: list[tuple[str, Target]] = []
        targets: set[Target] = set()
        seen: set[tuple[str, str]] = set()
        for r in routes:
            if (r.host, r.path_prefix) in seen:
                continue        # first rule for a (host, prefix) wins
            seen.add((r.host, r.path_prefix))
            t: Target = (r.service, r.tag)
            targets.add(t)
            (by_host.setdefault(r.host, []) if r.host else anyhost).append((r.path_prefix, t))
        for lst in (*by_host.values(), anyhost):
            lst.sort(key=lambda e: len(e[0]), reverse=True)
        self._by_host = by_host
        self._any = anyhost
        self.targets = targets
        # the common case: one catch-all rule, no hosts -> no work per request (callers on the
        # hot path read ``single`` first and call match only when it is None)
        self.single: Target | None = anyhost[0][1] if (not by_host and len(anyhost) == 1
                                         and anyhost[0][0] == "/") else None

    def match(self, host: bytes | str | None, path: bytes | str) -> Target | None:
        if self.single is not None:
            return self.single
        if isinstance(path, bytes):
            path = path.decode("latin-1")
        if self._by_host and host:
            h = host.decode("latin-1") if isinstance(host, bytes) else host
            h = h.lower()
            if h.startswith("["):
                h = h[:h.find("]") + 1]
            else:
                h = h.rpartition(":")[0] or h if ":" in h else h
            rules = self._by_host.get(h)
            if rules:
                for prefix, t in rules:
                    if path.startswith(prefix):
                        return t
        for prefix, t in self._any:
            if path.startswith(prefix):
                return t
        return None


def urlprefix_routes(services: Mapping[str, frozenset[str]]) -> list[Route]:
    """Routes from fabio-style tags: ``urlprefix-/api`` or ``urlprefix-example.com/``."""
    out = []
    for name, tags in sorted(services.items()):
        for tag in sorted(tags):
            if tag.startswith("urlprefix-"):
                spec = tag[len("urlprefix-"):].split(" ", 1)[0]   # options after a space
                host, prefix = split_urlprefix(spec)
                if prefix.startswith("/"):
                    out.append(Route(service=name, host=host, path_prefix=prefix, tag=tag))
    return out

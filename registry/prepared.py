"""Prepared queries (Consul's ``/v1/query``): a named service lookup with filters and failover.

Supported fields: ``Name``, ``Service.Service``, ``Service.OnlyPassing``, ``Service.Tags``
(every tag must be present; ``!tag`` must be absent), ``Service.Failover.NearestN`` and
``Service.Failover.Datacenters``, and ``DNS.TTL``. Executing a query answers from the local
datacenter; when it has no healthy instance, from the first datacenter of the failover list
that has some: the ``NearestN`` nearest other datacenters (by the federation's RTT estimate),
then the listed ``Datacenters`` (Consul's order). ``Failovers`` in the answer counts the
datacenters tried after the local one.

Storage. Rumor has no servers: a prepared query lives on the agent where it was created,
persisted in its data dir (``prepared-queries.json``, atomic write), and is executed there,
over HTTP and DNS (``<name>.query.<domain>``). It is not replicated to other agents.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from gossip.dclass import dataclass

from .datadir import DataDir, atomic_write_json, new_uuid, read_json
from .errors import NotFound, RequestError

log = logging.getLogger(__name__)

FILE_NAME = "prepared-queries.json"
MAX_QUERIES = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,62}")


@dataclass(frozen=True)
class PreparedQuery:
    id: str
    name: str
    service: str
    only_passing: bool = False
    tags: tuple[str, ...] = ()
    nearest_n: int = 0
    datacenters: tuple[str, ...] = ()
    dns_ttl: str = ""

    def to_json(self) -> dict[str, Any]:
        """Consul's PreparedQuery shape (the fields Rumor supports)."""
        return {
            "ID": self.id, "Name": self.name, "Session": "", "Token": "",
            "Service": {
                "Service": self.service, "OnlyPassing": self.only_passing,
                "Tags": list(self.tags), "Near": "", "NodeMeta": {}, "ServiceMeta": {},
                "Failover": {"NearestN": self.nearest_n,
                             "Datacenters": list(self.datacenters)},
            },
            "DNS": {"TTL": self.dns_ttl},
        }

    def matches_tags(self, tags: Sequence[str]) -> bool:
        have = {t.lower() for t in tags}
        for t in self.tags:
            want = t.lower()
            if want.startswith("!"):
                if want[1:] in have:
                    return False
            elif want not in have:
                return False
        return True


def parse_query(body: Any, *, id: str) -> PreparedQuery:
    """A PreparedQuery from a request body; RequestError (400) saying what is wrong."""
    if not isinstance(body, Mapping):
        raise RequestError("Request body must be a prepared query object")
    svc = body.get("Service")
    if not isinstance(svc, Mapping) or not isinstance(svc.get("Service"), str) \
            or not svc["Service"]:
        raise RequestError("Must provide a Service name to query (Service.Service)")
    name = body.get("Name") or ""
    if not isinstance(name, str) or (name and not _NAME.fullmatch(name)):
        raise RequestError(f"Invalid Name {name!r}: letters, digits, - and _ (a DNS label)")
    tags = svc.get("Tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RequestError("Service.Tags must be a list of strings")
    only = svc.get("OnlyPassing", False)
    if not isinstance(only, bool):
        raise RequestError("Service.OnlyPassing must be true or false")
    fo = svc.get("Failover") or {}
    if not isinstance(fo, Mapping):
        raise RequestError('Service.Failover must be like {"NearestN": 2, "Datacenters": []}')
    n = fo.get("NearestN", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise RequestError("Service.Failover.NearestN must be a whole number >= 0")
    dcs = fo.get("Datacenters") or []
    if not isinstance(dcs, list) or not all(isinstance(d, str) and d for d in dcs):
        raise RequestError("Service.Failover.Datacenters must be a list of datacenter names")
    dns = body.get("DNS") or {}
    ttl = dns.get("TTL", "") if isinstance(dns, Mapping) else ""
    return PreparedQuery(id=id, name=name, service=svc["Service"], only_passing=only,
                         tags=tuple(tags), nearest_n=n, datacenters=tuple(dcs),
                         dns_ttl=str(ttl or ""))


HealthFetch = Callable[[str, str, bool], Awaitable[list[dict[str, Any]]]]
"""(datacenter, service, passing_only) -> /v1/health/service entries of that datacenter."""


class PreparedQueries:
    """This agent's prepared queries, persisted in the data dir."""

    def __init__(self, datadir: DataDir | None) -> None:
        self.path = datadir.file(FILE_NAME) if datadir is not None else None
        self._queries: dict[str, PreparedQuery] = {}
        for item in (read_json(self.path) if self.path is not None else None) or []:
            try:
                q = parse_query(item, id=str(item.get("ID") or new_uuid()))
                self._queries[q.id] = q
            except RequestError as e:
                log.error("saved prepared query skipped error=%s", e.message)

    def list(self) -> list[PreparedQuery]:
        return sorted(self._queries.values(), key=lambda q: (q.name, q.id))

    def get(self, id_or_name: str) -> PreparedQuery:
        q = self._queries.get(id_or_name)
        if q is None:
            low = id_or_name.lower()
            q = next((x for x in self._queries.values() if x.name and x.name.lower() == low),
                     None)
        if q is None:
            raise NotFound("Query not found")
        return q

    def put(self, body: Any, id: str | None = None) -> PreparedQuery:
        if id is not None and id not in self._queries:
            raise NotFound("Query not found")
        if id is None and len(self._queries) >= MAX_QUERIES:
            raise RequestError(f"Too many prepared queries (the limit is {MAX_QUERIES})")
        q = parse_query(body, id=id or new_uuid())
        if q.name and any(x.name.lower() == q.name.lower() and x.id != q.id
                          for x in self._queries.values()):
            raise RequestError(f"A prepared query named {q.name!r} already exists")
        self._queries[q.id] = q
        self._save()
        return q

    def delete(self, id: str) -> None:
        if self._queries.pop(id, None) is None:
            raise NotFound("Query not found")
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            atomic_write_json(self.path, [q.to_json() for q in self._queries.values()])


async def execute(q: PreparedQuery, *, local_dc: str, nearest: Sequence[str],
                  fetch: HealthFetch) -> dict[str, Any]:
    """Run ``q``: the local datacenter, then its failover chain (see the module docstring).

    ``nearest`` is every other known datacenter, nearest first; ``fetch`` reads one
    datacenter's health entries (it may raise RequestError for one it cannot reach, which
    is skipped)."""
    chain = [local_dc]
    for dc in list(nearest)[:q.nearest_n] + list(q.datacenters):
        if dc not in chain:
            chain.append(dc)
    tried = 0
    for i, dc in enumerate(chain):
        if i:
            tried += 1
        try:
            entries = await fetch(dc, q.service, q.only_passing)
        except RequestError as e:
            log.debug("prepared query failover skipped dc=%s error=%s", dc, e.message)
            continue
        nodes = [e for e in entries if q.matches_tags(e.get("Service", {}).get("Tags") or [])]
        if nodes:
            return {"Service": q.service, "Nodes": nodes, "DNS": {"TTL": q.dns_ttl},
                    "Datacenter": dc, "Failovers": tried}
    return {"Service": q.service, "Nodes": [], "DNS": {"TTL": q.dns_ttl},
            "Datacenter": local_dc, "Failovers": tried}


def decode_entries(body: bytes) -> list[dict[str, Any]]:
    data = json.loads(body)
    return data if isinstance(data, list) else []

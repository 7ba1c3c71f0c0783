"""What the web UI shows, read from the agent's in-process state into plain immutable records.

The UI never reaches into a subsystem beyond the small surface named here, and every subsystem
may be missing (``agent.gossip``, ``agent.registry`` or ``agent.lb`` is ``None`` when it is off or
not part of this build): :func:`collect` then returns what exists and notes what does not, so a
page still renders. Nothing here writes to the agent.

Read surface:
  * ``agent.registry.catalog`` (or ``agent.registry.view``): ``services()``, ``entries(name)``
    (every instance, any health, with its checks) or ``instances(name)`` as a fallback,
    ``nodes()``, ``node_checks(name)``, ``all_checks()``, ``index``;
  * ``agent.gossip.members()``: objects with ``name``, ``addr``, ``port``, ``tags``, ``status``;
  * ``agent.lb.listeners()``: mappings shaped like ``/v1/lb/listeners`` entries, or objects with
    ``info()`` returning one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import field, replace
from types import SimpleNamespace
from typing import Any

from gossip.dclass import dataclass

from ..catalog import (
    CRITICAL,
    NODE_MAINT_CHECK_ID,
    PASSING,
    SERF_CHECK_ID,
    SERVICE_MAINT_PREFIX,
    worst,
)

log = logging.getLogger(__name__)


def is_maintenance(check_id: str) -> bool:
    return check_id == NODE_MAINT_CHECK_ID or check_id.startswith(SERVICE_MAINT_PREFIX)


@dataclass(frozen=True, slots=True)
class UICheck:
    node: str
    check_id: str
    name: str
    status: str
    output: str = ""
    notes: str = ""
    service_id: str = ""
    service_name: str = ""
    type: str = ""

    @property
    def maintenance(self) -> bool:
        return is_maintenance(self.check_id)


@dataclass(frozen=True, slots=True)
class UIInstance:
    node: str
    service_id: str
    service: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str]
    health: str
    checks: tuple[UICheck, ...]

    @property
    def maintenance(self) -> bool:
        return any(c.maintenance for c in self.checks)


@dataclass(frozen=True, slots=True)
class UIService:
    name: str
    tags: tuple[str, ...]
    instances: tuple[UIInstance, ...]

    def count(self, health: str) -> int:
        return sum(1 for i in self.instances if i.health == health)

    @property
    def health(self) -> str:
        return worst(i.health for i in self.instances) if self.instances else PASSING

    @property
    def maintenance(self) -> int:
        return sum(1 for i in self.instances if i.maintenance)


@dataclass(frozen=True, slots=True)
class UINode:
    name: str
    address: str
    status: str                      # gossip status: alive | suspect | failed | left | leaving
    datacenter: str = ""
    port: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)     # gossip (Serf) tags
    meta: Mapping[str, str] = field(default_factory=dict)     # catalog node meta
    checks: tuple[UICheck, ...] = ()
    services: tuple[UIInstance, ...] = ()

    @property
    def health(self) -> str:
        return worst(c.status for c in self.checks) if self.checks else PASSING

    @property
    def maintenance(self) -> bool:
        return any(c.check_id == NODE_MAINT_CHECK_ID for c in self.checks)


@dataclass(frozen=True, slots=True)
class UIState:
    """One consistent snapshot of everything the pages show."""

    node_name: str
    datacenter: str
    version: str
    index: int
    services: tuple[UIService, ...]
    nodes: tuple[UINode, ...]
    checks: tuple[UICheck, ...]
    listeners: tuple[Mapping[str, Any], ...]
    missing: tuple[str, ...]          # subsystems absent from this agent ("registry", ...)
    wan_members: tuple[UINode, ...] = ()
    """The WAN pool's members (``node.dc``; ``datacenter`` from their ``dc`` tag) when this
    agent is a WAN member; empty otherwise."""
    agent_datacenter: str = ""
    """This agent's datacenter (``datacenter`` is the one shown, another one with ``?dc=``)."""
    datacenters: tuple[str, ...] = ()
    """The datacenters the page may switch to (``/v1/catalog/datacenters``), nearest first."""

    @property
    def remote(self) -> bool:
        return bool(self.agent_datacenter) and self.datacenter != self.agent_datacenter

    def service(self, name: str) -> UIService | None:
        low = name.lower()
        return next((s for s in self.services if s.name.lower() == low), None)

    def node(self, name: str) -> UINode | None:
        low = name.lower()
        return next((n for n in self.nodes if n.name.lower() == low), None)


# --- reading the agent ------------------------------------------------------------------------


def catalog_of(agent: Any) -> Any:
    reg = getattr(agent, "registry", None)
    if reg is None:
        return None
    cat = getattr(reg, "catalog", None)
    return cat if cat is not None else getattr(reg, "view", None)


def _str(v: Any) -> str:
    return "" if v is None else str(v)


def _check(node: str, c: Any) -> UICheck:
    """A catalog ``Check`` (with ``.record``) or anything with the same attribute names."""
    rec = getattr(c, "record", c)
    return UICheck(
        node=_str(getattr(c, "node", node) or node),
        check_id=_str(getattr(rec, "check_id", "")),
        name=_str(getattr(rec, "name", "")),
        status=_str(getattr(rec, "status", CRITICAL)) or CRITICAL,
        output=_str(getattr(rec, "output", "")),
        notes=_str(getattr(rec, "notes", "")),
        service_id=_str(getattr(rec, "service_id", "")),
        service_name=_str(getattr(rec, "service_name", "")),
        type=_str(getattr(rec, "type", "")),
    )


def _instance(i: Any) -> UIInstance:
    checks = tuple(_check(i.node, c) for c in getattr(i, "checks", ()) or ())
    health = _str(getattr(i, "health", "")) or worst(c.status for c in checks)
    return UIInstance(
        node=_str(i.node), service_id=_str(i.service_id), service=_str(i.service),
        address=_str(getattr(i, "address", "")) or _str(getattr(i, "node_address", "")),
        port=int(getattr(i, "port", 0) or 0), tags=tuple(map(str, getattr(i, "tags", ()) or ())),
        meta=dict(getattr(i, "meta", {}) or {}), health=health, checks=checks,
    )


def _services(cat: Any) -> list[UIService]:
    out = []
    for name, tags in sorted(cat.services().items(), key=lambda kv: kv[0].lower()):
        if hasattr(cat, "entries"):
            raw = cat.entries(name)
        else:  # a bare View only lists the healthy ones
            raw = cat.instances(name)
        out.append(UIService(name=name, tags=tuple(sorted(tags)),
                             instances=tuple(_instance(i) for i in raw)))
    return out


def _listener(item: Any) -> Mapping[str, Any] | None:
    if isinstance(item, Mapping):
        return item
    for meth in ("info", "to_dict", "describe"):
        fn = getattr(item, meth, None)
        if callable(fn):
            d = fn()
            if isinstance(d, Mapping):
                return d
    return None


def _read_catalog(cat: Any, node_rows: dict[str, dict[str, Any]]
                  ) -> tuple[int, list[UIService], list[UICheck]]:
    index = int(getattr(cat, "index", 0) or 0)
    services = _services(cat)
    for n in cat.nodes():
        node_rows[n.name.lower()] = {
            "name": n.name, "address": _str(n.address), "status": _str(n.status),
            "datacenter": _str(getattr(n, "datacenter", "")), "meta": dict(n.meta or {}),
        }
    all_checks: list[UICheck] = []
    if hasattr(cat, "all_checks"):
        all_checks = [_check(c.node, c) for c in cat.all_checks()]
    else:
        seen: set[tuple[str, str]] = set()
        for s in services:
            for inst in s.instances:
                for c in inst.checks:
                    if (c.node, c.check_id) not in seen:
                        seen.add((c.node, c.check_id))
                        all_checks.append(c)
    return index, services, all_checks


def _read_members(gossip: Any, node_rows: dict[str, dict[str, Any]]) -> None:
    for m in gossip.members():
        row = node_rows.setdefault(m.name.lower(), {"name": m.name, "meta": {},
                                                    "datacenter": ""})
        row["address"] = _str(m.addr)
        row["port"] = int(getattr(m, "port", 0) or 0)
        row["status"] = _str(m.status)           # gossip is the authority on liveness
        row["tags"] = dict(getattr(m, "tags", {}) or {})


def _read_listeners(lb: Any) -> list[Mapping[str, Any]]:
    raw = lb.listeners()
    if isinstance(raw, Mapping):
        raw = list(raw.values())
    out = [d for d in (_listener(item) for item in raw) if d is not None]
    out.sort(key=lambda d: str(d.get("Name", "")))
    return out


def collect(agent: Any) -> UIState:
    """Snapshot the agent for one page.

    A subsystem that is absent is listed in ``missing``; one that fails while being read is
    logged and listed as well, so that the rest of the page still renders."""
    cfg = agent.config
    missing: list[str] = []
    services: list[UIService] = []
    all_checks: list[UICheck] = []
    index = 0
    node_rows: dict[str, dict[str, Any]] = {}

    cat = catalog_of(agent)
    if cat is None:
        missing.append("registry")
    else:
        try:
            index, services, all_checks = _read_catalog(cat, node_rows)
        except Exception:
            log.exception("ui: reading the catalog failed")
            missing.append("registry")
            node_rows.clear()

    gossip = getattr(agent, "gossip", None)
    if gossip is None:
        missing.append("gossip")
    else:
        try:
            _read_members(gossip, node_rows)
        except Exception:
            log.exception("ui: reading gossip members failed")
            missing.append("gossip")

    if not node_rows:
        # neither registry nor gossip to ask: at least show this agent itself
        node_rows[cfg.node_name.lower()] = {
            "name": cfg.node_name, "address": _str(getattr(agent, "gossip_address", "")),
            "status": "alive", "datacenter": cfg.datacenter, "tags": dict(cfg.tags),
            "meta": dict(cfg.node_meta), "port": int(getattr(agent, "gossip_port", 0) or 0),
        }

    checks_by_node: dict[str, list[UICheck]] = {}
    for c in all_checks:
        checks_by_node.setdefault(c.node.lower(), []).append(c)
    inst_by_node: dict[str, list[UIInstance]] = {}
    for s in services:
        for inst in s.instances:
            inst_by_node.setdefault(inst.node.lower(), []).append(inst)
    nodes = tuple(
        UINode(name=r["name"], address=r.get("address", ""), status=r.get("status") or "unknown",
               datacenter=r.get("datacenter") or cfg.datacenter, port=r.get("port", 0),
               tags=r.get("tags", {}), meta=r.get("meta", {}),
               checks=tuple(checks_by_node.get(key, ())),
               services=tuple(sorted(inst_by_node.get(key, ()),
                                     key=lambda i: (i.service.lower(), i.service_id))))
        for key, r in sorted(node_rows.items())
    )

    listeners: list[Mapping[str, Any]] = []
    lb = getattr(agent, "lb", None)
    if lb is None:
        missing.append("lb")
    else:
        try:
            listeners = _read_listeners(lb)
        except Exception:
            log.exception("ui: reading lb listeners failed")
            missing.append("lb")

    wan_members: list[UINode] = []
    wan = getattr(agent, "wan", None)
    if wan is not None:
        try:
            for m in wan.members():
                tags = dict(getattr(m, "tags", {}) or {})
                wan_members.append(UINode(
                    name=_str(m.name), address=_str(m.addr), status=_str(m.status),
                    datacenter=tags.get("dc", ""), port=int(getattr(m, "port", 0) or 0),
                    tags=tags))
        except Exception:
            log.exception("ui: reading WAN members failed")
    wan_members.sort(key=lambda n: (n.datacenter, n.name))

    from .. import __version__

    return UIState(
        node_name=cfg.node_name, datacenter=cfg.datacenter, version=__version__, index=index,
        services=tuple(services), nodes=nodes,
        checks=tuple(sorted(all_checks, key=lambda c: (c.node.lower(), c.check_id))),
        listeners=tuple(listeners), missing=tuple(missing), wan_members=tuple(wan_members),
        agent_datacenter=cfg.datacenter, datacenters=(cfg.datacenter,),
    )


def empty_state(agent: Any) -> UIState:
    """A state that shows nothing of the catalog (for the ACL token page)."""
    from .. import __version__

    cfg = agent.config
    return UIState(node_name=cfg.node_name, datacenter=cfg.datacenter, version=__version__,
                   index=0, services=(), nodes=(), checks=(), listeners=(), missing=(),
                   agent_datacenter=cfg.datacenter, datacenters=(cfg.datacenter,))


# --- another datacenter -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _RemoteRecord:
    check_id: str
    name: str
    status: str
    output: str
    notes: str
    service_id: str
    service_name: str
    type: str


@dataclass(frozen=True, slots=True)
class _RemoteCheck:
    node: str
    record: _RemoteRecord


@dataclass(frozen=True, slots=True)
class _RemoteInstance:
    node: str
    service_id: str
    service: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: Mapping[str, str]
    health: str
    checks: tuple[_RemoteCheck, ...]


@dataclass(frozen=True, slots=True)
class _RemoteNode:
    name: str
    address: str
    status: str
    datacenter: str
    meta: Mapping[str, str]


def _remote_check(c: Mapping[str, Any]) -> _RemoteCheck | None:
    try:
        return _RemoteCheck(_str(c["Node"]), _RemoteRecord(
            check_id=_str(c["CheckID"]), name=_str(c.get("Name")),
            status=_str(c.get("Status")) or CRITICAL, output=_str(c.get("Output")),
            notes=_str(c.get("Notes")), service_id=_str(c.get("ServiceID")),
            service_name=_str(c.get("ServiceName")), type=_str(c.get("Type"))))
    except (KeyError, TypeError):
        return None


def _list(doc: Any, key: str | None = None) -> list[Any]:
    got = doc.get(key) if key is not None and isinstance(doc, Mapping) else doc
    return [x for x in got if isinstance(x, Mapping)] if isinstance(got, list) else []


class RemoteCatalog:
    """Another datacenter's catalog, for :func:`collect`, from the documents its agents serve
    to any client (fetched across the WAN hop with ``?dc=`` and the page's token, so that
    datacenter's ACLs filter them as for the JSON API): ``/v1/catalog/nodes``,
    ``/v1/health/state/any`` (every check) and ``/v1/health/service/<name>`` of each service
    (every instance, any health). A peer's documents are not trusted: entries of the wrong
    shape are skipped one by one."""

    def __init__(self, datacenter: str, nodes_doc: Any, checks_doc: Any,
                 entries: Mapping[str, Any], index: int = 0) -> None:
        self.datacenter = datacenter
        self.index = index
        self._checks: list[_RemoteCheck] = []
        for c in _list(checks_doc):
            chk = _remote_check(c)
            if chk is not None:
                self._checks.append(chk)
        serf = {c.node.lower(): c.record.status for c in self._checks
                if c.record.check_id == SERF_CHECK_ID}
        self._nodes: list[_RemoteNode] = []
        for n in _list(nodes_doc):
            try:
                name, meta = _str(n["Node"]), n.get("Meta") or {}
                self._nodes.append(_RemoteNode(
                    name=name, address=_str(n.get("Address")),
                    status="failed" if serf.get(name.lower()) == CRITICAL else "alive",
                    datacenter=datacenter, meta={str(k): str(v) for k, v in meta.items()}))
            except (KeyError, TypeError, AttributeError):
                continue
        self._instances: dict[str, list[_RemoteInstance]] = {}
        for name, doc in entries.items():
            for e in _list(doc):
                try:
                    n, svc = e["Node"], e["Service"]
                    checks = tuple(c for c in (_remote_check(x) for x in _list(e, "Checks"))
                                   if c is not None)
                    meta = svc.get("Meta") or {}
                    self._instances.setdefault(name, []).append(_RemoteInstance(
                        node=_str(n["Node"]), service_id=_str(svc["ID"]), service=name,
                        address=_str(svc.get("Address")) or _str(n.get("Address")),
                        port=int(svc.get("Port") or 0),
                        tags=tuple(str(t) for t in svc.get("Tags") or ()),
                        meta={str(k): str(v) for k, v in meta.items()},
                        health=worst(c.record.status for c in checks) if checks else PASSING,
                        checks=checks))
                except (KeyError, TypeError, ValueError, AttributeError):
                    continue

    def services(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(t for i in insts for t in i.tags)
                for name, insts in self._instances.items()}

    def entries(self, name: str) -> list[_RemoteInstance]:
        return sorted(self._instances.get(name, ()), key=lambda i: (i.node, i.service_id))

    def nodes(self) -> list[_RemoteNode]:
        return list(self._nodes)

    def all_checks(self) -> list[_RemoteCheck]:
        return list(self._checks)


def remote_state(local: UIState, catalog: RemoteCatalog) -> UIState:
    """What the pages show for another datacenter: its services, nodes and checks; the LB
    listeners and the WAN members stay this agent's (they are not per datacenter)."""
    cfg = SimpleNamespace(node_name=local.node_name, datacenter=catalog.datacenter,
                          tags={}, node_meta={})
    got = collect(SimpleNamespace(config=cfg, registry=SimpleNamespace(catalog=catalog),
                                  gossip=_NoMembers(), lb=None, wan=None))
    return replace(got, datacenter=catalog.datacenter, agent_datacenter=local.agent_datacenter,
                   datacenters=local.datacenters, version=local.version,
                   listeners=local.listeners, wan_members=local.wan_members,
                   missing=tuple(m for m in got.missing if m not in ("gossip", "lb")))


class _NoMembers:
    def members(self) -> list[Any]:
        return []

"""The registry service: catalog + local state + checks + replication, as the agent runs it.

``prepare_registry(cfg)`` validates the registry's part of the configuration (services, checks,
ACLs) before anything binds and raises ``ConfigError`` naming the setting. ``Registry`` is what
the agent starts: it restores local registrations from the data dir, applies the config's
definitions, starts the check runners and, when gossip runs, plugs the replicator into the
gossip application channel and member events.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gossip import (
    Gossip,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRefuted,
    MemberUpdated,
)
from gossip.dclass import dataclass

from .acl import ACL, ACLConfig
from .acl_view import ACLView
from .catalog import Catalog, NodeInfo
from .checks import refuse_exec_check
from .config import AgentConfig
from .datadir import DataDir
from .definitions import CheckDef, ServiceDef, parse_check, parse_service
from .errors import ConfigError, RequestError
from .external import ExternalNodes
from .kv_service import KVService
from .local import LocalState
from .looplag import LoopLag
from .netaddr import advertise_address
from .replication import Replicator

if TYPE_CHECKING:
    from .containers import ContainerWatcher  # with its Docker client, only when -docker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedRegistry:
    services: tuple[ServiceDef, ...]
    checks: tuple[CheckDef, ...]
    acl: ACLConfig


def parse_definitions(services: Sequence[Mapping[str, Any]],
                      checks: Sequence[Mapping[str, Any]],
                      cfg: AgentConfig | None = None) -> tuple[list[ServiceDef],
                                                               list[CheckDef]]:
    """Parse config definitions; ConfigError names the entry (``services[0].Port: ...``).

    With ``cfg``, script and Docker checks are refused unless it enables them."""
    sdefs: list[ServiceDef] = []
    cdefs: list[CheckDef] = []
    try:
        for i, s in enumerate(services):
            sdef = parse_service(s, where=f"services[{i}].")
            if cfg is not None:
                for c in sdef.checks:
                    exec_gate(cfg, c, local=True)
            sdefs.append(sdef)
        for i, raw in enumerate(checks):
            cdef = parse_check(raw, where=f"checks[{i}].")
            if cfg is not None:
                exec_gate(cfg, cdef, local=True)
            cdefs.append(cdef)
    except RequestError as e:
        raise ConfigError(e.message) from None
    ids = [s.record.id for s in sdefs]
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise ConfigError(f"services: duplicate service ID {min(dup)!r}; give each an id")
    known = set(ids)
    for i, c in enumerate(cdefs):
        if c.service_id and c.service_id not in known:
            raise ConfigError(f"checks[{i}].service_id: {c.service_id!r} is not a service "
                              "defined in the config")
    return sdefs, cdefs


def exec_gate(cfg: AgentConfig, defn: CheckDef, *, local: bool) -> None:
    """Refuse a script or Docker check this agent's settings do not allow (DefinitionError)."""
    refuse_exec_check(defn, local=local, enable_script_checks=cfg.enable_script_checks,
                      enable_local_script_checks=cfg.enable_local_script_checks)


def docker_socket(cfg: AgentConfig) -> str:
    """The engine socket for Docker checks and the container watcher ('' = the default)."""
    sock = str(cfg.docker.get("socket", "default"))
    if sock == "default":
        return ""
    return sock.removeprefix("unix://")


def prepare_registry(cfg: AgentConfig) -> PreparedRegistry:
    sdefs, cdefs = parse_definitions(cfg.services, cfg.checks, cfg)
    acl = ACLConfig.from_dict(cfg.acl)
    return PreparedRegistry(tuple(sdefs), tuple(cdefs), acl)


class Registry:
    """The catalog, this node's local state, its checks and the replication, running."""

    def __init__(self, cfg: AgentConfig, datadir: DataDir | None, gossip: Gossip | None,
                 prepared: PreparedRegistry) -> None:
        self.config = cfg
        self.datadir = datadir
        self.gossip = gossip
        self.prepared = prepared
        self.catalog = Catalog(datacenter=cfg.datacenter, local_node=cfg.node_name)
        self.view = self.catalog
        addr = advertise_address(cfg)
        self.info = NodeInfo(
            name=cfg.node_name, node_id=datadir.node_id if datadir else "", address=addr,
            datacenter=cfg.datacenter, meta=dict(cfg.node_meta),
            tagged_addresses={"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr},
        )
        self.local = LocalState(self.catalog, self.info, datadir)
        self.local.refuse_check = lambda c: exec_gate(cfg, c, local=True)
        self.local.manager.docker_socket = docker_socket(cfg)
        self.local.manager.nameservers = tuple(cfg.recursors)
        self.acl = ACL(prepared.acl)
        self.dns_view = ACLView(self.catalog, self.acl)
        """What DNS answers from: the catalog as the DNS token sees it (all of it when ACLs
        are off)."""
        self.containers: ContainerWatcher | None = None
        self.replicator: Replicator | None = None
        self.loop_lag: LoopLag | None = None
        """The agent's measure of loop stalls (``registry.looplag``), read by the API."""
        self.kv = KVService(self.info.node_id or cfg.node_name, datadir, self._broadcast)
        self.external = ExternalNodes(self.catalog, self.info.node_id or cfg.node_name, datadir,
                                      self._broadcast, writer_alive=self._writer_alive)
        self._member_status: dict[str, str] = {}
        self._live_peers: set[str] = set()
        """Alive peers as told by member events only (the status cache above may learn of a
        member from gossip before its event is delivered)."""
        if gossip is not None:
            self.replicator = Replicator(self.catalog, self.local, broadcast=self._broadcast,
                                         member_status=self._status_of,
                                         member_addr=self._addr_of,
                                         push_pull=getattr(gossip, "push_pull", None),
                                         is_peer=getattr(gossip, "is_rumor_peer", None))

    # --- gossip glue ------------------------------------------------------------------------

    def _broadcast(self, key: str, payload: bytes) -> None:
        assert self.gossip is not None  # only the replicator calls this, and only with gossip
        try:
            self.gossip.broadcast_app(key, payload)
        except Exception as e:  # noqa: BLE001 - an oversize message is left to push-pull
            log.debug("app broadcast refused key=%r error=%s", key, e)

    def _status_of(self, name: str) -> str | None:
        s = self._member_status.get(name.lower())
        if s is None and self.gossip is not None:
            # One lookup by the name the node publishes itself under; no list rebuild per
            # record (a join burst merges a record for every member at once).
            m = self.gossip.member(name)
            if m is not None:
                s = self._member_status[name.lower()] = m.status
        return s

    def _writer_alive(self, writer: str) -> bool:
        """Is the agent with this node ID (or name, without a data dir) alive in the pool?"""
        for n in self.catalog.nodes():
            if writer in (n.node_id, n.name) and n.status != "external":
                return self._status_of(n.name) in ("alive", "leaving") or (
                    n.name.lower() == self.local.info.name.lower())
        return False

    def _addr_of(self, name: str) -> str:
        if self.gossip is not None:
            m = self.gossip.member(name)
            if m is not None:
                return str(m.addr)
        return ""

    def _on_gossip_event(self, event: object) -> None:
        """The one place gossip events are told apart: the member-status cache, the live peers
        and the replication all follow from this match."""
        status: str | None      # None: reaped, forgotten by gossip
        if isinstance(event, MemberRefuted):
            # no status changed, but deltas to or from it may have been lost meanwhile
            if (self.replicator is not None
                    and event.member.name.lower() != self.local.info.name.lower()):
                self.replicator.on_member_refuted(event.member.name)
            return
        match event:
            case MemberJoined(member=m) | MemberUpdated(member=m):
                status = m.status
            case MemberFailed(member=m):
                status = "failed"
            case MemberLeft(member=m):
                status = "left"
            case MemberReaped(member=m):
                status = None
            case _:
                return
        joined = isinstance(event, MemberJoined)
        name = m.name.lower()
        if status is None:
            self._member_status.pop(name, None)
        else:
            self._member_status[name] = status
        before = len(self._live_peers)
        is_self = name == self.local.info.name.lower()
        if not is_self:
            if status == "alive":
                self._live_peers.add(name)
            else:
                self._live_peers.discard(name)
            if self.replicator is not None:
                self.replicator.on_member_status(m.name, status, joined=joined)
        if (is_self and joined) or (before == 0 and self._live_peers):
            # We (re)joined, or were cut off from everyone: peers may have forgotten our record
            # (a graceful leave removes it), and nothing else would resend it before the next
            # push-pull. Restamp it so that it spreads as deltas at once.
            log.info("republishing the local record reason=%s",
                     "rejoined" if is_self else "first_peer_reachable")
            self.local.republish_all()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        keys = self.kv.load()
        if keys:
            log.info("restored the KV store from the data dir keys=%d", keys)
        await self.kv.start()
        restored = self.local.load()
        ext = await self.external.start()
        if ext:
            log.info("restored external nodes from the data dir entries=%d", ext)
        if restored:
            log.info("restored local services from the data dir count=%d", restored)
        await self.local.apply_parsed_config(list(self.prepared.services),
                                             list(self.prepared.checks))
        await self.local.start()
        if self.config.docker:
            from .containers import ContainerWatcher
            from .docker_api import Engine, default_socket

            engine = Engine(docker_socket(self.config) or default_socket())
            self.containers = ContainerWatcher(
                self.local, engine, default_address=str(self.config.docker.get("address", "host")))
            self.containers.start()
        else:
            # containers published before the watcher was turned off are gone with it
            for sid, s in list(self.local.services.items()):
                if s.source == "docker":
                    await self.local.deregister_service(sid)
        if self.gossip is not None and self.replicator is not None:
            for m in self.gossip.members():
                self._member_status[m.name.lower()] = m.status
                if m.status == "alive" and m.name.lower() != self.local.info.name.lower():
                    self._live_peers.add(m.name.lower())
            from .appchannel import AppChannel
            from .external import MARKER

            self.gossip.set_app_delegate(AppChannel(self.replicator, [
                (b"RKV1", self.kv.replicator), (MARKER, self.external.replicator)]))
            self.gossip.add_listener(self._on_gossip_event)
            # tell peers our node info now; the rest of our record follows as deltas and on
            # the push-pull of the join
            self.local.republish_info()

    async def stop(self) -> None:
        if self.containers is not None:
            await self.containers.stop()
        if self.replicator is not None:
            await self.replicator.close()
        await self.local.stop()
        await self.kv.stop()
        await self.external.stop()

    async def reload_definitions(self, services: Sequence[Mapping[str, Any]],
                                 checks: Sequence[Mapping[str, Any]]) -> None:
        """SIGHUP: make the config-defined services/checks these; a bad set changes nothing."""
        try:
            sdefs, cdefs = parse_definitions(services, checks, self.config)
        except ConfigError as e:
            log.error("reload refused, keeping the current definitions: %s", e)
            return
        await self.local.apply_parsed_config(sdefs, cdefs)

    def reload_acl(self, raw: Mapping[str, Any]) -> str | None:
        """SIGHUP: the ``acl`` section as the files say it now; a bad one changes nothing and
        the reason is returned."""
        try:
            cfg = ACLConfig.from_dict(raw)
        except ConfigError as e:
            log.error("acl reload refused, keeping the running ACLs: %s", e)
            return str(e)
        self.acl.reload(cfg)
        log.info("acl reloaded enabled=%s policies=%d tokens=%d", cfg.enabled,
                 len(cfg.policies), len(cfg.token_list))
        return None

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.catalog.stats())
        out.update({f"local_{k}": v for k, v in self.local.counters.items()})
        out["local_services"] = len(self.local.services)
        out["local_checks"] = len(self.local.checks)
        out["acl_denied"] = self.acl.denied
        if self.replicator is not None:
            out.update({f"repl_{k}": v for k, v in self.replicator.stats().items()})
        if self.containers is not None:
            out.update({f"containers_{k}": v for k, v in self.containers.counters.items()})
        out.update(self.kv.stats())
        out.update(self.external.stats())
        return out

"""The WAN pool: a second ``gossip.Gossip`` with memberlist's WAN profile, between datacenters.

An agent is a *WAN member* when it joins the WAN pool (``-join-wan`` / ``-retry-join-wan``) or
is given a WAN port (``-serf-wan-port``; 8302 by default, as Consul's ``ports.serf_wan``). A
datacenter runs several WAN members for redundancy; every other agent is a plain LAN agent.

* In the WAN pool a member is named ``node.dc`` (as Consul names its WAN members) and carries the
  tags ``dc`` (its datacenter) and ``rumor_http`` (``ip:port`` of its HTTP API, where other
  datacenters send their forwarded reads).
* In the LAN pool a WAN member adds the tags ``rumor_wan`` (``ip:port`` of its WAN gossip) and
  ``rumor_wan_http`` (its HTTP API), so every agent of the datacenter learns, by plain Serf
  membership, which of its peers can carry a request to another datacenter.
* The WAN pool has its own keyring, as Consul's: ``encrypt`` seeds it, and rotations are saved
  in ``serf/remote.keyring`` (the LAN pool's is ``serf/local.keyring``); its snapshot is
  ``serf/remote.snapshot``.

Nothing of the catalog crosses the WAN pool: each datacenter keeps its own replica, and a read
for another datacenter is forwarded over HTTP to one of that datacenter's WAN members
(:mod:`registry.federation`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from pathlib import Path
from typing import Any

from gossip import ConfigError as GossipConfigError
from gossip import Gossip, Keyring, MemberlistConfig

from .config import DEFAULT_SERF_WAN_PORT, AgentConfig, split_hostport
from .errors import ConfigError
from .membership import PreparedGossip, load_keyring
from .netaddr import advertise_address

log = logging.getLogger(__name__)

KEYRING_FILE = "serf/remote.keyring"
SNAPSHOT_FILE = "serf/remote.snapshot"

DC_TAG = "dc"
HTTP_TAG = "rumor_http"
LAN_WAN_TAG = "rumor_wan"
LAN_WAN_HTTP_TAG = "rumor_wan_http"


def wan_name(node: str, dc: str) -> str:
    """A WAN member's name: ``node.dc`` (Consul's)."""
    return f"{node}.{dc}"


def http_address(cfg: AgentConfig, http_port: int) -> str:
    """Where other agents reach this agent's HTTP API: the client address, or the advertised
    gossip address when the API listens on every address."""
    host = cfg.client_addr
    try:
        if ipaddress.ip_address(host).is_unspecified:
            host = advertise_address(cfg)
    except ValueError:
        pass
    return f"[{host}]:{http_port}" if ":" in host else f"{host}:{http_port}"


def with_wan_port(addr: str) -> str:
    """``host`` -> ``host:8302``: a WAN join address without a port means the WAN port."""
    host, port = split_hostport(addr, DEFAULT_SERF_WAN_PORT)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def prepare_wan(cfg: AgentConfig, lan: PreparedGossip) -> PreparedGossip | None:
    """The WAN pool's configs (None when this agent is not a WAN member)."""
    if not cfg.wan_member:
        return None
    name = wan_name(cfg.node_name, cfg.datacenter)
    # memberlist's WAN profile, except for the ``local`` profile (one-host labs and tests), whose
    # timings the WAN pool shares so that a failure is seen as quickly there.
    local = cfg.gossip.get("profile") == "local"
    factory = MemberlistConfig.local if local else MemberlistConfig.wan
    try:
        ml = factory(name=name, bind_addr=cfg.bind_addr, bind_port=cfg.wan_port,
                                  advertise_addr=advertise_address(cfg),
                                  delegate_protocol_version=5)
        ml.validate()
        serf = dataclasses.replace(lan.serf, node_name=name, tags={DC_TAG: cfg.datacenter},
                                   event_handlers=(), snapshot_path="")
        serf.validate()
    except GossipConfigError as e:
        raise ConfigError(f"ports.serf_wan: {e}") from None
    return PreparedGossip(ml, serf, lan.keys)


async def start_wan(cfg: AgentConfig, datadir: Any, prepared: PreparedGossip,
                    http_addr: str) -> Gossip:
    """Start the WAN pool's gossip service, tagged with this agent's datacenter and HTTP API."""
    base = Path(datadir.path) if datadir is not None else None
    keyring: Keyring | None
    keyring_path: Path | None = None
    serf = dataclasses.replace(prepared.serf, tags={DC_TAG: cfg.datacenter, HTTP_TAG: http_addr})
    if base is not None:
        keyring_path = base / KEYRING_FILE
        keyring = load_keyring(keyring_path, prepared.keys)
        serf = dataclasses.replace(serf, snapshot_path=str(base / SNAPSHOT_FILE))
    else:
        keyring = Keyring(prepared.keys) if prepared.keys else None
    g = Gossip(prepared.memberlist, serf, keyring=keyring, keyring_path=keyring_path)
    try:
        await g.start(release_memory=False)   # the agent does it once it is up
    except OSError as e:
        raise ConfigError(
            f"ports.serf_wan: cannot bind {cfg.bind_addr}:{cfg.wan_port} ({e.strerror or e}); "
            "pick another port with -serf-wan-port"
        ) from None
    return g


def lan_tags(cfg: AgentConfig, wan: Gossip, http_addr: str) -> dict[str, str]:
    """The LAN pool's tags of a WAN member: the operator's tags plus where its WAN gossip and
    HTTP API are."""
    host = advertise_address(cfg)
    wan_addr = f"[{host}]:{wan.bound_port}" if ":" in host else f"{host}:{wan.bound_port}"
    return {**dict(cfg.tags), LAN_WAN_TAG: wan_addr, LAN_WAN_HTTP_TAG: http_addr}

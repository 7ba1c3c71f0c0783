"""``/v1/agent/self`` and ``/v1/status/*``: who this agent is."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from .. import CONSUL_VERSION, __version__, web
from .base import json_response
from .gossip_routes import member_json
from .keys import CONFIG, FEDERATION, GOSSIP, PORTS, REGISTRY, STARTED_AT

routes = web.RouteTableDef()


def _self_member(app: web.Application) -> dict[str, Any]:
    g = app[GOSSIP]
    if g is not None:
        return dict(member_json(g.local_member()))
    cfg = app[CONFIG]
    return {"Name": cfg.node_name, "Addr": app[REGISTRY].info.address,
            "Port": app[PORTS].gossip_port, "Tags": dict(cfg.tags), "Status": 1}


def _stats(app: web.Application) -> dict[str, Any]:
    out: dict[str, Any] = {
        "agent": {"uptime_s": str(int(time.time() - app[STARTED_AT])), "pid": str(os.getpid())},
    }
    g = app[GOSSIP]
    if g is not None:
        counts = g.status_counts()   # not g.members(): a Member each, ~20 ms at 5,000
        out["serf_lan"] = {
            "members": str(sum(counts.values())),
            "alive": str(counts.get("alive", 0)),
            "failed": str(counts.get("failed", 0)),
            "left": str(counts.get("left", 0)),
            "encrypted": str(bool(app[CONFIG].encrypt)).lower(),
        }
    fed = app[FEDERATION]
    if fed is not None:
        out.update(fed.stats())
    out["registry"] = {k: str(v) for k, v in app[REGISTRY].stats().items()}
    lag = app[REGISTRY].loop_lag
    # the collector is off while the agent starts (registry/cli.py) and must be on after
    out["runtime"] = {**(lag.stats() if lag is not None else {}),
                      "gc_enabled": str(gc.isenabled()).lower()}
    return out


@routes.get("/v1/agent/self")
async def agent_self(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG]
    reg = app[REGISTRY]
    ports = app[PORTS]
    return json_response({
        "Config": {
            "Datacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": reg.info.node_id,
            "Version": CONSUL_VERSION,
            "Revision": f"rumor-{__version__}",
            "RumorVersion": __version__,
            "Server": False,
            "Domain": cfg.domain,
        },
        "DebugConfig": {
            "BindAddr": cfg.bind_addr,
            "AdvertiseAddrLAN": reg.info.address,
            "ClientAddrs": [cfg.client_addr],
            "DataDir": str(reg.datadir.path) if reg.datadir is not None else "",
            "Ports": {
                "HTTP": ports.http_port if cfg.http_port >= 0 else -1,
                "HTTPS": ports.https_port if cfg.https_port >= 0 else -1,
                "DNS": ports.dns_port,
                "SerfLan": ports.gossip_port,
            },
            "EncryptKey": bool(cfg.encrypt),
            # Nomad reads these to decide on Connect tasks: no service mesh, no gRPC/xDS port.
            "ConnectEnabled": False,
            "GRPCPort": -1,
            "GRPCTLSPort": -1,
            "Revision": f"rumor-{__version__}",
            "Version": CONSUL_VERSION,
        },
        "Member": _self_member(app),
        "Meta": dict(cfg.node_meta),
        "Stats": _stats(app),
    })


@routes.get("/v1/status/leader")
async def status_leader(request: web.Request) -> web.Response:
    # A gossip mesh has no leader; Consul clients call this to see that the agent is up and
    # part of a cluster, so answer with this agent's own gossip address.
    app = request.app
    return json_response(f"{app[REGISTRY].info.address}:{app[PORTS].gossip_port}")


@routes.get("/v1/status/peers")
async def status_peers(request: web.Request) -> web.Response:
    app = request.app
    g = app[GOSSIP]
    if g is None:
        return json_response([f"{app[REGISTRY].info.address}:{app[PORTS].gossip_port}"])
    return json_response(sorted(f"{m.addr}:{m.port}" for m in g.members()
                                if m.status == "alive"))

"""``/v1/agent/self`` and ``/v1/status/*``: who this agent is."""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from .base import agent_of, json_response

routes = web.RouteTableDef()


@routes.get("/v1/agent/self")
async def agent_self(request: web.Request) -> web.Response:
    agent = agent_of(request)
    cfg = agent.config
    return json_response({
        "Config": {
            "Datacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": agent.node_id,
            "Version": __version__,
            "Revision": "",
            "Server": False,
            "Domain": cfg.domain,
        },
        "DebugConfig": {
            "BindAddr": cfg.bind_addr,
            "AdvertiseAddrLAN": agent.gossip_address,
            "ClientAddrs": [cfg.client_addr],
            "DataDir": agent.data_dir_path,
            "Ports": {
                "HTTP": agent.http_port if agent.config.http_port >= 0 else -1,
                "HTTPS": agent.https_port if agent.config.https_port >= 0 else -1,
                "DNS": agent.dns_port,
                "SerfLan": agent.gossip_port,
            },
            "EncryptKey": bool(cfg.encrypt),
        },
        "Member": agent.self_member(),
        "Meta": dict(cfg.node_meta),
        "Stats": agent.stats(),
    })


@routes.get("/v1/status/leader")
async def status_leader(request: web.Request) -> web.Response:
    # A gossip mesh has no leader; Consul clients call this to see that the agent is up and
    # part of a cluster, so answer with this agent's own gossip address.
    agent = agent_of(request)
    return json_response(f"{agent.gossip_address}:{agent.gossip_port}")


@routes.get("/v1/status/peers")
async def status_peers(request: web.Request) -> web.Response:
    agent = agent_of(request)
    return json_response(agent.peer_addresses())

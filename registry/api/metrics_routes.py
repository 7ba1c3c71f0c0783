"""``GET /v1/agent/metrics``: Consul's JSON shape, or Prometheus text with ``?format=prometheus``."""

from __future__ import annotations

from .. import web
from .base import json_response
from .keys import DNS, FEDERATION, GOSSIP, LB, REGISTRY

routes = web.RouteTableDef()



@routes.get("/v1/agent/metrics")
async def metrics(request: web.Request) -> web.Response:
    # prometheus_client costs ~10 MiB of RSS: loaded on the first scrape, not by every agent.
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from ..metrics import consul_json, registry_for

    app = request.app
    reg = registry_for(gossip=app[GOSSIP], registry=app[REGISTRY], dns=app[DNS], lb=app[LB],
                       federation=app[FEDERATION])
    if request.query.get("format") == "prometheus":
        body = generate_latest(reg)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
    return json_response(consul_json(reg))

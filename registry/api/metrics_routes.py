"""``GET /v1/agent/metrics``: Consul's JSON shape, or Prometheus text with ``?format=prometheus``."""

from __future__ import annotations

from typing import Any

from .. import web
from .base import json_response
from .keys import DNS, FEDERATION, GOSSIP, LB, REGISTRY

routes = web.RouteTableDef()

_HELD = web.AppKey("metrics_registry", tuple)
"""The subsystems the application's collector registry was made for, and that registry."""


def _registry(app: web.Application) -> Any:
    """The application's collector registry, made on the first scrape and kept while its
    subsystems stay the same objects (making one reads /proc for the process collector)."""
    from ..metrics import registry_for

    parts = (app[GOSSIP], app[REGISTRY], app[DNS], app[LB], app[FEDERATION])
    held = app.get(_HELD)
    if held is not None and all(a is b for a, b in zip(held[0], parts, strict=True)):
        return held[1]
    reg = registry_for(gossip=parts[0], registry=parts[1], dns=parts[2], lb=parts[3],
                       federation=parts[4])
    app[_HELD] = (parts, reg)
    return reg


@routes.get("/v1/agent/metrics")
async def metrics(request: web.Request) -> web.Response:
    # prometheus_client costs ~10 MiB of RSS: loaded on the first scrape, not by every agent.
    from prometheus_client import CONTENT_TYPE_LATEST

    from ..metrics import consul_json, prometheus_text

    reg = _registry(request.app)
    if request.query.get("format") == "prometheus":
        body = prometheus_text(reg)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
    return json_response(consul_json(reg))

"""``/v1/health/*``: instances with their checks, and checks by service, node and state."""

from __future__ import annotations

from typing import Any

from .. import web
from ..catalog import CRITICAL, PASSING, STATUSES
from ..errors import RequestError
from .acl_routes import keep, sees_check, sees_instance
from .base import bool_param
from .bexpr import compile_filter, filter_items
from .blocking import respond, wait_for
from .shapes import (
    catalog_of,
    check_json,
    health_entry_json,
    meta_matches,
    node_meta_filter,
    response_cache_of,
)

routes = web.RouteTableDef()


@routes.get("/v1/health/service/{name}")
async def health_service(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["name"]
    index = await wait_for(request, cat, [f"svc:{name.lower()}"])
    passing = bool_param(request, "passing")
    tags = [t.lower() for t in request.query.getall("tag", [])]
    pairs = node_meta_filter(request)
    if request.query.get("filter"):
        compile_filter(request.query["filter"])  # a bad expression is a 400 before caching

    def build() -> Any:
        out = []
        for inst in keep(request, cat.entries(name), sees_instance):
            if passing and inst.health != PASSING:
                continue
            lt = {t.lower() for t in inst.tags}
            if any(t not in lt for t in tags) or not meta_matches(inst.node_obj.meta, pairs):
                continue
            out.append(health_entry_json(inst))
        return filter_items(request.query.get("filter"), out)
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/health/checks/{service}")
async def health_checks(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["service"]
    index = await wait_for(request, cat, [f"svc:{name.lower()}"])

    def build() -> Any:
        checks = [check_json(c) for c in keep(request, cat.service_checks(name), sees_check)
                  if c.record.service_name.lower() == name.lower() or not c.record.service_name]
        return filter_items(request.query.get("filter"), checks)
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/health/node/{node}")
async def health_node(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["node"]
    index = await wait_for(request, cat, [f"node:{name.lower()}"])

    def build() -> Any:
        checks = [check_json(c) for c in keep(request, cat.node_checks(name), sees_check)]
        return filter_items(request.query.get("filter"), checks)
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/health/state/{state}")
async def health_state(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    state = request.match_info["state"]
    if state != "any" and state not in STATUSES:
        raise RequestError(f"Bad state {state!r}: use any, passing, warning or critical")
    pairs = node_meta_filter(request)
    index = await wait_for(request, cat, ["checks", "nodes"] if pairs else ["checks"])

    def build() -> Any:
        out = []
        for c in keep(request, cat.all_checks(), sees_check):
            if state != "any" and c.record.status != state:
                continue
            if pairs:
                n = cat.node(c.node)
                if n is None or not meta_matches(n.meta, pairs):
                    continue
            out.append(check_json(c))
        return filter_items(request.query.get("filter"), out)
    return respond(response_cache_of(request).get(request, index, build), index)


__all__ = ["CRITICAL", "routes"]

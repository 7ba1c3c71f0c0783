"""``/v1/catalog/*``: services, nodes and instances as Consul's catalog shows them.

``PUT /v1/catalog/register`` and ``/v1/catalog/deregister`` exist in Consul for writing any node
into the servers' catalog. In Rumor every agent is the only writer of its own node, so these
accept requests for the local node only (they act like the agent endpoints: a ``Service`` is
registered, ``ServiceID``/``CheckID`` deregistered) and refuse any other node with a 403 that
says to register through that node's own agent. Checks in a catalog registration are refused
(400): checks run on the agent, register them with ``/v1/agent/check/register``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..acl import READ, WRITE
from ..definitions import normalize_keys, parse_service
from ..errors import PermissionDenied, RequestError
from . import strict
from .acl_routes import authorize, can, keep, mark_filtered, sees_instance
from .base import read_json
from .bexpr import compile_filter, filter_items
from .blocking import respond, wait_for
from .shapes import (
    catalog_of,
    catalog_service_json,
    meta_matches,
    node_json,
    node_meta_filter,
    registry_of,
    response_cache_of,
    service_json,
)

routes = web.RouteTableDef()


@routes.get("/v1/catalog/datacenters")
async def datacenters(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    return respond(b'["' + cat.datacenter.encode() + b'"]', cat.index)


@routes.get("/v1/catalog/services")
async def services(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    pairs = node_meta_filter(request)
    # with node-meta the answer also depends on the nodes' metadata
    index = await wait_for(request, cat, ["services", "nodes"] if pairs else ["services"])

    flt = request.query.get("filter")
    pred = compile_filter(flt) if flt else None  # over each instance, as Consul's ServiceNode

    def build() -> Any:
        names = keep(request, cat.services(),
                     lambda who, name: who.allowed("service", name, READ))
        if not pairs and pred is None:
            svcs = cat.services()
            return {name: sorted(svcs[name]) for name in names}
        out: dict[str, set[str]] = {}
        for name in names:
            for inst in cat.entries(name):
                if meta_matches(inst.node_obj.meta, pairs) and (
                        pred is None or pred(catalog_service_json(inst))):
                    out.setdefault(inst.service, set()).update(inst.tags)
        return {k: sorted(v) for k, v in sorted(out.items())}
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/catalog/service/{name}")
async def service(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["name"]
    index = await wait_for(request, cat, [f"svc:{name.lower()}"])
    tags = [t.lower() for t in request.query.getall("tag", [])]
    pairs = node_meta_filter(request)

    def build() -> Any:
        out = []
        for inst in keep(request, cat.entries(name), sees_instance):
            lt = {t.lower() for t in inst.tags}
            if any(t not in lt for t in tags) or not meta_matches(inst.node_obj.meta, pairs):
                continue
            out.append(catalog_service_json(inst))
        return filter_items(request.query.get("filter"), out)
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/catalog/nodes")
async def nodes(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    index = await wait_for(request, cat, ["nodes"])
    pairs = node_meta_filter(request)

    def build() -> Any:
        nodes = keep(request, cat.nodes(), lambda who, n: who.allowed("node", n.name, READ))
        return filter_items(request.query.get("filter"), [node_json(n) for n in nodes
                                 if meta_matches(n.meta, pairs)])
    return respond(response_cache_of(request).get(request, max(index, cat.index), build), index)


@routes.get("/v1/catalog/node/{node}")
async def node(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["node"]
    index = await wait_for(request, cat, [f"node:{name.lower()}"])

    def build() -> Any:
        n = cat.node(name)
        if n is None:
            return None
        if not can(request, "node", n.name, READ):
            mark_filtered(request)
            return None
        items = keep(request, cat.node_service_items(name),
                     lambda who, item: who.allowed("service", item[0].service, READ))
        svcs = {r.id: service_json(r, c, m) for r, c, m in items}
        return {"Node": node_json(n), "Services": svcs}
    return respond(response_cache_of(request).get(request, index, build), index)


@routes.get("/v1/catalog/node-services/{node}")
async def node_services(request: web.Request) -> web.Response:
    cat = catalog_of(request)
    name = request.match_info["node"]
    index = await wait_for(request, cat, [f"node:{name.lower()}"])
    n = cat.node(name)
    if n is not None and not can(request, "node", n.name, READ):
        mark_filtered(request)
        n = None
    if n is None:
        raise RequestError(f'Node "{name}" not found', 404)
    from .blocking import encode

    items = keep(request, cat.node_service_items(name),
                 lambda who, item: who.allowed("service", item[0].service, READ))
    svcs = [service_json(r, c, m) for r, c, m in items]
    services = filter_items(request.query.get("filter"), svcs)
    return respond(encode({"Node": node_json(n), "Services": services}), index)


def _local_node_only(request: web.Request, body: dict[str, Any]) -> None:
    reg = registry_of(request)
    node = body.get("Node")
    if not isinstance(node, str) or not node:
        raise RequestError("Must provide node")
    if node.lower() != reg.local.info.name.lower():
        raise PermissionDenied(
            f"cannot write node {node!r} here: each Rumor agent is the only writer of its own "
            f"node ({reg.local.info.name!r}); register through that node's agent with "
            "/v1/agent/service/register")


@routes.put("/v1/catalog/register")
async def catalog_register(request: web.Request) -> web.Response:
    raw = await read_json(request)
    strict.check_body(raw, strict.CATALOG_REGISTER)
    body = normalize_keys(raw, {k.lower(): k for k in (
        "Node", "ID", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "Service",
        "Check", "Checks", "SkipNodeUpdate", "Token")}, "body")
    authorize(request, "node", str(body.get("Node") or ""), WRITE)
    _local_node_only(request, body)
    if body.get("Check") or body.get("Checks"):
        raise RequestError("checks cannot be registered through the catalog in Rumor; "
                           "use /v1/agent/check/register on the node's agent")
    reg = registry_of(request)
    if body.get("Service") is not None:
        sdef = parse_service(body["Service"], where="Service.")
        authorize(request, "service", sdef.record.service, WRITE)
        await reg.local.register_service(sdef)
    return web.json_response(True)


@routes.put("/v1/catalog/deregister")
async def catalog_deregister(request: web.Request) -> web.Response:
    raw = await read_json(request)
    strict.check_body(raw, strict.CATALOG_DEREGISTER)
    body = normalize_keys(raw, {k.lower(): k for k in (
        "Node", "Datacenter", "ServiceID", "CheckID", "Token")}, "body")
    _local_node_only(request, body)
    reg = registry_of(request)
    sid, cid = body.get("ServiceID"), body.get("CheckID")
    _may_deregister(request, sid, cid)
    if not sid and not cid:
        raise RequestError("deregistering a whole node is not possible: an agent's node leaves "
                           "with `rumor leave`; pass ServiceID or CheckID")
    if isinstance(sid, str) and sid:
        await reg.local.deregister_service(sid)
    if isinstance(cid, str) and cid:
        await reg.local.deregister_check(cid)
    return web.json_response(True)


def _may_deregister(request: web.Request, sid: Any, cid: Any) -> None:
    """Consul's catalog deregistration: service:write for a service (or its check), node:write
    for a node check."""
    local = registry_of(request).local
    if isinstance(sid, str) and sid in local.services:
        authorize(request, "service", local.services[sid].record.service, WRITE)
    if isinstance(cid, str) and cid in local.checks:
        svc = local.services.get(local.checks[cid].defn.service_id)
        if svc is not None:
            authorize(request, "service", svc.record.service, WRITE)
        else:
            authorize(request, "node", local.info.name, WRITE)

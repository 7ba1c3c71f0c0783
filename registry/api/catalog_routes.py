"""``/v1/catalog/*``: services, nodes and instances as Consul's catalog shows them.

``PUT /v1/catalog/register`` and ``/v1/catalog/deregister``:

* for this agent's own node they act like the agent endpoints (a ``Service`` is registered,
  ``ServiceID``/``CheckID`` deregistered; checks are refused, they run on the agent);
* for another agent's node they answer 403 (each agent is the only writer of its node);
* for any other name they write an *external node* (a host that runs no agent) with its
  services and checks, in Consul's shapes; this agent becomes its writer and replicates it
  (see ``registry/external.py``).
"""

from __future__ import annotations

from typing import Any

from .. import web
from ..acl import READ, WRITE
from ..catalog import CRITICAL, EXTERNAL, STATUSES, CheckRecord, NodeInfo
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


def _is_local(request: web.Request, node: Any) -> bool:
    if not isinstance(node, str) or not node:
        raise RequestError("Must provide node")
    reg = registry_of(request)
    if node.lower() == reg.local.info.name.lower():
        return True
    status = reg.catalog.node_status(node)
    if status is not None and status != EXTERNAL:
        raise PermissionDenied(
            f"cannot write node {node!r} here: it is an agent's own node, and each Rumor agent "
            "is the only writer of its node; register through that node's agent with "
            "/v1/agent/service/register")
    return False


_REGISTER_KEYS = {k.lower(): k for k in (
    "Node", "ID", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "Service",
    "Check", "Checks", "SkipNodeUpdate", "Token")}


@routes.put("/v1/catalog/register")
async def catalog_register(request: web.Request) -> web.Response:
    raw = await read_json(request)
    strict.check_body(raw, strict.CATALOG_REGISTER)
    body = normalize_keys(raw, _REGISTER_KEYS, "body")
    authorize(request, "node", str(body.get("Node") or ""), WRITE)
    reg = registry_of(request)
    dc = body.get("Datacenter")
    if dc and dc != reg.catalog.datacenter:
        raise RequestError(f"No path to datacenter {dc!r}; this agent serves "
                           f"{reg.catalog.datacenter!r} only")
    if not _is_local(request, body.get("Node")):
        await _register_external(request, reg, body)
        return web.json_response(True)
    if body.get("Check") or body.get("Checks"):
        raise RequestError("checks cannot be registered through the catalog for an agent's own "
                           "node in Rumor; use /v1/agent/check/register on the node's agent")
    if body.get("Service") is not None:
        sdef = parse_service(body["Service"], where="Service.")
        authorize(request, "service", sdef.record.service, WRITE)
        await reg.local.register_service(sdef)
    return web.json_response(True)


def _str_map(v: Any, what: str) -> dict[str, str]:
    if v is None:
        return {}
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise RequestError(f"{what}: must be an object of string values")
    return dict(v)


_HC_KEYS = {k.lower(): k for k in (
    "Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
    "ServiceTags", "Type", "Interval", "Timeout", "Definition")}


async def _register_external(request: web.Request, reg: Any, body: dict[str, Any]) -> None:
    """Consul's RegisterRequest for a node no agent runs on (see registry/external.py)."""
    name: str = body["Node"]
    skip = body.get("SkipNodeUpdate") is True
    info = None
    if not skip or reg.external.owner(name) is None:
        address = body.get("Address")
        if not isinstance(address, str) or not address:
            raise RequestError("Must provide address")
        node_id = body.get("ID") or ""
        if not isinstance(node_id, str):
            raise RequestError("ID: must be a string (a UUID)")
        meta = _str_map(body.get("NodeMeta"), "NodeMeta")
        for k in meta:
            if not k or len(k) > 128 or len(meta[k]) > 512:
                raise RequestError(f"NodeMeta: key {k[:20]!r} or its value is too long")
        info = NodeInfo(name=name, node_id=node_id, address=address,
                        datacenter=reg.catalog.datacenter, meta=meta,
                        tagged_addresses=_str_map(body.get("TaggedAddresses"), "TaggedAddresses"))
    service = None
    if body.get("Service") is not None:
        service = parse_service(body["Service"], where="Service.").record
        authorize(request, "service", service.service, WRITE)
    raw_checks: list[Any] = []
    if body.get("Check") is not None:
        raw_checks.append(body["Check"])
    if isinstance(body.get("Checks"), list):
        raw_checks.extend(body["Checks"])
    checks = []
    for i, rc in enumerate(raw_checks):
        c = normalize_keys(rc, _HC_KEYS, f"Checks[{i}]")
        cid = c.get("CheckID") or c.get("Name")
        cname = c.get("Name") or cid
        if not isinstance(cid, str) or not cid or not isinstance(cname, str):
            raise RequestError(f"Checks[{i}]: Missing check ID or name")
        cnode = c.get("Node")
        if cnode not in (None, "") and str(cnode).lower() != name.lower():
            raise RequestError(f"Checks[{i}].Node: {cnode!r} is not the node being registered")
        status = c.get("Status") or CRITICAL
        if status not in STATUSES:
            raise RequestError(f"Checks[{i}].Status: {status!r} is not a check status; use "
                               "passing, warning or critical")
        sid = c.get("ServiceID") or ""
        if not isinstance(sid, str):
            raise RequestError(f"Checks[{i}].ServiceID: must be a string")
        srec = service if service is not None and service.id == sid else (
            reg.external.service_record(name, sid) if sid else None)
        if sid and srec is None:
            raise RequestError(f"Checks[{i}].ServiceID: {sid!r} is not a service of node "
                               f"{name!r}; register the service first or in the same request")
        fields = {k: c.get(k) or "" for k in ("Notes", "Output", "Type", "Interval", "Timeout")}
        if not all(isinstance(v, str) for v in fields.values()):
            raise RequestError(f"Checks[{i}]: Notes, Output, Type, Interval and Timeout must be "
                               "strings")
        checks.append(CheckRecord(
            check_id=cid, name=cname, status=status, output=fields["Output"][:4096],
            notes=fields["Notes"], service_id=sid,
            service_name=srec.service if srec else "", service_tags=srec.tags if srec else (),
            type=fields["Type"], interval=fields["Interval"], timeout=fields["Timeout"]))
    await reg.external.register(info, name, service, checks)


@routes.put("/v1/catalog/deregister")
async def catalog_deregister(request: web.Request) -> web.Response:
    raw = await read_json(request)
    strict.check_body(raw, strict.CATALOG_DEREGISTER)
    body = normalize_keys(raw, {k.lower(): k for k in (
        "Node", "Datacenter", "ServiceID", "CheckID", "Token")}, "body")
    reg = registry_of(request)
    sid, cid = body.get("ServiceID"), body.get("CheckID")
    if not isinstance(sid, (str, type(None))) or not isinstance(cid, (str, type(None))):
        raise RequestError("ServiceID and CheckID must be strings")
    if not _is_local(request, body.get("Node")):
        authorize(request, "node", str(body["Node"]), WRITE)
        await reg.external.deregister(body["Node"], sid or "", cid or "")
        return web.json_response(True)
    _may_deregister(request, sid, cid)
    if not sid and not cid:
        raise RequestError("deregistering a whole node is not possible: an agent's node leaves "
                           "with `rumor leave`; pass ServiceID or CheckID")
    if sid:
        await reg.local.deregister_service(sid)
    if cid:
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

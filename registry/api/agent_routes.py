"""``/v1/agent/*`` for services and checks: this agent's own registrations.

Writes are validated completely before anything changes (never a half-applied registration),
persisted to the data dir before the answer, and replicated to every other agent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from .. import web
from ..acl import READ, WRITE
from ..catalog import CRITICAL, PASSING, WARNING, worst
from ..definitions import CheckDef, normalize_keys, parse_check, parse_service
from ..errors import NotFound, RequestError
from . import strict
from .acl_routes import authorize, keep, sees_local_check
from .base import bool_param, read_json
from .bexpr import compile_filter
from .blocking import blocking_params, encode, respond, wait_for
from .shapes import agent_service_json, catalog_of, check_json, registry_of, response_cache_of

routes = web.RouteTableDef()


def _local_key(request: web.Request) -> str:
    return f"node:{registry_of(request).local.info.name.lower()}"


def _content_hash(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()[:16]


async def _wait_hash(request: web.Request, build: Any) -> tuple[bytes, int]:
    """Consul's hash-based blocking (``?hash=H&wait=D``) on the agent's local services."""
    cat = catalog_of(request)
    key = _local_key(request)
    want = request.query.get("hash")
    body = encode(build())
    index = max(1, cat.key_index(key))
    if want and _content_hash(body) == want:
        params = blocking_params(request) or (index, 300.0)
        import asyncio
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params[1]
        while _content_hash(body) == want:
            left = deadline - loop.time()
            if left <= 0:
                break
            index = max(1, await cat.wait_keys([key], index, left))
            body = encode(build())
    return body, index


async def _local_answer(request: web.Request, build: Callable[[], Any]) -> web.Response:
    """Answer a read of this agent's own state: blocking on ``?hash`` or on ``?index``, with
    Consul's content hash header either way."""
    if request.query.get("hash"):
        body, index = await _wait_hash(request, build)
    else:
        reg = registry_of(request)
        index = await wait_for(request, reg.catalog, [_local_key(request)])
        body = response_cache_of(request).get(request, index, build)
    return respond(body, index, extra={"X-Consul-ContentHash": _content_hash(body)})


@routes.get("/v1/agent/services")
async def agent_services(request: web.Request) -> web.Response:
    reg = registry_of(request)
    cat = reg.catalog
    flt = request.query.get("filter")
    pred = compile_filter(flt) if flt else None

    def build() -> Any:
        out = {}
        sids = keep(request, reg.local.service_ids(),
                    lambda who, sid: who.allowed("service", reg.local.services[sid].record.service,
                                                 READ))
        for sid in sids:
            j = agent_service_json(reg.local.services[sid].record, cat.datacenter)
            if pred is None or pred(j):
                out[sid] = j
        return out
    return await _local_answer(request, build)


@routes.get("/v1/agent/service/{id}")
async def agent_service(request: web.Request) -> web.Response:
    reg = registry_of(request)
    sid = request.match_info["id"]
    if sid == "register" and sid not in reg.local.services:
        raise RequestError(f"method {request.method} not allowed", 405)
    if sid in reg.local.services:
        authorize(request, "service", reg.local.services[sid].record.service, READ)

    def build() -> Any:
        s = reg.local.services.get(sid)
        if s is None:
            return None
        j = agent_service_json(s.record, reg.catalog.datacenter)
        j["ContentHash"] = _content_hash(encode(j))
        return j
    if request.query.get("hash"):
        body, index = await _wait_hash(request, build)
    else:
        index = await wait_for(request, reg.catalog, [_local_key(request)])
        body = encode(build())
    if body == b"null":
        raise NotFound(f"unknown service ID: {sid}")
    h = _content_hash(body)
    return respond(body, index, extra={"X-Consul-ContentHash": h})


def _caller_is_local(request: web.Request) -> bool:
    """A caller on this host (loopback, or a unix socket): what enable_local_script_checks
    trusts besides config files."""
    peer = request.remote
    if not peer or peer.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def _gate(request: web.Request, checks: Iterable[CheckDef]) -> None:
    from ..service import exec_gate

    reg = registry_of(request)
    for c in checks:
        if c.runs_commands:
            exec_gate(reg.config, c, local=_caller_is_local(request))


@routes.put("/v1/agent/service/register")
async def service_register(request: web.Request) -> web.Response:
    reg = registry_of(request)
    body = await read_json(request)
    strict.check_body(body, strict.SERVICE)
    sdef = parse_service(body)
    authorize(request, "service", sdef.record.service, WRITE)
    _gate(request, sdef.checks)
    replace = bool_param(request, "replace-existing-checks")
    await reg.local.register_service(sdef, replace_existing_checks=replace)
    return web.Response(status=200)


@routes.put("/v1/agent/service/deregister/{id}")
async def service_deregister(request: web.Request) -> web.Response:
    reg = registry_of(request)
    _may_write_service(request, request.match_info["id"])
    await reg.local.deregister_service(request.match_info["id"])
    return web.Response(status=200)


@routes.get("/v1/agent/checks")
async def agent_checks(request: web.Request) -> web.Response:
    reg = registry_of(request)
    cat = reg.catalog
    flt = request.query.get("filter")
    pred = compile_filter(flt) if flt else None

    def build() -> Any:
        out = {}
        for c in keep(request, cat.node_checks(reg.local.info.name), sees_local_check):
            if c.record.check_id == "serfHealth":
                continue  # a Consul client agent lists only its own checks here
            j = check_json(c)
            if pred is None or pred(j):
                out[c.record.check_id] = j
        return out
    return await _local_answer(request, build)


@routes.put("/v1/agent/check/register")
async def check_register(request: web.Request) -> web.Response:
    reg = registry_of(request)
    body = await read_json(request)
    strict.check_body(body, strict.CHECK)
    defn = parse_check(body)
    if defn.service_id:
        _may_write_service(request, defn.service_id)
    else:
        authorize(request, "node", reg.local.info.name, WRITE)
    _gate(request, [defn])
    await reg.local.register_check(defn)
    return web.Response(status=200)


@routes.put("/v1/agent/check/deregister/{id}")
async def check_deregister(request: web.Request) -> web.Response:
    reg = registry_of(request)
    _may_write_check(request, request.match_info["id"])
    await reg.local.deregister_check(request.match_info["id"])
    return web.Response(status=200)


async def _ttl(request: web.Request, status: str) -> web.Response:
    reg = registry_of(request)
    _may_write_check(request, request.match_info["id"])
    reg.local.update_ttl(request.match_info["id"], status, request.query.get("note", ""))
    return web.Response(status=200)


@routes.put("/v1/agent/check/pass/{id}")
async def check_pass(request: web.Request) -> web.Response:
    return await _ttl(request, PASSING)


@routes.put("/v1/agent/check/warn/{id}")
async def check_warn(request: web.Request) -> web.Response:
    return await _ttl(request, WARNING)


@routes.put("/v1/agent/check/fail/{id}")
async def check_fail(request: web.Request) -> web.Response:
    return await _ttl(request, CRITICAL)


@routes.put("/v1/agent/check/update/{id}")
async def check_update(request: web.Request) -> web.Response:
    reg = registry_of(request)
    _may_write_check(request, request.match_info["id"])
    raw = await read_json(request)
    strict.check_body(raw, strict.CHECK_UPDATE)
    body = normalize_keys(raw, {"status": "Status", "output": "Output"}, "body")
    status = body.get("Status")
    output = body.get("Output", "")
    if not isinstance(status, str) or not isinstance(output, str):
        raise RequestError("Status must be passing, warning or critical and Output a string")
    reg.local.update_ttl(request.match_info["id"], status, output)
    return web.Response(status=200)


def _enable(request: web.Request) -> bool:
    raw = request.query.get("enable")
    if raw is None or raw == "":
        raise RequestError("Missing value for enable")
    low = raw.lower()
    if low in ("true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise RequestError(f"Invalid value for enable: {raw!r}")


@routes.put("/v1/agent/maintenance")
async def node_maintenance(request: web.Request) -> web.Response:
    reg = registry_of(request)
    await reg.local.set_node_maintenance(_enable(request), request.query.get("reason", ""))
    return web.Response(status=200)


@routes.put("/v1/agent/service/maintenance/{id}")
async def service_maintenance(request: web.Request) -> web.Response:
    reg = registry_of(request)
    enable = _enable(request)
    _may_write_service(request, request.match_info["id"])
    await reg.local.set_service_maintenance(request.match_info["id"], enable,
                                            request.query.get("reason", ""))
    return web.Response(status=200)


def _agent_health(request: web.Request, instances: list[Any], what: str) -> web.Response:
    if not instances:
        raise NotFound(f"ServiceName {what} Not Found" if "/name/" in request.path
                       else f"ServiceId {what} not found")
    from .shapes import agent_service_json as asj
    out = [{"AggregatedStatus": i.health, "Service": asj(i.record, i.datacenter),
            "Checks": [check_json(c) for c in i.checks if c.record.check_id != "serfHealth"]}
           for i in instances]
    status = {"passing": 200, "warning": 429, "critical": 503}[worst(i.health for i in instances)]
    body = out if "/name/" in request.path else out[0]
    return web.Response(status=status, body=encode(body), content_type="application/json")


@routes.get("/v1/agent/health/service/name/{name}")
async def agent_health_by_name(request: web.Request) -> web.Response:
    reg = registry_of(request)
    name = request.match_info["name"]
    authorize(request, "service", name, READ)
    insts = [i for i in reg.catalog.entries(name)
             if i.node.lower() == reg.local.info.name.lower()]
    return _agent_health(request, insts, name)


@routes.get("/v1/agent/health/service/id/{id}")
async def agent_health_by_id(request: web.Request) -> web.Response:
    reg = registry_of(request)
    sid = request.match_info["id"]
    s = reg.local.services.get(sid)
    if s is not None:
        authorize(request, "service", s.record.service, READ)
    insts = [] if s is None else [i for i in reg.catalog.entries(s.record.service)
                                  if i.node.lower() == reg.local.info.name.lower()
                                  and i.service_id == sid]
    return _agent_health(request, insts, sid)


# --- ACLs: what a write to a local service or check needs ---------------------------------------


def _may_write_service(request: web.Request, sid: str) -> None:
    """service:write on the service's name (an unknown ID is left to the handler's 404)."""
    s = registry_of(request).local.services.get(sid)
    if s is not None:
        authorize(request, "service", s.record.service, WRITE)


def _may_write_check(request: web.Request, cid: str) -> None:
    """service:write for a service's check, node:write on this node for a node check."""
    reg = registry_of(request)
    c = reg.local.checks.get(cid)
    if c is None:
        return
    if c.defn.service_id:
        s = reg.local.services.get(c.defn.service_id)
        if s is not None:
            authorize(request, "service", s.record.service, WRITE)
            return
    authorize(request, "node", reg.local.info.name, WRITE)


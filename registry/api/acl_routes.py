"""ACL enforcement for the HTTP API, and the ``/v1/acl/*`` read endpoints in Consul's shapes.

The middleware resolves the request's token once (403 ``ACL not found`` for an unknown one) and
keeps the :class:`~registry.acl.Identity` on the request. What each endpoint needs is in
:data:`RULES`, keyed by method and route:

* a :class:`Rule` is checked here, before the handler runs (``agent:write`` on this node for
  ``/v1/agent/join``, ``event:write`` on the event's name, ``operator`` for the LB, ...);
* :data:`IN_HANDLER` means the handler checks what it writes (``service:write`` on the name in the
  body) or filters what it reads, with :func:`authorize`, :func:`can` and :func:`keep`; when it
  drops something the answer carries ``X-Consul-Results-Filtered-By-ACLs: true``, as Consul's;
* :data:`OPEN` needs no token (``/v1/status/*``, as Consul).

A route missing from the table needs ``operator:read`` (GET) or ``operator:write``, and a unit
test lists every route of the app against the table, so a new endpoint is a decision, not an
accident. The KV store's routes call ``authorize(request, "key", key, need)`` and filter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from gossip.dclass import dataclass

from .. import web
from ..acl import OPEN as OPEN_IDENTITY
from ..acl import READ, WRITE, Identity, policy_json, token_json, token_of
from ..errors import NotFound, RequestError
from .base import ACL_FILTERED, ACL_IDENTITY, Handler, json_response
from .keys import REGISTRY

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

IDENTITY = ACL_IDENTITY
FILTERED = ACL_FILTERED
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
NODE = "<this node>"
"""A rule's name: the agent's own node name."""

T = TypeVar("T")


@dataclass(frozen=True)
class Rule:
    kind: str
    name: str = ""
    """A literal, :data:`NODE`, or ``{key}`` for a path parameter."""
    need: str = READ


IN_HANDLER = "in handler"
OPEN = "open"

_A_R, _A_W = Rule("agent", NODE, READ), Rule("agent", NODE, WRITE)
_OP_R, _OP_W = Rule("operator", "", READ), Rule("operator", "", WRITE)
_KR_R, _KR_W = Rule("keyring", "", READ), Rule("keyring", "", WRITE)
_ACL_R = Rule("acl", "", READ)

RULES: dict[tuple[str, str], Rule | str] = {
    ("GET", "/v1/status/leader"): OPEN,
    ("GET", "/v1/status/peers"): OPEN,
    ("GET", "/v1/catalog/datacenters"): OPEN,
    ("GET", "/v1/agent/self"): _A_R,
    ("GET", "/v1/agent/metrics"): _A_R,
    ("GET", "/v1/agent/monitor"): _A_R,
    ("PUT", "/v1/agent/join/{addr}"): _A_W,
    ("PUT", "/v1/agent/leave"): _A_W,
    ("PUT", "/v1/agent/reload"): _A_W,
    ("PUT", "/v1/agent/force-leave/{node}"): _OP_W,          # Consul: operator:write
    ("PUT", "/v1/agent/maintenance"): Rule("node", NODE, WRITE),
    ("GET", "/v1/agent/members"): IN_HANDLER,
    ("GET", "/v1/agent/services"): IN_HANDLER,
    ("GET", "/v1/agent/service/{id}"): IN_HANDLER,
    ("GET", "/v1/agent/checks"): IN_HANDLER,
    ("GET", "/v1/agent/health/service/name/{name}"): IN_HANDLER,
    ("GET", "/v1/agent/health/service/id/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/service/register"): IN_HANDLER,
    ("PUT", "/v1/agent/service/deregister/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/service/maintenance/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/check/register"): IN_HANDLER,
    ("PUT", "/v1/agent/check/deregister/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/check/pass/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/check/warn/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/check/fail/{id}"): IN_HANDLER,
    ("PUT", "/v1/agent/check/update/{id}"): IN_HANDLER,
    ("GET", "/v1/catalog/services"): IN_HANDLER,
    ("GET", "/v1/catalog/service/{name}"): IN_HANDLER,
    ("GET", "/v1/catalog/nodes"): IN_HANDLER,
    ("GET", "/v1/catalog/node/{node}"): IN_HANDLER,
    ("GET", "/v1/catalog/node-services/{node}"): IN_HANDLER,
    ("PUT", "/v1/catalog/register"): IN_HANDLER,
    ("PUT", "/v1/catalog/deregister"): IN_HANDLER,
    ("GET", "/v1/health/service/{name}"): IN_HANDLER,
    ("GET", "/v1/health/checks/{service}"): IN_HANDLER,
    ("GET", "/v1/health/node/{node}"): IN_HANDLER,
    ("GET", "/v1/health/state/{state}"): IN_HANDLER,
    ("PUT", "/v1/event/fire/{name}"): Rule("event", "{name}", WRITE),
    ("GET", "/v1/event/list"): IN_HANDLER,
    ("GET", "/v1/operator/keyring"): _KR_R,
    ("POST", "/v1/operator/keyring"): _KR_W,
    ("PUT", "/v1/operator/keyring"): _KR_W,
    ("DELETE", "/v1/operator/keyring"): _KR_W,
    ("GET", "/v1/lb/listeners"): _OP_R,
    ("GET", "/v1/lb/listener/{name}"): _OP_R,
    ("PUT", "/v1/lb/listener"): _OP_W,
    ("DELETE", "/v1/lb/listener/{name}"): _OP_W,
    ("GET", "/v1/acl/token/self"): IN_HANDLER,
    ("GET", "/v1/acl/policies"): _ACL_R,
    ("GET", "/v1/acl/policy/{id}"): _ACL_R,
    ("GET", "/v1/acl/policy/name/{name}"): _ACL_R,
    ("GET", "/v1/acl/tokens"): _ACL_R,
    ("GET", "/v1/acl/token/{accessor}"): _ACL_R,
    # federation (registry/api/dc_routes.py, query_routes.py): the whole catalog of this
    # datacenter for other datacenters' DNS copies; prepared queries by ID (Consul checks
    # the query's name and then filters the results; an approximation until refined)
    ("GET", "/v1/internal/rumor/view"): _OP_R,
    ("GET", "/v1/coordinate/nodes"): Rule("node", "", READ),
    ("GET", "/v1/coordinate/node/{node}"): Rule("node", "{node}", READ),
    ("GET", "/v1/coordinate/datacenters"): OPEN,
    ("POST", "/v1/query"): Rule("query", "", WRITE),
    ("GET", "/v1/query"): Rule("query", "", READ),
    ("GET", "/v1/query/{id}"): Rule("query", "{id}", READ),
    ("PUT", "/v1/query/{id}"): Rule("query", "{id}", WRITE),
    ("DELETE", "/v1/query/{id}"): Rule("query", "{id}", WRITE),
    ("GET", "/v1/query/{id}/execute"): Rule("query", "{id}", READ),
    # KV: the handler checks the key (key:read, key:write), filters a listing (?recurse,
    # ?keys) to the keys the token may read, and checks every key a recursive delete removes
    ("GET", "/v1/kv/{key}"): IN_HANDLER,
    ("PUT", "/v1/kv/{key}"): IN_HANDLER,
    ("DELETE", "/v1/kv/{key}"): IN_HANDLER,
    # sessions and transactions are refused for everyone (they need consensus): nothing to guard
    ("GET", "/v1/session/{key}"): OPEN,
    ("PUT", "/v1/session/{key}"): OPEN,
    ("DELETE", "/v1/session/{key}"): OPEN,
    ("GET", "/v1/txn"): OPEN,
    ("PUT", "/v1/txn"): OPEN,
    ("DELETE", "/v1/txn"): OPEN,
    ("GET", "/v1/agent/version"): OPEN,          # Consul: no ACL required
    ("GET", "/v1/agent/host"): _OP_R,            # Consul: operator:read
}

_UI_PREFIXES = ("/ui",)


def _route_of(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    if resource is None:
        return None
    canonical = resource.canonical
    return canonical.replace("{key:.*}", "{key}")


def rule_for(method: str, route: str) -> Rule | str:
    method = "GET" if method == "HEAD" else method
    found = RULES.get((method, route))
    if found is None and route.startswith("/v1/kv/"):
        found = RULES.get(("PUT" if method != "GET" else "GET", "/v1/kv/{key}"))
    if found is None:
        return _OP_R if method == "GET" else _OP_W
    return found


@web.middleware
async def acl_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    acl = request.app[REGISTRY].acl
    path = request.path
    if not acl.enabled or path == "/" or path.startswith(_UI_PREFIXES):
        request[IDENTITY] = OPEN_IDENTITY if not acl.enabled else None
        return await handler(request)
    route = _route_of(request)
    if route is None:               # no such endpoint: the 404 says so, whatever the token
        return await handler(request)
    rule = rule_for(request.method, route)
    if rule == OPEN:
        return await handler(request)
    ident = acl.resolve(token_of(request.headers, request.query))
    request[IDENTITY] = ident
    if isinstance(rule, Rule):
        name = rule.name
        if name == NODE:
            name = request.app[REGISTRY].local.info.name
        elif name.startswith("{"):
            name = request.match_info.get(name[1:-1], "")
        ident.require(rule.kind, name, rule.need)
    response = await handler(request)
    if request.get(FILTERED):
        response.headers[FILTERED_HEADER] = "true"
    return response


def setup(app: web.Application) -> None:
    app.middlewares.append(acl_middleware)


# --- what handlers call --------------------------------------------------------------------------


def identity(request: web.Request) -> Identity:
    """The request's identity (resolved by the middleware, or here for the UI's pages)."""
    ident = request.get(IDENTITY)
    if isinstance(ident, Identity):
        return ident
    acl = request.app[REGISTRY].acl
    ident = acl.resolve(token_of(request.headers, request.query))
    request[IDENTITY] = ident
    return ident


def authorize(request: web.Request, kind: str, name: str, need: str) -> None:
    """403 in Consul's words unless the request's token has ``kind:need`` on ``name``."""
    identity(request).require(kind, name, need)


def can(request: web.Request, kind: str, name: str, need: str = READ) -> bool:
    return identity(request).allowed(kind, name, need)


def mark_filtered(request: web.Request) -> None:
    request[FILTERED] = True


def keep(request: web.Request, items: Iterable[T], allowed: Callable[[Identity, T], bool]
         ) -> list[T]:
    """``items`` the token may see; marks the response filtered when one was dropped."""
    ident = identity(request)
    if ident.token is None:          # ACLs off
        return list(items)
    out = []
    for item in items:
        if allowed(ident, item):
            out.append(item)
        else:
            request[FILTERED] = True
    return out


def sees_instance(ident: Identity, inst: Any) -> bool:
    """Consul's rule for an instance in catalog and health reads: service:read and node:read."""
    return ident.allowed("service", inst.service, READ) and ident.allowed("node", inst.node, READ)


def sees_check(ident: Identity, c: Any) -> bool:
    """A check: node:read on its node, and service:read on its service if it has one."""
    svc = c.record.service_name
    return ident.allowed("node", c.node, READ) and (not svc or ident.allowed("service", svc, READ))


def sees_local_check(ident: Identity, c: Any) -> bool:
    """A check of this agent (``/v1/agent/checks``): service:read for a service's check,
    node:read for a node check (Consul's agent endpoint)."""
    svc = c.record.service_name
    return ident.allowed("service", svc, READ) if svc else ident.allowed("node", c.node, READ)


# --- /v1/acl/* -----------------------------------------------------------------------------------


def _enabled_acl(request: web.Request) -> Any:
    acl = request.app[REGISTRY].acl
    if not acl.enabled:
        raise RequestError("ACL support disabled", 401)
    return acl


def _self(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    ident = identity(request)
    assert ident.token is not None
    return json_response(token_json(acl, ident.token, show_secret=True))


@routes.get("/v1/acl/token/self")
async def token_self(request: web.Request) -> web.Response:
    return _self(request)


@routes.get("/v1/acl/policies")
async def policies(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    out = [policy_json(p, rules=False) for p in sorted(acl.policies.values(), key=lambda p: p.name)]
    return json_response(out, index=acl.generation)


@routes.get("/v1/acl/policy/name/{name}")
async def policy_by_name(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    p = acl.policy(request.match_info["name"], by_name=True)
    if p is None:
        raise NotFound("ACL policy not found")
    return json_response(policy_json(p), index=acl.generation)


@routes.get("/v1/acl/policy/{id}")
async def policy_by_id(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    p = acl.policy(request.match_info["id"])
    if p is None:
        raise NotFound("ACL policy not found")
    return json_response(policy_json(p), index=acl.generation)


@routes.get("/v1/acl/tokens")
async def tokens(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    show = identity(request).allowed("acl", "", WRITE)
    out = [token_json(acl, t, show_secret=show) for t in acl.tokens()]
    return json_response(out, index=acl.generation)


@routes.get("/v1/acl/token/{accessor}")
async def token_read(request: web.Request) -> web.Response:
    acl = _enabled_acl(request)
    accessor = request.match_info["accessor"]
    if accessor == "self":
        return _self(request)
    t = acl.token(accessor)
    if t is None:
        raise NotFound("ACL token not found")
    show = identity(request).allowed("acl", "", WRITE)
    return json_response(token_json(acl, t, show_secret=show), index=acl.generation)

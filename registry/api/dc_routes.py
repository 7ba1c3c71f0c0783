"""Datacenters in the HTTP API: ``?dc=`` forwarding, ``/v1/catalog/datacenters``, WAN members.

* A catalog or health read with ``?dc=NAME`` for another datacenter is forwarded whole (path,
  query, token) to that datacenter (:mod:`registry.federation`) and its answer passed back with
  its ``X-Consul-Index``, so a blocking read waits on the remote replica's index.
* ``GET /v1/catalog/datacenters``: the known datacenters, nearest first. A LAN-only agent asks one
  of its datacenter's WAN members (it alone sees the WAN pool).
* ``GET /v1/agent/members?wan=1``: the WAN pool's members in Consul's shape (names ``node.dc``);
  an empty list on an agent that is not a WAN member, as a Consul client answers.
* ``/v1/operator/keyring?wan=1`` (``rumor keyring -wan``): the WAN pool's keyring.
* ``GET /v1/internal/rumor/view``: this datacenter's catalog as one document, which other
  datacenters' agents keep a copy of for DNS (:mod:`registry.remote_view`).

These are handled by one middleware (mounted inside the error middleware, so refusals are the
usual plain-text answers) rather than by routes, because they share paths with the local routes.
"""

from __future__ import annotations

from .. import web
from ..errors import RequestError
from ..federation import FORWARDED_HEADER, Federation
from ..remote_view import VIEW_PATH, view_document
from .base import Handler, bool_param, json_response
from .blocking import blocking_params, encode, respond, wait_for
from .gossip_routes import _key_from_body, _key_result, member_json
from .keys import CATALOG, FEDERATION

routes = web.RouteTableDef()

FORWARDED_PREFIXES = ("/v1/catalog/", "/v1/health/", "/v1/kv/", "/v1/internal/rumor/")


@routes.get(VIEW_PATH)
async def dc_view(request: web.Request) -> web.Response:
    """This datacenter's nodes and healthy instances in one document, for other datacenters'
    DNS (registry/remote_view.py); blocking with ``?index=&wait=``."""
    cat = request.app[CATALOG]
    index = await wait_for(request, cat, ("*",))
    return respond(encode(view_document(cat)), index)


def setup(app: web.Application) -> None:
    app.middlewares.append(datacenter_middleware)


def _wants_wan(request: web.Request) -> bool:
    return "wan" in request.query and bool_param(request, "wan")


@web.middleware
async def datacenter_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    fed = request.app[FEDERATION]
    if fed is None:
        return await handler(request)
    path = request.path
    forwarded = FORWARDED_HEADER in request.headers
    dc = request.query.get("dc", "")
    if path == "/v1/catalog/datacenters" and request.method == "GET":
        return await _datacenters(request, fed, forwarded)
    if dc and dc != fed.datacenter and path.startswith(FORWARDED_PREFIXES):
        return await _forward(request, fed, dc, forwarded)
    if path == "/v1/agent/members" and request.method == "GET" and _wants_wan(request):
        return json_response([member_json(m) for m in fed.wan_members()])
    if path == "/v1/operator/keyring" and _wants_wan(request):
        return await _keyring(request, fed)
    return await handler(request)


async def _forward(request: web.Request, fed: Federation, dc: str,
                   forwarded: bool) -> web.Response:
    params = blocking_params(request)   # a bad index/wait is refused here, not after the hop
    body = await request.read() if request.can_read_body else b""
    reply = await fed.forward(dc, request.method, request.path_qs, request.headers, body,
                              forwarded=forwarded, wait=params[1] if params else None)
    return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))


async def _datacenters(request: web.Request, fed: Federation, forwarded: bool) -> web.Response:
    if fed.is_wan_member or forwarded or not fed.local_wan_members():
        return json_response(fed.datacenters())
    # A LAN-only agent: one of its WAN members sees the WAN pool; ask it.
    try:
        reply = await fed.forward(fed.datacenter, "GET", request.path_qs, request.headers, b"",
                                  forwarded=False, wait=None)
    except RequestError:
        return json_response([fed.datacenter])
    return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))


async def _keyring(request: web.Request, fed: Federation) -> web.Response:
    """The WAN pool's keyring, in Consul's list-of-pools shape with ``WAN: true``."""
    g = fed.wan
    if g is None:
        raise RequestError("this agent is not a WAN member: it has no WAN keyring", 400)
    if request.method == "GET":
        out = (await g.list_keys()).to_json()
        out["WAN"] = True
        return json_response([out])
    key = await _key_from_body(request)
    op = {"POST": g.install_key, "PUT": g.use_key, "DELETE": g.remove_key}.get(request.method)
    if op is None:
        raise RequestError(f"method {request.method} not allowed", 405)
    return _key_result(await op(key))

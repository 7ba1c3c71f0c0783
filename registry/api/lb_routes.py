"""``/v1/lb/*``: the agent's load-balancer listeners.

    PUT    /v1/lb/listener          body: a listener spec (Name, Bind, Mode, Service, Tag,
                                    Strategy, ProxyProtocol, Routes, URLPrefix, TLS,
                                    BackendTLS, RedirectHTTPS, ...);
                                    creates or replaces by Name; answers the listener's info
    GET    /v1/lb/listeners         every listener: spec, bound Address, Counters, Backends
    GET    /v1/lb/listener/{name}   one listener (404 when unknown)
    DELETE /v1/lb/listener/{name}   stop accepting; open connections drain; answers true

A bad spec or an address that cannot be bound is a 400 whose text says why ("bind
127.0.0.1:9000: address already in use"); so is a certificate file that cannot be used
("listener web: TLS.Certificates[0]: CertFile: /etc/web.pem: file not found"), checked before
anything changes, so the running listener of that name stays as it was.
"""

from __future__ import annotations

from lb import ConfigError, ListenerError, ListenerSpec, LoadBalancer

from .. import web
from ..errors import RequestError
from ..listeners import ListenerStore
from .base import json_response, read_json
from .keys import LB, LISTENER_STORE

routes = web.RouteTableDef()

_OFF = "the load balancer is not running on this agent (enable_lb is false, or it failed to start)"


def _lb_of(request: web.Request) -> LoadBalancer:
    lb = request.app[LB]
    if lb is None:
        raise RequestError(_OFF, 503)
    return lb


def _store_of(request: web.Request) -> ListenerStore:
    store = request.app[LISTENER_STORE]
    if store is None:
        raise RequestError(_OFF, 503)
    return store


@routes.put("/v1/lb/listener")
async def put_listener(request: web.Request) -> web.Response:
    store = _store_of(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise RequestError("Request decode failed: a listener is a JSON object")
    try:
        info = await store.put(ListenerSpec.from_dict(body))
    except (ConfigError, ListenerError) as e:
        raise RequestError(str(e), getattr(e, "status", 400)) from None
    return json_response(info)


@routes.get("/v1/lb/listeners")
async def get_listeners(request: web.Request) -> web.Response:
    return json_response(_lb_of(request).listeners())


@routes.get("/v1/lb/listener/{name}")
async def get_listener(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    info = _lb_of(request).listener(name)
    if info is None:
        raise RequestError(f"no listener named {name!r}", 404)
    return json_response(info)


@routes.delete("/v1/lb/listener/{name}")
async def delete_listener(request: web.Request) -> web.Response:
    store = _store_of(request)
    try:
        await store.delete(request.match_info["name"])
    except ListenerError as e:
        raise RequestError(e.message, e.status) from None
    return json_response(True)

"""The agent's HTTP API: a compatible subset of Consul's, served by registry/web.

Each ``*_routes`` module in this package holds a ``web.RouteTableDef`` named ``routes``
(registry/web has aiohttp.web's names for what the API uses, over an httptools server);
:func:`make_app` mounts them all behind the same middlewares, which turn refusals into Consul's
plain-text error answers: 400/403/404/405/413 with a reason, never a 500 for bad input.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dnsserver import DNSServer
from gossip import Gossip
from lb import LoadBalancer

from .. import web
from ..config import AgentConfig
from ..federation import Federation
from ..listeners import ListenerStore
from ..service import Registry
from . import keys
from .base import error_middleware
from .blocking import ResponseCache
from .strict import scope_middleware

log = logging.getLogger(__name__)

#: Route modules, mounted in this order. Each must define ``routes``.
ROUTE_MODULES = (
    "self_routes",
    "monitor_routes",
    "gossip_routes",
    "agent_routes",
    "catalog_routes",
    "health_routes",
    "acl_routes",
    "reload_routes",
    "kv_routes",
    "compat_routes",
    "lb_routes",
    "metrics_routes",
    "ui_routes",
    "dc_routes",
    "query_routes",
    "coordinate_routes",
)

__all__ = ["ROUTE_MODULES", "make_app"]


def make_app(config: AgentConfig, registry: Registry, *, gossip: Gossip | None,
             dns: DNSServer | None, lb: LoadBalancer | None,
             listener_store: ListenerStore | None, ports: keys.BoundPorts, started_at: float,
             request_stop: Callable[[], None],
             client_max_size: int | None = None,
             reload: Callable[[], Awaitable[list[str]]] | None = None,
             federation: Federation | None = None) -> web.Application:
    """The API over these subsystems (None for one that is off); see :mod:`.keys`."""
    app = web.Application(
        middlewares=[error_middleware, scope_middleware],
        client_max_size=client_max_size or config.http_max_body,
        handler_args={"max_field_size": 16384, "max_line_size": 16384},
    )
    app[keys.CONFIG] = config
    app[keys.REGISTRY] = registry
    app[keys.CATALOG] = registry.catalog
    app[keys.RESPONSE_CACHE] = ResponseCache()
    app[keys.GOSSIP] = gossip
    app[keys.DNS] = dns
    app[keys.LB] = lb
    app[keys.LISTENER_STORE] = listener_store
    app[keys.PORTS] = ports
    app[keys.STARTED_AT] = started_at
    app[keys.REQUEST_STOP] = request_stop
    if reload is not None:
        app[keys.RELOAD] = reload
    app[keys.FEDERATION] = federation
    for name in ROUTE_MODULES:
        module = _load(name)
        if module is not None:
            app.router.add_routes(module.routes)
            setup = getattr(module, "setup", None)
            if setup is not None:
                setup(app)
    return app

def _load(name: str) -> Any:
    full = f"{__name__}.{name}"
    try:
        return importlib.import_module(full)
    except ModuleNotFoundError as e:
        # Only "this route module is not part of this build" is tolerated; a missing
        # dependency inside a module that exists is a real error.
        if e.name != full:
            raise
        log.debug("http route module absent module=%s", full)
        return None

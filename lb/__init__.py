"""``lb``: a TCP and HTTP proxy whose backends follow the catalog live ("bind").

Public API (the agent imports only these names)::

    cfg = LBConfig.from_dict(agent_config.lb)            # limits and timeouts, validated
    lb = LoadBalancer(cfg, view)                         # view: any CatalogView
    await lb.start()                                     # follow view.wait(index) for changes
    info = await lb.add_listener(ListenerSpec.from_dict(
        {"Name": "web", "Bind": "127.0.0.1:9000", "Mode": "http", "Service": "web"}))
    lb.listeners()        # [{Name, Bind, Address, Mode, ..., Counters{...}, Backends[{...}]}]
    await lb.remove_listener("web")                      # open connections drain
    await lb.stop()

``add_listener`` creates or replaces by name and raises :class:`ConfigError` (a ValueError)
for a bad spec, :class:`ListenerError` (``.status`` 400) for "bind 127.0.0.1:9000: address
already in use"; ``remove_listener`` raises ListenerError with ``.status`` 404 for an unknown
name. ``lb.counters`` is the :class:`LBCounters` (events by reason).

``listeners()`` gives, per listener, the spec (Consul-style keys: Name, Bind, Mode, Service,
Tag, Strategy, ProxyProtocol, Routes, URLPrefix, PassingOnly, ConnectTimeout, IdleTimeout,
MaxConnections, TLS, BackendTLS, RedirectHTTPS), the bound ``Address``, ``Counters``
(Connections, Active, Requests, BytesIn, BytesOut, Errors, Rejected, ErrorReasons{reason: n},
Events{reason: n}, TLSHandshakes, TLSHandshakeFailures{reason: n}) and ``Backends``
(Node, ServiceID, Address, Port, Weight, Active, Connections, Requests, BytesIn, BytesOut,
Errors, Ejections, Ejected, Draining, Service, Tag).

TLS (:mod:`lb.tls`): ``LoadBalancer(..., cert_loader=...)`` takes a :class:`CertificateLoader`
(the agent's checks the files; :class:`DefaultCertificateLoader` otherwise);
``await lb.reload_tls()`` reads every listener's certificate files again (SIGHUP).

Strategies: ``round_robin`` (default; per connection in TCP, per request in HTTP),
``least_conn``, ``random``, ``weighted_round_robin`` (the instances' Weights.Passing /
Weights.Warning by health). :class:`MemoryView` is a working in-memory catalog view.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import (
        STRATEGIES,
        BackendTLSSpec,
        CertificateSpec,
        LBConfig,
        ListenerSpec,
        RedirectSpec,
        Route,
        TLSSpec,
    )
    from .counters import LBCounters, ListenerStats
    from .errors import ConfigError, LBError, ListenerError
    from .loadbalancer import LoadBalancer, listeners_from_config
    from .memview import MemInstance, MemoryView
    from .pool import Pool
    from .resolve import HostCache, ResolveError
    from .routes import RouteTable, urlprefix_routes
    from .strategy import Backend, LeastConn, Random, RoundRobin, WeightedRoundRobin, make_strategy
    from .tls import (
        HANDSHAKE_FAILURE_REASONS,
        CertificateLoader,
        DefaultCertificateLoader,
        LoadedCertificate,
        certificate_names,
        prepare_listener_tls,
    )
    from .view import CatalogView, Instance

_HOME = {
    **dict.fromkeys(("STRATEGIES", "BackendTLSSpec", "CertificateSpec", "LBConfig", "ListenerSpec",
                     "RedirectSpec", "Route", "TLSSpec"), "config"),
    **dict.fromkeys(("LBCounters", "ListenerStats"), "counters"),
    **dict.fromkeys(("ConfigError", "LBError", "ListenerError"), "errors"),
    **dict.fromkeys(("LoadBalancer", "listeners_from_config"), "loadbalancer"),
    **dict.fromkeys(("MemInstance", "MemoryView"), "memview"),
    "Pool": "pool",
    **dict.fromkeys(("HostCache", "ResolveError"), "resolve"),
    **dict.fromkeys(("RouteTable", "urlprefix_routes"), "routes"),
    **dict.fromkeys(("Backend", "LeastConn", "Random", "RoundRobin", "WeightedRoundRobin",
                     "make_strategy"), "strategy"),
    **dict.fromkeys(("HANDSHAKE_FAILURE_REASONS", "CertificateLoader", "DefaultCertificateLoader",
                     "LoadedCertificate", "certificate_names", "prepare_listener_tls"), "tls"),
    **dict.fromkeys(("CatalogView", "Instance"), "view"),
}
"""The module of each public name. A name is imported on first use (PEP 562), so that an agent
loads only the parts of the balancer it runs: with no listener, neither the proxies nor TLS
(issue 13: start-up cost)."""


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "HANDSHAKE_FAILURE_REASONS",
    "STRATEGIES",
    "Backend",
    "BackendTLSSpec",
    "CatalogView",
    "CertificateLoader",
    "CertificateSpec",
    "ConfigError",
    "DefaultCertificateLoader",
    "HostCache",
    "Instance",
    "LBConfig",
    "LBCounters",
    "LBError",
    "LeastConn",
    "ListenerError",
    "ListenerSpec",
    "ListenerStats",
    "LoadBalancer",
    "LoadedCertificate",
    "MemInstance",
    "MemoryView",
    "Pool",
    "Random",
    "RedirectSpec",
    "ResolveError",
    "RoundRobin",
    "Route",
    "RouteTable",
    "TLSSpec",
    "WeightedRoundRobin",
    "certificate_names",
    "listeners_from_config",
    "make_strategy",
    "prepare_listener_tls",
    "urlprefix_routes",
]

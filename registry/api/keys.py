"""What the HTTP routes read, as typed ``web.AppKey``s set once by :func:`registry.api.make_app`.

The agent builds the subsystems and hands each one to ``make_app``; the routes read only these
keys. So the dependencies point one way: the agent imports the API, and nothing in the API knows
the agent. A subsystem that is switched off (gossip in a test, DNS, the LB) is stored as None.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from dnsserver import DNSServer
from gossip import Gossip
from lb import LoadBalancer

from .. import web
from ..catalog import Catalog
from ..config import AgentConfig
from ..federation import Federation
from ..listeners import ListenerStore
from ..service import Registry
from .blocking import ResponseCache


class BoundPorts(Protocol):
    """The ports this agent listens on, read when asked: the HTTP(S) and DNS listeners bind
    after the app is made. -1 or 0 for a listener that is off."""

    @property
    def http_port(self) -> int: ...
    @property
    def https_port(self) -> int: ...
    @property
    def dns_port(self) -> int: ...
    @property
    def gossip_port(self) -> int: ...


CONFIG = web.AppKey("config", AgentConfig)
REGISTRY = web.AppKey("registry", Registry)
CATALOG = web.AppKey("catalog", Catalog)
RESPONSE_CACHE = web.AppKey("response_cache", ResponseCache)
"""Encoded bodies of catalog, health and agent reads; created by ``make_app``."""
GOSSIP: web.AppKey[Gossip | None] = web.AppKey("gossip")
DNS: web.AppKey[DNSServer | None] = web.AppKey("dns")
"""Read for its counters (it starts after the HTTP API)."""
LB: web.AppKey[LoadBalancer | None] = web.AppKey("lb")
LISTENER_STORE: web.AppKey[ListenerStore | None] = web.AppKey("listener_store")
"""Creates and removes LB listeners for the API and keeps them in the data dir."""
PORTS: web.AppKey[BoundPorts] = web.AppKey("ports")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")
"""Wall-clock seconds when the agent started (``Stats.agent.uptime_s``)."""
REQUEST_STOP: web.AppKey[Callable[[], None]] = web.AppKey("request_stop")
"""Asks the agent to shut down (``PUT /v1/agent/leave``)."""
RELOAD: web.AppKey[Callable[[], Awaitable[list[str]]]] = web.AppKey("reload")
"""Re-reads the config files (``PUT /v1/agent/reload``, SIGHUP); returns the problems found
(empty when everything was applied). Absent when the app was made without an agent."""
FEDERATION: web.AppKey[Federation | None] = web.AppKey("federation")
"""Routes reads for other datacenters (registry/federation.py); None without gossip."""

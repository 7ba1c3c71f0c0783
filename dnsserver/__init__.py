"""An embedded, health-aware DNS server for services and nodes (Consul's DNS interface).

``dnsserver`` imports nothing from the rest of Rumor. It reads a catalog through the
:class:`View` protocol of docs/contracts.md; the registry's view satisfies it, and
:class:`MemoryView` is a small in-memory catalog for tests and embedding.

Public API::

    config = DNSConfig.from_dict({"node_ttl": "10s", "service_ttl": {"*": "5s"}},
                                 domain="rumor.", port=0, recursors=("10.0.0.2",))
    server = DNSServer(config, view)          # counters=DNSCounters() to share one
    await server.start()                      # binds UDP and TCP on the same port
    server.udp_port, server.tcp_port          # the bound ports
    server.counters.snapshot()                # queries by qtype/rcode, cache, drops, latency
    await server.stop()                       # (read counters via snapshot() or after sync():
                                              #  cache hits are counted per entry, then folded)

    # sans-I/O: no sockets, no event loop
    resp = answer(query_bytes, view, config)           # bytes, or None (drop)
    res = Resolver(config, view)                       # with the encoded-answer cache
    out = res.handle(query_bytes, tcp=False)           # bytes | Forward | None

Names answered (case-insensitive, under ``domain`` or ``alt_domain``; answers echo the domain
asked): ``<svc>.service[.<dc>]``, ``<tag>.<svc>.service[.<dc>]``,
``_<svc>._<tag|tcp|udp>[.service][.<dc>]`` (RFC 2782), ``<node>.node[.<dc>]``,
``<hexip>.addr[.<dc>]``, the apex (SOA, NS) and ``ns``; reverse ``in-addr.arpa`` /
``ip6.arpa`` PTR for node and service addresses. Other names go to ``recursors`` or are
REFUSED.

Consul's behaviour is followed where it is defined: SRV priority 1 and weight from
Weights.Passing/Warning, targets ``<node>.node.<dc>.<domain>`` or ``<hexip>.addr.<dc>.<domain>``
with glue, node meta as TXT, NXDOMAIN for a service without healthy instances, a CNAME for an
instance (or node) whose address is a host name, completed with the target's A/AAAA from the
recursors when there are some (:mod:`dnsserver.chase`). Differences: ``udp_answer_limit`` defaults to 0 (fit
what fits and set TC) and ``enable_truncate`` to True; other datacenters and prepared queries
(``.query.``) are NXDOMAIN
unless the embedder hands ``DNSServer(..., remote=RemoteViews)``: then ``<svc>.service.<dc>``,
``<node>.node.<dc>`` (and Consul's ``<svc>.service.<dc>.dc``) are answered from the view it
returns for that datacenter, off the hot path, like a recursor's answer; node lookups answer for nodes that are not ``left`` (as Consul, a
failed node's own name still resolves; its services do not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import DNSConfig, SOAConfig, parse_duration
from .counters import LATENCY_BUCKETS_US, DNSCounters
from .errors import ConfigError, DNSError, MalformedQuery
from .resolver import Forward, Resolver, answer
from .rrl import RateLimitConfig, RateLimiter, Verdict
from .server import DNSServer
from .view import Instance, Node, RemoteViews, View

if TYPE_CHECKING:
    from .memview import MemInstance, MemNode, MemoryView


def __getattr__(name: str) -> Any:
    """The in-memory view (for tests and embedders) is imported on first use: the agent never
    needs it (issue 13: start-up cost)."""
    if name in ("MemInstance", "MemNode", "MemoryView"):
        from . import memview

        return getattr(memview, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "LATENCY_BUCKETS_US",
    "ConfigError",
    "DNSConfig",
    "DNSCounters",
    "DNSError",
    "DNSServer",
    "Forward",
    "Instance",
    "MalformedQuery",
    "MemInstance",
    "MemNode",
    "MemoryView",
    "Node",
    "RateLimitConfig",
    "RateLimiter",
    "RemoteViews",
    "Resolver",
    "SOAConfig",
    "Verdict",
    "View",
    "answer",
    "parse_duration",
]

"""Backend choice: small pure objects you can call in a loop without a network.

A strategy is handed the list of candidate :class:`Backend` objects (already filtered by the
pool for ejection and exclusions) and returns one. Strategies keep only the state they need
(a rotating counter, smooth-weighted-round-robin credits); they never look at a clock or a
socket, and randomness comes in as a ``random.Random``.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "Backend",
    "LeastConn",
    "Random",
    "RoundRobin",
    "Strategy",
    "WeightedRoundRobin",
    "make_strategy",
]


class Backend:
    """One instance of a pool, with its live counters. Identity survives view changes."""

    __slots__ = (
        "_credit",
        "active",
        "addr",
        "bytes_in",
        "bytes_out",
        "connections",
        "conns",
        "drain_deadline",
        "draining",
        "eject_streak",
        "ejected_until",
        "ejections",
        "errors",
        "fails",
        "host",
        "idle",
        "key",
        "node",
        "port",
        "requests",
        "service_id",
        "sockaddr",
        "tls",
        "weight",
    )

    def __init__(self, host: str, port: int, *, node: str = "", service_id: str = "",
                 weight: int = 1) -> None:
        self.key = (node, service_id, host, port)
        self.host = host
        self.port = port
        self.addr = (host, port)
        self.sockaddr = _sockaddr(host, port)   # None: a host name to resolve first
        self.node = node
        self.service_id = service_id
        self.weight = weight
        self.active = 0          # connections open now (TCP) / requests in flight (HTTP)
        self.connections = 0     # backend connections opened, total
        self.requests = 0        # HTTP requests sent / TCP connections proxied
        self.bytes_in = 0        # client -> backend
        self.bytes_out = 0       # backend -> client
        self.errors = 0          # connect failures, resets, bad responses
        self.ejections = 0       # times passive health ejected it
        self.fails = 0           # consecutive failures (reset by a success)
        self.ejected_until = 0.0
        self.eject_streak = 0
        self.draining = False
        self.drain_deadline = 0.0
        self.conns: set[object] = set()   # open connection objects (have .abort())
        self._credit = 0
        self.idle: list[Any] = []         # HTTP: idle keep-alive connections to it
        self.tls = False                  # registered with the ``tls`` tag: speak TLS to it

    def __repr__(self) -> str:
        return f"Backend({self.host}:{self.port} node={self.node} id={self.service_id})"

    def stats(self, now: float) -> dict[str, object]:
        return {
            "Node": self.node, "ServiceID": self.service_id, "Address": self.host,
            "Port": self.port, "Weight": self.weight, "Active": self.active,
            "Connections": self.connections, "Requests": self.requests,
            "BytesIn": self.bytes_in, "BytesOut": self.bytes_out, "Errors": self.errors,
            "Ejections": self.ejections, "Ejected": self.ejected_until > now,
            "Draining": self.draining,
        }


def _sockaddr(host: str, port: int) -> tuple[Any, ...] | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port) if ip.version == 4 else (host, port, 0, 0)


class Strategy(Protocol):
    def choose(self, candidates: Sequence[Backend]) -> Backend: ...
    def reset(self, backends: Sequence[Backend]) -> None: ...


class RoundRobin:
    """Each call takes the next candidate in turn (per connection in TCP, per request in HTTP)."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        i = self._next
        self._next = i + 1
        return candidates[i % len(candidates)]

    def reset(self, backends: Sequence[Backend]) -> None:
        pass


class LeastConn:
    """Fewest active connections/requests; ties rotate so equal backends share the load."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        low = min(b.active for b in candidates)
        ties = [b for b in candidates if b.active == low]
        i = self._next
        self._next = i + 1
        return ties[i % len(ties)]

    def reset(self, backends: Sequence[Backend]) -> None:
        pass


class Random:
    """Uniform choice with an injected ``random.Random``."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        return candidates[self._rng.randrange(len(candidates))]

    def reset(self, backends: Sequence[Backend]) -> None:
        pass


class WeightedRoundRobin:
    """Smooth weighted round-robin: over sum(weights) picks each backend is chosen exactly its
    weight times, interleaved (a backend of weight 5 next to one of 1 does not get 5 in a row).
    Weight comes from the instance's Weights (Passing, or Warning while its check warns);
    weight 0 is never chosen unless every candidate has weight 0."""

    __slots__ = ()

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        total = 0
        best: Backend | None = None
        for b in candidates:
            w = b.weight
            if w <= 0:
                continue
            b._credit += w
            total += w
            if best is None or b._credit > best._credit:
                best = b
        if best is None:
            return candidates[0]
        best._credit -= total
        return best

    def reset(self, backends: Sequence[Backend]) -> None:
        for b in backends:
            b._credit = 0


def make_strategy(name: str, rng: random.Random | None = None) -> Strategy:
    if name == "round_robin":
        return RoundRobin()
    if name == "least_conn":
        return LeastConn()
    if name == "random":
        return Random(rng)
    if name == "weighted_round_robin":
        return WeightedRoundRobin()
    raise ValueError(f"unknown strategy {name!r}")

"""Counters: one :class:`LBCounters` per load balancer, one :class:`ListenerStats` per listener.

Per-backend counters live on :class:`lb.strategy.Backend`. Problems caused by peers (a client
sending garbage, a backend answering garbage) are counted by reason and logged WARNING the
first time a reason is seen, DEBUG after that.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["LBCounters", "ListenerStats"]


class LBCounters:
    """Load-balancer-wide counts by reason (``events``) plus the listeners' totals."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self._warned: set[str] = set()

    def incr(self, reason: str, n: int = 1) -> None:
        self.events[reason] += n

    def problem(self, reason: str, detail: str = "", *args: object) -> None:
        """Count a peer's misbehaviour and log it (WARNING once per reason, DEBUG after)."""
        self.events[reason] += 1
        level = logging.DEBUG if reason in self._warned else logging.WARNING
        self._warned.add(reason)
        if log.isEnabledFor(level):
            log.log(level, "lb problem reason=%s " + detail, reason, *args)

    def snapshot(self) -> dict[str, int]:
        return dict(self.events)


class ListenerStats:
    __slots__ = (
        "active",
        "bytes_in",
        "bytes_out",
        "connections",
        "errors",
        "events",
        "reasons",
        "rejected",
        "requests",
        "tls_failures",
        "tls_handshakes",
    )

    def __init__(self) -> None:
        self.connections = 0   # client connections accepted
        self.active = 0        # client connections open now
        self.requests = 0      # HTTP requests (TCP: connections proxied to a backend)
        self.bytes_in = 0      # client -> backend
        self.bytes_out = 0     # backend -> client
        self.errors = 0        # error responses / failed proxies
        self.rejected = 0      # connections refused by the max_connections cap
        self.reasons: Counter[str] = Counter()   # errors by reason
        self.events: Counter[str] = Counter()    # other notable endings (timeouts, retries)
        self.tls_handshakes = 0                  # TLS listeners: handshakes completed
        self.tls_failures: Counter[str] = Counter()   # ... and failed, by reason

    def error(self, reason: str) -> None:
        self.errors += 1
        self.reasons[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return {"Connections": self.connections, "Active": self.active,
                "Requests": self.requests, "BytesIn": self.bytes_in,
                "BytesOut": self.bytes_out, "Errors": self.errors, "Rejected": self.rejected,
                "ErrorReasons": dict(self.reasons), "Events": dict(self.events),
                "TLSHandshakes": self.tls_handshakes,
                "TLSHandshakeFailures": dict(self.tls_failures)}

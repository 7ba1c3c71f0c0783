"""Counters of the DNS server, read by the agent's metrics endpoint."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

__all__ = ["LATENCY_BUCKETS_US", "LATENCY_SAMPLE", "QTYPE_NAMES", "RCODE_NAMES", "DNSCounters"]

LATENCY_BUCKETS_US: tuple[float, ...] = (10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 100000,
                                         float("inf"))
"""Upper bounds (microseconds) of the query-latency histogram, Prometheus style (cumulative
when exported; counted here per bucket)."""

LATENCY_SAMPLE = 8
"""UDP queries are timed one in LATENCY_SAMPLE (a power of two); each timed one is counted
LATENCY_SAMPLE times in the histogram and its sum, so both estimate all UDP queries. TCP
queries are all timed."""

RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
               5: "REFUSED", 16: "BADVERS"}
QTYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT",
               28: "AAAA", 33: "SRV", 65: "HTTPS", 251: "IXFR", 252: "AXFR", 255: "ANY"}


class DNSCounters:
    """Plain counters; the hot path increments them without locks (one event loop)."""

    __slots__ = (
        "_syncs",
        "_warned",
        "cache_evictions",
        "cache_flushes",
        "cache_hits",
        "cache_misses",
        "chase_failures",
        "chases",
        "drops",
        "forward_failures",
        "forward_timeouts",
        "forwarded",
        "latency",
        "latency_sum_ns",
        "native_hits",
        "qtypes",
        "queries",
        "rate_limited_dropped",
        "rate_limited_slipped",
        "rcodes",
        "tcp_connections",
        "tcp_idle_closed",
        "tcp_rejected",
        "truncated",
    )

    def __init__(self) -> None:
        self.queries = 0
        """Queries that reached the resolver (well-formed enough to have a question)."""
        self.qtypes: dict[int, int] = {}
        """Queries by QTYPE number."""
        self.rcodes = [0] * 32
        """Responses by RCODE (index 16 = BADVERS)."""
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_evictions = 0
        self.native_hits = 0
        """Of cache_hits, those answered by the C thread (dnsserver/_udpc.c, ``Server``)."""
        self.cache_flushes = 0
        """Times the whole cache was dropped because the view's index rose."""
        self.drops: dict[str, int] = {}
        """Bad or refused input by reason: short, oversized, response, truncated, bad_label,
        pointer_in_question, name_too_long, qdcount, arcount, opcode, bad_opt, tcp_frame,
        tcp_conn_cap, forward_cap..."""
        self.truncated = 0
        """UDP responses sent with TC set."""
        self.rate_limited_dropped = 0
        """UDP answers not sent: the client's network was over its rate (see dnsserver.rrl)."""
        self.rate_limited_slipped = 0
        """UDP answers sent empty and truncated instead, so the client retries over TCP."""
        self.forwarded = 0
        """Queries sent to a recursor."""
        self.forward_failures = 0
        """Forwarded queries answered SERVFAIL because every recursor failed."""
        self.forward_timeouts = 0
        """Single recursor attempts that timed out (failover happened or SERVFAIL)."""
        self.chases = 0
        """Queries whose answer waited for the recursors to give a CNAME target's records
        (a host-name address; see dnsserver.chase)."""
        self.chase_failures = 0
        """Chases that no recursor answered in time (the answer was the CNAME alone)."""
        self.latency = [0] * len(LATENCY_BUCKETS_US)
        """Queries by latency bucket (see LATENCY_BUCKETS_US), from answer to send, locally
        answered only; UDP is sampled (see LATENCY_SAMPLE), so counts are estimates."""
        self.latency_sum_ns = 0
        """Sum of those latencies, nanoseconds (a Prometheus histogram's _sum)."""
        self.tcp_connections = 0
        """TCP connections open now."""
        self.tcp_rejected = 0
        self.tcp_idle_closed = 0
        self._warned: set[str] = set()
        self._syncs: list[Callable[[], None]] = []

    def add_sync(self, fn: Callable[[], None]) -> None:
        """Register a function that brings deferred counts up to date (the resolver counts
        cache hits per entry on the hot path and adds them here on ``sync()``)."""
        self._syncs.append(fn)

    def remove_sync(self, fn: Callable[[], None]) -> None:
        """Undo ``add_sync`` (a resolver that is done)."""
        if fn in self._syncs:
            self._syncs.remove(fn)

    def sync(self) -> None:
        """Fold deferred counts in; ``snapshot()`` does it. Call it before reading the
        attributes directly."""
        for fn in self._syncs:
            fn()

    def drop(self, reason: str) -> bool:
        """Count a drop; True the first time this reason is seen (log WARNING), else False."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if reason in self._warned:
            return False
        self._warned.add(reason)
        return True

    def observe_latency_ns(self, ns: int) -> None:
        """Count one query's latency."""
        self.latency[bisect.bisect_left(LATENCY_BUCKETS_US, ns / 1000.0)] += 1
        self.latency_sum_ns += ns

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for the metrics endpoint or a test (after ``sync()``)."""
        self.sync()
        return {
            "queries": self.queries,
            "qtypes": {QTYPE_NAMES.get(k, str(k)): v for k, v in sorted(self.qtypes.items())},
            "rcodes": {RCODE_NAMES.get(i, str(i)): v for i, v in enumerate(self.rcodes) if v},
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_evictions": self.cache_evictions,
            "native_hits": self.native_hits,
            "cache_flushes": self.cache_flushes,
            "drops": dict(self.drops),
            "truncated": self.truncated,
            "rate_limited_dropped": self.rate_limited_dropped,
            "rate_limited_slipped": self.rate_limited_slipped,
            "forwarded": self.forwarded,
            "forward_failures": self.forward_failures,
            "forward_timeouts": self.forward_timeouts,
            "chases": self.chases,
            "chase_failures": self.chase_failures,
            "latency_buckets_us": {("+Inf" if b == float("inf") else str(int(b))): c
                                   for b, c in zip(LATENCY_BUCKETS_US, self.latency)},
            "latency_sum_s": self.latency_sum_ns / 1e9,
            "tcp_connections": self.tcp_connections,
            "tcp_rejected": self.tcp_rejected,
            "tcp_idle_closed": self.tcp_idle_closed,
        }

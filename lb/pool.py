"""A backend pool: the instances of one (service, tag), passive health and draining.

Theory of operation
-------------------
The pool changes only in :meth:`Pool.update`, called when the catalog view's index rises
(never per request). ``update`` keeps the :class:`Backend` object of every instance that is
still there (so counters and ejection state survive), adds new ones, and moves the ones that
left to ``draining``: they get no new traffic, their open connections continue until they end
or ``drain_timeout`` passes (:meth:`Pool.expire_drains` cuts them).

:meth:`Pool.pick` asks the strategy for a backend among the live ones that are not ejected
and not in ``exclude`` (the ones this request already failed on). Passive health: each
connect failure reported with :meth:`Pool.report_failure` counts; ``eject_after`` in a row
eject the backend for ``eject_backoff`` seconds, doubling on every ejection in a row up to
``eject_backoff_max``. A success resets the count. When every live backend is ejected the pool
"panics" and picks among all of them, since refusing everything is worse than trying.

Standby (a listener's ``Failover``): the pool may hold a second pool, :attr:`Pool.standby`, of
another datacenter's instances. It is used as soon as passive health leaves no usable backend
here (every live one ejected, or the request already failed on each of them), before any health
check has noticed, and instead of panicking; a backend here whose back-off ends is tried again
first, so traffic comes back by itself when a local instance answers. Failures on a standby
backend are counted in the standby pool.

Everything here is synchronous and takes ``now`` from the caller: unit tests drive it with
plain numbers.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from typing import Any

from .strategy import Backend, Strategy, make_strategy
from .view import Instance

log = logging.getLogger(__name__)

__all__ = ["Pool"]


class Pool:
    __slots__ = (
        "_by_key",
        "_ejected",
        "backends",
        "drain_timeout",
        "draining",
        "eject_after",
        "eject_backoff",
        "eject_backoff_max",
        "left",
        "service",
        "standby",
        "strategy",
        "tag",
    )

    def __init__(self, service: str, tag: str | None, strategy: str | Strategy, *,
                 eject_after: int = 3, eject_backoff: float = 5.0,
                 eject_backoff_max: float = 60.0, drain_timeout: float = 30.0,
                 rng: random.Random | None = None) -> None:
        self.service = service
        self.tag = tag
        self.strategy: Strategy = (make_strategy(strategy, rng) if isinstance(strategy, str)
                                   else strategy)
        self.backends: list[Backend] = []
        self.draining: dict[tuple[str, str, str, int], Backend] = {}
        self._by_key: dict[tuple[str, str, str, int], Backend] = {}
        self.eject_after = eject_after
        self.eject_backoff = eject_backoff
        self.eject_backoff_max = eject_backoff_max
        self.drain_timeout = drain_timeout
        self.left: list[Backend] = []   # backends that left since the caller last looked
        self._ejected = 0   # how many live backends have ejected_until set (fast path when 0)
        self.standby: Pool | None = None   # another datacenter's instances (Failover)

    # -- membership ----------------------------------------------------------------------
    def update(self, instances: Iterable[Instance], now: float) -> bool:
        """Make the live set equal to ``instances``; returns True when anything changed."""
        new: list[Backend] = []
        seen: dict[tuple[str, str, str, int], Backend] = {}
        changed = False
        for inst in instances:
            host = inst.address or inst.node_address
            key = (inst.node, inst.service_id, host, inst.port)
            if key in seen:
                continue
            weight = inst.weight_passing if inst.health == "passing" else inst.weight_warning
            b = self._by_key.get(key)
            if b is None:
                b = self.draining.pop(key, None)
                if b is not None:      # came back before its drain ended
                    b.draining = False
                else:
                    b = Backend(host, inst.port, node=inst.node, service_id=inst.service_id,
                                weight=weight)
                changed = True
            elif b.weight != weight:
                b.weight = weight
                changed = True
            tls = any(t.lower() == "tls" for t in inst.tags)
            if b.tls != tls:
                b.tls = tls
                changed = True
            seen[key] = b
            new.append(b)
        for key, b in self._by_key.items():
            if key not in seen:
                changed = True
                self.left.append(b)
                if b.conns:
                    b.draining = True
                    b.drain_deadline = now + self.drain_timeout
                    self.draining[key] = b
                    log.info("backend draining service=%s addr=%s:%d open=%d", self.service,
                             b.host, b.port, len(b.conns))
                else:
                    b.draining = True
        if changed or len(new) != len(self.backends):
            self.backends = new
            self._by_key = seen
            self._ejected = sum(1 for b in new if b.ejected_until > 0)
            self.strategy.reset(new)
        return changed

    def expire_drains(self, now: float) -> list[Backend]:
        """Drop drained backends with no connections left; return those past their deadline
        (whose connections the caller must cut)."""
        overdue = []
        for key, b in list(self.draining.items()):
            if not b.conns:
                del self.draining[key]
            elif now >= b.drain_deadline:
                overdue.append(b)
                del self.draining[key]
        return overdue

    # -- choice --------------------------------------------------------------------------
    def pick(self, now: float, exclude: Sequence[Backend] = ()) -> Backend | None:
        """A backend for the next connection/request, or None when the pool has none left."""
        backends = self.backends
        if not backends:
            return self._from_standby(now, exclude)
        if not self._ejected and not exclude:
            return self.strategy.choose(backends)
        candidates = [b for b in backends if b not in exclude]
        if not candidates:
            return self._from_standby(now, exclude)
        if self._ejected:
            live = []
            for b in candidates:
                if b.ejected_until:
                    if b.ejected_until > now:
                        continue
                    b.ejected_until = 0.0     # back-off over: admit it again (half-open)
                    b.fails = self.eject_after - 1
                    self._ejected -= 1
                live.append(b)
            if live:
                candidates = live
            else:   # every one ejected: the standby datacenter rather than a panic
                other = self._from_standby(now, exclude)
                if other is not None:
                    return other
        return self.strategy.choose(candidates)

    def _from_standby(self, now: float, exclude: Sequence[Backend]) -> Backend | None:
        return self.standby.pick(now, exclude) if self.standby is not None else None

    # -- passive health ------------------------------------------------------------------
    def report_failure(self, b: Backend, now: float) -> bool:
        """Count one failure; returns True when it ejected the backend."""
        if self.standby is not None and \
                self._by_key.get((b.node, b.service_id, b.host, b.port)) is not b and \
                b not in self.draining.values():
            return self.standby.report_failure(b, now)
        b.errors += 1
        b.fails += 1
        if b.fails < self.eject_after or b.ejected_until > now:
            return False
        backoff = min(self.eject_backoff * (2 ** b.eject_streak), self.eject_backoff_max)
        b.eject_streak += 1
        b.fails = 0
        b.ejections += 1
        if not b.ejected_until and not b.draining:
            self._ejected += 1
        b.ejected_until = now + backoff
        log.warning("backend ejected service=%s addr=%s:%d for=%.1fs", self.service, b.host,
                    b.port, backoff)
        return True

    def report_success(self, b: Backend) -> None:
        if b.fails or b.eject_streak:
            b.fails = 0
            b.eject_streak = 0

    def stats(self, now: float) -> list[dict[str, Any]]:
        out = [b.stats(now) for b in self.backends]
        out.extend(b.stats(now) for b in self.draining.values())
        return out

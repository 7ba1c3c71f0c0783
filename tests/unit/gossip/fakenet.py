"""A fake network for memberlist cores: a routing hook with loss, delay, reorder and partitions.

Built on :class:`gossip.sim.Simulator` (virtual clock, one event heap). ``FakeNet.route`` is the
hook the simulator calls for every packet and stream; tests flip its knobs::

    net = FakeNet(seed=1)
    net.cut("a", "b")              # a<->b drop everything (UDP and TCP)
    net.cut("a", "b", kind="udp")  # only UDP
    net.partition({"a", "b"}, {"c"})
    net.loss = 0.1                 # 10% random loss on UDP packets
    net.loss_kinds = {"udp", "tcp"}  # ... and on TCP segments (modelled as retransmit delay)
    net.heal()
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from gossip.config import MemberlistConfig
from gossip.sim import Addr, SimNode, Simulator


class FakeNet:
    """Routing rules + the simulator they drive."""

    def __init__(self, seed: int = 1, *, latency: float = 0.001, jitter: float = 0.001) -> None:
        self.rng = random.Random(seed ^ 0x5EED)
        self.latency = latency
        self.jitter = jitter
        self.loss = 0.0
        self.loss_kinds: frozenset[str] = frozenset({"udp"})
        self._cuts: set[tuple[str, str, str]] = set()
        self.sim = Simulator(seed=seed, route=self.route)
        self.dropped: dict[str, int] = {"cut": 0, "loss": 0, "tcp_retransmit": 0}

    # -- the hook ---------------------------------------------------------------------------
    def route(self, src: Addr, dst: Addr, kind: str, now: float) -> float | None:
        if self._cuts:
            a = self.sim.by_addr.get(src)
            b = self.sim.by_addr.get(dst)
            if a is not None and b is not None and (
                (a.name, b.name, kind) in self._cuts or (a.name, b.name, "*") in self._cuts
            ):
                self.dropped["cut"] += 1
                return None
        delay = self.latency + self.rng.random() * self.jitter
        if self.loss and kind in self.loss_kinds:
            if kind == "udp":
                if self.rng.random() < self.loss:
                    self.dropped["loss"] += 1
                    return None
            else:
                # TCP does not lose an exchange to packet loss, it retransmits: each lost
                # segment costs a retransmission timeout (Linux: 200 ms minimum, doubling).
                rto = 0.2
                while self.rng.random() < self.loss:
                    self.dropped["tcp_retransmit"] += 1
                    delay += rto
                    rto *= 2
        return delay

    # -- knobs ------------------------------------------------------------------------------
    def cut(self, a: str, b: str, *, kind: str = "*", both: bool = True) -> None:
        self._cuts.add((a, b, kind))
        if both:
            self._cuts.add((b, a, kind))

    def partition(self, left: Iterable[str], right: Iterable[str]) -> None:
        right = list(right)
        for a in left:
            for b in right:
                self.cut(a, b)

    def heal(self) -> None:
        self._cuts.clear()

    # -- conveniences -------------------------------------------------------------------------
    def cluster(self, n: int, config: MemberlistConfig | None = None, **overrides: Any
                ) -> list[SimNode]:
        """``n`` nodes named n0..n{n-1}, each joining n0 (real push/pull joins)."""
        nodes = [self.sim.add_node(f"n{i}", config, **overrides) for i in range(n)]
        for i in range(1, n):
            self.sim.join(f"n{i}", ["n0"])
        return nodes

    def run_until(self, cond: Any, limit: float) -> float:
        """Run until ``cond()`` or ``limit`` simulated seconds; return the elapsed time."""
        start = self.sim.now
        ok = self.sim.run_for(limit, cond)
        assert ok, f"condition not met within {limit} simulated seconds"
        return self.sim.now - start

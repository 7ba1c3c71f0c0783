"""An in-memory, deterministic implementation of the gossip facade's contract for the registry.

Each ``FakeGossip`` offers what ``gossip.Gossip`` offers the registry: ``members()``,
``add_listener(cb)``, ``set_app_delegate(d)`` and ``broadcast_app(key, payload)`` (newest per key
wins, each message retransmitted a limited number of times to random peers). The ``Bus`` moves
messages on ``step()``, runs push-pull exchanges on ``push_pull(a, b)``, and has a routing hook
for drops and partitions. Randomness comes from a seeded ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from gossip.events import Member, MemberFailed, MemberJoined, MemberLeft, MemberReaped


class FakeGossip:
    def __init__(self, bus: Bus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.listeners: list[Callable[[Any], None]] = []
        self.delegate: Any = None
        self.queue: dict[str, tuple[bytes, int]] = {}  # key -> (payload, transmits left)
        self.view: dict[str, Member] = {}  # what this node believes about members
        self.sent = 0
        self.pushed_pulled: list[str] = []

    def members(self) -> list[Member]:
        return list(self.view.values())

    def member(self, name: str) -> Member | None:
        return self.view.get(name)

    def add_listener(self, cb: Callable[[Any], None]) -> None:
        self.listeners.append(cb)

    def set_app_delegate(self, d: Any) -> None:
        self.delegate = d

    def broadcast_app(self, key: str, payload: bytes) -> None:
        if len(payload) > 1199:
            raise ValueError("app message too large")
        self.queue[key] = (payload, self.bus.retransmits())

    def push_pull(self, name: str, on_done: Any = None) -> bool:
        """Gossip's on-demand push-pull with a member (the bus runs it at once; it fails
        when the bus cuts the two apart)."""
        if name not in self.bus.nodes or self.bus.nodes[name].delegate is None:
            return False
        self.pushed_pulled.append(name)
        ok = self.bus.route(self.name, name)
        if ok:
            self.bus.push_pull(self.name, name)
        if on_done is not None:
            on_done(ok)
        return True

    def emit(self, event: Any) -> None:
        m = event.member
        self.view[m.name] = m
        self.emit_event(event)

    def emit_event(self, event: Any) -> None:
        """Deliver any gossip event (a member event through :meth:`emit` updates the view)."""
        for cb in self.listeners:
            cb(event)


class Bus:
    def __init__(self, seed: int = 1, fanout: int = 3, retransmit_mult: int = 4) -> None:
        self.rng = random.Random(seed)
        self.nodes: dict[str, FakeGossip] = {}
        self.fanout = fanout
        self.mult = retransmit_mult
        self.route: Callable[[str, str], bool] = lambda src, dst: True
        self.delivered = 0

    def retransmits(self) -> int:
        return self.mult * max(1, math.ceil(math.log10(len(self.nodes) + 1)))

    def add(self, name: str) -> FakeGossip:
        g = FakeGossip(self, name)
        self.nodes[name] = g
        for other in self.nodes.values():
            other.emit(MemberJoined(Member(name=name, addr="127.0.0.1", port=7946)))
            if other is not g:
                g.emit(MemberJoined(Member(name=other.name, addr="127.0.0.1", port=7946)))
        return g

    def partition(self, *groups: set[str]) -> None:
        def route(src: str, dst: str) -> bool:
            return any(src in grp and dst in grp for grp in groups)
        self.route = route

    def heal(self) -> None:
        self.route = lambda src, dst: True

    def alive(self) -> list[str]:
        return [n for n, g in self.nodes.items() if g.delegate is not None]

    def step(self) -> int:
        """One gossip round: every node sends each queued message to ``fanout`` peers."""
        moved = 0
        for g in list(self.nodes.values()):
            if not g.queue:
                continue
            peers = [n for n in self.nodes if n != g.name]
            for key, (payload, left) in list(g.queue.items()):
                for dst in self.rng.sample(peers, min(self.fanout, len(peers))):
                    if not self.route(g.name, dst):
                        continue
                    d = self.nodes[dst].delegate
                    if d is not None:
                        d.notify_app_message(payload)
                        moved += 1
                if left <= 1:
                    del g.queue[key]
                else:
                    g.queue[key] = (payload, left - 1)
        self.delivered += moved
        return moved

    def run(self, max_rounds: int = 100) -> int:
        for i in range(max_rounds):
            if not any(g.queue for g in self.nodes.values()):
                return i
            self.step()
        return max_rounds

    def push_pull(self, a: str, b: str, join: bool = False) -> None:
        if not self.route(a, b):
            return
        da, db = self.nodes[a].delegate, self.nodes[b].delegate
        # The order of the real core: the initiator's state, merged by the responder, which
        # then answers; the initiator merges the answer.
        sa = da.local_app_state(join)
        db.merge_app_state(sa, join)
        sb = db.local_app_state(join)
        da.merge_app_state(sb, join)

    def anti_entropy(self, rounds: int = 1) -> None:
        names = list(self.nodes)
        for _ in range(rounds):
            for a in names:
                b = self.rng.choice([n for n in names if n != a])
                self.push_pull(a, b)

    def fail(self, name: str) -> None:
        """Every other node's failure detector declares ``name`` dead."""
        for g in self.nodes.values():
            if g.name != name:
                g.emit(MemberFailed(Member(name=name, addr="127.0.0.1", port=7946, status="failed")))

    def rejoin(self, name: str) -> None:
        for g in self.nodes.values():
            if g.name != name:
                g.emit(MemberJoined(Member(name=name, addr="127.0.0.1", port=7946)))

    def leave(self, name: str) -> None:
        g = self.nodes.pop(name)
        g.delegate = None
        for other in self.nodes.values():
            other.emit(MemberLeft(Member(name=name, addr="127.0.0.1", port=7946, status="left")))

    def reap(self, name: str) -> None:
        for other in self.nodes.values():
            other.emit(MemberReaped(Member(name=name, addr="127.0.0.1", port=7946, status="left")))
            other.view.pop(name, None)


def rejoin_after_leave(bus: Bus, g: FakeGossip, delegate: Any) -> None:
    """A node that left comes back (same process, same state): everyone sees it join."""
    bus.nodes[g.name] = g
    g.delegate = delegate
    for other in bus.nodes.values():
        if other is not g:
            other.emit(MemberJoined(Member(name=g.name, addr="127.0.0.1", port=7946)))
    g.emit(MemberJoined(Member(name=g.name, addr="127.0.0.1", port=7946)))

"""Node records: the public frozen :class:`Node` snapshot and the core's mutable :class:`NodeState`.

States (memberlist 0.2.2, ``state.go``)::

    alive ──suspect msg / failed probe──► suspect ──timeout──► dead
      ▲                                      │                   │
      └──── alive with higher incarnation ───┴───────────────────┘
    left = dead caused by a ``dead`` message whose From == Node (a graceful leave)

A :class:`Node` is replaced (never mutated) whenever one of its fields changes, so delegates and
event consumers can keep the object they were given. The core keeps one :class:`NodeState` per
known name; its ``node`` attribute is the current snapshot.
"""

from __future__ import annotations

import enum

from .dclass import dataclass

__all__ = ["Node", "NodeState", "NodeStatus"]


class NodeStatus(enum.IntEnum):
    """memberlist node state; the values are the push/pull ``State`` numbers."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


@dataclass(frozen=True, slots=True)
class Node:
    """What is known about one member. Immutable; a change makes a new object."""

    name: str
    addr: str
    """Advertised IP as text (``"127.0.0.1"``)."""
    port: int
    meta: bytes
    """Delegate metadata (Serf: ``0xff + msgpack(tags)``), at most 512 bytes."""
    vsn: tuple[int, ...]
    """(pmin, pmax, pcur, dmin, dmax, dcur) as the node advertised it; may be empty for peers
    that sent none."""
    incarnation: int
    status: NodeStatus

    @property
    def address(self) -> tuple[str, int]:
        """(ip, port) to send to."""
        return (self.addr, self.port)

    @property
    def pmin(self) -> int:
        return self.vsn[0] if len(self.vsn) > 0 else 0

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) > 1 else 0

    @property
    def pcur(self) -> int:
        return self.vsn[2] if len(self.vsn) > 2 else 0

    @property
    def dmin(self) -> int:
        return self.vsn[3] if len(self.vsn) > 3 else 0

    @property
    def dmax(self) -> int:
        return self.vsn[4] if len(self.vsn) > 4 else 0

    @property
    def dcur(self) -> int:
        return self.vsn[5] if len(self.vsn) > 5 else 0


class NodeState:
    """The core's mutable record of one node. ``node`` is the current immutable snapshot."""

    __slots__ = ("address", "node", "pmax", "state_change")

    def __init__(self, node: Node, state_change: float) -> None:
        self.node = node
        self.state_change = state_change
        """Clock time of the last status change (used for reaping and gossip-to-the-dead)."""
        self.address = node.address
        self.pmax = node.pmax

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def status(self) -> NodeStatus:
        return self.node.status

    @property
    def incarnation(self) -> int:
        return self.node.incarnation

    def set(self, node: Node) -> None:
        """Install a new snapshot (callers update ``state_change`` when the status moves)."""
        self.node = node
        self.address = node.address
        self.pmax = node.pmax

    def __repr__(self) -> str:
        n = self.node
        return f"NodeState({n.name} {n.status.name} inc={n.incarnation} {n.addr}:{n.port})"

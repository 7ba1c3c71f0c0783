"""The seams between the memberlist core and the layer above it (Serf), plus the core's events.

Modelled on memberlist's ``Delegate``, ``EventDelegate``, ``PingDelegate`` and
``ConflictDelegate``. All callbacks are plain synchronous calls made by the sans-I/O core from
inside ``receive_packet`` / ``handle_stream`` / ``handle_timer`` / ``stream_result``; the ones
that report something that happened take the ``now`` of the call that caused it, so the layer
above reads no clock of its own. They must not block and must not call back into the core
re-entrantly except through the methods marked safe below (``Memberlist.queue_broadcast``,
``Memberlist.update_node`` and read-only getters).

Rumor-only payloads
-------------------
The registry's application channel must reach Rumor peers only: a plain Serf agent would log an
unknown Serf message type. The core therefore tells :meth:`Delegate.get_broadcasts` which node
the packet is for (``dest``; ``None`` when the destination is not a known member, for instance an
ack to an address we have no record of). The delegate decides with its own
:meth:`PeerClassifier.is_rumor_peer` (the Serf layer knows, e.g. from a tag in the node's Meta)
and returns Rumor-only bodies only when ``dest is not None and is_rumor_peer(dest)``.
:class:`gossip.broadcast.TransmitLimitedQueue` implements that filter: queue a broadcast with
``rumor_only=True`` and pass ``accept=lambda b: not b.rumor_only or is_rumor_peer(dest)`` to its
``get_broadcasts``; skipped broadcasts keep their transmit count and stay queued.

Events
------
Member changes are reported twice, on purpose: synchronously to the :class:`EventDelegate` (the
Serf layer builds its member list on these, in order, with no queue in between) and as event
objects from ``Memberlist.next_event()`` for other observers (the driver's listeners, tests).
The core keeps at most ``config.event_queue_depth`` undelivered events.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .dclass import dataclass
from .state import Node

__all__ = [
    "ConflictDelegate",
    "Delegate",
    "EventDelegate",
    "MemberlistEvent",
    "NodeConflict",
    "NodeJoined",
    "NodeLeft",
    "NodeRefuted",
    "NodeUpdated",
    "NullDelegate",
    "PeerClassifier",
    "PingDelegate",
]


@runtime_checkable
class Delegate(Protocol):
    """Data the layer above exchanges through memberlist (memberlist ``Delegate``)."""

    def node_meta(self, limit: int) -> bytes:
        """Our node Meta (Serf: ``0xff + msgpack(tags)``), at most ``limit`` (512) bytes.

        Called at start, by ``Memberlist.update_node`` and when refuting. Longer results are
        refused (the core raises ``ValueError`` locally)."""
        ...

    def notify_user_msg(self, buf: bytes, now: float) -> None:
        """A user message (type 8) arrived at ``now``; ``buf`` is its body without the 0x08 byte."""
        ...

    def get_broadcasts(self, overhead: int, limit: int, dest: Node | None) -> list[bytes]:
        """User-message bodies (without the 0x08 byte) to piggy-back on a packet to ``dest``.

        Each returned body costs ``len(body) + overhead`` bytes and the total must stay within
        ``limit``. ``dest`` is the receiving member, or ``None`` when unknown: Rumor-only bodies
        must then be held back (see the module docstring)."""
        ...

    # Optional, not part of the protocol check: ``pending_broadcasts() -> int``. When the
    # delegate has it and it returns 0 while memberlist's own queue is empty, a gossip round is
    # skipped without picking targets or calling get_broadcasts (the idle fast path).
    # Optional too: ``fresh_broadcasts(overhead, limit, dest, below) -> list[bytes]``, as
    # ``get_broadcasts`` but only bodies sent fewer than ``below`` times; an eager gossip round
    # asks for these (a delegate without it adds nothing to eager rounds).

    def local_state(self, join: bool) -> bytes:
        """Delegate state to send in a push/pull (Serf: ``0x02 + msgpack``); ``b""`` for none."""
        ...

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        """Merge (at ``now``) the delegate state of a remote push/pull (not called when it is empty)."""
        ...


@runtime_checkable
class EventDelegate(Protocol):
    """Member changes, in order (memberlist ``EventDelegate``)."""

    def notify_join(self, node: Node, now: float) -> None:
        """At ``now`` a node became alive: new, or back from dead/left."""
        ...

    def notify_leave(self, node: Node, now: float) -> None:
        """At ``now`` a node was declared dead (``node.status`` DEAD) or left (LEFT)."""
        ...

    def notify_update(self, node: Node, now: float) -> None:
        """At ``now`` an alive node changed its Meta, address or versions."""
        ...


@runtime_checkable
class PingDelegate(Protocol):
    """Ack payloads and RTTs (memberlist ``PingDelegate``; Serf uses it for Vivaldi)."""

    def ack_payload(self) -> bytes:
        """Payload to put in every UDP ack we send (Serf: ``0x01 + msgpack(coordinate)``)."""
        ...

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes, now: float) -> None:
        """At ``now`` our direct probe of ``node`` was acked after ``rtt`` seconds carrying ``payload``."""
        ...


@runtime_checkable
class ConflictDelegate(Protocol):
    """Told when an alive claims a known name from another address (memberlist's)."""

    def notify_conflict(self, existing: Node, other: Node, now: float) -> None:
        """At ``now``, ``other`` (from the network) conflicts with ``existing``; the alive was rejected."""
        ...


@runtime_checkable
class PeerClassifier(Protocol):
    """Decides which members speak Rumor's application channel (implemented by the Serf layer)."""

    def is_rumor_peer(self, node: Node) -> bool:
        """True when ``node`` is a Rumor agent (plain Serf agents are not)."""
        ...


class NullDelegate:
    """Implements every protocol above with no data and no reaction; subclass what you need."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_user_msg(self, buf: bytes, now: float) -> None:
        return None

    def get_broadcasts(self, overhead: int, limit: int, dest: Node | None) -> list[bytes]:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        return None

    def notify_join(self, node: Node, now: float) -> None:
        return None

    def notify_leave(self, node: Node, now: float) -> None:
        return None

    def notify_update(self, node: Node, now: float) -> None:
        return None

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: Node, rtt: float, payload: bytes, now: float) -> None:
        return None

    def notify_conflict(self, existing: Node, other: Node, now: float) -> None:
        return None

    def is_rumor_peer(self, node: Node) -> bool:
        return False


# -- events from Memberlist.next_event() -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeJoined:
    """``node`` became alive (new, or back from dead/left)."""

    node: Node


@dataclass(frozen=True, slots=True)
class NodeLeft:
    """``node`` was declared dead (``node.status`` DEAD) or left gracefully (LEFT)."""

    node: Node


@dataclass(frozen=True, slots=True)
class NodeUpdated:
    """An alive ``node`` changed Meta, address or versions."""

    node: Node


@dataclass(frozen=True, slots=True)
class NodeConflict:
    """An alive for ``existing.name`` came from another address (``other``) and was rejected."""

    existing: Node
    other: Node


@dataclass(frozen=True, slots=True)
class NodeRefuted:
    """``node``, which we suspected, refuted the suspicion (an alive with a higher
    incarnation arrived while it was SUSPECT)."""

    node: Node


MemberlistEvent = NodeJoined | NodeLeft | NodeUpdated | NodeConflict | NodeRefuted

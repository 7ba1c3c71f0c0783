"""Events the gossip layer reports to its listeners (past tense, immutable).

Member events carry a snapshot of the member as it is after the change. ``UserEventReceived`` and
``QueryReceived`` come from Serf messages; internal queries (``_serf_*``) are never reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from .dclass import dataclass

MemberStatus = str
"""One of 'alive', 'leaving', 'left', 'failed' (Serf's member status)."""

STATUS_CODES: Mapping[str, int] = {"none": 0, "alive": 1, "leaving": 2, "left": 3, "failed": 4}
"""Serf/Consul numeric member status."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """A cluster member as Serf sees it."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = field(default_factory=dict)
    status: MemberStatus = "alive"
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0

    @property
    def status_code(self) -> int:
        return STATUS_CODES.get(self.status, 0)

    @property
    def is_rumor(self) -> bool:
        """True when the member advertises the reserved Rumor tag (speaks the app channel)."""
        from .serf_config import RUMOR_TAG

        return RUMOR_TAG in self.tags


@dataclass(frozen=True, slots=True)
class MemberJoined:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """The member left gracefully (status 'left'), or was force-left."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberFailed:
    member: Member


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """The member's tags (or address/protocol) changed."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberReaped:
    """A failed or left member was forgotten after ReconnectTimeout/TombstoneTimeout or a prune."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberRefuted:
    """A member this node suspected of failure proved alive: it refuted the suspicion with a
    higher incarnation before the suspicion timed out. Its Serf status never left 'alive', so
    no other event tells of it; yet messages to it may have been lost meanwhile (the registry
    reconciles its catalog with it). Not a Serf event: handler scripts never see it."""

    member: Member


@dataclass(frozen=True, slots=True, kw_only=True)
class UserEventReceived:
    """A new (de-duplicated) Serf user event; also reported for events this node fires."""

    name: str
    payload: bytes
    ltime: int
    coalesce: bool = True
    origin: str = ""
    """Node that fired it, when known (only for local events); Serf events carry no origin."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryReceived:
    """A (non-internal) Serf query addressed to this node; answer with ``Gossip.respond``."""

    name: str
    payload: bytes
    ltime: int
    id: int
    source_node: str
    addr: str
    port: int
    deadline: float
    relay_factor: int = 0


MemberEvent = MemberJoined | MemberLeft | MemberFailed | MemberUpdated | MemberReaped
GossipEvent = MemberEvent | MemberRefuted | UserEventReceived | QueryReceived

MEMBER_EVENT_NAMES: Mapping[type, str] = {
    MemberJoined: "member-join",
    MemberLeft: "member-leave",
    MemberFailed: "member-failed",
    MemberUpdated: "member-update",
    MemberReaped: "member-reap",
}
"""Serf's event names (SERF_EVENT) for member events."""

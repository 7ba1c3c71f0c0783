"""Serf 0.9.4 messages as Python values (the bodies of memberlist user messages).

A Serf message on the wire is ``serf type byte + msgpack map`` inside a memberlist ``user`` (8)
message. ``gossip.codec`` converts these dataclasses to and from bytes (``encode_serf``,
``decode_serf``, ``encode_tags``, ``decode_tags``, ``encode_coordinate``, ``decode_coordinate``);
this module holds no wire knowledge beyond the type numbers.

Rumor extensions, invisible to Go Serf:

* ``SerfPushPull.app_state`` rides under the extra map key ``"RumorApp"`` of Serf's push/pull
  state; Go's decoder skips unknown keys. It is omitted when ``None``.
* ``AppMessage`` (Serf type ``0x80``, then raw bytes) is a Rumor-to-Rumor user message. Go Serf
  would log an unknown-type warning, so send it only to Rumor peers.

Conventions follow ``gossip.messages``: addresses are text, ``bytes | None`` keeps nil vs empty,
durations are float seconds, Go maps are dicts (insertion order = wire order on encode).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field

from .dclass import dataclass


class SerfMessageType(enum.IntEnum):
    """First byte of a memberlist user message body sent by Serf (and Rumor)."""

    LEAVE = 0
    JOIN = 1
    PUSH_PULL = 2
    USER_EVENT = 3
    QUERY = 4
    QUERY_RESPONSE = 5
    CONFLICT_RESPONSE = 6
    KEY_REQUEST = 7
    KEY_RESPONSE = 8
    RELAY = 9
    RUMOR_APP = 0x80


class FilterType(enum.IntEnum):
    """First byte of each query filter."""

    NODE = 0
    TAG = 1


class MemberStatus(enum.IntEnum):
    """Serf's member status as carried in a conflict response ``Member``."""

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4


#: Query flag: the sender wants an ack (a query response with Flags=1).
QUERY_FLAG_ACK = 1
#: Query flag: do not re-broadcast the query.
QUERY_FLAG_NO_BROADCAST = 2

#: Number of slots in Serf's event ring (``Events`` of the push/pull state).
EVENT_BUFFER_SLOTS = 512

#: Extra push/pull map key that carries Rumor's application state.
APP_STATE_KEY = "RumorApp"

#: Coordinate payload version byte in ack payloads.
COORDINATE_PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class LeaveIntent:
    """leave (0): ``node`` is leaving (``prune`` erases a failed member at once)."""

    ltime: int
    node: str
    prune: bool = False


@dataclass(frozen=True, slots=True)
class JoinIntent:
    """join (1): ``node`` joined at member-clock ``ltime``."""

    ltime: int
    node: str


@dataclass(frozen=True, slots=True)
class UserEventData:
    """One event of a push/pull event-ring slot."""

    name: str
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class UserEvents:
    """One non-nil slot of the push/pull event ring: every event seen at ``ltime``."""

    ltime: int
    events: tuple[UserEventData, ...] = ()


@dataclass(frozen=True, slots=True)
class SerfPushPull:
    """Serf's push/pull state (type 2): clocks, member status times, left members, event ring.

    ``events`` keeps the ring as sent (``None`` for empty slots; Serf sends 512 entries).
    ``app_state`` is Rumor's extra state (key ``"RumorApp"``), ``None`` when absent.
    """

    ltime: int
    status_ltimes: Mapping[str, int] = field(default_factory=dict)
    left_members: tuple[str, ...] = ()
    event_ltime: int = 0
    events: tuple[UserEvents | None, ...] = ()
    query_ltime: int = 0
    app_state: bytes | None = None


@dataclass(frozen=True, slots=True)
class UserEvent:
    """user event (3): ``name`` with ``payload`` at event-clock ``ltime``; ``cc`` = may coalesce."""

    ltime: int
    name: str
    payload: bytes | None = None
    cc: bool = False


@dataclass(frozen=True, slots=True)
class NodeFilter:
    """Query filter 0: only the named nodes answer."""

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Query filter 1: only nodes whose tag ``tag`` matches the regexp ``expr`` answer."""

    tag: str
    expr: str


@dataclass(frozen=True, slots=True)
class UnknownFilter:
    """A filter we could not read (unknown type byte or bad body), kept verbatim.

    Serf re-gossips a query before it looks at its filters and then does not process a query
    whose filters it cannot read; keeping the raw bytes lets the core do the same.
    """

    raw: bytes


QueryFilter = NodeFilter | TagFilter | UnknownFilter


@dataclass(frozen=True, slots=True)
class Query:
    """query (4). Answers go to ``addr``:``port`` (``source_node``); ``timeout`` in seconds."""

    ltime: int
    id: int
    addr: str
    port: int
    source_node: str
    name: str
    payload: bytes | None = None
    filters: tuple[QueryFilter, ...] = ()
    flags: int = 0
    relay_factor: int = 0
    timeout: float = 0.0

    @property
    def ack_requested(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)

    @property
    def no_broadcast(self) -> bool:
        return bool(self.flags & QUERY_FLAG_NO_BROADCAST)


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """query response (5); ``flags & 1`` marks an ack."""

    ltime: int
    id: int
    from_node: str
    flags: int = 0
    payload: bytes | None = None

    @property
    def is_ack(self) -> bool:
        return bool(self.flags & QUERY_FLAG_ACK)


@dataclass(frozen=True, slots=True)
class Member:
    """A Serf member as sent in a conflict response (6)."""

    name: str
    addr: str
    port: int
    tags: Mapping[str, str] = field(default_factory=dict)
    status: int = MemberStatus.NONE
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0


@dataclass(frozen=True, slots=True)
class ConflictResponse:
    """conflict response (6): what the responder knows about a contested name."""

    member: Member


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """key request (7), the payload of the _serf_*-key queries (``key`` raw, None for list)."""

    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class KeyResponse:
    """key response (8): ``keys`` and ``primary_key`` are base64 text."""

    result: bool
    message: str = ""
    keys: tuple[str, ...] = ()
    primary_key: str = ""


@dataclass(frozen=True, slots=True)
class Relay:
    """relay (9): forward ``inner`` (serf type byte + body) as a user message to the destination."""

    dest_addr: str
    dest_port: int
    dest_name: str
    inner: bytes
    dest_zone: str = ""


@dataclass(frozen=True, slots=True)
class AppMessage:
    """Rumor application message (serf type 0x80 + raw bytes); only for Rumor peers."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Coordinate:
    """Vivaldi network coordinate (Serf's ack payload, after the 0x01 version byte)."""

    vec: tuple[float, ...] = (0.0,) * 8
    error: float = 1.5
    adjustment: float = 0.0
    height: float = 1e-5


SerfMessage = (
    LeaveIntent
    | JoinIntent
    | SerfPushPull
    | UserEvent
    | Query
    | QueryResponse
    | ConflictResponse
    | KeyRequest
    | KeyResponse
    | Relay
    | AppMessage
)

__all__ = [
    "APP_STATE_KEY",
    "COORDINATE_PAYLOAD_VERSION",
    "EVENT_BUFFER_SLOTS",
    "QUERY_FLAG_ACK",
    "QUERY_FLAG_NO_BROADCAST",
    "AppMessage",
    "ConflictResponse",
    "Coordinate",
    "FilterType",
    "JoinIntent",
    "KeyRequest",
    "KeyResponse",
    "LeaveIntent",
    "Member",
    "MemberStatus",
    "NodeFilter",
    "Query",
    "QueryFilter",
    "QueryResponse",
    "Relay",
    "SerfMessage",
    "SerfMessageType",
    "SerfPushPull",
    "TagFilter",
    "UnknownFilter",
    "UserEvent",
    "UserEventData",
    "UserEvents",
]

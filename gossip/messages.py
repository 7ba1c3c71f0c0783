"""memberlist 0.2.2 wire messages as Python values.

Frozen, slotted dataclasses with Python names; ``gossip.codec`` is the only module that knows how
they look on the wire (type byte, msgpack maps keyed by Go field names). Conventions:

* Addresses are text (``"127.0.0.1"``, ``"::1"``); ``""`` means "not set" (nil on the wire).
  The codec sends IPv4 as 4 bytes, IPv6 as 16, and reads an IPv4-mapped 16-byte address back as
  the dotted IPv4 form.
* ``vsn`` is the protocol-version tuple ``(pmin, pmax, pcur, dmin, dmax, dcur)``; what a peer
  sent is kept as is, so it may be empty or have another length (the core decides what to do).
* ``bytes | None`` fields keep Go's nil/empty distinction: ``None`` is nil (``0xc0``), ``b""`` is
  an empty raw string (``0xa0``).
* Durations are float seconds (only the codec converts to wire units).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from .dclass import dataclass


class MessageType(enum.IntEnum):
    """First byte of every memberlist packet, stream and compound part."""

    PING = 0
    INDIRECT_PING = 1
    ACK_RESP = 2
    SUSPECT = 3
    ALIVE = 4
    DEAD = 5
    PUSH_PULL = 6
    COMPOUND = 7
    USER = 8
    COMPRESS = 9
    ENCRYPT = 10
    NACK_RESP = 11
    HAS_CRC = 12
    ERR = 13


class NodeStateWire(enum.IntEnum):
    """``State`` of a pushNodeState entry."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


#: The Vsn a Rumor node advertises: protocol 1..5 speaking 2, delegate (Serf) 2..5 speaking 4.
#: Debian serf refuses a dmax below 5 (see memberlist-wire.md §6.9).
DEFAULT_VSN: tuple[int, int, int, int, int, int] = (1, 5, 2, 2, 5, 4)

#: Compression algorithm number of LZW in the compress wrapper.
COMPRESSION_LZW = 0

#: Most Meta bytes memberlist accepts in an alive (MetaMaxSize).
META_MAX_SIZE = 512


@dataclass(frozen=True, slots=True)
class Ping:
    """ping (0): direct probe. ``node`` is the name the prober means to reach ('' = anyone)."""

    seq_no: int
    node: str = ""
    source_addr: str = ""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class IndirectPingReq:
    """indirectPing (1): ask a third node to probe ``target``:``port`` (named ``node``)."""

    seq_no: int
    target: str
    port: int
    node: str
    nack: bool = False
    source_addr: str = ""
    source_port: int = 0
    source_node: str = ""


@dataclass(frozen=True, slots=True)
class AckResp:
    """ackResp (2). Serf puts its Vivaldi coordinate in ``payload`` (0x01 + msgpack)."""

    seq_no: int
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class NackResp:
    """nackResp (11): the intermediary of an indirect ping got no ack in time."""

    seq_no: int


@dataclass(frozen=True, slots=True)
class Suspect:
    """suspect (3): ``from_node`` suspects ``node`` at ``incarnation``."""

    incarnation: int
    node: str
    from_node: str


@dataclass(frozen=True, slots=True)
class Alive:
    """alive (4): ``node`` is alive at ``incarnation`` with this address, meta and versions."""

    incarnation: int
    node: str
    addr: str
    port: int
    meta: bytes = b""
    vsn: tuple[int, ...] = DEFAULT_VSN


@dataclass(frozen=True, slots=True)
class Dead:
    """dead (5): ``from_node`` declares ``node`` dead; ``from_node == node`` means it left."""

    incarnation: int
    node: str
    from_node: str


@dataclass(frozen=True, slots=True)
class PushNodeState:
    """One node entry of a push/pull exchange."""

    name: str
    addr: str
    port: int
    meta: bytes
    incarnation: int
    state: NodeStateWire | int
    vsn: tuple[int, ...] = DEFAULT_VSN


@dataclass(frozen=True, slots=True)
class PushPullHeader:
    """Header of a push/pull (6) stream: ``nodes`` states and ``user_state_len`` raw bytes follow."""

    nodes: int
    user_state_len: int
    join: bool


@dataclass(frozen=True, slots=True)
class PushPull:
    """A complete push/pull (6) stream message: header, node states and delegate (Serf) state.

    ``user_state`` is the raw delegate state (for Serf, ``0x02 + msgpack``); ``b""`` when absent.
    """

    join: bool
    states: Sequence[PushNodeState] = ()
    """A tuple, or (read by a lazy ``StreamReader``) a ``codec.LazyStates`` whose elements
    are decoded on access, in slices by the core."""
    user_state: bytes = b""


@dataclass(frozen=True, slots=True)
class ErrResp:
    """err (13): the remote could not read our stream."""

    error: str


@dataclass(frozen=True, slots=True)
class Compress:
    """compress (9) wrapper: ``buf`` holds the compressed bytes of one complete message."""

    algo: int
    buf: bytes


@dataclass(frozen=True, slots=True)
class UserMsg:
    """user (8): opaque bytes for the delegate (Serf: serf type byte + msgpack)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class UserMsgHeader:
    """Header of a user message on a TCP stream: ``user_msg_len`` raw bytes follow."""

    user_msg_len: int


#: Messages ``codec.decode_packet`` can hand back from a UDP packet (layers removed).
PacketMessage = Ping | IndirectPingReq | AckResp | NackResp | Suspect | Alive | Dead | UserMsg

#: Messages a TCP stream can carry (after decryption and decompression).
StreamMessage = PushPull | Ping | AckResp | ErrResp | UserMsg

#: Every message ``codec.encode_message`` accepts.
Message = (
    Ping
    | IndirectPingReq
    | AckResp
    | NackResp
    | Suspect
    | Alive
    | Dead
    | PushPull
    | ErrResp
    | UserMsg
    | Compress
)

__all__ = [
    "COMPRESSION_LZW",
    "DEFAULT_VSN",
    "META_MAX_SIZE",
    "AckResp",
    "Alive",
    "Compress",
    "Dead",
    "ErrResp",
    "IndirectPingReq",
    "Message",
    "MessageType",
    "NackResp",
    "NodeStateWire",
    "PacketMessage",
    "Ping",
    "PushNodeState",
    "PushPull",
    "PushPullHeader",
    "StreamMessage",
    "Suspect",
    "UserMsg",
    "UserMsgHeader",
]

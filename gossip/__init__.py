"""Membership by gossip: SWIM with the Lifeguard refinements, wire-compatible with memberlist/Serf.

Other packages import only from here. The entry point is :class:`Gossip` (``gossip.service``):
one sans-I/O :class:`GossipCore` (memberlist + the Serf layer + the application channel, every
entry point taking ``now``, one ``next_deadline()``) on real sockets, plus keyring, snapshot and
event handlers. The cores (:class:`GossipCore`, and its parts :class:`Memberlist` and
:class:`Serf`), the simulator (``gossip.sim``) and the codec's entry points (the
:mod:`gossip.codec` package) are exported for tests, benches and tools.
"""

from __future__ import annotations

from . import codec
from .broadcast import Broadcast, TransmitLimitedQueue, retransmit_limit
from .codec import (
    CodecLimits,
    DecodedPacket,
    StreamReader,
    decode_coordinate,
    decode_message,
    decode_packet,
    decode_serf,
    decode_stream,
    encode_coordinate,
    encode_message,
    encode_packet,
    encode_serf,
    encode_stream,
)
from .config import MemberlistConfig
from .core import AppDelegate, CoreEvent, GossipCore, NameConflictDetected
from .delegate import (
    ConflictDelegate,
    Delegate,
    EventDelegate,
    NodeConflict,
    NodeJoined,
    NodeLeft,
    NodeRefuted,
    NodeUpdated,
    NullDelegate,
    PeerClassifier,
    PingDelegate,
)
from .errors import (
    ConfigError,
    DecryptionFailed,
    EncodeError,
    EncryptionError,
    GossipError,
    KeyringError,
    MalformedPacket,
)
from .events import (
    STATUS_CODES,
    GossipEvent,
    Member,
    MemberEvent,
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberRefuted,
    MemberUpdated,
    QueryReceived,
    UserEventReceived,
)
from .keymanager import KeyResponse, load_keyring_file, save_keyring_file
from .memberlist import JoinCompleted, Memberlist, MemberlistCounters
from .security import Keyring, decode_key, encode_key, generate_key
from .serf import LamportClock, QueryParams, Serf, SerfDelegate, SerfError, decode_tags, encode_tags
from .serf_config import RUMOR_TAG, RUMOR_VERSION, SerfConfig, parse_handler_spec
from .serf_messages import Coordinate
from .service import Gossip, JoinError, QueryResult
from .snapshot import Snapshot
from .state import Node, NodeStatus
from .vivaldi import VivaldiClient, VivaldiConfig, distance

__all__ = [
    "RUMOR_TAG",
    "RUMOR_VERSION",
    "STATUS_CODES",
    "AppDelegate",
    "Broadcast",
    "CodecLimits",
    "ConfigError",
    "ConflictDelegate",
    "Coordinate",
    "CoreEvent",
    "DecodedPacket",
    "DecryptionFailed",
    "Delegate",
    "EncodeError",
    "EncryptionError",
    "EventDelegate",
    "Gossip",
    "GossipCore",
    "GossipError",
    "GossipEvent",
    "JoinCompleted",
    "JoinError",
    "KeyResponse",
    "Keyring",
    "KeyringError",
    "LamportClock",
    "MalformedPacket",
    "Member",
    "MemberEvent",
    "MemberFailed",
    "MemberJoined",
    "MemberLeft",
    "MemberReaped",
    "MemberRefuted",
    "MemberUpdated",
    "Memberlist",
    "MemberlistConfig",
    "MemberlistCounters",
    "NameConflictDetected",
    "Node",
    "NodeConflict",
    "NodeJoined",
    "NodeLeft",
    "NodeRefuted",
    "NodeStatus",
    "NodeUpdated",
    "NullDelegate",
    "PeerClassifier",
    "PingDelegate",
    "QueryParams",
    "QueryReceived",
    "QueryResult",
    "Serf",
    "SerfConfig",
    "SerfDelegate",
    "SerfError",
    "Snapshot",
    "StreamReader",
    "TransmitLimitedQueue",
    "UserEventReceived",
    "VivaldiClient",
    "VivaldiConfig",
    "codec",
    "decode_coordinate",
    "decode_key",
    "decode_message",
    "decode_packet",
    "decode_serf",
    "decode_stream",
    "decode_tags",
    "distance",
    "encode_coordinate",
    "encode_key",
    "encode_message",
    "encode_packet",
    "encode_serf",
    "encode_stream",
    "encode_tags",
    "generate_key",
    "load_keyring_file",
    "parse_handler_spec",
    "retransmit_limit",
    "save_keyring_file",
]

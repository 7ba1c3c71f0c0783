"""The memberlist 0.2.2 / Serf 0.9.4 wire format: the only module that knows the bytes.

Theory of operation
-------------------
A memberlist *message* is ``type byte + msgpack map`` (``encode_message`` / ``decode_message``).
The maps follow go-msgpack 0.5.5 with a zero ``MsgpackHandle`` (memberlist-wire.md §1): keys are
the Go field names written in sorted order, strings and byte slices both go out as the old raw
type (``packb(use_bin_type=False)``), nil slices as ``0xc0``, integers in their smallest form.
On input we decode with ``raw=False, unicode_errors="surrogateescape"`` so that str-family and
bin values stay distinguishable: a Go ``string`` field must be str-family (and, our own rule,
valid UTF-8), a ``[]byte`` field takes either. Unknown keys are skipped, nil leaves the zero
value, any integer width is accepted if the value fits the Go type, anything else is
``MalformedPacket("bad_field")``.

A UDP *packet* wraps messages in layers, outermost first (§4): encryption (keyring), ``hasCrc``
(12), ``compress`` (9, LZW) and ``compound`` (7). ``wrap_packet`` builds them in Go's order
(compound → compress if shorter → CRC → encrypt); ``decode_packet`` peels them off again,
recursing through compound/compress at most ``limits.max_nesting_depth`` levels and never
producing more than ``limits.max_packet_messages`` messages. A bad part of a compound is
reported in ``DecodedPacket.errors`` and the good parts are kept (Go handles each part on its
own); a bad outer layer raises ``MalformedPacket``.

A TCP *stream* carries one message (§5): plain, compressed (``09`` + one msgpack object) or in
an encrypted frame (``0a`` + u32 length + AES-GCM with the 5-byte header as AAD). Plain streams
carry no length, so ``StreamReader`` parses incrementally: feed it bytes as they arrive and it
returns the message once complete (§5.6), with every size capped by ``CodecLimits``.

Serf messages (``serf type byte + msgpack``) ride inside memberlist user messages:
``encode_serf`` / ``decode_serf``, plus the Meta tag blob and the Vivaldi coordinate payload.

Every decoder raises only ``MalformedPacket`` (``DecryptionFailed`` is a subclass), whatever the
input. Encoders raise ``EncodeError`` for values that cannot go on the wire.
"""

from __future__ import annotations

import math
import socket
import struct
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgpack  # type: ignore[import-untyped]

from . import lzw
from .errors import (
    REASON_BAD_COMPRESSION,
    REASON_BAD_FIELD,
    REASON_BAD_MSGPACK,
    REASON_BAD_TYPE,
    REASON_CRC_MISMATCH,
    REASON_DECOMPRESS_LIMIT,
    REASON_NOT_ENCRYPTED,
    REASON_TOO_DEEP,
    REASON_TOO_LARGE,
    REASON_TOO_MANY_PARTS,
    REASON_TRUNCATED,
    DecryptionFailed,
    EncodeError,
    MalformedPacket,
)
from .messages import (
    COMPRESSION_LZW,
    AckResp,
    Alive,
    Compress,
    Dead,
    ErrResp,
    IndirectPingReq,
    Message,
    MessageType,
    NackResp,
    NodeStateWire,
    PacketMessage,
    Ping,
    PushNodeState,
    PushPull,
    PushPullHeader,
    StreamMessage,
    Suspect,
    UserMsg,
)
from .security import ENCRYPTION_OVERHEAD, Keyring
from .serf_messages import (
    APP_STATE_KEY,
    COORDINATE_PAYLOAD_VERSION,
    AppMessage,
    ConflictResponse,
    Coordinate,
    FilterType,
    JoinIntent,
    KeyRequest,
    KeyResponse,
    LeaveIntent,
    Member,
    NodeFilter,
    Query,
    QueryFilter,
    QueryResponse,
    Relay,
    SerfMessage,
    SerfMessageType,
    SerfPushPull,
    TagFilter,
    UnknownFilter,
    UserEvent,
    UserEventData,
    UserEvents,
)

# --------------------------------------------------------------------------------------------
# Sizes and limits

#: Bytes a compound adds once (type byte + part count).
COMPOUND_HEADER_OVERHEAD = 2
#: Bytes a compound adds per part (its u16 length).
COMPOUND_PART_OVERHEAD = 2
#: Most parts one compound can hold (the count is one byte).
MAX_COMPOUND_PARTS = 255
#: Bytes the hasCrc wrapper adds.
CRC_OVERHEAD = 5
#: Bytes an encrypted TCP frame header has (0x0a + u32 length); the AAD of the frame.
STREAM_FRAME_HEADER_SIZE = 5
#: Re-exported for packet budgeting: bytes encryption adds to a UDP packet.
PACKET_ENCRYPTION_OVERHEAD = ENCRYPTION_OVERHEAD

_MiB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class CodecLimits:
    """Caps on everything the network fills; decoders refuse input beyond them."""

    max_packet_size: int = 65536
    """Largest UDP datagram accepted, in bytes (memberlist's receive buffer). Default 65536."""

    max_compound_parts: int = MAX_COMPOUND_PARTS
    """Most parts read from one compound (the wire allows 255). Default 255."""

    max_nesting_depth: int = 4
    """Most compound/compress layers nested inside one packet. Default 4 (Go sends at most 2)."""

    max_packet_messages: int = 1024
    """Most messages one UDP packet may expand to, over all nested compounds. Default 1024."""

    max_packet_decompressed: int = 1 * _MiB
    """Largest decompressed UDP payload, in bytes. Default 1 MiB (a datagram is <= 64 KiB)."""

    max_stream_size: int = 20 * _MiB
    """Largest inbound TCP stream / encrypted frame, in bytes (memberlist's 20 MiB cap)."""

    max_stream_decompressed: int = 20 * _MiB
    """Largest decompressed TCP stream message, in bytes. Default 20 MiB."""

    max_push_pull_nodes: int = 65536
    """Most node states one push/pull may announce. Default 65536."""

    max_container_len: int = 131072
    """Most entries of any one msgpack array or map in a stream. Default 131072."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field when a limit is unusable."""
        for name in (
            "max_packet_size",
            "max_compound_parts",
            "max_nesting_depth",
            "max_packet_messages",
            "max_packet_decompressed",
            "max_stream_size",
            "max_stream_decompressed",
            "max_push_pull_nodes",
            "max_container_len",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"codec.{name}: {value!r} must be a positive integer")
        if self.max_compound_parts > MAX_COMPOUND_PARTS:
            raise ValueError(
                f"codec.max_compound_parts: {self.max_compound_parts} exceeds the wire's 255"
            )


DEFAULT_LIMITS = CodecLimits()


# --------------------------------------------------------------------------------------------
# msgpack helpers (go-msgpack conventions)


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=False)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {obj!r}: {exc}") from None


def _unpack_prefix(buf: bytes | memoryview, pos: int = 0) -> tuple[Any, int]:
    """Decode the first msgpack object of ``buf[pos:]``; return it and the offset after it.

    Trailing bytes are allowed, as Go's decoder reads one object and stops.
    """
    data = buf[pos:] if pos else buf
    if not len(data):
        raise MalformedPacket(REASON_TRUNCATED, "empty message body")
    try:
        obj = msgpack.unpackb(
            data, raw=False, unicode_errors="surrogateescape", strict_map_key=True
        )
        return obj, len(buf)
    except msgpack.ExtraData as extra:
        return extra.unpacked, len(buf) - len(extra.extra)
    except ValueError as exc:
        # unpackb caps every length at the input size, so "exceeds max_*_len" also means the
        # data claims more than it holds.
        text = str(exc)
        if "incomplete" in text or "exceeds max_" in text:
            raise MalformedPacket(REASON_TRUNCATED, f"msgpack: {exc}") from None
        raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises assorted types on hostile input
        raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {type(exc).__name__}") from None


def _bad(field: str, value: Any, want: str) -> MalformedPacket:
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return MalformedPacket(REASON_BAD_FIELD, f"{field}: want {want}, got {shown}")


def _fields(obj: Any, what: str) -> dict[str, Any]:
    """A decoded struct map (nil = empty struct); keys must be strings."""
    if obj is None:
        return {}
    if type(obj) is not dict:
        raise _bad(what, obj, "a map")
    for key in obj:
        if type(key) is not str:
            raise _bad(what, key, "string map keys")
    return obj


def _str(value: Any, field: str) -> str:
    if value is None:
        return ""
    if type(value) is not str:
        raise _bad(field, value, "a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(field, value, "valid UTF-8") from None
    return value


def _bytes_or_none(value: Any, field: str) -> bytes | None:
    if value is None:
        return None
    if type(value) is bytes:
        return value
    if type(value) is str:
        return value.encode("utf-8", "surrogateescape")
    raise _bad(field, value, "bytes")


def _bytes(value: Any, field: str) -> bytes:
    out = _bytes_or_none(value, field)
    return b"" if out is None else out


def _uint(value: Any, field: str, bits: int) -> int:
    if value is None:
        return 0
    if type(value) is not int or value < 0 or value >> bits:
        raise _bad(field, value, f"a uint{bits}")
    return value


def _int(value: Any, field: str, bits: int = 64) -> int:
    if value is None:
        return 0
    limit = 1 << (bits - 1)
    if type(value) is not int or not -limit <= value < limit:
        raise _bad(field, value, f"an int{bits}")
    return value


def _bool(value: Any, field: str) -> bool:
    if value is None:
        return False
    if type(value) is not bool:
        raise _bad(field, value, "a bool")
    return value


def _float(value: Any, field: str) -> float:
    if value is None:
        return 0.0
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise _bad(field, value, "a float")


def _str_list(value: Any, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list:
        raise _bad(field, value, "an array of strings")
    return tuple(_str(v, field) for v in value)


def _str_map(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise _bad(field, value, "a map of strings")
    return {_str(k, field): _str(v, field) for k, v in value.items()}


def _u64_map(value: Any, field: str) -> dict[str, int]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise _bad(field, value, "a map of integers")
    return {_str(k, field): _uint(v, field, 64) for k, v in value.items()}


def _vsn(value: Any, field: str = "Vsn") -> tuple[int, ...]:
    if value is None:
        return ()
    if type(value) is bytes:
        return tuple(value)
    if type(value) is str:
        return tuple(value.encode("utf-8", "surrogateescape"))
    if type(value) is list:
        return tuple(_uint(v, field, 8) for v in value)
    raise _bad(field, value, "bytes or an array of uint8")


_V4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"


def _ip(value: Any, field: str) -> str:
    raw = _bytes(value, field)
    n = len(raw)
    if n == 0:
        return ""
    if n == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if n == 16:
        if raw[:12] == _V4_MAPPED_PREFIX:
            return socket.inet_ntop(socket.AF_INET, raw[12:])
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise _bad(field, raw, "a 4- or 16-byte IP address")


@lru_cache(maxsize=4096)
def ip_to_bytes(addr: str) -> bytes | None:
    """Wire form of an address: 4 bytes for IPv4, 16 for IPv6, None (nil) for ''."""
    if not addr:
        return None
    try:
        return socket.inet_pton(socket.AF_INET, addr)
    except (OSError, ValueError, TypeError):
        pass
    try:
        raw = socket.inet_pton(socket.AF_INET6, addr)
    except (OSError, ValueError, TypeError):
        raise EncodeError(f"{addr!r} is not an IP address") from None
    return raw


def ip_from_bytes(raw: bytes) -> str:
    """Text form of a wire address (4 or 16 bytes; IPv4-mapped IPv6 gives dotted IPv4)."""
    return _ip(raw, "ip")


def _check_uint(value: int, field: str, bits: int) -> int:
    if type(value) is bool or not isinstance(value, int) or value < 0 or value >> bits:
        raise EncodeError(f"{field}: {value!r} is not a uint{bits}")
    return int(value)


def _check_int(value: int, field: str, bits: int = 64) -> int:
    limit = 1 << (bits - 1)
    if type(value) is bool or not isinstance(value, int) or not -limit <= value < limit:
        raise EncodeError(f"{field}: {value!r} is not an int{bits}")
    return int(value)


def _vsn_out(vsn: Sequence[int]) -> bytes | None:
    if not vsn:
        return None
    try:
        return bytes(vsn)
    except (TypeError, ValueError):
        raise EncodeError(f"Vsn: {vsn!r} is not a sequence of uint8") from None


# --------------------------------------------------------------------------------------------
# memberlist message bodies


def _ping_body(m: Ping) -> dict[str, Any]:
    body: dict[str, Any] = {"Node": m.node, "SeqNo": _check_uint(m.seq_no, "SeqNo", 32)}
    addr = ip_to_bytes(m.source_addr)
    if addr:
        body["SourceAddr"] = addr
    if m.source_node:
        body["SourceNode"] = m.source_node
    if m.source_port:
        body["SourcePort"] = _check_uint(m.source_port, "SourcePort", 16)
    return body


def _indirect_body(m: IndirectPingReq) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Nack": bool(m.nack),
        "Node": m.node,
        "Port": _check_uint(m.port, "Port", 16),
        "SeqNo": _check_uint(m.seq_no, "SeqNo", 32),
    }
    addr = ip_to_bytes(m.source_addr)
    if addr:
        body["SourceAddr"] = addr
    if m.source_node:
        body["SourceNode"] = m.source_node
    if m.source_port:
        body["SourcePort"] = _check_uint(m.source_port, "SourcePort", 16)
    body["Target"] = ip_to_bytes(m.target)
    return body


def _alive_body(m: Alive) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(m.addr),
        "Incarnation": _check_uint(m.incarnation, "Incarnation", 32),
        "Meta": bytes(m.meta) if m.meta else None,
        "Node": m.node,
        "Port": _check_uint(m.port, "Port", 16),
        "Vsn": _vsn_out(m.vsn),
    }


def _state_body(s: PushNodeState) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(s.addr),
        "Incarnation": _check_uint(s.incarnation, "Incarnation", 32),
        "Meta": bytes(s.meta) if s.meta else None,
        "Name": s.name,
        "Port": _check_uint(s.port, "Port", 16),
        "State": _check_int(int(s.state), "State"),
        "Vsn": _vsn_out(s.vsn),
    }


def _push_pull_bytes(m: PushPull) -> bytes:
    user_state = bytes(m.user_state)
    parts = [
        bytes((MessageType.PUSH_PULL,)),
        _pack({"Join": bool(m.join), "Nodes": len(m.states), "UserStateLen": len(user_state)}),
    ]
    parts.extend(_pack(_state_body(s)) for s in m.states)
    parts.append(user_state)
    return b"".join(parts)


def encode_message(msg: Message) -> bytes:
    """Type byte + body of one memberlist message (PushPull gives the whole stream message)."""
    if isinstance(msg, Ping):
        return b"\x00" + _pack(_ping_body(msg))
    if isinstance(msg, IndirectPingReq):
        return b"\x01" + _pack(_indirect_body(msg))
    if isinstance(msg, AckResp):
        payload = None if msg.payload is None else bytes(msg.payload)
        return b"\x02" + _pack({"Payload": payload, "SeqNo": _check_uint(msg.seq_no, "SeqNo", 32)})
    if isinstance(msg, Suspect):
        return b"\x03" + _pack(
            {
                "From": msg.from_node,
                "Incarnation": _check_uint(msg.incarnation, "Incarnation", 32),
                "Node": msg.node,
            }
        )
    if isinstance(msg, Alive):
        return b"\x04" + _pack(_alive_body(msg))
    if isinstance(msg, Dead):
        return b"\x05" + _pack(
            {
                "From": msg.from_node,
                "Incarnation": _check_uint(msg.incarnation, "Incarnation", 32),
                "Node": msg.node,
            }
        )
    if isinstance(msg, PushPull):
        return _push_pull_bytes(msg)
    if isinstance(msg, UserMsg):
        return b"\x08" + bytes(msg.payload)
    if isinstance(msg, Compress):
        return b"\x09" + _pack({"Algo": _check_uint(msg.algo, "Algo", 8), "Buf": bytes(msg.buf)})
    if isinstance(msg, NackResp):
        return b"\x0b" + _pack({"SeqNo": _check_uint(msg.seq_no, "SeqNo", 32)})
    if isinstance(msg, ErrResp):
        return b"\x0d" + _pack({"Error": msg.error})
    raise EncodeError(f"not a memberlist message: {type(msg).__name__}")


def encode_user_msg_stream(payload: bytes) -> bytes:
    """A user message as sent on a TCP stream: ``08 {UserMsgLen} payload`` (§5.4)."""
    return b"\x08" + _pack({"UserMsgLen": len(payload)}) + bytes(payload)


def _dec_ping(f: dict[str, Any]) -> Ping:
    return Ping(
        seq_no=_uint(f.get("SeqNo"), "SeqNo", 32),
        node=_str(f.get("Node"), "Node"),
        source_addr=_ip(f.get("SourceAddr"), "SourceAddr"),
        source_port=_uint(f.get("SourcePort"), "SourcePort", 16),
        source_node=_str(f.get("SourceNode"), "SourceNode"),
    )


def _dec_indirect(f: dict[str, Any]) -> IndirectPingReq:
    return IndirectPingReq(
        seq_no=_uint(f.get("SeqNo"), "SeqNo", 32),
        target=_ip(f.get("Target"), "Target"),
        port=_uint(f.get("Port"), "Port", 16),
        node=_str(f.get("Node"), "Node"),
        nack=_bool(f.get("Nack"), "Nack"),
        source_addr=_ip(f.get("SourceAddr"), "SourceAddr"),
        source_port=_uint(f.get("SourcePort"), "SourcePort", 16),
        source_node=_str(f.get("SourceNode"), "SourceNode"),
    )


def _dec_ack(f: dict[str, Any]) -> AckResp:
    return AckResp(
        seq_no=_uint(f.get("SeqNo"), "SeqNo", 32),
        payload=_bytes_or_none(f.get("Payload"), "Payload"),
    )


def _dec_nack(f: dict[str, Any]) -> NackResp:
    return NackResp(seq_no=_uint(f.get("SeqNo"), "SeqNo", 32))


def _dec_suspect(f: dict[str, Any]) -> Suspect:
    return Suspect(
        incarnation=_uint(f.get("Incarnation"), "Incarnation", 32),
        node=_str(f.get("Node"), "Node"),
        from_node=_str(f.get("From"), "From"),
    )


def _dec_dead(f: dict[str, Any]) -> Dead:
    return Dead(
        incarnation=_uint(f.get("Incarnation"), "Incarnation", 32),
        node=_str(f.get("Node"), "Node"),
        from_node=_str(f.get("From"), "From"),
    )


def _dec_alive(f: dict[str, Any]) -> Alive:
    return Alive(
        incarnation=_uint(f.get("Incarnation"), "Incarnation", 32),
        node=_str(f.get("Node"), "Node"),
        addr=_ip(f.get("Addr"), "Addr"),
        port=_uint(f.get("Port"), "Port", 16),
        meta=_bytes(f.get("Meta"), "Meta"),
        vsn=_vsn(f.get("Vsn")),
    )


def _dec_err(f: dict[str, Any]) -> ErrResp:
    return ErrResp(error=_str(f.get("Error"), "Error"))


def _dec_compress(f: dict[str, Any]) -> Compress:
    return Compress(algo=_uint(f.get("Algo"), "Algo", 8), buf=_bytes(f.get("Buf"), "Buf"))


def _dec_state(f: dict[str, Any]) -> PushNodeState:
    state = _int(f.get("State"), "State")
    return PushNodeState(
        name=_str(f.get("Name"), "Name"),
        addr=_ip(f.get("Addr"), "Addr"),
        port=_uint(f.get("Port"), "Port", 16),
        meta=_bytes(f.get("Meta"), "Meta"),
        incarnation=_uint(f.get("Incarnation"), "Incarnation", 32),
        state=NodeStateWire(state) if 0 <= state <= 3 else state,
        vsn=_vsn(f.get("Vsn")),
    )


def _dec_header(f: dict[str, Any]) -> PushPullHeader:
    return PushPullHeader(
        nodes=_int(f.get("Nodes"), "Nodes"),
        user_state_len=_int(f.get("UserStateLen"), "UserStateLen"),
        join=_bool(f.get("Join"), "Join"),
    )


_BODY_DECODERS: dict[int, Callable[[dict[str, Any]], PacketMessage]] = {
    MessageType.PING: _dec_ping,
    MessageType.INDIRECT_PING: _dec_indirect,
    MessageType.ACK_RESP: _dec_ack,
    MessageType.SUSPECT: _dec_suspect,
    MessageType.ALIVE: _dec_alive,
    MessageType.DEAD: _dec_dead,
    MessageType.NACK_RESP: _dec_nack,
}

_TYPE_NAMES = {int(t): t.name.lower() for t in MessageType}


def _decode_simple(msg_type: int, buf: bytes | memoryview, pos: int) -> PacketMessage:
    obj, _ = _unpack_prefix(buf, pos)
    return _BODY_DECODERS[msg_type](_fields(obj, _TYPE_NAMES[msg_type]))


def decode_message(buf: bytes) -> PacketMessage | ErrResp:
    """Decode one plain message (type byte + body), without any layer around it.

    Handles ping, indirectPing, ack, suspect, alive, dead, nack, user and err. Raises
    ``MalformedPacket`` (``bad_type`` for layers such as compound/compress/push-pull).
    """
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty message")
    msg_type = buf[0]
    if msg_type in _BODY_DECODERS:
        return _decode_simple(msg_type, buf, 1)
    if msg_type == MessageType.USER:
        return UserMsg(bytes(buf[1:]))
    if msg_type == MessageType.ERR:
        obj, _ = _unpack_prefix(buf, 1)
        return _dec_err(_fields(obj, "err"))
    raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} is not a plain message")


# --------------------------------------------------------------------------------------------
# UDP packet layers


def make_compound(parts: Sequence[bytes]) -> bytes:
    """``07 N len_1..len_N msg_1..msg_N`` (N <= 255, each part < 64 KiB)."""
    if len(parts) > MAX_COMPOUND_PARTS:
        raise EncodeError(f"compound of {len(parts)} parts; at most {MAX_COMPOUND_PARTS}")
    head = bytearray((MessageType.COMPOUND, len(parts)))
    for part in parts:
        if len(part) > 0xFFFF:
            raise EncodeError(f"compound part of {len(part)} bytes; at most 65535")
        head += struct.pack(">H", len(part))
    return bytes(head) + b"".join(bytes(p) for p in parts)


def split_compound(buf: bytes | memoryview) -> tuple[list[bytes], int]:
    """Split a compound message (starting with 0x07) into parts.

    Returns ``(parts, truncated)`` where ``truncated`` counts the parts the buffer was too short
    for (Go keeps the parts that fit). Raises ``MalformedPacket`` when the header is cut short.
    """
    if len(buf) < 2 or buf[0] != MessageType.COMPOUND:
        raise MalformedPacket(REASON_TRUNCATED, "missing compound length byte")
    count = buf[1]
    pos = 2 + 2 * count
    if len(buf) < pos:
        raise MalformedPacket(REASON_TRUNCATED, "compound length table cut short")
    lengths = struct.unpack_from(f">{count}H", buf, 2)
    parts: list[bytes] = []
    for idx, length in enumerate(lengths):
        end = pos + length
        if end > len(buf):
            return parts, count - idx
        parts.append(bytes(buf[pos:end]))
        pos = end
    return parts, 0


def add_crc(payload: bytes) -> bytes:
    """``0c crc32(payload) payload`` (CRC-32/IEEE, big-endian)."""
    return struct.pack(">BI", MessageType.HAS_CRC, zlib.crc32(payload) & 0xFFFFFFFF) + payload


def strip_crc(buf: bytes) -> bytes:
    """Check and remove a hasCrc wrapper; raise ``MalformedPacket("crc_mismatch")`` if wrong."""
    if len(buf) < CRC_OVERHEAD or buf[0] != MessageType.HAS_CRC:
        raise MalformedPacket(REASON_TRUNCATED, "not a hasCrc message")
    (expected,) = struct.unpack_from(">I", buf, 1)
    payload = buf[CRC_OVERHEAD:]
    if zlib.crc32(payload) & 0xFFFFFFFF != expected:
        raise MalformedPacket(REASON_CRC_MISMATCH, f"crc32 {expected:08x} does not match")
    return bytes(payload)


def compress_message(buf: bytes) -> bytes:
    """``09 msgpack{Algo: 0, Buf: LZW(buf)}``."""
    return b"\x09" + _pack({"Algo": COMPRESSION_LZW, "Buf": lzw.compress(buf)})


def decompress_message(buf: bytes | memoryview, max_size: int) -> bytes:
    """Unwrap a compress message (starting with 0x09); the result is at most ``max_size``."""
    if not len(buf) or buf[0] != MessageType.COMPRESS:
        raise MalformedPacket(REASON_BAD_TYPE, "not a compress message")
    obj, _ = _unpack_prefix(buf, 1)
    return _inflate(_dec_compress(_fields(obj, "compress")), max_size)


def _inflate(c: Compress, max_size: int) -> bytes:
    if c.algo != COMPRESSION_LZW:
        raise MalformedPacket(REASON_BAD_COMPRESSION, f"unknown compression algorithm {c.algo}")
    try:
        out = lzw.decompress(c.buf, max_size)
    except lzw.LZWLimitExceeded:
        raise MalformedPacket(REASON_DECOMPRESS_LIMIT, f"more than {max_size} bytes") from None
    except lzw.LZWError as exc:
        raise MalformedPacket(REASON_BAD_COMPRESSION, str(exc)) from None
    if not out:
        raise MalformedPacket(REASON_TRUNCATED, "compressed message is empty")
    return out


def wrap_packet(
    payload: bytes,
    *,
    crc: bool = False,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """Apply Go's UDP send layers to one message or compound (§4.1 steps 4-6).

    ``compress``: LZW, used only when the result is shorter. ``crc``: add hasCrc (the receiver
    advertises PMax >= 5). ``keyring``: encrypt with its primary key when it has one.
    """
    out = bytes(payload)
    if compress:
        packed = compress_message(out)
        if len(packed) < len(out):
            out = packed
    if crc:
        out = add_crc(out)
    if keyring:
        out = keyring.encrypt(out)
    return out


def encode_packet(
    messages: Sequence[Message | bytes],
    *,
    crc: bool = False,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """One UDP packet: a single message bare, several as a compound, then ``wrap_packet``.

    Items may be message objects or already encoded messages (type byte + body).
    """
    if not messages:
        raise EncodeError("a packet needs at least one message")
    parts = [m if isinstance(m, (bytes, bytearray)) else encode_message(m) for m in messages]
    payload = bytes(parts[0]) if len(parts) == 1 else make_compound(parts)
    return wrap_packet(payload, crc=crc, compress=compress, keyring=keyring)


class RecentMessages:
    """Hashes of the broadcast messages (alive, suspect, dead, user) handled lately, so that
    the copies gossip keeps delivering are skipped before they are decoded.

    Epidemic dissemination hands every node each rumour several times (each holder sends it
    ``retransmit_mult * log(n)`` times); all four types are idempotent, so a byte-identical
    copy can change nothing that the first did not. Handling one costs a msgpack decode and a
    trip through the state machine; recognising it costs a hash. Hashes live between one and
    two ``window`` seconds (two generations, swapped when the window ends or the current one
    holds ``max_entries``), so memory stays bounded and an old message seen again much later
    is handled as usual. Python's keyed bytes hash keeps peers from forging collisions.
    A message counts as handled only once its whole packet was (``known`` while decoding,
    ``remember`` after): if handling fails, the next copy is read."""

    __slots__ = ("_current", "_previous", "_swap_at", "max_entries", "window")

    def __init__(self, window: float, max_entries: int = 2048) -> None:
        self.window = window
        self.max_entries = max_entries
        self._current: set[int] = set()
        self._previous: set[int] = set()
        self._swap_at = -math.inf

    def known(self, message: bytes | memoryview, now: float) -> int | None:
        """None if ``message`` was handled in the window; otherwise its hash, to hand to
        :meth:`remember` once it has been handled."""
        if now >= self._swap_at:
            self._swap(now)
        h = hash(message)
        if h in self._current or h in self._previous:
            return None
        return h

    def remember(self, hashes: Iterable[int], now: float) -> None:
        """Record messages as handled (hashes from :meth:`known`)."""
        for h in hashes:
            if now >= self._swap_at or len(self._current) >= self.max_entries:
                self._swap(now)
            self._current.add(h)

    def _swap(self, now: float) -> None:
        self._previous = self._current if now < self._swap_at + self.window else set()
        self._current = set()
        self._swap_at = now + self.window


_DEDUP_TYPES = frozenset((MessageType.ALIVE, MessageType.SUSPECT, MessageType.DEAD,
                          MessageType.USER))


@dataclass(frozen=True, slots=True)
class DecodedPacket:
    """What ``decode_packet`` found: messages in wire order, and the parts it had to drop."""

    messages: tuple[PacketMessage, ...]
    errors: tuple[MalformedPacket, ...] = ()
    encrypted: bool = False
    crc: bool = False
    compressed: bool = False
    duplicates: int = 0
    """Messages skipped as copies of recent ones (see ``RecentMessages``)."""
    fresh: tuple[int, ...] = ()
    """Hashes of the broadcast messages decoded here, for ``RecentMessages.remember`` once
    they have been handled (a packet whose handling fails is not remembered, so a later copy
    of what it carried is still read)."""


class _PacketWalk:
    __slots__ = ("compressed", "duplicates", "errors", "fresh", "limits", "messages", "now",
                 "recent")

    def __init__(self, limits: CodecLimits, recent: RecentMessages | None = None,
                 now: float = 0.0) -> None:
        self.limits = limits
        self.messages: list[PacketMessage] = []
        self.errors: list[MalformedPacket] = []
        self.compressed = False
        self.recent = recent
        self.now = now
        self.duplicates = 0
        self.fresh: list[int] = []

    def dispatch(self, buf: bytes, depth: int) -> None:
        if not buf:
            raise MalformedPacket(REASON_TRUNCATED, "empty message")
        msg_type = buf[0]
        h: int | None = None
        if msg_type in _DEDUP_TYPES and self.recent is not None:
            h = self.recent.known(buf, self.now)
            if h is None:
                self.duplicates += 1
                return
        if msg_type in _BODY_DECODERS or msg_type == MessageType.USER:
            self._add(_decode_simple(msg_type, buf, 1) if msg_type in _BODY_DECODERS
                      else UserMsg(bytes(buf[1:])))
            if h is not None:
                self.fresh.append(h)
        elif msg_type == MessageType.COMPOUND:
            if depth >= self.limits.max_nesting_depth:
                raise MalformedPacket(REASON_TOO_DEEP, f"more than {depth} nested layers")
            parts, truncated = split_compound(buf)
            if len(parts) + truncated > self.limits.max_compound_parts:
                raise MalformedPacket(REASON_TOO_MANY_PARTS, f"{len(parts) + truncated} parts")
            for part in parts:
                try:
                    self.dispatch(part, depth + 1)
                except MalformedPacket as exc:
                    # Structural attacks end the whole packet; an ordinary bad part does not.
                    if exc.reason in (REASON_TOO_MANY_PARTS, REASON_TOO_DEEP):
                        raise
                    self.errors.append(exc)
            if truncated:
                self.errors.append(
                    MalformedPacket(REASON_TRUNCATED, f"compound: {truncated} parts cut short")
                )
        elif msg_type == MessageType.COMPRESS:
            if depth >= self.limits.max_nesting_depth:
                raise MalformedPacket(REASON_TOO_DEEP, f"more than {depth} nested layers")
            self.compressed = True
            self.dispatch(decompress_message(buf, self.limits.max_packet_decompressed), depth + 1)
        else:
            name = _TYPE_NAMES.get(msg_type, "unknown")
            raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} ({name}) on UDP")

    def _add(self, msg: PacketMessage) -> None:
        if len(self.messages) >= self.limits.max_packet_messages:
            raise MalformedPacket(
                REASON_TOO_MANY_PARTS, f"more than {self.limits.max_packet_messages} messages"
            )
        self.messages.append(msg)


def decode_packet(
    data: bytes | bytearray | memoryview,
    keyring: Keyring | None = None,
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
    verify_incoming: bool = True,
    recent: RecentMessages | None = None,
    now: float = 0.0,
) -> DecodedPacket:
    """Peel every layer off one UDP datagram and decode the messages inside (§4.1 receive).

    With a non-empty ``keyring`` the packet is decrypted with each key, primary first; when no
    key works it is refused (``DecryptionFailed``) if ``verify_incoming``, or else read as
    plaintext. A top-level hasCrc is checked. Raises ``MalformedPacket`` when the packet as a
    whole is unusable; a bad compound part lands in ``errors`` and the rest is kept. With
    ``recent``, broadcast messages handled within its window (at time ``now``) are skipped and
    only counted (``DecodedPacket.duplicates``); the caller remembers ``DecodedPacket.fresh``
    once it has handled the packet.
    """
    buf = bytes(data)
    if len(buf) > limits.max_packet_size:
        raise MalformedPacket(REASON_TOO_LARGE, f"{len(buf)} byte packet")
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty packet")
    encrypted = False
    if keyring:
        try:
            buf = keyring.decrypt(buf)
            encrypted = True
        except DecryptionFailed:
            if verify_incoming:
                raise
    has_crc = False
    if len(buf) >= CRC_OVERHEAD and buf[0] == MessageType.HAS_CRC:
        buf = strip_crc(buf)
        has_crc = True
    walk = _PacketWalk(limits, recent, now)
    walk.dispatch(buf, 0)
    return DecodedPacket(
        messages=tuple(walk.messages),
        errors=tuple(walk.errors),
        encrypted=encrypted,
        crc=has_crc,
        compressed=walk.compressed,
        duplicates=walk.duplicates,
        fresh=tuple(walk.fresh),
    )


# --------------------------------------------------------------------------------------------
# TCP streams


def encode_stream(
    msg: StreamMessage | bytes,
    *,
    compress: bool = False,
    keyring: Keyring | None = None,
) -> bytes:
    """Everything one side writes on a stream for ``msg`` (§5.1).

    ``msg`` is a message object or an encoded plain message. With ``compress`` the message is
    always LZW-wrapped (Go does so even when it grows); with a non-empty ``keyring`` it goes in
    an encrypted frame whose 5-byte header is the GCM AAD.
    """
    if isinstance(msg, (bytes, bytearray)):
        out = bytes(msg)
    elif isinstance(msg, UserMsg):
        out = encode_user_msg_stream(msg.payload)
    else:
        out = encode_message(msg)
    if compress:
        out = compress_message(out)
    if keyring:
        frame_len = ENCRYPTION_OVERHEAD + len(out)
        header = struct.pack(">BI", MessageType.ENCRYPT, frame_len)
        out = header + keyring.encrypt(out, aad=header)
    return out


_STREAM_PLAIN_TYPES = frozenset(
    {
        MessageType.PING,
        MessageType.ACK_RESP,
        MessageType.PUSH_PULL,
        MessageType.USER,
        MessageType.ERR,
    }
)


class _PlainStreamParser:
    """Incremental parser of one plain stream message (after its type byte), per §5.6."""

    __slots__ = (
        "_header",
        "_limits",
        "_max_decompressed",
        "_states",
        "_type",
        "_unpacker",
        "_user",
        "_user_len",
    )

    def __init__(self, msg_type: int, limits: CodecLimits, max_decompressed: int) -> None:
        if msg_type not in _STREAM_PLAIN_TYPES and msg_type != MessageType.COMPRESS:
            name = _TYPE_NAMES.get(msg_type, "unknown")
            raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} ({name}) on a stream")
        self._type = msg_type
        self._limits = limits
        self._max_decompressed = max_decompressed
        container = limits.max_container_len
        self._unpacker = msgpack.Unpacker(
            raw=False,
            unicode_errors="surrogateescape",
            strict_map_key=True,
            max_buffer_size=max(limits.max_stream_size, 1),
            max_array_len=container,
            max_map_len=container,
        )
        self._header: PushPullHeader | None = None
        self._states: list[PushNodeState] = []
        self._user = bytearray()
        self._user_len = -1

    def feed(self, data: bytes) -> StreamMessage | None:
        if data:
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull:
                raise MalformedPacket(REASON_TOO_LARGE, "stream exceeds the size cap") from None
        return self._advance()

    def _next(self) -> Any:
        """The next msgpack object, or raise _Incomplete."""
        try:
            return self._unpacker.unpack()
        except msgpack.OutOfData:
            raise _Incomplete from None
        except ValueError as exc:
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - hostile input, msgpack raises assorted types
            raise MalformedPacket(REASON_BAD_MSGPACK, f"msgpack: {type(exc).__name__}") from None

    def _advance(self) -> StreamMessage | None:
        try:
            return self._step()
        except _Incomplete:
            return None

    def _step(self) -> StreamMessage:
        t = self._type
        if t == MessageType.PING:
            return _dec_ping(_fields(self._next(), "ping"))
        if t == MessageType.ACK_RESP:
            return _dec_ack(_fields(self._next(), "ackResp"))
        if t == MessageType.ERR:
            return _dec_err(_fields(self._next(), "err"))
        if t == MessageType.COMPRESS:
            c = _dec_compress(_fields(self._next(), "compress"))
            inner = _inflate(c, self._max_decompressed)
            if inner[0] == MessageType.COMPRESS:
                raise MalformedPacket(REASON_BAD_TYPE, "compress inside compress on a stream")
            return _parse_complete_stream(inner, self._limits, self._max_decompressed)
        if t == MessageType.USER:
            if self._user_len < 0:
                f = _fields(self._next(), "userMsgHeader")
                n = _int(f.get("UserMsgLen"), "UserMsgLen")
                if n < 0 or n > self._limits.max_stream_size:
                    raise _bad("UserMsgLen", n, "a length within the stream cap")
                self._user_len = n
            self._read_raw()
            return UserMsg(bytes(self._user))
        # push/pull: header, N states, L raw bytes
        if self._header is None:
            header = _dec_header(_fields(self._next(), "pushPullHeader"))
            if not 0 <= header.nodes <= self._limits.max_push_pull_nodes:
                raise _bad("Nodes", header.nodes, "a node count within the cap")
            if not 0 <= header.user_state_len <= self._limits.max_stream_size:
                raise _bad("UserStateLen", header.user_state_len, "a length within the cap")
            self._header = header
            self._user_len = header.user_state_len
        while len(self._states) < self._header.nodes:
            self._states.append(_dec_state(_fields(self._next(), "pushNodeState")))
        self._read_raw()
        return PushPull(
            join=self._header.join, states=tuple(self._states), user_state=bytes(self._user)
        )

    def _read_raw(self) -> None:
        missing = self._user_len - len(self._user)
        if missing > 0:
            self._user += self._unpacker.read_bytes(missing)
            if len(self._user) < self._user_len:
                raise _Incomplete


class _Incomplete(Exception):
    """Internal: the stream needs more bytes."""


def _parse_complete_stream(buf: bytes, limits: CodecLimits, max_decompressed: int) -> StreamMessage:
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty stream message")
    parser = _PlainStreamParser(buf[0], limits, max_decompressed)
    msg = parser.feed(buf[1:])
    if msg is None:
        raise MalformedPacket(REASON_TRUNCATED, "stream message cut short")
    return msg


class StreamReader:
    """Incremental reader of one inbound TCP stream message (plain, compressed or encrypted).

    ``feed(data)`` returns the message once it is complete and ``None`` while more bytes are
    needed; it raises ``MalformedPacket`` on bad input (``not_encrypted`` when a keyring is set,
    ``require_encryption`` holds and the stream is plain). ``feed_eof()`` raises ``truncated``
    if the peer closed before the message was complete. Bytes after the message are ignored.
    Never blocks: call it from an asyncio reader loop.
    """

    __slots__ = (
        "_error",
        "_frame",
        "_keyring",
        "_limits",
        "_plain",
        "_received",
        "_require_encryption",
        "_result",
        "compressed",
        "encrypted",
        "message_type",
    )

    def __init__(
        self,
        keyring: Keyring | None = None,
        *,
        limits: CodecLimits = DEFAULT_LIMITS,
        verify_incoming: bool = True,
    ) -> None:
        self._keyring = keyring
        self._limits = limits
        self._require_encryption = bool(keyring) and verify_incoming
        self._frame: bytearray | None = None
        self._plain: _PlainStreamParser | None = None
        self._received = 0
        self._result: StreamMessage | None = None
        self._error: MalformedPacket | None = None
        self.encrypted = False
        self.compressed = False
        self.message_type: int | None = None

    @property
    def done(self) -> bool:
        """True once a complete message has been read."""
        return self._result is not None

    @property
    def result(self) -> StreamMessage | None:
        return self._result

    def feed(self, data: bytes | bytearray | memoryview) -> StreamMessage | None:
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error  # a failed stream stays failed
        try:
            return self._feed(bytes(data))
        except MalformedPacket as exc:
            self._error = exc
            raise

    def _feed(self, data: bytes) -> StreamMessage | None:
        if not data:
            return None
        self._received += len(data)
        if self._received > self._limits.max_stream_size + STREAM_FRAME_HEADER_SIZE:
            raise MalformedPacket(REASON_TOO_LARGE, f"stream over {self._limits.max_stream_size}")
        if self._frame is None and self._plain is None:
            first = data[0]
            self.message_type = first
            if first == MessageType.ENCRYPT:
                if not self._keyring:
                    raise MalformedPacket(
                        REASON_NOT_ENCRYPTED,
                        "Remote state is encrypted and encryption is not configured",
                    )
                self._frame = bytearray()
                self.encrypted = True
            else:
                if self._require_encryption:
                    raise MalformedPacket(
                        REASON_NOT_ENCRYPTED,
                        "Encryption is configured but remote state is not encrypted",
                    )
                if first == MessageType.COMPRESS:
                    self.compressed = True
                self._plain = _PlainStreamParser(
                    first, self._limits, self._limits.max_stream_decompressed
                )
                data = data[1:]
        if self._frame is not None:
            self._frame += data
            self._result = self._try_frame()
        else:
            assert self._plain is not None
            self._result = self._plain.feed(data)
        return self._result

    def _try_frame(self) -> StreamMessage | None:
        frame = self._frame
        assert frame is not None and self._keyring is not None
        if len(frame) < STREAM_FRAME_HEADER_SIZE:
            return None
        (size,) = struct.unpack_from(">I", frame, 1)
        if size > self._limits.max_stream_size:
            raise MalformedPacket(REASON_TOO_LARGE, f"encrypted frame of {size} bytes")
        if len(frame) < STREAM_FRAME_HEADER_SIZE + size:
            return None
        header = bytes(frame[:STREAM_FRAME_HEADER_SIZE])
        sealed = bytes(frame[STREAM_FRAME_HEADER_SIZE : STREAM_FRAME_HEADER_SIZE + size])
        plain = self._keyring.decrypt(sealed, aad=header)
        if not plain:
            raise MalformedPacket(REASON_TRUNCATED, "empty encrypted stream")
        if plain[0] == MessageType.COMPRESS:
            self.compressed = True
        self.message_type = plain[0]
        return _parse_complete_stream(plain, self._limits, self._limits.max_stream_decompressed)

    def feed_eof(self) -> StreamMessage:
        """The peer closed: return the message, or raise ``MalformedPacket("truncated")``."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise MalformedPacket(REASON_TRUNCATED, f"stream closed after {self._received} bytes")
        return self._result


def decode_stream(
    data: bytes,
    keyring: Keyring | None = None,
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
    verify_incoming: bool = True,
) -> StreamMessage:
    """Decode a whole captured stream (everything one side wrote) in one call."""
    reader = StreamReader(keyring, limits=limits, verify_incoming=verify_incoming)
    reader.feed(data)
    return reader.feed_eof()


# --------------------------------------------------------------------------------------------
# Serf messages


def _filter_bytes(f: QueryFilter) -> bytes:
    if isinstance(f, NodeFilter):
        return bytes((FilterType.NODE,)) + _pack(list(f.nodes))
    if isinstance(f, TagFilter):
        return bytes((FilterType.TAG,)) + _pack({"Expr": f.expr, "Tag": f.tag})
    if isinstance(f, UnknownFilter):
        return bytes(f.raw)
    raise EncodeError(f"not a query filter: {type(f).__name__}")


def _dec_filter(raw: bytes) -> QueryFilter:
    """A query filter; one we cannot read is kept as ``UnknownFilter`` (Serf skips the query)."""
    if not raw:
        return UnknownFilter(raw)
    try:
        if raw[0] == FilterType.NODE:
            obj, _ = _unpack_prefix(raw, 1)
            return NodeFilter(_str_list(obj, "filterNode"))
        if raw[0] == FilterType.TAG:
            obj, _ = _unpack_prefix(raw, 1)
            f = _fields(obj, "filterTag")
            return TagFilter(tag=_str(f.get("Tag"), "Tag"), expr=_str(f.get("Expr"), "Expr"))
    except MalformedPacket:
        pass
    return UnknownFilter(raw)


def _user_events_body(e: UserEvents | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {
        "Events": [
            {"Name": ev.name, "Payload": None if ev.payload is None else bytes(ev.payload)}
            for ev in e.events
        ],
        "LTime": _check_uint(e.ltime, "LTime", 64),
    }


def _serf_push_pull_body(m: SerfPushPull) -> dict[str, Any]:
    body: dict[str, Any] = {
        "EventLTime": _check_uint(m.event_ltime, "EventLTime", 64),
        "Events": [_user_events_body(e) for e in m.events],
        "LTime": _check_uint(m.ltime, "LTime", 64),
        "LeftMembers": list(m.left_members),
        "QueryLTime": _check_uint(m.query_ltime, "QueryLTime", 64),
    }
    if m.app_state is not None:
        body[APP_STATE_KEY] = bytes(m.app_state)
    body["StatusLTimes"] = {
        k: _check_uint(v, "StatusLTimes", 64) for k, v in m.status_ltimes.items()
    }
    return body


def _timeout_ns(seconds: float) -> int:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise EncodeError(f"Timeout: {seconds!r} is not a finite duration")
    return _check_int(round(seconds * 1e9), "Timeout")


def _member_body(m: Member) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(m.addr),
        "DelegateCur": _check_uint(m.delegate_cur, "DelegateCur", 8),
        "DelegateMax": _check_uint(m.delegate_max, "DelegateMax", 8),
        "DelegateMin": _check_uint(m.delegate_min, "DelegateMin", 8),
        "Name": m.name,
        "Port": _check_uint(m.port, "Port", 16),
        "ProtocolCur": _check_uint(m.protocol_cur, "ProtocolCur", 8),
        "ProtocolMax": _check_uint(m.protocol_max, "ProtocolMax", 8),
        "ProtocolMin": _check_uint(m.protocol_min, "ProtocolMin", 8),
        "Status": _check_int(int(m.status), "Status"),
        "Tags": dict(m.tags),
    }


def encode_serf(msg: SerfMessage) -> bytes:
    """Serf type byte + msgpack body (the payload of a memberlist user message)."""
    if isinstance(msg, LeaveIntent):
        body: dict[str, Any] = {
            "LTime": _check_uint(msg.ltime, "LTime", 64),
            "Node": msg.node,
            "Prune": bool(msg.prune),
        }
        return b"\x00" + _pack(body)
    if isinstance(msg, JoinIntent):
        return b"\x01" + _pack({"LTime": _check_uint(msg.ltime, "LTime", 64), "Node": msg.node})
    if isinstance(msg, SerfPushPull):
        return b"\x02" + _pack(_serf_push_pull_body(msg))
    if isinstance(msg, UserEvent):
        body = {
            "CC": bool(msg.cc),
            "LTime": _check_uint(msg.ltime, "LTime", 64),
            "Name": msg.name,
            "Payload": None if msg.payload is None else bytes(msg.payload),
        }
        return b"\x03" + _pack(body)
    if isinstance(msg, Query):
        body = {
            "Addr": ip_to_bytes(msg.addr),
            "Filters": [_filter_bytes(f) for f in msg.filters] if msg.filters else None,
            "Flags": _check_uint(msg.flags, "Flags", 32),
            "ID": _check_uint(msg.id, "ID", 32),
            "LTime": _check_uint(msg.ltime, "LTime", 64),
            "Name": msg.name,
            "Payload": None if msg.payload is None else bytes(msg.payload),
            "Port": _check_uint(msg.port, "Port", 16),
            "RelayFactor": _check_uint(msg.relay_factor, "RelayFactor", 8),
            "SourceNode": msg.source_node,
            "Timeout": _timeout_ns(msg.timeout),
        }
        return b"\x04" + _pack(body)
    if isinstance(msg, QueryResponse):
        body = {
            "Flags": _check_uint(msg.flags, "Flags", 32),
            "From": msg.from_node,
            "ID": _check_uint(msg.id, "ID", 32),
            "LTime": _check_uint(msg.ltime, "LTime", 64),
            "Payload": None if msg.payload is None else bytes(msg.payload),
        }
        return b"\x05" + _pack(body)
    if isinstance(msg, ConflictResponse):
        return b"\x06" + _pack(_member_body(msg.member))
    if isinstance(msg, KeyRequest):
        return b"\x07" + _pack({"Key": None if msg.key is None else bytes(msg.key)})
    if isinstance(msg, KeyResponse):
        body = {
            "Keys": list(msg.keys) if msg.keys else None,  # Go leaves it nil unless listing
            "Message": msg.message,
            "PrimaryKey": msg.primary_key,
            "Result": bool(msg.result),
        }
        return b"\x08" + _pack(body)
    if isinstance(msg, Relay):
        header = {
            "DestAddr": {
                "IP": ip_to_bytes(msg.dest_addr),
                "Port": _check_int(msg.dest_port, "Port"),
                "Zone": msg.dest_zone,
            },
            "DestName": msg.dest_name,
        }
        return b"\x09" + _pack(header) + bytes(msg.inner)
    if isinstance(msg, AppMessage):
        return bytes((SerfMessageType.RUMOR_APP,)) + bytes(msg.payload)
    raise EncodeError(f"not a Serf message: {type(msg).__name__}")


def encode_serf_user_msg(msg: SerfMessage) -> bytes:
    """``0x08 + encode_serf(msg)``: a memberlist user message ready to piggy-back."""
    return b"\x08" + encode_serf(msg)


def _dec_user_events(obj: Any) -> UserEvents | None:
    if obj is None:
        return None
    f = _fields(obj, "userEvents")
    raw_events = f.get("Events")
    if raw_events is None:
        raw_events = []
    if type(raw_events) is not list:
        raise _bad("Events", raw_events, "an array")
    events = []
    for ev in raw_events:
        ef = _fields(ev, "userEvent")
        events.append(
            UserEventData(
                name=_str(ef.get("Name"), "Name"),
                payload=_bytes_or_none(ef.get("Payload"), "Payload"),
            )
        )
    return UserEvents(ltime=_uint(f.get("LTime"), "LTime", 64), events=tuple(events))


def _dec_serf_push_pull(f: dict[str, Any]) -> SerfPushPull:
    ring = f.get("Events")
    if ring is None:
        ring = []
    if type(ring) is not list:
        raise _bad("Events", ring, "an array")
    app = f.get(APP_STATE_KEY)
    return SerfPushPull(
        ltime=_uint(f.get("LTime"), "LTime", 64),
        status_ltimes=_u64_map(f.get("StatusLTimes"), "StatusLTimes"),
        left_members=_str_list(f.get("LeftMembers"), "LeftMembers"),
        event_ltime=_uint(f.get("EventLTime"), "EventLTime", 64),
        events=tuple(_dec_user_events(e) for e in ring),
        query_ltime=_uint(f.get("QueryLTime"), "QueryLTime", 64),
        app_state=None if app is None else _bytes(app, APP_STATE_KEY),
    )


def _dec_query(f: dict[str, Any]) -> Query:
    raw_filters = f.get("Filters")
    if raw_filters is None:
        raw_filters = []
    if type(raw_filters) is not list:
        raise _bad("Filters", raw_filters, "an array of bytes")
    return Query(
        ltime=_uint(f.get("LTime"), "LTime", 64),
        id=_uint(f.get("ID"), "ID", 32),
        addr=_ip(f.get("Addr"), "Addr"),
        port=_uint(f.get("Port"), "Port", 16),
        source_node=_str(f.get("SourceNode"), "SourceNode"),
        name=_str(f.get("Name"), "Name"),
        payload=_bytes_or_none(f.get("Payload"), "Payload"),
        filters=tuple(_dec_filter(_bytes(r, "Filters")) for r in raw_filters),
        flags=_uint(f.get("Flags"), "Flags", 32),
        relay_factor=_uint(f.get("RelayFactor"), "RelayFactor", 8),
        timeout=_int(f.get("Timeout"), "Timeout") / 1e9,
    )


def _dec_member(f: dict[str, Any]) -> Member:
    return Member(
        name=_str(f.get("Name"), "Name"),
        addr=_ip(f.get("Addr"), "Addr"),
        port=_uint(f.get("Port"), "Port", 16),
        tags=_str_map(f.get("Tags"), "Tags"),
        status=_int(f.get("Status"), "Status"),
        protocol_min=_uint(f.get("ProtocolMin"), "ProtocolMin", 8),
        protocol_max=_uint(f.get("ProtocolMax"), "ProtocolMax", 8),
        protocol_cur=_uint(f.get("ProtocolCur"), "ProtocolCur", 8),
        delegate_min=_uint(f.get("DelegateMin"), "DelegateMin", 8),
        delegate_max=_uint(f.get("DelegateMax"), "DelegateMax", 8),
        delegate_cur=_uint(f.get("DelegateCur"), "DelegateCur", 8),
    )


def _dec_relay(buf: bytes) -> Relay:
    obj, end = _unpack_prefix(buf, 1)
    f = _fields(obj, "relayHeader")
    dest = _fields(f.get("DestAddr"), "DestAddr")
    return Relay(
        dest_addr=_ip(dest.get("IP"), "IP"),
        dest_port=_int(dest.get("Port"), "Port"),
        dest_name=_str(f.get("DestName"), "DestName"),
        inner=bytes(buf[end:]),
        dest_zone=_str(dest.get("Zone"), "Zone"),
    )


def decode_serf(buf: bytes | bytearray | memoryview) -> SerfMessage:
    """Decode a Serf message (the payload of a memberlist user message)."""
    data = bytes(buf)
    if not data:
        raise MalformedPacket(REASON_TRUNCATED, "empty Serf message")
    t = data[0]
    if t == SerfMessageType.RUMOR_APP:
        return AppMessage(data[1:])
    if t == SerfMessageType.RELAY:
        return _dec_relay(data)
    if t > SerfMessageType.RELAY:
        raise MalformedPacket(REASON_BAD_TYPE, f"unknown Serf message type {t}")
    obj, _ = _unpack_prefix(data, 1)
    if t == SerfMessageType.KEY_REQUEST:
        f = _fields(obj, "keyRequest")
        return KeyRequest(key=_bytes_or_none(f.get("Key"), "Key"))
    f = _fields(obj, SerfMessageType(t).name.lower())
    if t == SerfMessageType.LEAVE:
        return LeaveIntent(
            ltime=_uint(f.get("LTime"), "LTime", 64),
            node=_str(f.get("Node"), "Node"),
            prune=_bool(f.get("Prune"), "Prune"),
        )
    if t == SerfMessageType.JOIN:
        return JoinIntent(
            ltime=_uint(f.get("LTime"), "LTime", 64), node=_str(f.get("Node"), "Node")
        )
    if t == SerfMessageType.PUSH_PULL:
        return _dec_serf_push_pull(f)
    if t == SerfMessageType.USER_EVENT:
        return UserEvent(
            ltime=_uint(f.get("LTime"), "LTime", 64),
            name=_str(f.get("Name"), "Name"),
            payload=_bytes_or_none(f.get("Payload"), "Payload"),
            cc=_bool(f.get("CC"), "CC"),
        )
    if t == SerfMessageType.QUERY:
        return _dec_query(f)
    if t == SerfMessageType.QUERY_RESPONSE:
        return QueryResponse(
            ltime=_uint(f.get("LTime"), "LTime", 64),
            id=_uint(f.get("ID"), "ID", 32),
            from_node=_str(f.get("From"), "From"),
            flags=_uint(f.get("Flags"), "Flags", 32),
            payload=_bytes_or_none(f.get("Payload"), "Payload"),
        )
    if t == SerfMessageType.CONFLICT_RESPONSE:
        return ConflictResponse(_dec_member(f))
    # KEY_RESPONSE
    return KeyResponse(
        result=_bool(f.get("Result"), "Result"),
        message=_str(f.get("Message"), "Message"),
        keys=_str_list(f.get("Keys"), "Keys"),
        primary_key=_str(f.get("PrimaryKey"), "PrimaryKey"),
    )


# --------------------------------------------------------------------------------------------
# Serf tags (node Meta) and Vivaldi coordinates

_TAGS_MAGIC = 0xFF


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Node Meta for Serf tags: ``ff + msgpack(map)`` (``ff 80`` for no tags)."""
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise EncodeError(f"tags must map str to str, got {k!r}: {v!r}")
    return bytes((_TAGS_MAGIC,)) + _pack(dict(tags))


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from node Meta; a blob not starting with 0xff is the legacy ``{"role": meta}``."""
    if not meta or meta[0] != _TAGS_MAGIC:
        try:
            role = bytes(meta).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket(REASON_BAD_FIELD, "legacy role tag is not UTF-8") from None
        return {"role": role}
    obj, _ = _unpack_prefix(meta, 1)
    return _str_map(obj, "tags")


def encode_coordinate(coord: Coordinate) -> bytes:
    """Ack payload carrying a Vivaldi coordinate: ``01 + msgpack{Adjustment,Error,Height,Vec}``."""
    body = {
        "Adjustment": float(coord.adjustment),
        "Error": float(coord.error),
        "Height": float(coord.height),
        "Vec": [float(x) for x in coord.vec],
    }
    return bytes((COORDINATE_PAYLOAD_VERSION,)) + _pack(body)


def decode_coordinate(payload: bytes) -> Coordinate:
    """Vivaldi coordinate from an ack payload; ``bad_type`` for an unknown version byte."""
    if not payload:
        raise MalformedPacket(REASON_TRUNCATED, "empty coordinate payload")
    if payload[0] != COORDINATE_PAYLOAD_VERSION:
        raise MalformedPacket(REASON_BAD_TYPE, f"unsupported ping payload version {payload[0]}")
    obj, _ = _unpack_prefix(payload, 1)
    f = _fields(obj, "coordinate")
    raw_vec = f.get("Vec")
    if raw_vec is None:
        raw_vec = []
    if type(raw_vec) is not list:
        raise _bad("Vec", raw_vec, "an array of floats")
    return Coordinate(
        vec=tuple(_float(x, "Vec") for x in raw_vec),
        error=_float(f.get("Error"), "Error"),
        adjustment=_float(f.get("Adjustment"), "Adjustment"),
        height=_float(f.get("Height"), "Height"),
    )


def iter_serf_messages(
    messages: Iterable[PacketMessage],
) -> Iterable[tuple[UserMsg, SerfMessage | MalformedPacket]]:
    """For each user message of a decoded packet, its Serf message or the decode error."""
    for msg in messages:
        if isinstance(msg, UserMsg):
            try:
                yield msg, decode_serf(msg.payload)
            except MalformedPacket as exc:
                yield msg, exc


__all__ = [
    "COMPOUND_HEADER_OVERHEAD",
    "COMPOUND_PART_OVERHEAD",
    "CRC_OVERHEAD",
    "DEFAULT_LIMITS",
    "MAX_COMPOUND_PARTS",
    "PACKET_ENCRYPTION_OVERHEAD",
    "STREAM_FRAME_HEADER_SIZE",
    "CodecLimits",
    "DecodedPacket",
    "RecentMessages",
    "StreamReader",
    "add_crc",
    "compress_message",
    "decode_coordinate",
    "decode_message",
    "decode_packet",
    "decode_serf",
    "decode_stream",
    "decode_tags",
    "decompress_message",
    "encode_coordinate",
    "encode_message",
    "encode_packet",
    "encode_serf",
    "encode_serf_user_msg",
    "encode_stream",
    "encode_tags",
    "encode_user_msg_stream",
    "ip_from_bytes",
    "ip_to_bytes",
    "iter_serf_messages",
    "make_compound",
    "split_compound",
    "strip_crc",
    "wrap_packet",
]

"""Serf's wire format: Serf messages (``serf type byte + msgpack``, carried in memberlist user
messages), the node Meta tag blob and the Vivaldi coordinate ack payload (§7)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import (
    REASON_BAD_FIELD,
    REASON_BAD_TYPE,
    REASON_TRUNCATED,
    EncodeError,
    MalformedPacket,
)
from ..messages import (
    PacketMessage,
    UserMsg,
)
from ..serf_messages import (
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
from .gomsgpack import (
    as_bool,
    as_bytes,
    as_bytes_or_none,
    as_float,
    as_int,
    as_ip,
    as_str,
    as_str_list,
    as_str_map,
    as_struct,
    as_u64_map,
    as_uint,
    bad_value,
    check_int,
    check_uint,
    go_pack,
    go_unpack_prefix,
    ip_to_bytes,
)


def _filter_bytes(f: QueryFilter) -> bytes:
    if isinstance(f, NodeFilter):
        return bytes((FilterType.NODE,)) + go_pack(list(f.nodes))
    if isinstance(f, TagFilter):
        return bytes((FilterType.TAG,)) + go_pack({"Expr": f.expr, "Tag": f.tag})
    if isinstance(f, UnknownFilter):
        return bytes(f.raw)
    raise EncodeError(f"not a query filter: {type(f).__name__}")


def _dec_filter(raw: bytes) -> QueryFilter:
    """A query filter; one we cannot read is kept as ``UnknownFilter`` (Serf skips the query)."""
    if not raw:
        return UnknownFilter(raw)
    try:
        if raw[0] == FilterType.NODE:
            obj, _ = go_unpack_prefix(raw, 1)
            return NodeFilter(as_str_list(obj, "filterNode"))
        if raw[0] == FilterType.TAG:
            obj, _ = go_unpack_prefix(raw, 1)
            f = as_struct(obj, "filterTag")
            return TagFilter(tag=as_str(f.get("Tag"), "Tag"), expr=as_str(f.get("Expr"), "Expr"))
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
        "LTime": check_uint(e.ltime, "LTime", 64),
    }


def _serf_push_pull_body(m: SerfPushPull) -> dict[str, Any]:
    body: dict[str, Any] = {
        "EventLTime": check_uint(m.event_ltime, "EventLTime", 64),
        "Events": [_user_events_body(e) for e in m.events],
        "LTime": check_uint(m.ltime, "LTime", 64),
        "LeftMembers": list(m.left_members),
        "QueryLTime": check_uint(m.query_ltime, "QueryLTime", 64),
    }
    if m.app_state is not None:
        body[APP_STATE_KEY] = bytes(m.app_state)
    body["StatusLTimes"] = {
        k: check_uint(v, "StatusLTimes", 64) for k, v in m.status_ltimes.items()
    }
    return body


def _timeout_ns(seconds: float) -> int:
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
        raise EncodeError(f"Timeout: {seconds!r} is not a finite duration")
    return check_int(round(seconds * 1e9), "Timeout")


def _member_body(m: Member) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(m.addr),
        "DelegateCur": check_uint(m.delegate_cur, "DelegateCur", 8),
        "DelegateMax": check_uint(m.delegate_max, "DelegateMax", 8),
        "DelegateMin": check_uint(m.delegate_min, "DelegateMin", 8),
        "Name": m.name,
        "Port": check_uint(m.port, "Port", 16),
        "ProtocolCur": check_uint(m.protocol_cur, "ProtocolCur", 8),
        "ProtocolMax": check_uint(m.protocol_max, "ProtocolMax", 8),
        "ProtocolMin": check_uint(m.protocol_min, "ProtocolMin", 8),
        "Status": check_int(int(m.status), "Status"),
        "Tags": dict(m.tags),
    }


def encode_serf(msg: SerfMessage) -> bytes:
    """Serf type byte + msgpack body (the payload of a memberlist user message)."""
    if isinstance(msg, LeaveIntent):
        body: dict[str, Any] = {
            "LTime": check_uint(msg.ltime, "LTime", 64),
            "Node": msg.node,
            "Prune": bool(msg.prune),
        }
        return b"\x00" + go_pack(body)
    if isinstance(msg, JoinIntent):
        return b"\x01" + go_pack({"LTime": check_uint(msg.ltime, "LTime", 64), "Node": msg.node})
    if isinstance(msg, SerfPushPull):
        return b"\x02" + go_pack(_serf_push_pull_body(msg))
    if isinstance(msg, UserEvent):
        body = {
            "CC": bool(msg.cc),
            "LTime": check_uint(msg.ltime, "LTime", 64),
            "Name": msg.name,
            "Payload": None if msg.payload is None else bytes(msg.payload),
        }
        return b"\x03" + go_pack(body)
    if isinstance(msg, Query):
        body = {
            "Addr": ip_to_bytes(msg.addr),
            "Filters": [_filter_bytes(f) for f in msg.filters] if msg.filters else None,
            "Flags": check_uint(msg.flags, "Flags", 32),
            "ID": check_uint(msg.id, "ID", 32),
            "LTime": check_uint(msg.ltime, "LTime", 64),
            "Name": msg.name,
            "Payload": None if msg.payload is None else bytes(msg.payload),
            "Port": check_uint(msg.port, "Port", 16),
            "RelayFactor": check_uint(msg.relay_factor, "RelayFactor", 8),
            "SourceNode": msg.source_node,
            "Timeout": _timeout_ns(msg.timeout),
        }
        return b"\x04" + go_pack(body)
    if isinstance(msg, QueryResponse):
        body = {
            "Flags": check_uint(msg.flags, "Flags", 32),
            "From": msg.from_node,
            "ID": check_uint(msg.id, "ID", 32),
            "LTime": check_uint(msg.ltime, "LTime", 64),
            "Payload": None if msg.payload is None else bytes(msg.payload),
        }
        return b"\x05" + go_pack(body)
    if isinstance(msg, ConflictResponse):
        return b"\x06" + go_pack(_member_body(msg.member))
    if isinstance(msg, KeyRequest):
        return b"\x07" + go_pack({"Key": None if msg.key is None else bytes(msg.key)})
    if isinstance(msg, KeyResponse):
        body = {
            "Keys": list(msg.keys) if msg.keys else None,  # Go leaves it nil unless listing
            "Message": msg.message,
            "PrimaryKey": msg.primary_key,
            "Result": bool(msg.result),
        }
        return b"\x08" + go_pack(body)
    if isinstance(msg, Relay):
        header = {
            "DestAddr": {
                "IP": ip_to_bytes(msg.dest_addr),
                "Port": check_int(msg.dest_port, "Port"),
                "Zone": msg.dest_zone,
            },
            "DestName": msg.dest_name,
        }
        return b"\x09" + go_pack(header) + bytes(msg.inner)
    if isinstance(msg, AppMessage):
        return bytes((SerfMessageType.RUMOR_APP,)) + bytes(msg.payload)
    raise EncodeError(f"not a Serf message: {type(msg).__name__}")


def encode_serf_user_msg(msg: SerfMessage) -> bytes:
    """``0x08 + encode_serf(msg)``: a memberlist user message ready to piggy-back."""
    return b"\x08" + encode_serf(msg)


def _dec_user_events(obj: Any) -> UserEvents | None:
    if obj is None:
        return None
    f = as_struct(obj, "userEvents")
    raw_events = f.get("Events")
    if raw_events is None:
        raw_events = []
    if type(raw_events) is not list:
        raise bad_value("Events", raw_events, "an array")
    events = []
    for ev in raw_events:
        ef = as_struct(ev, "userEvent")
        events.append(
            UserEventData(
                name=as_str(ef.get("Name"), "Name"),
                payload=as_bytes_or_none(ef.get("Payload"), "Payload"),
            )
        )
    return UserEvents(ltime=as_uint(f.get("LTime"), "LTime", 64), events=tuple(events))


def _dec_serf_push_pull(f: dict[str, Any]) -> SerfPushPull:
    ring = f.get("Events")
    if ring is None:
        ring = []
    if type(ring) is not list:
        raise bad_value("Events", ring, "an array")
    app = f.get(APP_STATE_KEY)
    return SerfPushPull(
        ltime=as_uint(f.get("LTime"), "LTime", 64),
        status_ltimes=as_u64_map(f.get("StatusLTimes"), "StatusLTimes"),
        left_members=as_str_list(f.get("LeftMembers"), "LeftMembers"),
        event_ltime=as_uint(f.get("EventLTime"), "EventLTime", 64),
        events=tuple(_dec_user_events(e) for e in ring),
        query_ltime=as_uint(f.get("QueryLTime"), "QueryLTime", 64),
        app_state=None if app is None else as_bytes(app, APP_STATE_KEY),
    )


def _dec_query(f: dict[str, Any]) -> Query:
    raw_filters = f.get("Filters")
    if raw_filters is None:
        raw_filters = []
    if type(raw_filters) is not list:
        raise bad_value("Filters", raw_filters, "an array of bytes")
    return Query(
        ltime=as_uint(f.get("LTime"), "LTime", 64),
        id=as_uint(f.get("ID"), "ID", 32),
        addr=as_ip(f.get("Addr"), "Addr"),
        port=as_uint(f.get("Port"), "Port", 16),
        source_node=as_str(f.get("SourceNode"), "SourceNode"),
        name=as_str(f.get("Name"), "Name"),
        payload=as_bytes_or_none(f.get("Payload"), "Payload"),
        filters=tuple(_dec_filter(as_bytes(r, "Filters")) for r in raw_filters),
        flags=as_uint(f.get("Flags"), "Flags", 32),
        relay_factor=as_uint(f.get("RelayFactor"), "RelayFactor", 8),
        timeout=as_int(f.get("Timeout"), "Timeout") / 1e9,
    )


def _dec_member(f: dict[str, Any]) -> Member:
    return Member(
        name=as_str(f.get("Name"), "Name"),
        addr=as_ip(f.get("Addr"), "Addr"),
        port=as_uint(f.get("Port"), "Port", 16),
        tags=as_str_map(f.get("Tags"), "Tags"),
        status=as_int(f.get("Status"), "Status"),
        protocol_min=as_uint(f.get("ProtocolMin"), "ProtocolMin", 8),
        protocol_max=as_uint(f.get("ProtocolMax"), "ProtocolMax", 8),
        protocol_cur=as_uint(f.get("ProtocolCur"), "ProtocolCur", 8),
        delegate_min=as_uint(f.get("DelegateMin"), "DelegateMin", 8),
        delegate_max=as_uint(f.get("DelegateMax"), "DelegateMax", 8),
        delegate_cur=as_uint(f.get("DelegateCur"), "DelegateCur", 8),
    )


def _dec_relay(buf: bytes) -> Relay:
    obj, end = go_unpack_prefix(buf, 1)
    f = as_struct(obj, "relayHeader")
    dest = as_struct(f.get("DestAddr"), "DestAddr")
    return Relay(
        dest_addr=as_ip(dest.get("IP"), "IP"),
        dest_port=as_int(dest.get("Port"), "Port"),
        dest_name=as_str(f.get("DestName"), "DestName"),
        inner=bytes(buf[end:]),
        dest_zone=as_str(dest.get("Zone"), "Zone"),
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
    obj, _ = go_unpack_prefix(data, 1)
    if t == SerfMessageType.KEY_REQUEST:
        f = as_struct(obj, "keyRequest")
        return KeyRequest(key=as_bytes_or_none(f.get("Key"), "Key"))
    f = as_struct(obj, SerfMessageType(t).name.lower())
    if t == SerfMessageType.LEAVE:
        return LeaveIntent(
            ltime=as_uint(f.get("LTime"), "LTime", 64),
            node=as_str(f.get("Node"), "Node"),
            prune=as_bool(f.get("Prune"), "Prune"),
        )
    if t == SerfMessageType.JOIN:
        return JoinIntent(
            ltime=as_uint(f.get("LTime"), "LTime", 64), node=as_str(f.get("Node"), "Node")
        )
    if t == SerfMessageType.PUSH_PULL:
        return _dec_serf_push_pull(f)
    if t == SerfMessageType.USER_EVENT:
        return UserEvent(
            ltime=as_uint(f.get("LTime"), "LTime", 64),
            name=as_str(f.get("Name"), "Name"),
            payload=as_bytes_or_none(f.get("Payload"), "Payload"),
            cc=as_bool(f.get("CC"), "CC"),
        )
    if t == SerfMessageType.QUERY:
        return _dec_query(f)
    if t == SerfMessageType.QUERY_RESPONSE:
        return QueryResponse(
            ltime=as_uint(f.get("LTime"), "LTime", 64),
            id=as_uint(f.get("ID"), "ID", 32),
            from_node=as_str(f.get("From"), "From"),
            flags=as_uint(f.get("Flags"), "Flags", 32),
            payload=as_bytes_or_none(f.get("Payload"), "Payload"),
        )
    if t == SerfMessageType.CONFLICT_RESPONSE:
        return ConflictResponse(_dec_member(f))
    # KEY_RESPONSE
    return KeyResponse(
        result=as_bool(f.get("Result"), "Result"),
        message=as_str(f.get("Message"), "Message"),
        keys=as_str_list(f.get("Keys"), "Keys"),
        primary_key=as_str(f.get("PrimaryKey"), "PrimaryKey"),
    )



_TAGS_MAGIC = 0xFF


def encode_tags(tags: Mapping[str, str]) -> bytes:
    """Node Meta for Serf tags: ``ff + msgpack(map)`` (``ff 80`` for no tags)."""
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise EncodeError(f"tags must map str to str, got {k!r}: {v!r}")
    return bytes((_TAGS_MAGIC,)) + go_pack(dict(tags))


def decode_tags(meta: bytes) -> dict[str, str]:
    """Tags from node Meta; a blob not starting with 0xff is the legacy ``{"role": meta}``."""
    if not meta or meta[0] != _TAGS_MAGIC:
        try:
            role = bytes(meta).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket(REASON_BAD_FIELD, "legacy role tag is not UTF-8") from None
        return {"role": role}
    obj, _ = go_unpack_prefix(meta, 1)
    return as_str_map(obj, "tags")


def encode_coordinate(coord: Coordinate) -> bytes:
    """Ack payload carrying a Vivaldi coordinate: ``01 + msgpack{Adjustment,Error,Height,Vec}``."""
    body = {
        "Adjustment": float(coord.adjustment),
        "Error": float(coord.error),
        "Height": float(coord.height),
        "Vec": [float(x) for x in coord.vec],
    }
    return bytes((COORDINATE_PAYLOAD_VERSION,)) + go_pack(body)


def decode_coordinate(payload: bytes) -> Coordinate:
    """Vivaldi coordinate from an ack payload; ``bad_type`` for an unknown version byte."""
    if not payload:
        raise MalformedPacket(REASON_TRUNCATED, "empty coordinate payload")
    if payload[0] != COORDINATE_PAYLOAD_VERSION:
        raise MalformedPacket(REASON_BAD_TYPE, f"unsupported ping payload version {payload[0]}")
    obj, _ = go_unpack_prefix(payload, 1)
    f = as_struct(obj, "coordinate")
    raw_vec = f.get("Vec")
    if raw_vec is None:
        raw_vec = []
    if type(raw_vec) is not list:
        raise bad_value("Vec", raw_vec, "an array of floats")
    return Coordinate(
        vec=tuple(as_float(x, "Vec") for x in raw_vec),
        error=as_float(f.get("Error"), "Error"),
        adjustment=as_float(f.get("Adjustment"), "Adjustment"),
        height=as_float(f.get("Height"), "Height"),
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

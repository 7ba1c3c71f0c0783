"""memberlist messages: ``type byte + msgpack map`` keyed by the Go field names (§1-§3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import (
    REASON_BAD_TYPE,
    REASON_TRUNCATED,
    EncodeError,
    MalformedPacket,
)
from ..messages import (
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
    Suspect,
    UserMsg,
)
from .gomsgpack import (
    as_bool,
    as_bytes,
    as_bytes_or_none,
    as_int,
    as_ip,
    as_str,
    as_struct,
    as_uint,
    as_vsn,
    check_int,
    check_uint,
    go_pack,
    go_unpack_prefix,
    ip_to_bytes,
    vsn_out,
)


def _ping_body(m: Ping) -> dict[str, Any]:
    body: dict[str, Any] = {"Node": m.node, "SeqNo": check_uint(m.seq_no, "SeqNo", 32)}
    addr = ip_to_bytes(m.source_addr)
    if addr:
        body["SourceAddr"] = addr
    if m.source_node:
        body["SourceNode"] = m.source_node
    if m.source_port:
        body["SourcePort"] = check_uint(m.source_port, "SourcePort", 16)
    return body


def _indirect_body(m: IndirectPingReq) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Nack": bool(m.nack),
        "Node": m.node,
        "Port": check_uint(m.port, "Port", 16),
        "SeqNo": check_uint(m.seq_no, "SeqNo", 32),
    }
    addr = ip_to_bytes(m.source_addr)
    if addr:
        body["SourceAddr"] = addr
    if m.source_node:
        body["SourceNode"] = m.source_node
    if m.source_port:
        body["SourcePort"] = check_uint(m.source_port, "SourcePort", 16)
    body["Target"] = ip_to_bytes(m.target)
    return body


def _alive_body(m: Alive) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(m.addr),
        "Incarnation": check_uint(m.incarnation, "Incarnation", 32),
        "Meta": bytes(m.meta) if m.meta else None,
        "Node": m.node,
        "Port": check_uint(m.port, "Port", 16),
        "Vsn": vsn_out(m.vsn),
    }


def _state_body(s: PushNodeState) -> dict[str, Any]:
    return {
        "Addr": ip_to_bytes(s.addr),
        "Incarnation": check_uint(s.incarnation, "Incarnation", 32),
        "Meta": bytes(s.meta) if s.meta else None,
        "Name": s.name,
        "Port": check_uint(s.port, "Port", 16),
        "State": check_int(int(s.state), "State"),
        "Vsn": vsn_out(s.vsn),
    }


def encode_node_state(s: PushNodeState) -> bytes:
    """One pushNodeState as it appears in a push/pull (a sender may cache it per member)."""
    return go_pack(_state_body(s))


def push_pull_bytes(join: bool, states: list[bytes], user_state: bytes) -> bytes:
    """A whole push/pull stream message from states already encoded (``encode_node_state``)."""
    return b"".join((
        bytes((MessageType.PUSH_PULL,)),
        go_pack({"Join": bool(join), "Nodes": len(states), "UserStateLen": len(user_state)}),
        *states,
        user_state,
    ))


def _push_pull_bytes(m: PushPull) -> bytes:
    return push_pull_bytes(m.join, [encode_node_state(s) for s in m.states], bytes(m.user_state))


def encode_message(msg: Message) -> bytes:
    """Type byte + body of one memberlist message (PushPull gives the whole stream message)."""
    if isinstance(msg, Ping):
        return b"\x00" + go_pack(_ping_body(msg))
    if isinstance(msg, IndirectPingReq):
        return b"\x01" + go_pack(_indirect_body(msg))
    if isinstance(msg, AckResp):
        payload = None if msg.payload is None else bytes(msg.payload)
        return b"\x02" + go_pack({"Payload": payload, "SeqNo": check_uint(msg.seq_no, "SeqNo", 32)})
    if isinstance(msg, Suspect):
        return b"\x03" + go_pack(
            {
                "From": msg.from_node,
                "Incarnation": check_uint(msg.incarnation, "Incarnation", 32),
                "Node": msg.node,
            }
        )
    if isinstance(msg, Alive):
        return b"\x04" + go_pack(_alive_body(msg))
    if isinstance(msg, Dead):
        return b"\x05" + go_pack(
            {
                "From": msg.from_node,
                "Incarnation": check_uint(msg.incarnation, "Incarnation", 32),
                "Node": msg.node,
            }
        )
    if isinstance(msg, PushPull):
        return _push_pull_bytes(msg)
    if isinstance(msg, UserMsg):
        return b"\x08" + bytes(msg.payload)
    if isinstance(msg, Compress):
        return b"\x09" + go_pack({"Algo": check_uint(msg.algo, "Algo", 8), "Buf": bytes(msg.buf)})
    if isinstance(msg, NackResp):
        return b"\x0b" + go_pack({"SeqNo": check_uint(msg.seq_no, "SeqNo", 32)})
    if isinstance(msg, ErrResp):
        return b"\x0d" + go_pack({"Error": msg.error})
    raise EncodeError(f"not a memberlist message: {type(msg).__name__}")


def encode_user_msg_stream(payload: bytes) -> bytes:
    """A user message as sent on a TCP stream: ``08 {UserMsgLen} payload`` (§5.4)."""
    return b"\x08" + go_pack({"UserMsgLen": len(payload)}) + bytes(payload)


def decode_ping_body(f: dict[str, Any]) -> Ping:
    return Ping(
        seq_no=as_uint(f.get("SeqNo"), "SeqNo", 32),
        node=as_str(f.get("Node"), "Node"),
        source_addr=as_ip(f.get("SourceAddr"), "SourceAddr"),
        source_port=as_uint(f.get("SourcePort"), "SourcePort", 16),
        source_node=as_str(f.get("SourceNode"), "SourceNode"),
    )


def _dec_indirect(f: dict[str, Any]) -> IndirectPingReq:
    return IndirectPingReq(
        seq_no=as_uint(f.get("SeqNo"), "SeqNo", 32),
        target=as_ip(f.get("Target"), "Target"),
        port=as_uint(f.get("Port"), "Port", 16),
        node=as_str(f.get("Node"), "Node"),
        nack=as_bool(f.get("Nack"), "Nack"),
        source_addr=as_ip(f.get("SourceAddr"), "SourceAddr"),
        source_port=as_uint(f.get("SourcePort"), "SourcePort", 16),
        source_node=as_str(f.get("SourceNode"), "SourceNode"),
    )


def decode_ack_body(f: dict[str, Any]) -> AckResp:
    return AckResp(
        seq_no=as_uint(f.get("SeqNo"), "SeqNo", 32),
        payload=as_bytes_or_none(f.get("Payload"), "Payload"),
    )


def _dec_nack(f: dict[str, Any]) -> NackResp:
    return NackResp(seq_no=as_uint(f.get("SeqNo"), "SeqNo", 32))


def _dec_suspect(f: dict[str, Any]) -> Suspect:
    return Suspect(
        incarnation=as_uint(f.get("Incarnation"), "Incarnation", 32),
        node=as_str(f.get("Node"), "Node"),
        from_node=as_str(f.get("From"), "From"),
    )


def _dec_dead(f: dict[str, Any]) -> Dead:
    return Dead(
        incarnation=as_uint(f.get("Incarnation"), "Incarnation", 32),
        node=as_str(f.get("Node"), "Node"),
        from_node=as_str(f.get("From"), "From"),
    )


def _dec_alive(f: dict[str, Any]) -> Alive:
    return Alive(
        incarnation=as_uint(f.get("Incarnation"), "Incarnation", 32),
        node=as_str(f.get("Node"), "Node"),
        addr=as_ip(f.get("Addr"), "Addr"),
        port=as_uint(f.get("Port"), "Port", 16),
        meta=as_bytes(f.get("Meta"), "Meta"),
        vsn=as_vsn(f.get("Vsn")),
    )


def decode_err_body(f: dict[str, Any]) -> ErrResp:
    return ErrResp(error=as_str(f.get("Error"), "Error"))


def decode_compress_body(f: dict[str, Any]) -> Compress:
    return Compress(algo=as_uint(f.get("Algo"), "Algo", 8), buf=as_bytes(f.get("Buf"), "Buf"))


def decode_node_state(f: dict[str, Any]) -> PushNodeState:
    state = as_int(f.get("State"), "State")
    return PushNodeState(
        name=as_str(f.get("Name"), "Name"),
        addr=as_ip(f.get("Addr"), "Addr"),
        port=as_uint(f.get("Port"), "Port", 16),
        meta=as_bytes(f.get("Meta"), "Meta"),
        incarnation=as_uint(f.get("Incarnation"), "Incarnation", 32),
        state=NodeStateWire(state) if 0 <= state <= 3 else state,
        vsn=as_vsn(f.get("Vsn")),
    )


_STATE_CACHE: dict[tuple[Any, ...], PushNodeState] = {}
_STATE_CACHE_MAX = 65536
"""Entries: decoded node states by their exact wire fields. A push/pull of a quiet cluster
repeats the same thousands of states every time; a hit skips validation (the same fields were
valid before). Cleared when full."""


def decode_node_state_cached(obj: Any) -> PushNodeState:
    """``decode_node_state(as_struct(obj))`` with a cache keyed by the fields it reads: the
    same result for the same fields, and what was malformed the first time is never cached.
    (A hit does not look at other keys, which the decoder ignores anyway.)"""
    if type(obj) is dict:
        f = obj
        try:
            key = (f.get("Name"), f.get("Incarnation"), f.get("State"), f.get("Addr"),
                   f.get("Port"), f.get("Meta"), f.get("Vsn"))
            hit = _STATE_CACHE.get(key)
        except TypeError:  # an unhashable field (a list, a map): the decoder says what is wrong
            return decode_node_state(as_struct(obj, "pushNodeState"))
        if hit is not None:
            return hit
    else:
        return decode_node_state(as_struct(obj, "pushNodeState"))
    st = decode_node_state(as_struct(obj, "pushNodeState"))
    if len(_STATE_CACHE) >= _STATE_CACHE_MAX:
        _STATE_CACHE.clear()
    _STATE_CACHE[key] = st
    return st


def decode_push_pull_header(f: dict[str, Any]) -> PushPullHeader:
    return PushPullHeader(
        nodes=as_int(f.get("Nodes"), "Nodes"),
        user_state_len=as_int(f.get("UserStateLen"), "UserStateLen"),
        join=as_bool(f.get("Join"), "Join"),
    )


BODY_DECODERS: dict[int, Callable[[dict[str, Any]], PacketMessage]] = {
    MessageType.PING: decode_ping_body,
    MessageType.INDIRECT_PING: _dec_indirect,
    MessageType.ACK_RESP: decode_ack_body,
    MessageType.SUSPECT: _dec_suspect,
    MessageType.ALIVE: _dec_alive,
    MessageType.DEAD: _dec_dead,
    MessageType.NACK_RESP: _dec_nack,
}

TYPE_NAMES = {int(t): t.name.lower() for t in MessageType}


def decode_simple(msg_type: int, buf: bytes | memoryview, pos: int) -> PacketMessage:
    obj, _ = go_unpack_prefix(buf, pos)
    return BODY_DECODERS[msg_type](as_struct(obj, TYPE_NAMES[msg_type]))


def decode_message(buf: bytes) -> PacketMessage | ErrResp:
    """Decode one plain message (type byte + body), without any layer around it.

    Handles ping, indirectPing, ack, suspect, alive, dead, nack, user and err. Raises
    ``MalformedPacket`` (``bad_type`` for layers such as compound/compress/push-pull).
    """
    if not buf:
        raise MalformedPacket(REASON_TRUNCATED, "empty message")
    msg_type = buf[0]
    if msg_type in BODY_DECODERS:
        return decode_simple(msg_type, buf, 1)
    if msg_type == MessageType.USER:
        return UserMsg(bytes(buf[1:]))
    if msg_type == MessageType.ERR:
        obj, _ = go_unpack_prefix(buf, 1)
        return decode_err_body(as_struct(obj, "err"))
    raise MalformedPacket(REASON_BAD_TYPE, f"message type {msg_type} is not a plain message")


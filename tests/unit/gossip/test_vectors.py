"""Captured Serf 0.9.4 traffic: decode every vector to its expected fields, re-encode byte for byte.

The vectors (tests/unit/gossip/vectors_data, copied from shared/reference/vectors) were captured
between real Debian ``serf`` agents; ``vectors.json`` holds the decoding a reference decoder made.
We render our own decoding into the same JSON shape and compare the whole structure.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from gossip import codec, lzw
from gossip.errors import MalformedPacket
from gossip.messages import (
    AckResp,
    Alive,
    Dead,
    ErrResp,
    IndirectPingReq,
    MessageType,
    NackResp,
    NodeStateWire,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)
from gossip.security import ENCRYPTION_OVERHEAD, Keyring
from gossip.serf_messages import (
    JoinIntent,
    KeyResponse,
    LeaveIntent,
    NodeFilter,
    Query,
    QueryResponse,
    Relay,
    SerfMessage,
    SerfPushPull,
    TagFilter,
    UserEvent,
    UserEvents,
)

from .vectors_util import VECTORS, Vector, by_name, read_hex

# --------------------------------------------------------------------------------------------
# Rendering our decoded values into the vectors.json shape


def _blob(b: bytes | None) -> Any:
    if b is None:
        return None
    out: dict[str, Any] = {"hex": b.hex()}
    try:
        out["text"] = b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return out


def _meta(b: bytes) -> dict[str, Any]:
    return {"hex": b.hex(), "tags": codec.decode_tags(b)}


def _coord_payload(b: bytes | None) -> Any:
    if b is None:
        return None
    c = codec.decode_coordinate(b)
    return {
        "version": b[0],
        "coordinate": {
            "Adjustment": c.adjustment,
            "Error": c.error,
            "Height": c.height,
            "Vec": list(c.vec),
        },
        "hex": b.hex(),
    }


def _body(m: Any) -> dict[str, Any]:
    if isinstance(m, Ping):
        out: dict[str, Any] = {"Node": m.node, "SeqNo": m.seq_no}
        if m.source_addr:
            out["SourceAddr"] = m.source_addr
        if m.source_node:
            out["SourceNode"] = m.source_node
        if m.source_port:
            out["SourcePort"] = m.source_port
        return out
    if isinstance(m, IndirectPingReq):
        return {
            "Nack": m.nack,
            "Node": m.node,
            "Port": m.port,
            "SeqNo": m.seq_no,
            "SourceAddr": m.source_addr,
            "SourceNode": m.source_node,
            "SourcePort": m.source_port,
            "Target": m.target,
        }
    if isinstance(m, AckResp):
        return {"Payload": _coord_payload(m.payload), "SeqNo": m.seq_no}
    if isinstance(m, NackResp):
        return {"SeqNo": m.seq_no}
    if isinstance(m, (Suspect, Dead)):
        return {"From": m.from_node, "Incarnation": m.incarnation, "Node": m.node}
    if isinstance(m, Alive):
        return {
            "Addr": m.addr,
            "Incarnation": m.incarnation,
            "Meta": _meta(m.meta),
            "Node": m.node,
            "Port": m.port,
            "Vsn": list(m.vsn),
        }
    if isinstance(m, ErrResp):
        return {"Error": m.error}
    raise AssertionError(f"unexpected {m!r}")


_SERF_NAMES = {
    0: "leave",
    1: "join",
    2: "pushPull",
    3: "userEvent",
    4: "query",
    5: "queryResponse",
    8: "keyResponse",
    9: "relay",
}


def _serf(buf: bytes) -> dict[str, Any]:
    m = codec.decode_serf(buf)
    t = buf[0]
    if isinstance(m, Relay):
        return {
            "serfType": "relay",
            "serfTypeNum": 9,
            "header": {
                "DestAddr": {"IP": m.dest_addr, "Port": m.dest_port, "Zone": m.dest_zone},
                "DestName": m.dest_name,
            },
            "inner": _serf(m.inner),
        }
    return {"serfType": _SERF_NAMES[t], "serfTypeNum": t, "body": _serf_body(m)}


def _events_summary(events: tuple[UserEvents | None, ...]) -> dict[str, Any]:
    return {
        "slots": len(events),
        "non_nil": [
            {
                "Events": [{"Name": ev.name, "Payload": _blob(ev.payload)} for ev in e.events],
                "LTime": e.ltime,
            }
            for e in events
            if e is not None
        ],
    }


def _serf_body(m: SerfMessage) -> dict[str, Any]:
    if isinstance(m, JoinIntent):
        return {"LTime": m.ltime, "Node": m.node}
    if isinstance(m, LeaveIntent):
        return {"LTime": m.ltime, "Node": m.node, "Prune": m.prune}
    if isinstance(m, UserEvent):
        return {"CC": m.cc, "LTime": m.ltime, "Name": m.name, "Payload": _blob(m.payload)}
    if isinstance(m, Query):
        filters: list[dict[str, Any]] | None = None
        if m.filters:
            filters = []
            for f in m.filters:
                if isinstance(f, NodeFilter):
                    filters.append({"type": "node", "nodes": list(f.nodes)})
                else:
                    assert isinstance(f, TagFilter)
                    filters.append({"type": "tag", "Expr": f.expr, "Tag": f.tag})
        return {
            "Addr": m.addr,
            "Filters": filters,
            "Flags": m.flags,
            "ID": m.id,
            "LTime": m.ltime,
            "Name": m.name,
            "Payload": _blob(m.payload),
            "Port": m.port,
            "RelayFactor": m.relay_factor,
            "SourceNode": m.source_node,
            "Timeout": round(m.timeout * 1e9),
        }
    if isinstance(m, QueryResponse):
        payload: Any = _blob(m.payload)
        if m.payload and m.payload[0] == 8:
            kr = codec.decode_serf(m.payload)
            assert isinstance(kr, KeyResponse)
            payload = {
                "serfType": "keyResponse",
                "Keys": list(kr.keys),
                "Message": kr.message,
                "PrimaryKey": kr.primary_key,
                "Result": kr.result,
            }
        return {
            "Flags": m.flags,
            "From": m.from_node,
            "ID": m.id,
            "LTime": m.ltime,
            "Payload": payload,
        }
    if isinstance(m, SerfPushPull):
        return {
            "EventLTime": m.event_ltime,
            "Events": _events_summary(m.events),
            "LTime": m.ltime,
            "LeftMembers": list(m.left_members),
            "QueryLTime": m.query_ltime,
            "StatusLTimes": dict(m.status_ltimes),
        }
    raise AssertionError(f"unexpected {m!r}")


_NAMES = {
    0: "ping",
    1: "indirectPing",
    2: "ackResp",
    3: "suspect",
    4: "alive",
    5: "dead",
    11: "nackResp",
    13: "err",
}


def render_packet(buf: bytes) -> dict[str, Any]:
    """Walk the layers with the codec's primitives, in the shape of vectors.json."""
    t = buf[0]
    if t == MessageType.HAS_CRC:
        return {
            "type": "hasCrc",
            "typeNum": 12,
            "crc": buf[1:5].hex(),
            "crcOk": True,
            "inner": render_packet(codec.strip_crc(buf)),
        }
    if t == MessageType.COMPOUND:
        parts, truncated = codec.split_compound(buf)
        assert truncated == 0
        return {
            "type": "compound",
            "typeNum": 7,
            "count": len(parts),
            "lengths": [len(p) for p in parts],
            "parts": [render_packet(p) for p in parts],
        }
    if t == MessageType.COMPRESS:
        raw = msgpack.unpackb(buf[1:], raw=True)
        return {
            "type": "compress",
            "typeNum": 9,
            "Algo": raw[b"Algo"],
            "compressedLen": len(raw[b"Buf"]),
            "inner": render_packet(codec.decompress_message(buf, 1 << 20)),
        }
    if t == MessageType.USER:
        return {"type": "user", "typeNum": 8, "serf": _serf(buf[1:])}
    m = codec.decode_message(buf)
    return {"type": _NAMES[t], "typeNum": t, "body": _body(m)}


def _state(s: PushNodeState) -> dict[str, Any]:
    return {
        "Addr": s.addr,
        "Incarnation": s.incarnation,
        "Meta": _meta(s.meta),
        "Name": s.name,
        "Port": s.port,
        "State": int(s.state),
        "Vsn": list(s.vsn),
        "StateName": NodeStateWire(s.state).name.lower(),
    }


def render_stream(data: bytes, keyring: Keyring | None) -> dict[str, Any]:
    out: dict[str, Any] = {"len": len(data)}
    plain = data
    if data[0] == MessageType.ENCRYPT:
        (declared,) = struct.unpack(">I", data[1:5])
        assert keyring is not None
        plain = keyring.decrypt(data[5 : 5 + declared], aad=data[:5])
        out["encrypted"] = {
            "declaredLen": declared,
            "haveLen": len(data) - 5,
            "version": data[5],
        }
    if plain[0] == MessageType.COMPRESS:
        raw = msgpack.unpackb(plain[1:], raw=True)
        inner = codec.decompress_message(plain, 20 << 20)
        out["compressed"] = {
            "Algo": raw[b"Algo"],
            "compressedLen": len(raw[b"Buf"]),
            "rawLen": len(inner),
        }
    msg = codec.decode_stream(data, keyring)
    if isinstance(msg, PushPull):
        out["type"] = "pushPull"
        out["header"] = {
            "Join": msg.join,
            "Nodes": len(msg.states),
            "UserStateLen": len(msg.user_state),
        }
        out["nodes"] = [_state(s) for s in msg.states]
        out["userStateLen"] = len(msg.user_state)
        out["userState"] = _serf(msg.user_state)
    else:
        out["type"] = {Ping: "ping", AckResp: "ackResp", ErrResp: "err"}[type(msg)]
        out["body"] = _body(msg)
    return out


def _keyring(v: Vector) -> Keyring | None:
    return Keyring([v.key]) if v.key else None


# --------------------------------------------------------------------------------------------
# 1. Decode every vector and compare with `expected`

UDP = [v for v in VECTORS if v.transport == "udp"]
TCP = [v for v in VECTORS if v.transport == "tcp"]


@pytest.mark.parametrize("vec", UDP, ids=lambda v: v.name)
def test_udp_vector_decodes_to_expected(vec: Vector) -> None:
    keyring = _keyring(vec)
    plain = vec.data
    if keyring is not None:
        plain = keyring.decrypt(vec.data)
        assert vec.expected["encryption"] == {
            "version": vec.data[0],
            "nonce": vec.data[1:13].hex(),
            "plaintextLen": len(vec.data) - ENCRYPTION_OVERHEAD,
        }
    assert render_packet(plain) == vec.expected["msg"]
    # The one-call entry point agrees with the layer walk.
    decoded = codec.decode_packet(vec.data, keyring)
    assert decoded.errors == ()
    assert decoded.encrypted == (keyring is not None)
    assert decoded.crc == (plain[0] == MessageType.HAS_CRC)
    assert len(decoded.messages) >= 1


@pytest.mark.parametrize("vec", TCP, ids=lambda v: v.name)
def test_tcp_vector_decodes_to_expected(vec: Vector) -> None:
    assert render_stream(vec.data, _keyring(vec)) == vec.expected


@pytest.mark.parametrize("vec", TCP, ids=lambda v: v.name)
def test_tcp_vector_byte_by_byte(vec: Vector) -> None:
    """The incremental reader gives the same message fed one byte at a time."""
    reader = codec.StreamReader(_keyring(vec))
    result = None
    for i in range(len(vec.data)):
        result = reader.feed(vec.data[i : i + 1])
        if i < len(vec.data) - 1:
            assert result is None, f"complete after {i + 1} of {len(vec.data)} bytes"
    assert result is not None
    assert result == codec.decode_stream(vec.data, _keyring(vec))


def test_blob_meta_tags() -> None:
    vec = by_name("31_")
    assert codec.decode_tags(vec.data) == vec.expected["tags"]
    assert list(codec.decode_tags(vec.data)) == list(vec.expected["tags"])  # wire order kept
    assert codec.encode_tags(vec.expected["tags"]) == vec.data


def test_blob_coordinate_payload() -> None:
    vec = by_name("32_")
    assert _coord_payload(vec.data) == vec.expected
    c = codec.decode_coordinate(vec.data)
    assert codec.encode_coordinate(c) == vec.data


def test_every_vector_is_covered() -> None:
    assert len(VECTORS) == 35
    kinds = {v.transport for v in VECTORS}
    assert kinds == {"udp", "tcp", "blob"}


# --------------------------------------------------------------------------------------------
# 2. LZW both ways


def test_lzw_vector_both_directions() -> None:
    plain = read_hex("33_lzw_plain.hex")
    packed = read_hex("33_lzw_compressed.hex")
    assert plain[0] == 7
    assert lzw.compress(plain) == packed
    assert lzw.decompress(packed, 1 << 20) == plain


def _compressed_blobs() -> list[tuple[str, bytes]]:
    """Every LZW blob in the captures: UDP compress wrappers and compressed streams."""
    out = []
    for v in VECTORS:
        if v.transport == "udp":
            ring = _keyring(v)
            plain = ring.decrypt(v.data) if ring is not None else v.data
            if plain[0] == MessageType.HAS_CRC:
                plain = plain[5:]
            if plain[0] == MessageType.COMPRESS:
                out.append((v.name, msgpack.unpackb(plain[1:], raw=True)[b"Buf"]))
        elif v.transport == "tcp":
            plain = v.data
            if plain[0] == MessageType.ENCRYPT:
                kr = _keyring(v)
                assert kr is not None
                plain = kr.decrypt(plain[5:], aad=plain[:5])
            if plain[0] == MessageType.COMPRESS:
                out.append((v.name, msgpack.unpackb(plain[1:], raw=True)[b"Buf"]))
    return out


BLOBS = _compressed_blobs()


def test_compressed_blobs_found() -> None:
    names = {n for n, _ in BLOBS}
    assert {"16_udp_compressed", "21_tcp_pushpull_compressed_req", "26_tcp_err_compressed"} <= names
    assert {"22_tcp_pushpull_encrypted_req", "23_tcp_pushpull_encrypted_resp"} <= names


@pytest.mark.parametrize(("name", "blob"), BLOBS, ids=[n for n, _ in BLOBS])
def test_lzw_recompresses_captured_blob(name: str, blob: bytes) -> None:
    plain = lzw.decompress(blob, 20 << 20)
    assert lzw.compress(plain) == blob


# --------------------------------------------------------------------------------------------
# 3. Re-encode from decoded values, byte for byte


def _reencode_part(m: Any) -> bytes:
    if isinstance(m, UserMsg):
        return codec.encode_serf_user_msg(codec.decode_serf(m.payload))
    return codec.encode_message(m)


@pytest.mark.parametrize(
    "prefix",
    [
        "01_",
        "03_",
        "04_",
        "05_",
        "06_",
        "07_",
        "08_",
        "08b_",
        "09_",
        "10_",
        "11_",
        "12_",
        "13_",
        "14_",
        "15_",
        "16_",
    ],
)
def test_plaintext_udp_reencodes_byte_for_byte(prefix: str) -> None:
    vec = by_name(prefix)
    decoded = codec.decode_packet(vec.data)
    parts = [_reencode_part(m) for m in decoded.messages]
    rebuilt = codec.encode_packet(parts, crc=decoded.crc, compress=decoded.compressed)
    assert rebuilt == vec.data


@pytest.mark.parametrize("prefix", ["01_", "03_", "04_", "06_", "07_", "11_", "14_", "15_"])
def test_bodies_rebuilt_from_typed_values(prefix: str) -> None:
    """Build the message from the *expected* JSON (not from our decoder) and compare bytes."""
    vec = by_name(prefix)
    exp = vec.expected["msg"]
    if exp["type"] == "hasCrc":
        exp = exp["inner"]
    body = exp.get("body")
    built: bytes
    if exp["type"] == "ping":
        built = codec.encode_message(
            Ping(
                seq_no=body["SeqNo"],
                node=body["Node"],
                source_addr=body["SourceAddr"],
                source_port=body["SourcePort"],
                source_node=body["SourceNode"],
            )
        )
    elif exp["type"] == "indirectPing":
        built = codec.encode_message(
            IndirectPingReq(
                seq_no=body["SeqNo"],
                target=body["Target"],
                port=body["Port"],
                node=body["Node"],
                nack=body["Nack"],
                source_addr=body["SourceAddr"],
                source_port=body["SourcePort"],
                source_node=body["SourceNode"],
            )
        )
    elif exp["type"] == "nackResp":
        built = codec.encode_message(NackResp(body["SeqNo"]))
    elif exp["type"] in ("suspect", "dead"):
        cls = Suspect if exp["type"] == "suspect" else Dead
        built = codec.encode_message(cls(body["Incarnation"], body["Node"], body["From"]))
    else:
        serf = exp["serf"]
        sb = serf["body"]
        msg: SerfMessage
        if serf["serfType"] == "userEvent":
            msg = UserEvent(
                sb["LTime"], sb["Name"], bytes.fromhex(sb["Payload"]["hex"]), cc=sb["CC"]
            )
        elif serf["serfType"] == "query":
            msg = Query(
                ltime=sb["LTime"],
                id=sb["ID"],
                addr=sb["Addr"],
                port=sb["Port"],
                source_node=sb["SourceNode"],
                name=sb["Name"],
                payload=bytes.fromhex(sb["Payload"]["hex"]),
                flags=sb["Flags"],
                relay_factor=sb["RelayFactor"],
                timeout=sb["Timeout"] / 1e9,
            )
        else:
            assert serf["serfType"] == "queryResponse"
            msg = QueryResponse(sb["LTime"], sb["ID"], sb["From"], sb["Flags"], None)
        built = codec.encode_serf_user_msg(msg)
    plain = vec.data[5:] if vec.data[0] == MessageType.HAS_CRC else vec.data
    assert built == plain


def test_alive_rebuilt_from_typed_values() -> None:
    vec = by_name("05_")
    body = vec.expected["msg"]["inner"]["body"]
    alive = Alive(
        incarnation=body["Incarnation"],
        node=body["Node"],
        addr=body["Addr"],
        port=body["Port"],
        meta=codec.encode_tags(body["Meta"]["tags"]),
        vsn=tuple(body["Vsn"]),
    )
    assert codec.encode_packet([alive], crc=True) == vec.data


@pytest.mark.parametrize("prefix", ["18_", "19_", "20_", "30_"])
def test_push_pull_streams_reencode(prefix: str) -> None:
    """Header, node states and the Serf state (maps keep their wire order) re-encode exactly."""
    vec = by_name(prefix)
    msg = codec.decode_stream(vec.data)
    assert isinstance(msg, PushPull)
    serf_state = codec.decode_serf(msg.user_state)
    rebuilt = PushPull(msg.join, msg.states, codec.encode_serf(serf_state))
    assert codec.encode_stream(rebuilt) == vec.data
    # The non-map parts separately: header and each state.
    header = msgpack.packb(
        {"Join": msg.join, "Nodes": len(msg.states), "UserStateLen": len(msg.user_state)},
        use_bin_type=False,
    )
    assert vec.data[1 : 1 + len(header)] == header


@pytest.mark.parametrize("prefix", ["21_", "26_"])
def test_compressed_streams_reencode(prefix: str) -> None:
    vec = by_name(prefix)
    msg = codec.decode_stream(vec.data)
    assert codec.encode_stream(msg, compress=True) == vec.data


def test_tcp_ping_and_ack_reencode() -> None:
    for prefix in ("24_", "25_"):
        vec = by_name(prefix)
        assert codec.encode_stream(codec.decode_stream(vec.data)) == vec.data


# --------------------------------------------------------------------------------------------
# 4. CRCs and encryption


@pytest.mark.parametrize(
    "vec",
    [v for v in UDP if v.key is None and v.expected["msg"]["type"] == "hasCrc"],
    ids=lambda v: v.name,
)
def test_crc_matches(vec: Vector) -> None:
    data = vec.data
    assert zlib.crc32(data[5:]) == struct.unpack(">I", data[1:5])[0]
    assert data[1:5].hex() == vec.expected["msg"]["crc"]


def test_crc_inside_encryption() -> None:
    vec = by_name("27_")
    kr = _keyring(vec)
    assert kr is not None
    plain = kr.decrypt(vec.data)
    assert zlib.crc32(plain[5:]) == struct.unpack(">I", plain[1:5])[0]


@pytest.mark.parametrize("prefix", ["17_", "27_", "28_", "29_"])
def test_udp_decrypts_with_key_and_not_without(prefix: str) -> None:
    vec = by_name(prefix)
    assert vec.key is not None
    wrong = Keyring([bytes(32)])
    with pytest.raises(MalformedPacket) as info:
        codec.decode_packet(vec.data, wrong)
    assert info.value.reason == "decrypt_failed"
    # The right key as a secondary key still works (primary tried first, then the others).
    ring = Keyring([bytes(32), vec.key])
    assert ring.primary == bytes(32)
    assert codec.decode_packet(vec.data, ring).encrypted


@pytest.mark.parametrize("prefix", ["22_", "23_"])
def test_tcp_frames_decrypt_with_header_as_aad(prefix: str) -> None:
    vec = by_name(prefix)
    kr = _keyring(vec)
    assert kr is not None
    kr.decrypt(vec.data[5:], aad=vec.data[:5])
    with pytest.raises(MalformedPacket):
        kr.decrypt(vec.data[5:])  # without the AAD the tag does not verify
    with pytest.raises(MalformedPacket) as info:
        codec.decode_stream(vec.data)  # no keyring: refused like Go does
    assert info.value.reason == "not_encrypted"


def test_encrypted_stream_round_trip_matches_capture_layout() -> None:
    vec = by_name("22_")
    kr = _keyring(vec)
    msg = codec.decode_stream(vec.data, kr)
    out = codec.encode_stream(msg, compress=True, keyring=kr)
    assert len(out) == len(vec.data)
    assert out[:5] == vec.data[:5]  # same declared length
    assert codec.decode_stream(out, kr) == msg

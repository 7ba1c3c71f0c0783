"""Hypothesis fuzzing: every decoder raises only MalformedPacket, whatever the bytes.

Inputs: random bytes, random msgpack bodies behind every type byte, and the captured vectors
with bytes flipped, inserted, deleted or cut. Example counts stay moderate so that the file runs
in a few seconds.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgpack  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import codec
from gossip.codec import CodecLimits, StreamReader
from gossip.errors import MalformedPacket
from gossip.messages import (
    AckResp,
    Alive,
    Dead,
    IndirectPingReq,
    NackResp,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)
from gossip.security import Keyring
from gossip.serf_messages import (
    JoinIntent,
    LeaveIntent,
    NodeFilter,
    Query,
    QueryResponse,
    SerfPushPull,
    TagFilter,
    UserEvent,
)

from .vectors_util import VECTORS

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL_LIMITS = CodecLimits(
    max_packet_decompressed=1 << 16, max_stream_size=1 << 16, max_stream_decompressed=1 << 16
)
RING = Keyring([bytes(range(32))])
VECTOR_DATA = [v.data for v in VECTORS if v.transport in ("udp", "tcp")]
KEYS = {v.data: Keyring([v.key]) for v in VECTORS if v.key}


def only_malformed(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except MalformedPacket as exc:
        assert exc.reason, "MalformedPacket without a reason"
        return None


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=12) | st.binary(max_size=4), children, max_size=6)
    ),
    max_leaves=10,
)

GO_KEYS = [
    "Node", "SeqNo", "SourceAddr", "SourceNode", "SourcePort", "Target", "Port", "Nack",
    "Payload", "From", "Incarnation", "Addr", "Meta", "Vsn", "Error", "Algo", "Buf", "Join",
    "Nodes", "UserStateLen", "Name", "State", "LTime", "Prune", "Events", "EventLTime",
    "LeftMembers", "QueryLTime", "StatusLTimes", "RumorApp", "CC", "Filters", "Flags", "ID",
    "RelayFactor", "Timeout", "Keys", "Message", "PrimaryKey", "Result", "Key", "DestAddr",
    "DestName", "IP", "Zone", "Tags", "UserMsgLen",
]  # fmt: skip

go_like_maps = st.dictionaries(st.sampled_from(GO_KEYS), msgpack_values, max_size=8)


def packed(obj: Any, bin_type: bool) -> bytes:
    return msgpack.packb(obj, use_bin_type=bin_type)  # type: ignore[no-any-return]


@st.composite
def mutated_vector(draw: st.DrawFn) -> tuple[bytes, bytes]:
    original = draw(st.sampled_from(VECTOR_DATA))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut", "byte"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return original, bytes(data)


# --------------------------------------------------------------------------------------------
# Random bytes


@FUZZ
@given(st.binary(max_size=400))
def test_decode_packet_random_bytes(data: bytes) -> None:
    only_malformed(codec.decode_packet, data, limits=SMALL_LIMITS)
    only_malformed(codec.decode_packet, data, RING, limits=SMALL_LIMITS)
    only_malformed(codec.decode_message, data)
    only_malformed(codec.decode_serf, data)
    only_malformed(codec.decode_tags, data)
    only_malformed(codec.decode_coordinate, data)


@FUZZ
@given(st.integers(0, 255), st.binary(max_size=300))
def test_every_type_byte_with_random_body(type_byte: int, body: bytes) -> None:
    data = bytes([type_byte]) + body
    only_malformed(codec.decode_packet, data, limits=SMALL_LIMITS)
    only_malformed(codec.decode_serf, data)
    only_malformed(codec.decode_stream, data, limits=SMALL_LIMITS)


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_stream_reader_random_bytes_in_chunks(data: bytes, chunk: int) -> None:
    for ring in (None, RING):
        reader = StreamReader(ring, limits=SMALL_LIMITS)
        try:
            for i in range(0, len(data), chunk):
                if reader.feed(data[i : i + chunk]) is not None:
                    break
            reader.feed_eof()
        except MalformedPacket as exc:
            assert exc.reason


# --------------------------------------------------------------------------------------------
# Structured garbage: msgpack bodies with Go field names and wrong types


@settings(FUZZ, max_examples=120)
@given(
    st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9, 11, 13]),
    go_like_maps | msgpack_values,
    st.booleans(),
)
def test_memberlist_bodies_of_any_shape(type_byte: int, body: Any, bin_type: bool) -> None:
    data = bytes([type_byte]) + packed(body, bin_type)
    only_malformed(codec.decode_packet, data, limits=SMALL_LIMITS)
    only_malformed(codec.decode_stream, data, limits=SMALL_LIMITS)


@settings(FUZZ, max_examples=120)
@given(st.sampled_from(list(range(10)) + [0x80]), go_like_maps | msgpack_values, st.booleans())
def test_serf_bodies_of_any_shape(type_byte: int, body: Any, bin_type: bool) -> None:
    data = bytes([type_byte]) + packed(body, bin_type)
    only_malformed(codec.decode_serf, data)
    only_malformed(codec.decode_tags, b"\xff" + packed(body, bin_type))
    only_malformed(codec.decode_coordinate, b"\x01" + packed(body, bin_type))


header_maps = st.fixed_dictionaries(
    {"Join": st.booleans(), "Nodes": st.integers(-2, 4), "UserStateLen": st.integers(-2, 40)}
)


@settings(FUZZ, max_examples=80)
@given(
    st.lists(go_like_maps, max_size=3),
    header_maps | go_like_maps,
    st.binary(max_size=40),
    st.integers(1, 16),
)
def test_push_pull_streams_of_any_shape(
    states: list[Any], header: Any, tail: bytes, chunk: int
) -> None:
    data = b"\x06" + packed(header, False) + b"".join(packed(s, False) for s in states) + tail
    only_malformed(codec.decode_stream, data, limits=SMALL_LIMITS)
    reader = StreamReader(limits=SMALL_LIMITS)
    try:
        for i in range(0, len(data), chunk):
            if reader.feed(data[i : i + chunk]) is not None:
                break
    except MalformedPacket:
        pass


# --------------------------------------------------------------------------------------------
# Mutated captures


@FUZZ
@given(mutated_vector())
def test_mutated_vectors(pair: tuple[bytes, bytes]) -> None:
    original, data = pair
    ring = KEYS.get(original)
    only_malformed(codec.decode_packet, data, ring, limits=SMALL_LIMITS)
    only_malformed(codec.decode_stream, data, ring, limits=SMALL_LIMITS)
    decoded = only_malformed(codec.decode_packet, data, ring, limits=SMALL_LIMITS)
    if decoded is not None:
        for _, serf in codec.iter_serf_messages(decoded.messages):
            assert isinstance(serf, MalformedPacket) or serf is not None


@FUZZ
@given(mutated_vector())
def test_mutated_inner_payloads(pair: tuple[bytes, bytes]) -> None:
    """Mutate after decryption/CRC so that the inner decoders see the damage."""
    original, _ = pair
    ring = KEYS.get(original)
    plain = original
    if ring is not None and original[0] in (0, 1):
        plain = only_malformed(ring.decrypt, original) or original
    if plain[:1] == b"\x0c":
        plain = plain[5:]
    for i in range(0, len(plain), max(1, len(plain) // 16)):
        damaged = plain[:i] + bytes([plain[i] ^ 0x5A]) + plain[i + 1 :]
        only_malformed(codec.decode_packet, damaged, limits=SMALL_LIMITS)
        only_malformed(codec.decode_stream, damaged, limits=SMALL_LIMITS)


# --------------------------------------------------------------------------------------------
# Round trips of random valid messages

names = st.text(max_size=20)


def _not_v4_mapped(addr: str) -> bool:
    """IPv4-mapped IPv6 addresses decode as IPv4 text, so they do not round-trip as text."""
    return ipaddress.IPv6Address(addr).ipv4_mapped is None


u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
u64 = st.integers(0, 2**64 - 1)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str).filter(_not_v4_mapped)
addrs = st.just("") | ipv4 | ipv6
blobs = st.binary(max_size=64)
vsns = st.lists(st.integers(0, 255), max_size=6).map(tuple)

packet_messages = st.one_of(
    st.builds(Ping, u32, names, addrs, u16, names),
    st.builds(IndirectPingReq, u32, addrs, u16, names, st.booleans(), addrs, u16, names),
    st.builds(AckResp, u32, st.none() | blobs),
    st.builds(NackResp, u32),
    st.builds(Suspect, u32, names, names),
    st.builds(Dead, u32, names, names),
    st.builds(Alive, u32, names, addrs, u16, blobs, vsns),
    st.builds(UserMsg, blobs),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(packet_messages, min_size=1, max_size=6), st.booleans(), st.booleans())
def test_packet_round_trip(msgs: list[Any], crc: bool, compress: bool) -> None:
    for ring in (None, RING):
        wire = codec.encode_packet(msgs, crc=crc, compress=compress, keyring=ring)
        assert codec.decode_packet(wire, ring).messages == tuple(msgs)


states = st.builds(PushNodeState, names, addrs, u16, blobs, u32, st.integers(0, 3), vsns)


@settings(max_examples=60, deadline=None)
@given(st.booleans(), st.lists(states, max_size=5), blobs, st.booleans(), st.integers(1, 50))
def test_push_pull_stream_round_trip(
    join: bool, node_states: list[Any], user: bytes, compress: bool, chunk: int
) -> None:
    msg = PushPull(join=join, states=tuple(node_states), user_state=user)
    for ring in (None, RING):
        wire = codec.encode_stream(msg, compress=compress, keyring=ring)
        reader = StreamReader(ring)
        result = None
        for i in range(0, len(wire), chunk):
            result = reader.feed(wire[i : i + chunk])
        assert result == msg


serf_messages = st.one_of(
    st.builds(LeaveIntent, u64, names, st.booleans()),
    st.builds(JoinIntent, u64, names),
    st.builds(UserEvent, u64, names, st.none() | blobs, st.booleans()),
    st.builds(
        Query,
        ltime=u64,
        id=u32,
        addr=addrs,
        port=u16,
        source_node=names,
        name=names,
        payload=st.none() | blobs,
        filters=st.lists(
            st.builds(NodeFilter, st.lists(names, max_size=3).map(tuple))
            | st.builds(TagFilter, names, names),
            max_size=3,
        ).map(tuple),
        flags=u32,
        relay_factor=st.integers(0, 255),
        timeout=st.integers(0, 10**12).map(lambda ns: ns / 1e9),
    ),
    st.builds(QueryResponse, u64, u32, names, u32, st.none() | blobs),
    st.builds(
        SerfPushPull,
        ltime=u64,
        status_ltimes=st.dictionaries(names, u64, max_size=4),
        left_members=st.lists(names, max_size=3).map(tuple),
        event_ltime=u64,
        query_ltime=u64,
        app_state=st.none() | blobs,
    ),
)


@settings(max_examples=150, deadline=None)
@given(serf_messages)
def test_serf_round_trip(msg: Any) -> None:
    assert codec.decode_serf(codec.encode_serf(msg)) == msg

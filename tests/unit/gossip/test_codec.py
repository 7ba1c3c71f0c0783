"""Codec behaviour beyond the captured vectors: round trips, Go's type rules, layers, limits.

Each normal case sits next to its hostile twin; every hostile input must raise MalformedPacket
with a machine reason (never another exception).
"""

from __future__ import annotations

import struct
from functools import partial
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from gossip import codec, lzw
from gossip.codec import CodecLimits, StreamReader
from gossip.errors import EncodeError, MalformedPacket
from gossip.messages import (
    AckResp,
    Alive,
    Compress,
    Dead,
    ErrResp,
    IndirectPingReq,
    NackResp,
    NodeStateWire,
    Ping,
    PushNodeState,
    PushPull,
    Suspect,
    UserMsg,
)
from gossip.recent import RecentMessages
from gossip.security import Keyring, encrypt_payload
from gossip.serf_messages import (
    APP_STATE_KEY,
    AppMessage,
    ConflictResponse,
    Coordinate,
    JoinIntent,
    KeyRequest,
    KeyResponse,
    LeaveIntent,
    Member,
    NodeFilter,
    Query,
    QueryResponse,
    Relay,
    SerfPushPull,
    TagFilter,
    UnknownFilter,
    UserEvent,
    UserEventData,
    UserEvents,
)

from .vectors_util import VECTORS, by_name

KEY = bytes(range(32))


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)  # type: ignore[no-any-return]


def reason_of(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MalformedPacket) as info:
        fn(*args, **kwargs)
    return info.value.reason


# --------------------------------------------------------------------------------------------
# Message round trips

MESSAGES = [
    Ping(seq_no=7, node="n1", source_addr="10.0.0.1", source_port=7946, source_node="n2"),
    Ping(seq_no=0, node=""),
    Ping(seq_no=2**32 - 1, node="n", source_addr="::1", source_port=1, source_node="x"),
    IndirectPingReq(
        seq_no=3, target="fe80::1", port=7946, node="t", nack=True, source_addr="127.0.0.1"
    ),
    IndirectPingReq(seq_no=3, target="127.0.0.2", port=0, node="t"),
    AckResp(seq_no=1),
    AckResp(seq_no=1, payload=b""),
    AckResp(seq_no=1, payload=b"\x01\xff\x00" * 100),
    NackResp(seq_no=9),
    Suspect(incarnation=4, node="a", from_node="b"),
    Dead(incarnation=4, node="a", from_node="a"),
    Alive(incarnation=1, node="n\u00e9", addr="127.0.0.1", port=7946, meta=b"\xff\x80"),
    Alive(incarnation=1, node="n", addr="2001:db8::5", port=1, meta=b"", vsn=()),
    Alive(incarnation=1, node="n", addr="", port=0, meta=b"x" * 512, vsn=(1, 2, 3)),
    ErrResp(error="boom"),
    UserMsg(payload=b"\x03anything"),
    UserMsg(payload=b""),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trip(msg: Any) -> None:
    assert codec.decode_message(codec.encode_message(msg)) == msg


def test_ping_omits_empty_optional_fields() -> None:
    raw = codec.encode_message(Ping(seq_no=5, node="n1"))
    assert raw == b"\x00" + pack({"Node": "n1", "SeqNo": 5})


def test_ack_nil_versus_empty_payload() -> None:
    assert codec.encode_message(AckResp(1)).endswith(b"\xa7Payload\xc0\xa5SeqNo\x01")
    assert codec.encode_message(AckResp(1, b"")).endswith(b"\xa7Payload\xa0\xa5SeqNo\x01")


def test_push_pull_round_trip_with_every_state() -> None:
    states = tuple(
        PushNodeState(
            name=f"n{i}",
            addr="127.0.0.1" if i % 2 else "::1",
            port=7946 + i,
            meta=codec.encode_tags({"i": str(i)}),
            incarnation=i,
            state=NodeStateWire(i),
        )
        for i in range(4)
    )
    pp = PushPull(join=True, states=states, user_state=b"\x02" + pack({"LTime": 3}))
    for compress in (False, True):
        for keyring in (None, Keyring([KEY])):
            wire = codec.encode_stream(pp, compress=compress, keyring=keyring)
            assert codec.decode_stream(wire, keyring) == pp


def test_push_pull_without_user_state() -> None:
    pp = PushPull(join=False, states=(), user_state=b"")
    assert codec.decode_stream(codec.encode_stream(pp)) == pp


def test_unknown_push_pull_state_number_is_kept() -> None:
    body = pack({"Name": "x", "State": 9})
    wire = b"\x06" + pack({"Join": False, "Nodes": 1, "UserStateLen": 0}) + body
    msg = codec.decode_stream(wire)
    assert isinstance(msg, PushPull)
    assert msg.states[0].state == 9


# --------------------------------------------------------------------------------------------
# Go's decoding rules (memberlist-wire.md §1)


def test_ipv4_mapped_16_byte_address_reads_as_ipv4() -> None:
    mapped = b"\x00" * 10 + b"\xff\xff" + bytes([10, 1, 2, 3])
    body = {"Addr": mapped, "Incarnation": 1, "Meta": b"", "Node": "n", "Port": 1, "Vsn": b""}
    msg = codec.decode_message(b"\x04" + pack(body))
    assert isinstance(msg, Alive)
    assert msg.addr == "10.1.2.3"
    assert codec.ip_to_bytes("10.1.2.3") == bytes([10, 1, 2, 3])
    assert codec.ip_to_bytes("::1") == b"\x00" * 15 + b"\x01"
    assert codec.ip_to_bytes("") is None


def test_address_of_odd_length_is_refused() -> None:
    body = pack({"Node": "n", "SeqNo": 1, "SourceAddr": b"\x01\x02\x03"})
    assert reason_of(codec.decode_message, b"\x00" + body) == "bad_field"


def test_encoder_refuses_bad_values() -> None:
    with pytest.raises(EncodeError):
        codec.encode_message(Ping(seq_no=2**32, node="n"))
    with pytest.raises(EncodeError):
        codec.encode_message(Ping(seq_no=-1, node="n"))
    with pytest.raises(EncodeError):
        codec.encode_message(Alive(1, "n", "not-an-ip", 1))
    with pytest.raises(EncodeError):
        codec.encode_message(Alive(1, "n", "1.2.3.4", 70000))
    with pytest.raises(EncodeError):
        codec.encode_message(Alive(1, "n", "1.2.3.4", 1, vsn=(1, 256)))


def test_any_integer_width_is_accepted() -> None:
    # SeqNo 5 written as uint64, Incarnation as int8: Go takes any width when the value fits.
    body = b"\x83\xa4From\xa1a\xabIncarnation\xd0\x05\xa4Node\xa1b"
    assert codec.decode_message(b"\x03" + body) == Suspect(5, "b", "a")
    ping = b"\x00\x82\xa4Node\xa0\xa5SeqNo\xcf" + (7).to_bytes(8, "big")
    assert codec.decode_message(ping) == Ping(seq_no=7, node="")


@pytest.mark.parametrize(
    "seq",
    [2**32, -1, True, 1.5, "1", b"1", [1]],
    ids=["overflow", "negative", "bool", "float", "str", "bytes", "list"],
)
def test_wrong_integer_is_bad_field(seq: Any) -> None:
    body = msgpack.packb({"SeqNo": seq}, use_bin_type=True)
    assert reason_of(codec.decode_message, b"\x0b" + body) == "bad_field"


def test_str8_accepted_for_string_and_bytes_fields() -> None:
    name = "n" * 40  # 32..255 bytes: Python's use_bin_type=True writes str8 (0xd9)
    body = msgpack.packb(
        {
            "Addr": b"\x7f\x00\x00\x01",
            "Incarnation": 2,
            "Meta": b"\xff\x80",
            "Node": name,
            "Port": 5,
            "Vsn": b"\x01\x05\x02\x02\x05\x04",
        },
        use_bin_type=True,
    )
    assert b"\xd9\x28" in body and b"\xc4\x04" in body  # str8 name, bin8 address
    msg = codec.decode_message(b"\x04" + body)
    assert msg == Alive(2, name, "127.0.0.1", 5, b"\xff\x80", (1, 5, 2, 2, 5, 4))


def test_bin_for_a_string_field_is_bad_field() -> None:
    body = msgpack.packb({"From": b"a", "Incarnation": 1, "Node": "b"}, use_bin_type=True)
    assert reason_of(codec.decode_message, b"\x03" + body) == "bad_field"


def test_bin_map_key_is_bad_field() -> None:
    body = msgpack.packb({b"SeqNo": 1}, use_bin_type=True)
    assert reason_of(codec.decode_message, b"\x0b" + body) == "bad_field"


def test_non_utf8_string_is_bad_field() -> None:
    body = b"\x81\xa4Node\xa2\xff\xfe"
    assert reason_of(codec.decode_message, b"\x00" + body) == "bad_field"


def test_non_utf8_bytes_field_is_fine() -> None:
    body = b"\x82\xa7Payload\xa2\xff\xfe\xa5SeqNo\x01"
    assert codec.decode_message(b"\x02" + body) == AckResp(1, b"\xff\xfe")


def test_unknown_keys_skipped_missing_keys_zero() -> None:
    body = pack({"Extra": [1, 2, {"x": None}], "SeqNo": 4})
    assert codec.decode_message(b"\x02" + body) == AckResp(4, None)
    assert codec.decode_message(b"\x00" + pack({})) == Ping(seq_no=0, node="")


def test_nil_body_is_a_zero_struct_and_array_body_is_refused() -> None:
    assert codec.decode_message(b"\x0b\xc0") == NackResp(0)
    assert reason_of(codec.decode_message, b"\x0b\x91\x01") == "bad_field"


def test_vsn_as_array_of_ints() -> None:
    body = pack({"Node": "n", "Vsn": [1, 5, 2, 2, 5, 5]})
    msg = codec.decode_message(b"\x04" + body)
    assert isinstance(msg, Alive)
    assert msg.vsn == (1, 5, 2, 2, 5, 5)
    assert reason_of(codec.decode_message, b"\x04" + pack({"Vsn": [1, 256]})) == "bad_field"


def test_trailing_bytes_after_a_body_are_ignored() -> None:
    raw = codec.encode_message(NackResp(3)) + b"\xc1junk"
    assert codec.decode_message(raw) == NackResp(3)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (b"\x00", "truncated"),
        (b"\x00\x85", "truncated"),
        (b"\x00\xc1", "bad_msgpack"),
        (b"\x06\x80", "bad_type"),
        (b"\x07\x00", "bad_type"),
        (b"\x0e\x80", "bad_type"),
        (b"\xff", "bad_type"),
    ],
)
def test_decode_message_hostile(raw: bytes, reason: str) -> None:
    assert reason_of(codec.decode_message, raw) == reason


# --------------------------------------------------------------------------------------------
# UDP packets: compound, CRC, compress, encryption


def test_single_message_packet_is_bare_and_several_make_a_compound() -> None:
    one = codec.encode_packet([NackResp(1)])
    assert one == codec.encode_message(NackResp(1))
    two = codec.encode_packet([NackResp(1), Suspect(1, "a", "b")])
    assert two[0] == 7 and two[1] == 2
    assert codec.decode_packet(two).messages == (NackResp(1), Suspect(1, "a", "b"))


def test_compression_used_only_when_shorter() -> None:
    small = codec.encode_packet([NackResp(1)], compress=True)
    assert small[0] == 11
    many = [Alive(i, f"node-{i}", "127.0.0.1", 7946, b"\xff\x80") for i in range(10)]
    big = codec.encode_packet(many, compress=True)
    assert big[0] == 9
    decoded = codec.decode_packet(big)
    assert decoded.compressed and decoded.messages == tuple(many)


def test_crc_then_encryption_layers() -> None:
    ring = Keyring([KEY])
    wire = codec.encode_packet([Ping(1, "n"), Suspect(1, "n", "m")], crc=True, keyring=ring)
    assert wire[0] == 1  # encryption version byte comes first
    decoded = codec.decode_packet(wire, ring)
    assert decoded.encrypted and decoded.crc
    assert decoded.messages == (Ping(1, "n"), Suspect(1, "n", "m"))


def test_crc_mismatch() -> None:
    wire = bytearray(codec.encode_packet([NackResp(1)], crc=True))
    wire[-1] ^= 1
    assert reason_of(codec.decode_packet, bytes(wire)) == "crc_mismatch"
    # A 0x0c packet shorter than 5 bytes is not a CRC wrapper: the type is unsupported.
    assert reason_of(codec.decode_packet, b"\x0c\x00\x00") == "bad_type"


def test_crc_only_at_the_top() -> None:
    inner = codec.add_crc(codec.encode_message(NackResp(1)))
    decoded = codec.decode_packet(codec.make_compound([inner, codec.encode_message(NackResp(2))]))
    assert decoded.messages == (NackResp(2),)
    assert [e.reason for e in decoded.errors] == ["bad_type"]


def test_compound_truncated_part_keeps_the_parts_that_fit() -> None:
    a, b, c = (codec.encode_message(NackResp(i)) for i in (1, 2, 3))
    full = codec.make_compound([a, b, c])
    cut = full[: -len(c) + 1]
    decoded = codec.decode_packet(cut)
    assert decoded.messages == (NackResp(1), NackResp(2))
    assert [e.reason for e in decoded.errors] == ["truncated"]
    parts, truncated = codec.split_compound(cut)
    assert (len(parts), truncated) == (2, 1)


def test_compound_bad_part_does_not_spoil_the_others() -> None:
    good = codec.encode_message(NackResp(1))
    decoded = codec.decode_packet(codec.make_compound([b"\x00\xc1", good, b"", b"\xee"]))
    assert decoded.messages == (NackResp(1),)
    assert sorted(e.reason for e in decoded.errors) == ["bad_msgpack", "bad_type", "truncated"]


def test_compound_header_cut_short() -> None:
    assert reason_of(codec.decode_packet, b"\x07") == "truncated"
    assert reason_of(codec.decode_packet, b"\x07\x03\x00\x01\x00") == "truncated"


def test_compound_claiming_255_parts_of_garbage() -> None:
    garbage = bytes([7, 255]) + bytes(range(256)) * 2 + b"\xc1" * 300
    try:
        decoded = codec.decode_packet(garbage)
    except MalformedPacket:
        return
    assert all(isinstance(e, MalformedPacket) for e in decoded.errors)


def test_make_compound_limits() -> None:
    with pytest.raises(EncodeError):
        codec.make_compound([b"\x08"] * 256)
    with pytest.raises(EncodeError):
        codec.make_compound([b"\x08" * 70000])


def test_compound_part_limit_from_config() -> None:
    wire = codec.make_compound([codec.encode_message(NackResp(i)) for i in range(11)])
    limits = CodecLimits(max_compound_parts=10)
    assert reason_of(codec.decode_packet, wire, limits=limits) == "too_many_parts"
    assert len(codec.decode_packet(wire).messages) == 11


def test_nested_compounds_stop_at_the_depth_cap() -> None:
    wire = codec.encode_message(NackResp(1))
    for _ in range(3):
        wire = codec.make_compound([wire])
    assert codec.decode_packet(wire).messages == (NackResp(1),)
    for _ in range(5):
        wire = codec.make_compound([wire])
    assert reason_of(codec.decode_packet, wire) == "too_deep"


def test_message_count_cap_over_nested_compounds() -> None:
    inner = codec.make_compound([b"\x08"] * 255)
    outer = codec.make_compound([inner] * 255)  # 65025 user messages
    wire = codec.compress_message(outer)
    assert len(wire) < 65536
    assert reason_of(codec.decode_packet, wire) == "too_many_parts"


def test_decompression_bomb_stops_at_the_cap() -> None:
    bomb = codec.compress_message(b"\x08" + bytes(5 << 20))
    assert len(bomb) < 65536
    assert reason_of(codec.decode_packet, bomb) == "decompress_limit"
    limits = CodecLimits(max_packet_decompressed=8 << 20)
    msgs = codec.decode_packet(bomb, limits=limits).messages
    assert msgs == (UserMsg(bytes(5 << 20)),)


def test_nested_compress_bomb() -> None:
    wire = b"\x08" + bytes(200_000)
    for _ in range(6):
        wire = codec.compress_message(wire)
    assert reason_of(codec.decode_packet, wire) == "too_deep"


def test_compress_with_unknown_algorithm_or_bad_lzw() -> None:
    wire = codec.encode_message(Compress(algo=1, buf=lzw.compress(b"\x0b\x80")))
    assert reason_of(codec.decode_packet, wire) == "bad_compression"
    wire = codec.encode_message(Compress(algo=0, buf=b"\xff\xff\xff"))
    assert reason_of(codec.decode_packet, wire) == "bad_compression"
    wire = codec.encode_message(Compress(algo=0, buf=lzw.compress(b"")))
    assert reason_of(codec.decode_packet, wire) == "truncated"


@pytest.mark.parametrize("type_byte", [6, 10, 13, 14, 100, 244, 255])
def test_types_not_carried_on_udp(type_byte: int) -> None:
    assert reason_of(codec.decode_packet, bytes([type_byte]) + b"\x80") == "bad_type"


def test_oversized_and_empty_packets() -> None:
    assert reason_of(codec.decode_packet, b"\x08" * 65537) == "too_large"
    assert len(codec.decode_packet(b"\x08" * 65536).messages) == 1
    assert reason_of(codec.decode_packet, b"") == "truncated"


def test_encrypted_cluster_refuses_plaintext_unless_told_not_to() -> None:
    ring = Keyring([KEY])
    plain = codec.encode_message(NackResp(1))
    assert reason_of(codec.decode_packet, plain, ring) == "decrypt_failed"
    decoded = codec.decode_packet(plain, ring, verify_incoming=False)
    assert decoded.messages == (NackResp(1),) and not decoded.encrypted


def test_encryption_version_0_is_accepted() -> None:
    ring = Keyring([KEY])
    wire = encrypt_payload(KEY, codec.encode_message(NackResp(5)), version=0)
    assert wire[0] == 0
    assert codec.decode_packet(wire, ring).messages == (NackResp(5),)


def test_encrypted_packet_tampering_and_short_input() -> None:
    ring = Keyring([KEY])
    wire = bytearray(codec.encode_packet([NackResp(1)], keyring=ring))
    wire[20] ^= 0x40
    assert reason_of(codec.decode_packet, bytes(wire), ring) == "decrypt_failed"
    assert reason_of(codec.decode_packet, b"\x01" + bytes(27), ring) == "decrypt_failed"
    assert reason_of(codec.decode_packet, b"\x02" + bytes(40), ring) == "decrypt_failed"


@pytest.mark.parametrize("vec", [v for v in VECTORS if v.transport == "udp"], ids=lambda v: v.name)
def test_udp_vector_truncated_at_every_length(vec: Any) -> None:
    ring = Keyring([vec.key]) if vec.key else None
    for n in range(len(vec.data)):
        try:
            decoded = codec.decode_packet(vec.data[:n], ring)
        except MalformedPacket as exc:
            assert exc.reason
            continue
        # Only a compound cut between parts (or a message cut in trailing bytes) can survive.
        assert decoded.errors or decoded.messages


def test_wrong_type_byte_on_every_udp_vector() -> None:
    for vec in VECTORS:
        if vec.transport != "udp" or vec.key:
            continue
        for t in (6, 10, 13, 99):
            try:
                codec.decode_packet(bytes([t]) + vec.data[1:])
            except MalformedPacket as exc:
                assert exc.reason in {"bad_type", "bad_field", "bad_msgpack", "truncated"}


# --------------------------------------------------------------------------------------------
# TCP streams


STREAM_MESSAGES: list[Any] = [
    Ping(seq_no=67, node="n3", source_addr="127.0.0.1", source_port=17946, source_node="n1"),
    AckResp(seq_no=67),
    ErrResp(error="Remote state is encrypted and encryption is not configured"),
    UserMsg(payload=b"\x80rumor-app-bytes"),
    PushPull(join=True, states=(PushNodeState("a", "127.0.0.1", 1, b"\xff\x80", 1, 0),)),
]


@pytest.mark.parametrize("msg", STREAM_MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("mode", ["plain", "compressed", "encrypted", "both"])
def test_stream_round_trip_in_chunks(msg: Any, mode: str) -> None:
    ring = Keyring([KEY]) if mode in ("encrypted", "both") else None
    wire = codec.encode_stream(msg, compress=mode in ("compressed", "both"), keyring=ring)
    for chunk in (1, 3, 7, len(wire)):
        reader = StreamReader(ring)
        result = None
        for i in range(0, len(wire), chunk):
            result = reader.feed(wire[i : i + chunk])
            if i + chunk < len(wire):
                assert result is None
        assert result == msg
        assert reader.done and reader.feed_eof() == msg
        assert reader.encrypted == (ring is not None)
        assert reader.compressed == (mode in ("compressed", "both"))


def test_stream_ignores_bytes_after_the_message() -> None:
    wire = codec.encode_stream(AckResp(1)) + b"\xc1\xc1garbage"
    assert codec.decode_stream(wire) == AckResp(1)


def test_tcp_user_message_format() -> None:
    wire = codec.encode_stream(UserMsg(b"abc"))
    assert wire == b"\x08\x81\xaaUserMsgLen\x03abc"


def test_stream_encryption_mismatches() -> None:
    ring = Keyring([KEY])
    plain = codec.encode_stream(AckResp(1))
    assert reason_of(codec.decode_stream, plain, ring) == "not_encrypted"
    assert codec.decode_stream(plain, ring, verify_incoming=False) == AckResp(1)
    sealed = codec.encode_stream(AckResp(1), keyring=ring)
    assert reason_of(codec.decode_stream, sealed) == "not_encrypted"
    other = Keyring([bytes(32)])
    assert reason_of(codec.decode_stream, sealed, other) == "decrypt_failed"
    # A frame whose declared length was changed fails authentication (the header is the AAD).
    longer = struct.pack(">BI", 10, len(sealed) - 5 + 1) + sealed[5:] + b"\x00"
    assert reason_of(codec.decode_stream, longer, ring) == "decrypt_failed"


def test_stream_frame_size_cap() -> None:
    ring = Keyring([KEY])
    header = struct.pack(">BI", 10, (20 << 20) + 1)
    reader = StreamReader(ring)
    assert reason_of(reader.feed, header) == "too_large"
    small = CodecLimits(max_stream_size=1000)
    wire = codec.encode_stream(UserMsg(b"x" * 2000), keyring=ring)
    assert reason_of(codec.decode_stream, wire, ring, limits=small) == "too_large"


def test_stream_plain_size_cap() -> None:
    small = CodecLimits(max_stream_size=1000)
    wire = codec.encode_stream(UserMsg(b"x" * 2000))
    reader = StreamReader(limits=small)
    with pytest.raises(MalformedPacket) as info:
        for i in range(0, len(wire), 100):
            reader.feed(wire[i : i + 100])
    assert info.value.reason in {"too_large", "bad_field"}


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"Join": True, "Nodes": -1, "UserStateLen": 0}, "bad_field"),
        ({"Join": True, "Nodes": 10**6, "UserStateLen": 0}, "bad_field"),
        ({"Join": True, "Nodes": 0, "UserStateLen": -5}, "bad_field"),
        ({"Join": True, "Nodes": 0, "UserStateLen": 1 << 40}, "bad_field"),
        ({"Join": 1, "Nodes": 0, "UserStateLen": 0}, "bad_field"),
    ],
)
def test_push_pull_header_caps(header: dict[str, Any], reason: str) -> None:
    assert reason_of(codec.decode_stream, b"\x06" + pack(header)) == reason


def test_push_pull_cut_short_is_truncated_at_every_length() -> None:
    vec = by_name("20_")
    for n in range(len(vec.data)):
        reader = StreamReader()
        try:
            assert reader.feed(vec.data[:n]) is None
        except MalformedPacket:
            raise AssertionError(f"valid prefix of {n} bytes refused") from None
        assert reason_of(reader.feed_eof) == "truncated"


def test_stream_compress_inside_compress_refused() -> None:
    inner = codec.compress_message(codec.encode_message(AckResp(1)))
    assert reason_of(codec.decode_stream, codec.compress_message(inner)) == "bad_type"


def test_stream_decompression_bomb() -> None:
    bomb = codec.compress_message(b"\x08" + pack({"UserMsgLen": 1}) + bytes(3 << 20))
    limits = CodecLimits(max_stream_decompressed=1 << 20)
    assert reason_of(codec.decode_stream, bomb, limits=limits) == "decompress_limit"


@pytest.mark.parametrize("type_byte", [1, 3, 4, 5, 7, 11, 12, 99, 255])
def test_stream_types_not_carried_on_tcp(type_byte: int) -> None:
    assert reason_of(StreamReader().feed, bytes([type_byte]) + b"\x80") == "bad_type"


def test_stream_eof_before_anything() -> None:
    assert reason_of(StreamReader().feed_eof) == "truncated"


def test_stream_huge_array_claim_is_refused() -> None:
    # A push/pull state claiming 2**32-1 entries: msgpack's cap refuses it before allocating.
    wire = b"\x06" + pack({"Join": True, "Nodes": 1, "UserStateLen": 0}) + b"\xdd\xff\xff\xff\xff"
    assert reason_of(codec.decode_stream, wire) in {"bad_msgpack", "truncated"}


# --------------------------------------------------------------------------------------------
# Serf messages

SERF_MESSAGES: list[Any] = [
    LeaveIntent(ltime=3, node="n2", prune=True),
    JoinIntent(ltime=2**64 - 1, node="n"),
    UserEvent(ltime=1, name="deploy", payload=b"v1", cc=True),
    UserEvent(ltime=1, name="deploy", payload=None),
    Query(
        ltime=2,
        id=9,
        addr="127.0.0.1",
        port=7946,
        source_node="n1",
        name="q",
        payload=b"p",
        filters=(NodeFilter(("a", "b")), TagFilter("role", "^web$"), UnknownFilter(b"\x07xyz")),
        flags=3,
        relay_factor=2,
        timeout=3.2,
    ),
    QueryResponse(ltime=1, id=2, from_node="n", flags=1),
    ConflictResponse(
        Member(
            name="n",
            addr="::1",
            port=1,
            tags={"role": "x"},
            status=1,
            protocol_min=1,
            protocol_max=5,
            protocol_cur=2,
            delegate_min=2,
            delegate_max=5,
            delegate_cur=4,
        )
    ),
    KeyRequest(key=KEY),
    KeyRequest(key=None),
    KeyResponse(result=False, message="nope", keys=("a", "b"), primary_key="a"),
    Relay(
        dest_addr="127.0.0.1",
        dest_port=17946,
        dest_name="n1",
        inner=codec.encode_serf(QueryResponse(2, 3, "n2", 1)),
    ),
    AppMessage(payload=b"\x00\x01catalog"),
    SerfPushPull(
        ltime=3,
        status_ltimes={"a": 1, "b": 2},
        left_members=("b",),
        event_ltime=2,
        events=(None, UserEvents(1, (UserEventData("e", b"p"), UserEventData("f", None))), None),
        query_ltime=4,
        app_state=b"rumor-state",
    ),
]


@pytest.mark.parametrize("msg", SERF_MESSAGES, ids=lambda m: type(m).__name__)
def test_serf_round_trip(msg: Any) -> None:
    raw = codec.encode_serf(msg)
    assert codec.decode_serf(raw) == msg
    assert codec.encode_serf_user_msg(msg) == b"\x08" + raw


def test_app_state_key_is_sorted_in_and_omitted_when_none() -> None:
    pp = SerfPushPull(ltime=1, status_ltimes={"n": 0}, app_state=b"x")
    keys = list(msgpack.unpackb(codec.encode_serf(pp)[1:], raw=False))
    assert keys == sorted(keys)
    assert APP_STATE_KEY in keys
    plain = codec.encode_serf(SerfPushPull(ltime=1, status_ltimes={"n": 0}))
    assert APP_STATE_KEY.encode() not in plain
    assert codec.decode_serf(plain) == SerfPushPull(ltime=1, status_ltimes={"n": 0})


def test_app_state_does_not_disturb_go_fields() -> None:
    """The Serf state with RumorApp still carries the Go fields exactly as without it."""
    base = SerfPushPull(ltime=5, status_ltimes={"a": 1}, event_ltime=2, query_ltime=3)
    with_app = SerfPushPull(
        ltime=5, status_ltimes={"a": 1}, event_ltime=2, query_ltime=3, app_state=b"\x00" * 300
    )
    a = msgpack.unpackb(codec.encode_serf(base)[1:], raw=True)
    b = msgpack.unpackb(codec.encode_serf(with_app)[1:], raw=True)
    assert b.pop(APP_STATE_KEY.encode()) == b"\x00" * 300
    assert a == b


def test_app_message_wire_form() -> None:
    assert codec.encode_serf(AppMessage(b"hi")) == b"\x80hi"
    assert codec.decode_serf(b"\x80") == AppMessage(b"")


def test_query_timeout_is_nanoseconds_on_the_wire() -> None:
    q = Query(1, 1, "127.0.0.1", 1, "n", "q", timeout=2.0)
    body = msgpack.unpackb(codec.encode_serf(q)[1:], raw=False)
    assert body["Timeout"] == 2_000_000_000
    assert body["Filters"] is None
    with pytest.raises(EncodeError):
        codec.encode_serf(Query(1, 1, "127.0.0.1", 1, "n", "q", timeout=float("inf")))


def test_unreadable_filters_are_kept_raw() -> None:
    raw_filters = [b"", b"\x00\xc1", b"\x01\x91\x01", b"\x05abc"]
    body = pack({"Filters": raw_filters, "Name": "q"})
    q = codec.decode_serf(b"\x04" + body)
    assert isinstance(q, Query)
    assert q.filters == tuple(UnknownFilter(r) for r in raw_filters)


def test_relay_with_empty_inner() -> None:
    msg = Relay("127.0.0.1", 1, "n", b"")
    assert codec.decode_serf(codec.encode_serf(msg)) == msg


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "truncated"),
        (b"\x01", "truncated"),
        (b"\x0a\x80", "bad_type"),
        (b"\x7f\x80", "bad_type"),
        (b"\x81", "bad_type"),
        (b"\x01\xc1", "bad_msgpack"),
        (b"\x01\x92\x01\x02", "bad_field"),
        (b"\x01" + pack({"LTime": -1, "Node": "n"}), "bad_field"),
        (b"\x02" + pack({"Events": {"a": 1}}), "bad_field"),
        (b"\x02" + pack({"Events": [5]}), "bad_field"),
        (b"\x02" + pack({"StatusLTimes": {"a": "b"}}), "bad_field"),
        (b"\x02" + pack({APP_STATE_KEY: 5}), "bad_field"),
        (b"\x04" + pack({"Filters": "x"}), "bad_field"),
        (b"\x04" + pack({"Timeout": 2**63}), "bad_field"),
        (b"\x06" + pack({"Tags": {"a": 1}}), "bad_field"),
        (b"\x09", "truncated"),
        (b"\x09" + pack({"DestAddr": 5}), "bad_field"),
        (b"\x03" + msgpack.packb({"Name": b"bin"}, use_bin_type=True), "bad_field"),
    ],
)
def test_decode_serf_hostile(raw: bytes, reason: str) -> None:
    assert reason_of(codec.decode_serf, raw) == reason


def test_iter_serf_messages() -> None:
    decoded = codec.decode_packet(by_name("09_").data)
    pairs = list(codec.iter_serf_messages(decoded.messages))
    assert [m for _, m in pairs] == [JoinIntent(1, "n2")]
    bad = list(codec.iter_serf_messages([UserMsg(b"\x7f")]))
    assert isinstance(bad[0][1], MalformedPacket)


# --------------------------------------------------------------------------------------------
# Tags and coordinates


def test_tags_round_trip_and_legacy_form() -> None:
    tags = {"role": "web", "dc": "east", "\u00fc": "\u00e9"}
    assert codec.decode_tags(codec.encode_tags(tags)) == tags
    assert codec.encode_tags({}) == b"\xff\x80"
    assert codec.decode_tags(b"") == {"role": ""}
    assert codec.decode_tags(b"web") == {"role": "web"}


def test_tags_hostile() -> None:
    assert reason_of(codec.decode_tags, b"\xff") == "truncated"
    assert reason_of(codec.decode_tags, b"\xff\xc1") == "bad_msgpack"
    assert reason_of(codec.decode_tags, b"\xff\x91\x01") == "bad_field"
    assert reason_of(codec.decode_tags, b"\xff\x81\xa1a\x01") == "bad_field"
    assert reason_of(codec.decode_tags, b"\xfe\xff") == "bad_field"  # legacy, not UTF-8
    with pytest.raises(EncodeError):
        codec.encode_tags({"a": 1})  # type: ignore[dict-item]


def test_coordinate_round_trip_and_hostile() -> None:
    c = Coordinate(vec=(0.5,) * 8, error=0.2, adjustment=-0.01, height=1e-4)
    assert codec.decode_coordinate(codec.encode_coordinate(c)) == c
    assert reason_of(codec.decode_coordinate, b"") == "truncated"
    assert reason_of(codec.decode_coordinate, b"\x02\x80") == "bad_type"
    assert reason_of(codec.decode_coordinate, b"\x01" + pack({"Vec": ["x"]})) == "bad_field"


def test_limits_validate() -> None:
    CodecLimits().validate()
    with pytest.raises(ValueError, match="max_compound_parts"):
        CodecLimits(max_compound_parts=300).validate()
    with pytest.raises(ValueError, match="max_packet_size"):
        CodecLimits(max_packet_size=0).validate()


def test_failed_stream_reader_stays_failed() -> None:
    reader = StreamReader()
    assert reason_of(reader.feed, b"\x00\xc1") == "bad_msgpack"
    assert reason_of(reader.feed, b"\x80") == "bad_msgpack"
    assert reason_of(reader.feed_eof) == "bad_msgpack"


# --- copies of recent broadcasts (the cache is the core's: test_recent.py) ----------------

def test_decode_packet_skips_copies_of_broadcasts_only() -> None:
    alive = Alive(3, "n1", "127.0.0.1", 7946, b"\xff\x80")
    r = RecentMessages(window=10.0)
    wire = codec.encode_packet([alive, Ping(1, "n"), UserMsg(b"\x05x"), Dead(2, "n2", "n3")])
    first = codec.decode_packet(wire, known=partial(r.known, now=0.0))
    assert first.messages == (alive, Ping(1, "n"), UserMsg(b"\x05x"), Dead(2, "n2", "n3"))
    assert first.duplicates == 0 and len(first.fresh) == 3
    # not remembered yet (its handling could still fail): a copy is read again
    assert codec.decode_packet(wire, known=partial(r.known, now=0.5)).duplicates == 0
    r.remember(first.fresh, 0.5)
    again = codec.decode_packet(wire, known=partial(r.known, now=1.0))
    assert again.messages == (Ping(1, "n"),)       # a ping is not a broadcast: always read
    assert again.duplicates == 3
    # a newer incarnation is different bytes, so it is read
    newer = codec.encode_packet([Alive(4, "n1", "127.0.0.1", 7946, b"\xff\x80")])
    assert codec.decode_packet(newer, known=partial(r.known, now=1.0)).messages[0].incarnation == 4
    # without a filter nothing is skipped
    assert codec.decode_packet(wire).duplicates == 0

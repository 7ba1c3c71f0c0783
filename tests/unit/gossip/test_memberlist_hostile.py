"""Hostile input never raises out of the memberlist core's receive paths."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import codec
from gossip.config import MemberlistConfig
from gossip.memberlist import Memberlist
from gossip.messages import Alive, Dead, Ping, PushNodeState, PushPull, Suspect
from gossip.security import Keyring

ADDR = ("127.0.0.1", 40000)


def make(**kw: object) -> Memberlist:
    cfg = MemberlistConfig.lan(name="me", bind_addr="127.0.0.1", bind_port=7946, **kw)
    return Memberlist(cfg, now=0.0, rng=random.Random(1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_packet(data: bytes) -> None:
    m = make()
    m.receive_packet(data, ADDR, 1.0)
    m.handle_stream(data, ADDR, 1.0)
    m.packets_to_send()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 13), st.binary(max_size=200))
def test_type_byte_plus_garbage(t: int, body: bytes) -> None:
    m = make()
    m.receive_packet(bytes([t]) + body, ADDR, 1.0)
    m.handle_stream(bytes([t]) + body, ADDR, 1.0)


def test_known_bad_inputs_counted() -> None:
    m = make()
    cases = [
        b"",
        b"\x07\xff",  # compound claiming 255 parts, no table
        b"\x07\x02\x00\x05\x00\x05abc",  # truncated parts
        b"\x0c\x00\x00\x00\x00\x00",  # bad CRC
        b"\x09\x81\xa4Algo\x05",  # unknown compression
        b"\x06\x80",  # push/pull on UDP
        b"\xf4\x03abc\x00",  # memberlist >= 0.3 label header
        b"\x04\x81\xa4Node\xc3",  # alive with a bool name
        b"\x00" + b"\x92" * 5000,  # deep msgpack nesting
    ]
    for data in cases:
        m.receive_packet(data, ADDR, 1.0)
    assert sum(m.counters.drops.values()) >= len(cases) - 1
    # a million-part claim is impossible on the wire (u8 count); a compound of 255 valid parts
    part = codec.encode_message(Ping(1, "other"))
    m.receive_packet(codec.make_compound([part] * 255), ADDR, 1.0)
    assert m.counters.drops["ping_wrong_node"] == 255


def test_bad_alive_vsn_and_conflict() -> None:
    m = make()
    m.receive_packet(codec.encode_message(Alive(1, "x", "127.0.0.2", 1, b"", (0, 0, 0, 0, 0, 0))),
                     ADDR, 1.0)
    m.receive_packet(codec.encode_message(Alive(1, "y", "127.0.0.2", 1, b"", (1, 5, 2))), ADDR, 1.0)
    assert m.counters.drops["bad_vsn"] == 2
    assert m.node("x") is None and m.node("y") is None
    m.receive_packet(codec.encode_message(Alive(1, "z", "127.0.0.2", 1, b"")), ADDR, 1.0)
    m.receive_packet(codec.encode_message(Alive(2, "z", "127.0.0.3", 1, b"")), ADDR, 1.0)
    assert m.counters.drops["conflicting_address"] == 1
    assert m.node("z").addr == "127.0.0.2"  # type: ignore[union-attr]


def test_refutes_suspect_and_dead_about_self() -> None:
    m = make()
    m.receive_packet(codec.encode_message(Suspect(5, "me", "x")), ADDR, 1.0)
    assert m.incarnation == 6
    m.receive_packet(codec.encode_message(Dead(9, "me", "x")), ADDR, 1.0)
    assert m.incarnation == 10
    assert m.local_node.status == 0
    assert m.health_score() == 2
    assert m.counters.refutes == 2


def test_push_pull_incompatible_refused_but_answered() -> None:
    m = make()
    bad = PushPull(join=True, states=(
        PushNodeState("x", "127.0.0.9", 1, b"", 1, 0, (3, 5, 3, 2, 5, 4)),))
    answer = m.handle_stream(codec.encode_stream(bad), ADDR, 1.0)
    assert answer
    assert isinstance(codec.decode_stream(answer), PushPull)
    assert m.node("x") is None
    assert m.counters.drops["push_pull_incompatible"] == 1


def test_encrypted_refuses_plaintext() -> None:
    key = bytes(range(32))
    m = make(secret_keys=(key,))
    m.receive_packet(codec.encode_message(Ping(1, "me")), ADDR, 1.0)
    assert m.packets_to_send() == []
    assert m.counters.drops.get("decrypt_failed", 0) + m.counters.drops.get(
        "not_encrypted", 0) == 1
    # an encrypted ping is answered with an encrypted ack
    ring = Keyring([key])
    m.receive_packet(codec.encode_packet([Ping(2, "me")], keyring=ring), ADDR, 1.0)
    (out,) = m.packets_to_send()
    dec = codec.decode_packet(out[0], ring)
    assert dec.encrypted and dec.messages[0].seq_no == 2  # type: ignore[union-attr]
    # plaintext stream gets an (encrypted) error answer
    ans = m.handle_stream(codec.encode_stream(Ping(3, "me")), ADDR, 1.0)
    assert ans is not None and ans[0] == 0x0A

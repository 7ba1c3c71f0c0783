"""The push/pull encode and decode caches (issue 13: a 5,000-member push/pull in bounded time)
give the same bytes and messages as encoding and decoding afresh."""

from __future__ import annotations

import pytest

from gossip import codec
from gossip.codec.messages import decode_node_state_cached
from gossip.errors import MalformedPacket
from gossip.messages import Alive, PushPull
from gossip.sim import Simulator


def _states(data: bytes) -> dict[str, tuple[int, int, bytes]]:
    msg = codec.decode_stream(data, None)
    assert isinstance(msg, PushPull)
    return {s.name: (s.incarnation, int(s.state), s.meta) for s in msg.states}


def test_a_changed_member_is_re_encoded_and_a_gone_one_dropped() -> None:
    sim = Simulator(seed=2)
    for n in ("a", "b", "c", "d"):
        sim.add_node(n)
    sim.seed_membership()
    ml = sim.nodes["a"].memberlist
    first = ml._push_pull_message(False)
    before = _states(first)
    assert set(before) == {"a", "b", "c", "d"}
    assert ml._push_pull_message(False) == first  # nothing changed: the same bytes

    b = ml.node("b")
    assert b is not None
    ml._alive_node(Alive(incarnation=b.incarnation + 5, node="b", addr=b.addr, port=b.port,
                         meta=b"\x01new", vsn=b.vsn), sim.now)
    after = _states(ml._push_pull_message(False))
    assert after["b"] == (b.incarnation + 5, 0, b"\x01new")
    assert after["c"] == before["c"] and after["d"] == before["d"]
    # the bytes equal a fresh encoding of the same members
    fresh = PushPull(join=False, states=tuple(
        codec.decode_stream(ml._push_pull_message(False), None).states),  # type: ignore[union-attr]
        user_state=b"")
    assert codec.encode_message(fresh) == ml._push_pull_message(False)


def test_the_decode_cache_returns_the_same_states_and_never_caches_bad_ones() -> None:
    good = {"Name": "n1", "Addr": bytes([10, 0, 0, 1]), "Port": 7946, "Meta": b"",
            "Incarnation": 3, "State": 0, "Vsn": bytes([1, 5, 2, 2, 5, 4])}
    a = decode_node_state_cached(dict(good))
    b = decode_node_state_cached(dict(good))
    assert a == b and a.name == "n1" and a.incarnation == 3 and a.addr == "10.0.0.1"
    changed = decode_node_state_cached({**good, "Incarnation": 4})
    assert changed.incarnation == 4
    # an unhashable field is decoded as without the cache (here a Vsn sent as an array)
    assert decode_node_state_cached({**good, "Vsn": [1, 2]}).vsn == (1, 2)
    for bad in ({**good, "Port": 70000}, {**good, "Name": 5}, [1, 2], {**good, "Addr": b"\x01"},
                {**good, "Tags": {1: 2}, "Port": -1}):
        for _ in range(2):  # and not accepted the second time either
            with pytest.raises(MalformedPacket):
                decode_node_state_cached(bad)

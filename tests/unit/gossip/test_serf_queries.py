"""Queries: dedupe, filters, acks, responses, relay, internal queries, key management."""

from __future__ import annotations

import random

import pytest

from gossip import codec
from gossip.events import QueryReceived
from gossip.keymanager import handle_key_query, install_key_handlers, request_payload, summarize
from gossip.security import Keyring, encode_key, generate_key
from gossip.serf import QueryParams, Serf, SerfError, encode_tags
from gossip.serf_config import SerfConfig
from gossip.serf_messages import (
    ConflictResponse,
    KeyResponse,
    NodeFilter,
    Query,
    QueryResponse,
    Relay,
    TagFilter,
)

VSN = (1, 5, 2, 2, 5, 5)


def make(name: str, tags: dict[str, str] | None = None, port: int = 7946) -> Serf:
    cfg = SerfConfig.local(name, tags=tags or {})
    s = Serf(cfg, rng=random.Random(7), gossip_interval=0.1, retransmit_mult=2, now=0.0)
    s.set_local_address("127.0.0.1", port)
    s.node_joined(name, "127.0.0.1", port, encode_tags(cfg.effective_tags()), VSN, 0.0)
    return s


def q(**kw: object) -> Query:
    base: dict[str, object] = {"ltime": 5, "id": 42, "addr": "127.0.0.9", "port": 9000,
                               "source_node": "asker", "name": "hello", "payload": b"hi",
                               "flags": 1, "timeout": 2.0}
    base.update(kw)
    return Query(**base)  # type: ignore[arg-type]


def received(s: Serf) -> list[QueryReceived]:
    out = []
    while (e := s.next_event()) is not None:
        if isinstance(e, QueryReceived):
            out.append(e)
    return out


def test_query_dedupe_and_ack() -> None:
    s = make("me")
    assert s.handle_query(q(), 0.0)
    assert not s.handle_query(q(), 0.0)  # same (ltime, id)
    assert s.handle_query(q(id=43), 0.0)  # same ltime, other id
    pkts = s.packets_to_send()
    acks = [codec.decode_serf(p) for p, dest in pkts]
    assert all(dest == ("127.0.0.9", 9000) for _, dest in pkts)
    assert [(a.id, a.flags, a.from_node) for a in acks if isinstance(a, QueryResponse)] == [
        (42, 1, "me"), (43, 1, "me")]
    assert [e.id for e in received(s)] == [42, 43]
    assert s.query_clock.time() == 6


def test_query_no_broadcast_flag() -> None:
    s = make("me")
    assert not s.handle_query(q(flags=2), 0.0)


@pytest.mark.parametrize(
    "filters, answered",
    [
        ((), True),
        ((NodeFilter(nodes=("me", "x")),), True),
        ((NodeFilter(nodes=("x",)),), False),
        ((TagFilter(tag="role", expr="^web$"),), True),
        ((TagFilter(tag="role", expr="db"),), False),
        ((TagFilter(tag="missing", expr="."),), False),
        ((TagFilter(tag="role", expr="(["),), False),
        ((NodeFilter(nodes=("me",)), TagFilter(tag="dc", expr="east")), True),
        ((NodeFilter(nodes=("me",)), TagFilter(tag="dc", expr="west")), False),
    ],
)
def test_query_filters(filters: tuple[object, ...], answered: bool) -> None:
    s = make("me", {"role": "web", "dc": "east"})
    rebroadcast = s.handle_query(q(filters=filters), 0.0)
    assert rebroadcast  # re-gossiped whether or not it matched
    assert bool(received(s)) == answered
    assert bool(s.packets_to_send()) == answered


def test_query_roundtrip_between_two_cores() -> None:
    asker, peer = make("asker", port=1000), make("peer", port=2000)
    pq = asker.query("hello", b"?", QueryParams(request_ack=True, timeout=5.0), 0.0)
    # the asker answers itself locally (ack + it sees the QueryReceived)
    assert pq.acks == ["asker"]
    assert [e.source_node for e in received(asker)] == ["asker"]
    for raw in asker.get_broadcasts(2, 1400):
        peer.receive(raw, 0.1)
    (ev,) = received(peer)
    assert ev.source_node == "asker" and ev.payload == b"?"
    peer.respond(ev, b"answer", 0.2)
    for raw, dest in peer.packets_to_send():
        assert dest == ("127.0.0.1", 1000)
        asker.receive(raw, 0.3)
    assert pq.acks == ["asker", "peer"] and pq.responses == {"peer": b"answer"}
    # duplicates and late answers are ignored
    peer.respond(ev, b"again", 0.4)
    for raw, _ in peer.packets_to_send():
        asker.receive(raw, 0.5)
    assert pq.responses == {"peer": b"answer"}
    asker.handle_timer(6.0)
    assert pq.closed
    with pytest.raises(SerfError):
        peer.respond(ev, b"late", 10.0)


def test_query_default_timeout_and_size_limit() -> None:
    s = make("me")
    assert s.default_query_timeout() == pytest.approx(0.1 * 16 * 1)
    with pytest.raises(SerfError):
        s.query("big", b"x" * 2000, QueryParams(), 0.0)


def test_relay_sends_through_peers_and_forwards() -> None:
    s = make("me")
    for i in range(3):
        s.node_joined(f"p{i}", "127.0.0.1", 3000 + i, encode_tags({}), VSN, 0.0)
    s.node_joined("old", "127.0.0.1", 4000, encode_tags({}), (1, 4, 2, 2, 5, 4), 0.0)
    s.handle_query(q(relay_factor=2), 0.0)
    pkts = s.packets_to_send()
    relays = [(codec.decode_serf(p), d) for p, d in pkts if p[0] == 9]
    assert len(relays) == 2  # ack relayed through two PMax>=5 peers
    assert all(d[1] in (3000, 3001, 3002) for _, d in relays)
    relay = relays[0][0]
    assert isinstance(relay, Relay) and (relay.dest_addr, relay.dest_port) == ("127.0.0.9", 9000)
    # a relay received is forwarded as a user message to its destination
    fwd = make("fwd")
    fwd.receive(pkts[1][0] if pkts[1][0][0] == 9 else relays[0][0] and codec.encode_serf(relay), 0.0)
    out = fwd.packets_to_send()
    assert out and out[0][1] == ("127.0.0.9", 9000)
    assert isinstance(codec.decode_serf(out[0][0]), QueryResponse)


def test_internal_ping_only_acks() -> None:
    s = make("me")
    s.handle_query(q(name="_serf_ping"), 0.0)
    pkts = [codec.decode_serf(p) for p, _ in s.packets_to_send()]
    assert [p.flags for p in pkts if isinstance(p, QueryResponse)] == [1]
    assert received(s) == []  # internal queries are not reported


def test_internal_conflict_answer() -> None:
    s = make("me")
    s.node_joined("dup", "10.1.1.1", 7000, encode_tags({"a": "b"}), VSN, 0.0)
    s.handle_query(q(name="_serf_conflict", payload=b"dup", flags=0), 0.0)
    ((raw, _),) = s.packets_to_send()
    resp = codec.decode_serf(raw)
    assert isinstance(resp, QueryResponse)
    cr = codec.decode_serf(resp.payload or b"")
    assert isinstance(cr, ConflictResponse) and cr.member.addr == "10.1.1.1"
    s.handle_query(q(id=99, name="_serf_conflict", payload=b"me", flags=0), 0.0)
    assert s.packets_to_send() == []


def test_key_handlers_on_a_keyring() -> None:
    k1, k2 = generate_key(), generate_key()
    ring = Keyring([k1])
    changed: list[int] = []

    def answer(op: str, key: bytes | None) -> KeyResponse:
        payload = request_payload(encode_key(key) if key else None)
        r = codec.decode_serf(handle_key_query(op, payload, ring, lambda kr: changed.append(len(kr))))
        assert isinstance(r, KeyResponse)
        return r

    assert answer("install-key", k2).result and k2 in ring
    r = answer("list-keys", None)
    assert r.result and set(r.keys) == {encode_key(k1), encode_key(k2)} and r.primary_key == encode_key(k1)
    assert not answer("use-key", generate_key()).result
    assert answer("use-key", k2).result and ring.primary == k2
    bad = answer("remove-key", k2)
    assert not bad.result and "primary" in bad.message
    assert answer("remove-key", k1).result and ring.keys == (k2,)
    assert changed == [2, 2, 1]
    none = codec.decode_serf(handle_key_query("list-keys", b"", None))
    assert isinstance(none, KeyResponse) and not none.result


def test_key_query_through_serf_and_summary() -> None:
    k1, k2 = generate_key(), generate_key()
    rings = {"a": Keyring([k1]), "b": Keyring([k1])}
    a, b = make("a", port=1000), make("b", port=2000)
    for s in (a, b):
        install_key_handlers(s, lambda n=s.config.node_name: rings[n])
    pq = a.query("_serf_install-key", request_payload(encode_key(k2)), QueryParams(timeout=5.0), 0.0)
    for raw in a.get_broadcasts(2, 1400):
        b.receive(raw, 0.1)
    for raw, _ in b.packets_to_send():
        a.receive(raw, 0.2)
    assert k2 in rings["a"] and k2 in rings["b"]
    res = summarize("install-key", pq.responses, 2)
    assert res.ok and res.num_resp == 2
    # a third node that never answered makes the operation fail, as in Serf
    res3 = summarize("install-key", pq.responses, 3)
    assert not res3.ok and res3.num_err == 1 and res3.error_text() == "1/3 nodes reported failure"
    lst = a.query("_serf_list-keys", b"", QueryParams(timeout=5.0), 1.0)
    for raw in a.get_broadcasts(2, 1400):
        b.receive(raw, 1.1)
    for raw, _ in b.packets_to_send():
        a.receive(raw, 1.2)
    res = summarize("list-keys", lst.responses, 2)
    assert res.keys == {encode_key(k1): 2, encode_key(k2): 2}
    assert res.primary_keys == {encode_key(k1): 2}


def test_conflict_vote() -> None:
    from gossip.serf import conflict_vote
    from gossip.serf_messages import Member as WireMember

    def answer(addr: str, port: int) -> bytes:
        return codec.encode_serf(ConflictResponse(member=WireMember(name="dup", addr=addr, port=port)))

    votes = {"a": answer("10.0.0.1", 7946), "b": answer("10.0.0.1", 7946),
             "c": answer("10.0.0.2", 7946), "d": b"\x06junk", "e": codec.encode_serf(
                 QueryResponse(ltime=1, id=1, from_node="e"))}
    assert conflict_vote(votes, "10.0.0.1", 7946) == (2, 3)
    assert conflict_vote(votes, "10.0.0.2", 7946) == (1, 3)

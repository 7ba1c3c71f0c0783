"""Chasing host-name CNAME targets: the resolver's side (sans-I/O, manual clock) and the cache.

The server's side (asking a real recursor over UDP and TCP) is in
tests/integration/test_hostnames.py.
"""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from dnsserver import DNSConfig, Forward, MemoryView, Resolver
from dnsserver.chase import ChaseCache, chain, parse_answer, query_packet

from .conftest import ask

API = (b"api", b"example", b"com")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def upstream(name: str, rdtype: str, records: list[tuple[str, int, str, str]],
             rcode: int = 0, soa_min: int | None = None) -> bytes:
    """A recursor's response to (name, rdtype) with ``records`` (owner, ttl, type, data)."""
    q = dns.message.make_query(name, rdtype)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for owner, ttl, t, data in records:
        r.answer.append(dns.rrset.from_text(owner, ttl, "IN", t, data))
    if soa_min is not None:
        r.authority.append(dns.rrset.from_text("example.com.", 300, "IN", "SOA",
                                               f"ns.example.com. h.example.com. 1 2 3 4 {soa_min}"))
    return r.to_wire()


def setup(ttl: float = 0.0) -> tuple[MemoryView, Resolver, Clock]:
    v = MemoryView()
    v.add_node("n1", "10.0.0.1")
    v.add_node("n2", "10.0.0.2")
    v.register("n1", "ext", port=443, address="api.example.com")
    clock = Clock()
    cfg = DNSConfig(recursors=("127.0.0.1:5353",), service_ttl={"*": ttl})
    return v, Resolver(cfg, v, clock=clock), clock


def query(res: Resolver, name: str, rdtype: str, tcp: bool = False) -> bytes | Forward | None:
    return res.handle(dns.message.make_query(name, rdtype).to_wire(), tcp)


def answer_of(out: bytes | Forward | None) -> list[tuple[str, str, int, list[str]]]:
    assert isinstance(out, bytes), out
    m = dns.message.from_wire(out)
    assert m.rcode() == dns.rcode.NOERROR
    return [(rs.name.to_text(), dns.rdatatype.to_text(rs.rdtype), rs.ttl,
             sorted(r.to_text() for r in rs)) for rs in m.answer]


def complete(res: Resolver, fwd: bytes | Forward | None,
             responses: dict[tuple[tuple[bytes, ...], int], bytes | None]) -> bytes | None:
    """What the server does with Forward(chase=...): store the recursors' answers, complete."""
    assert isinstance(fwd, Forward) and fwd.chase, fwd
    for name, rtype in fwd.chase:
        res.chased.learn(name, rtype, responses[(name, rtype)], res.clock())
    return res.complete(fwd.data, fwd.tcp)


@pytest.mark.parametrize("tcp", [False, True])
def test_cname_is_completed_with_the_targets_a_then_cached(tcp: bool) -> None:
    _v, res, clock = setup(ttl=10)
    fwd = query(res, "ext.service.rumor.", "A", tcp)
    assert isinstance(fwd, Forward) and fwd.chase == ((API, 1),)
    out = complete(res, fwd, {(API, 1): upstream("api.example.com.", "A", [
        ("api.example.com.", 30, "A", "192.0.2.7")])})
    assert answer_of(out) == [("ext.service.rumor.", "CNAME", 10, ["api.example.com."]),
                              ("api.example.com.", "A", 10, ["192.0.2.7"])]   # min(ours, theirs)
    assert res.counters.chases == 1
    # again: from the cache, no new chase, and never in the exact-bytes index (the C path)
    for _ in range(3):
        assert answer_of(query(res, "ext.service.rumor.", "A", tcp))[1][3] == ["192.0.2.7"]
    assert res._exact == {} and res.counters.chases == 1
    snap = res.counters.snapshot()
    assert snap["queries"] == 4 and snap["rcodes"] == {"NOERROR": 4}    # each query once
    # their TTL counts down: at 25 s, 5 s are left, so the A carries 5 (ours is 10)
    clock.t += 25
    got = answer_of(query(res, "ext.service.rumor.", "A", tcp))
    assert got[0][2] == 10 and got[1][2] == 5
    # expired: chased again (the cached answer is not served past the records' TTL)
    clock.t += 5
    fwd = query(res, "ext.service.rumor.", "A", tcp)
    assert isinstance(fwd, Forward) and fwd.chase == ((API, 1),)
    out = complete(res, fwd, {(API, 1): upstream("api.example.com.", "A", [
        ("api.example.com.", 30, "A", "192.0.2.8")])})
    assert answer_of(out)[1][3] == ["192.0.2.8"]


def test_aaaa_chases_aaaa_and_a_catalog_change_is_seen_at_once() -> None:
    v, res, _clock = setup()
    fwd = query(res, "ext.service.rumor.", "AAAA")
    assert isinstance(fwd, Forward) and fwd.chase == ((API, 28),)
    out = complete(res, fwd, {(API, 28): upstream("api.example.com.", "AAAA", [
        ("api.example.com.", 60, "AAAA", "2001:db8::7")])})
    assert answer_of(out)[1] == ("api.example.com.", "AAAA", 0, ["2001:db8::7"])
    assert isinstance(query(res, "ext.service.rumor.", "A"), Forward)    # A: not asked yet
    # the catalog changes: the host-named instance goes, one with an IPv6 address comes; the
    # cached answer (whose chased record is still fresh) goes at once
    v.add_node("v6", "fd00::6")
    v.register("v6", "ext", port=443)
    v.deregister("n1", "ext")
    assert answer_of(query(res, "ext.service.rumor.", "AAAA")) == [
        ("ext.service.rumor.", "AAAA", 0, ["fd00::6"])]
    v.set_health("v6", "ext", "critical")
    m = dns.message.from_wire(query(res, "ext.service.rumor.", "AAAA"))  # type: ignore[arg-type]
    assert m.rcode() == dns.rcode.NXDOMAIN


def test_a_cname_chain_upstream_is_kept_whole() -> None:
    _v, res, _clock = setup()
    fwd = query(res, "ext.service.rumor.", "A")
    out = complete(res, fwd, {(API, 1): upstream("api.example.com.", "A", [
        ("api.example.com.", 300, "CNAME", "lb.example.net."),
        ("lb.example.net.", 20, "A", "192.0.2.9"),
        ("unrelated.example.org.", 20, "A", "192.0.2.66")])})
    assert answer_of(out) == [("ext.service.rumor.", "CNAME", 0, ["api.example.com."]),
                              ("api.example.com.", "CNAME", 0, ["lb.example.net."]),
                              ("lb.example.net.", "A", 0, ["192.0.2.9"])]
    assert res.chased.get(API, 1, res.clock()).expires == res.clock() + 20   # type: ignore[union-attr]


def test_failure_answers_the_cname_alone_and_is_retried_after_negative_ttl() -> None:
    _v, res, clock = setup()
    fwd = query(res, "ext.service.rumor.", "A")
    out = complete(res, fwd, {(API, 1): None})             # no recursor answered in time
    assert answer_of(out) == [("ext.service.rumor.", "CNAME", 0, ["api.example.com."])]
    assert answer_of(query(res, "ext.service.rumor.", "A")) == answer_of(out)   # no new chase
    clock.t += res.chased.negative_ttl
    assert isinstance(query(res, "ext.service.rumor.", "A"), Forward)
    # NXDOMAIN upstream: kept for the SOA minimum (RFC 2308)
    fwd = query(res, "ext.service.rumor.", "A")
    out = complete(res, fwd, {(API, 1): upstream("api.example.com.", "A", [], rcode=3,
                                                 soa_min=30)})
    assert answer_of(out) == [("ext.service.rumor.", "CNAME", 0, ["api.example.com."])]
    clock.t += 29
    assert isinstance(query(res, "ext.service.rumor.", "A"), bytes)
    clock.t += 1
    assert isinstance(query(res, "ext.service.rumor.", "A"), Forward)


def test_srv_gets_the_target_records_as_additional() -> None:
    _v, res, _clock = setup()
    fwd = query(res, "ext.service.rumor.", "SRV")
    assert isinstance(fwd, Forward) and set(fwd.chase) == {(API, 1), (API, 28)}
    out = complete(res, fwd, {
        (API, 1): upstream("api.example.com.", "A", [("api.example.com.", 30, "A", "192.0.2.7")]),
        (API, 28): upstream("api.example.com.", "AAAA", [])})
    assert isinstance(out, bytes)
    m = dns.message.from_wire(out)
    assert m.answer[0][0].target.to_text() == "api.example.com."
    assert [(rs.name.to_text(), [r.to_text() for r in rs]) for rs in m.additional] == [
        ("api.example.com.", ["192.0.2.7"])]


def test_node_with_a_host_name_address() -> None:
    v, res, _clock = setup()
    v.add_node("ext1", "db.example.com")
    fwd = query(res, "ext1.node.rumor.", "A")
    db = (b"db", b"example", b"com")
    out = complete(res, fwd, {(db, 1): upstream("db.example.com.", "A", [
        ("db.example.com.", 30, "A", "192.0.2.10")])})
    assert answer_of(out) == [("ext1.node.rumor.", "CNAME", 0, ["db.example.com."]),
                              ("db.example.com.", "A", 0, ["192.0.2.10"])]


def test_no_chase_without_recursors_for_any_or_for_our_own_names() -> None:
    v = MemoryView()
    v.add_node("n1", "10.0.0.1")
    v.register("n1", "ext", port=443, address="api.example.com")
    v.register("n1", "inner", port=443, address="db.service.rumor")
    res = Resolver(DNSConfig(), v)                        # no recursors: CNAME alone
    assert answer_of(res.handle(dns.message.make_query("ext.service.rumor.", "A").to_wire())) == [
        ("ext.service.rumor.", "CNAME", 0, ["api.example.com."])]
    res = Resolver(DNSConfig(recursors=("127.0.0.1:5353",)), v)
    assert isinstance(query(res, "inner.service.rumor.", "A"), bytes)   # ours: not chased
    assert isinstance(query(res, "ext.service.rumor.", "ANY"), bytes)
    m = ask(res, "ext.service.rumor.", "ANY")
    assert [rs.rdtype for rs in m.answer] == [dns.rdatatype.CNAME]


def test_a_missing_target_after_the_chase_is_answered_but_not_cached() -> None:
    v, res, _clock = setup()
    fwd = query(res, "ext.service.rumor.", "A")
    assert isinstance(fwd, Forward)
    v.register("n2", "ext", port=443, address="other.example.com")   # during the chase
    out = complete(res, fwd, {(API, 1): upstream("api.example.com.", "A", [
        ("api.example.com.", 30, "A", "192.0.2.7")])})
    names = [r[0] for r in answer_of(out)]
    assert "api.example.com." in names
    assert isinstance(query(res, "ext.service.rumor.", "A"), Forward)    # other.example.com


# -- the cache and the parser ---------------------------------------------------------------
def test_ttl_bounds_and_capacity() -> None:
    c = ChaseCache(min_ttl=1, max_ttl=100, negative_ttl=5, max_entries=2)
    zero = upstream("a.test.", "A", [("a.test.", 0, "A", "192.0.2.1")])
    assert c.learn((b"a", b"test"), 1, zero, 0).expires == 1            # a TTL of 0: 1 s
    long = upstream("b.test.", "A", [("b.test.", 99999, "A", "192.0.2.1")])
    assert c.learn((b"b", b"test"), 1, long, 0).expires == 100
    c.learn((b"c", b"test"), 1, None, 0)
    assert len(c) == 2 and c.get((b"a", b"test"), 1, 0) is None          # oldest evicted
    assert c.get((b"c", b"test"), 1, 4.9) is not None
    assert c.get((b"c", b"test"), 1, 5) is None
    # SERVFAIL upstream: negative_ttl
    bad = upstream("d.test.", "A", [], rcode=2)
    assert c.learn((b"d", b"test"), 1, bad, 0).expires == 5


@pytest.mark.parametrize("packet", [
    b"", b"\x00" * 11, b"\x00\x00\x80\x00" + b"\x00" * 8,   # short; a response with nothing
    b"\x00\x00\x80\x00\x00\x01\x00\x01\x00\x00\x00\x00\xc0\x0c",            # pointer loop
    b"\x00\x00\x80\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x01\x00\x00\x00\x01\xff",
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # a query, not a response
])
def test_hostile_upstream_answers_are_a_failure_never_an_exception(packet: bytes) -> None:
    c = ChaseCache()
    try:
        parse_answer(packet)
    except ValueError:
        pass
    got = c.learn(API, 1, packet, 0)
    assert got.records == () and got.expires == c.negative_ttl


def test_chain_refuses_a_loop_and_query_packet_is_well_formed() -> None:
    rc, recs, _ = parse_answer(upstream("a.test.", "A", [("a.test.", 5, "CNAME", "b.test."),
                                                         ("b.test.", 5, "CNAME", "a.test.")]))
    assert rc == 0 and chain((b"a", b"test"), 1, recs) == []
    m = dns.message.from_wire(query_packet(API, 28))
    assert m.question[0].name.to_text() == "api.example.com." and m.question[0].rdtype == 28
    assert m.edns == 0 and m.payload == 1232


def test_two_queries_waiting_for_one_chase_are_each_counted_once() -> None:
    _v, res, _clock = setup()
    first = query(res, "ext.service.rumor.", "A")
    second = query(res, "ext.service.rumor.", "A")          # asked while the chase runs
    assert isinstance(first, Forward) and isinstance(second, Forward)
    a = complete(res, first, {(API, 1): upstream("api.example.com.", "A", [
        ("api.example.com.", 30, "A", "192.0.2.7")])})
    b = res.complete(second.data, second.tcp)               # finds the answer cached by `a`
    assert answer_of(a) == answer_of(b) and len(answer_of(b)) == 2
    snap = res.counters.snapshot()
    assert snap["queries"] == 2 and snap["rcodes"] == {"NOERROR": 2} and res.counters.chases == 2

"""The sans-I/O resolver: name grammar, records, negatives, truncation, cache, round-robin."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.rdatatype
import dns.reversename
import pytest

from dnsserver import DNSConfig, Forward, MemoryView, Resolver, answer
from dnsserver.wire import parse_query

from .conftest import addrs, ask, has_tc, populated_view, rcode


# -- name forms -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("web.service.rumor.", {"10.0.0.1", "10.1.1.2", "10.0.0.3"}),
    ("web.service.dc1.rumor.", {"10.0.0.1", "10.1.1.2", "10.0.0.3"}),
    ("WEB.Service.RUMOR.", {"10.0.0.1", "10.1.1.2", "10.0.0.3"}),
    ("v1.web.service.rumor.", {"10.0.0.1", "10.0.0.3"}),
    ("v2.web.service.dc1.rumor.", {"10.1.1.2"}),
    ("web.service.dc1.dc.rumor.", {"10.0.0.1", "10.1.1.2", "10.0.0.3"}),   # Consul's .dc. label
    ("v2.web.service.dc1.dc.rumor.", {"10.1.1.2"}),
    ("n2.node.dc1.dc.rumor.", {"10.0.0.2"}),
    ("db.service.rumor.", {"10.0.0.1"}),
    ("n2.node.rumor.", {"10.0.0.2"}),
    ("n2.node.dc1.rumor.", {"10.0.0.2"}),
    ("0a000003.addr.rumor.", {"10.0.0.3"}),
    ("0a000003.addr.dc1.rumor.", {"10.0.0.3"}),
    ("ns.rumor.", {"127.0.0.1"}),
])
def test_a_forms(resolver: Resolver, name: str, expected: set[str]) -> None:
    m = ask(resolver, name, "A")
    assert rcode(m) == "NOERROR"
    assert m.flags & dns.flags.AA
    assert set(addrs(m)) == expected
    assert m.question[0].name.to_text() == name      # echoed exactly, case included


@pytest.mark.parametrize("name", [
    "_web._tcp.service.rumor.", "_web._tcp.rumor.", "_web._tcp.dc1.rumor.",
    "_web._tcp.service.dc1.rumor.", "_web._udp.service.rumor.", "web.service.rumor.",
])
def test_srv_forms(resolver: Resolver, name: str) -> None:
    m = ask(resolver, name, "SRV")
    assert rcode(m) == "NOERROR"
    srv = sorted((r.priority, r.weight, r.port, r.target.to_text())
                 for rrset in m.answer for r in rrset)
    assert srv == [
        (1, 3, 8081, "0a010102.addr.dc1.rumor."),      # warning -> Weights.Warning
        (1, 10, 8080, "n1.node.dc1.rumor."),
        (1, 10, 8082, "n3.node.dc1.rumor."),
    ]
    glue = {rrset.name.to_text(): [r.to_text() for r in rrset] for rrset in m.additional
            if rrset.rdtype == dns.rdatatype.A}
    assert glue == {"0a010102.addr.dc1.rumor.": ["10.1.1.2"], "n1.node.dc1.rumor.": ["10.0.0.1"],
                    "n3.node.dc1.rumor.": ["10.0.0.3"]}


def test_rfc2782_tag(resolver: Resolver) -> None:
    m = ask(resolver, "_web._v1.service.rumor.", "SRV")
    assert sorted(r.port for rrset in m.answer for r in rrset) == [8080, 8082]


def test_alt_domain_echoes_asked_domain(view: MemoryView) -> None:
    res = Resolver(DNSConfig(alt_domain="consul"), view)
    m = ask(res, "web.service.consul.", "SRV")
    assert {r.target.to_text() for rrset in m.answer for r in rrset} == {
        "0a010102.addr.dc1.consul.", "n1.node.dc1.consul.", "n3.node.dc1.consul."}
    assert {rs.name.to_text() for rs in m.additional} == {
        "0a010102.addr.dc1.consul.", "n1.node.dc1.consul.", "n3.node.dc1.consul."}
    m = ask(res, "web.service.rumor.", "SRV")
    assert {r.target.to_text() for rrset in m.answer for r in rrset} == {
        "0a010102.addr.dc1.rumor.", "n1.node.dc1.rumor.", "n3.node.dc1.rumor."}


def test_mixed_case_question_is_echoed_and_cache_shared(resolver: Resolver) -> None:
    m1 = ask(resolver, "web.service.rumor.", "SRV")
    m2 = ask(resolver, "wEb.SeRvIcE.rUmOr.", "SRV")
    assert m2.question[0].name.to_text() == "wEb.SeRvIcE.rUmOr."
    assert m2.answer[0].name.to_text() == "wEb.SeRvIcE.rUmOr."
    assert resolver.counters.snapshot()["cache_hits"] >= 1
    assert len(m1.answer[0]) == len(m2.answer[0]) == 3


def test_aaaa_and_ipv6(resolver: Resolver) -> None:
    m = ask(resolver, "api6.service.rumor.", "AAAA")
    assert addrs(m, "AAAA") == ["fd00::6"]
    m = ask(resolver, "v6.node.rumor.", "AAAA")
    assert addrs(m, "AAAA") == ["fd00::6"]
    m = ask(resolver, "fd000000000000000000000000000006.addr.rumor.", "AAAA")
    assert addrs(m, "AAAA") == ["fd00::6"]
    m = ask(resolver, "api6.service.rumor.", "SRV")
    assert m.answer[0][0].target.to_text() == "v6.node.dc1.rumor."
    assert m.additional[0].rdtype == dns.rdatatype.AAAA


def test_node_txt_meta(resolver: Resolver) -> None:
    m = ask(resolver, "n1.node.rumor.", "TXT")
    assert sorted(r.to_text() for r in m.answer[0]) == ['"os=linux"', '"rack=r1"']
    m = ask(resolver, "n1.node.rumor.", "A")
    assert addrs(m) == ["10.0.0.1"]
    assert m.additional and m.additional[0].rdtype == dns.rdatatype.TXT
    m = ask(resolver, "n1.node.rumor.", "ANY")
    assert {rs.rdtype for rs in m.answer} == {dns.rdatatype.A, dns.rdatatype.TXT}
    m = ask(resolver, "n2.node.rumor.", "TXT")          # no meta: NODATA
    assert rcode(m) == "NOERROR" and not m.answer and m.authority


def test_soa_ns_any_apex(resolver: Resolver) -> None:
    m = ask(resolver, "rumor.", "SOA")
    soa = m.answer[0][0]
    assert soa.mname.to_text() == "ns.rumor." and soa.rname.to_text() == "hostmaster.rumor."
    assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (3600, 600, 86400, 0)
    m = ask(resolver, "rumor.", "NS")
    assert m.answer[0][0].target.to_text() == "ns.rumor."
    assert m.additional[0][0].to_text() == "127.0.0.1"
    m = ask(resolver, "RUMOR.", "ANY")
    assert {rs.rdtype for rs in m.answer} == {dns.rdatatype.SOA, dns.rdatatype.NS}
    m = ask(resolver, "rumor.", "A")
    assert rcode(m) == "NOERROR" and not m.answer and m.authority[0].rdtype == dns.rdatatype.SOA


def test_reverse_ptr(resolver: Resolver) -> None:
    m = ask(resolver, "1.0.0.10.in-addr.arpa.", "PTR")
    assert [r.to_text() for r in m.answer[0]] == ["n1.node.dc1.rumor."]
    m = ask(resolver, "2.1.1.10.in-addr.arpa.", "PTR")     # a service's own address
    assert [r.to_text() for r in m.answer[0]] == ["web.service.dc1.rumor."]
    m = ask(resolver, dns.reversename.from_address("fd00::6").to_text(), "PTR")
    assert [r.to_text() for r in m.answer[0]] == ["v6.node.dc1.rumor."]
    m = ask(resolver, "9.9.9.9.in-addr.arpa.", "PTR")        # unknown, no recursors
    assert rcode(m) == "NXDOMAIN" and m.authority


# -- negatives -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, rdtype, expect", [
    ("nope.service.rumor.", "A", "NXDOMAIN"),
    ("v9.web.service.rumor.", "A", "NXDOMAIN"),
    ("web.service.dc2.rumor.", "A", "NXDOMAIN"),
    ("web.service.dc2.dc.rumor.", "A", "NXDOMAIN"),
    ("nope.node.rumor.", "A", "NXDOMAIN"),
    ("foo.rumor.", "A", "NXDOMAIN"),
    ("a.b.c.service.rumor.", "A", "NXDOMAIN"),
    ("zz.addr.rumor.", "A", "NXDOMAIN"),
    ("web.query.rumor.", "A", "NXDOMAIN"),
    ("web.service.rumor.", "AAAA", "NOERROR"),     # NODATA: IPv4-only service
    ("web.service.rumor.", "TXT", "NOERROR"),
    ("n1.node.rumor.", "AAAA", "NOERROR"),
    ("0a000003.addr.rumor.", "AAAA", "NOERROR"),
])
def test_negative_has_soa(resolver: Resolver, name: str, rdtype: str, expect: str) -> None:
    m = ask(resolver, name, rdtype)
    assert rcode(m) == expect
    assert not m.answer
    assert m.authority and m.authority[0].rdtype == dns.rdatatype.SOA
    assert m.authority[0].name.to_text() == "rumor."
    assert m.flags & dns.flags.AA


def test_refused_outside_domain_without_recursors(resolver: Resolver) -> None:
    m = ask(resolver, "example.com.", "A")
    assert rcode(m) == "REFUSED"
    assert not m.flags & dns.flags.RA


def test_forward_decision_with_recursors(view: MemoryView) -> None:
    res = Resolver(DNSConfig(recursors=("127.0.0.1:5300",)), view)
    q = dns.message.make_query("example.com.", "A").to_wire()
    out = res.handle(q)
    assert isinstance(out, Forward) and out.data == q and not out.tcp
    assert isinstance(res.handle(q, True), Forward)     # and from the cache
    m = ask(res, "web.service.rumor.", "A")
    assert m.flags & dns.flags.RA                        # RA only when recursors exist


def test_axfr_notimp_and_other_class(resolver: Resolver) -> None:
    assert rcode(ask(resolver, "rumor.", "AXFR", tcp=True)) == "NOTIMP"
    assert rcode(ask(resolver, "rumor.", "IXFR")) == "NOTIMP"
    q = dns.message.make_query("version.bind.", "TXT", rdclass="CH")
    m = dns.message.from_wire(resolver.handle(q.to_wire()))  # type: ignore[arg-type]
    assert rcode(m) == "REFUSED"


def test_unhealthy_instances_leave_at_once(view: MemoryView, resolver: Resolver) -> None:
    assert len(addrs(ask(resolver, "web.service.rumor."))) == 3
    view.set_health("n3", "web", "critical")
    assert set(addrs(ask(resolver, "web.service.rumor."))) == {"10.0.0.1", "10.1.1.2"}
    view.set_node_status("n1", "failed")
    assert addrs(ask(resolver, "web.service.rumor.")) == ["10.1.1.2"]
    view.set_maintenance("n2", "web", True)
    m = ask(resolver, "web.service.rumor.")
    assert rcode(m) == "NXDOMAIN"
    assert resolver.counters.cache_flushes >= 3


def test_only_passing(view: MemoryView) -> None:
    res = Resolver(DNSConfig(only_passing=True), view)
    assert set(addrs(ask(res, "web.service.rumor."))) == {"10.0.0.1", "10.0.0.3"}


# -- TTLs ------------------------------------------------------------------------------------
def test_ttls(view: MemoryView) -> None:
    cfg = DNSConfig.from_dict({"node_ttl": "10s",
                               "service_ttl": {"*": "5s", "we*": "7s", "web": "9s", "d*": "3s"},
                               "soa": {"min_ttl": 30}})
    res = Resolver(cfg, view)
    assert ask(res, "web.service.rumor.").answer[0].ttl == 9
    assert ask(res, "db.service.rumor.").answer[0].ttl == 3
    assert ask(res, "big.service.rumor.", tcp=True).answer[0].ttl == 5
    assert ask(res, "n1.node.rumor.").answer[0].ttl == 10
    neg = ask(res, "nope.service.rumor.")
    assert neg.authority[0].ttl == 30 and neg.authority[0][0].minimum == 30
    assert ask(Resolver(DNSConfig(), view), "web.service.rumor.").answer[0].ttl == 0


# -- round robin -------------------------------------------------------------------------------
def test_round_robin_rotates(resolver: Resolver) -> None:
    firsts = [addrs(ask(resolver, "web.service.rumor."))[0] for _ in range(6)]
    assert set(firsts) == {"10.0.0.1", "10.1.1.2", "10.0.0.3"}
    assert firsts[:3] != firsts[1:4]
    orders = {tuple(addrs(ask(resolver, "web.service.rumor."))) for _ in range(3)}
    assert all(sorted(o) == sorted(next(iter(orders))) for o in orders)


def test_round_robin_srv_keeps_glue(resolver: Resolver) -> None:
    for _ in range(4):
        m = ask(resolver, "web.service.rumor.", "SRV")
        targets = [r.target.to_text() for r in m.answer[0]]
        assert sorted(targets) == sorted(rs.name.to_text() for rs in m.additional)


def test_round_robin_beyond_pre_encoded_rotations(view: MemoryView) -> None:
    res = Resolver(DNSConfig(cache_max_rotations=2), view)
    firsts = [addrs(ask(res, "big.service.rumor.", tcp=True))[0] for _ in range(40)]
    assert len(set(firsts)) == 40


# -- truncation --------------------------------------------------------------------------------
def test_udp_without_edns_truncates_at_512(resolver: Resolver) -> None:
    q = dns.message.make_query("big.service.rumor.", "A", use_edns=False)
    out = resolver.handle(q.to_wire())
    assert isinstance(out, bytes) and len(out) <= 512
    m = dns.message.from_wire(out)
    assert has_tc(m)
    assert 0 < len(addrs(m)) < 40
    tcp = ask(resolver, "big.service.rumor.", tcp=True, use_edns=False)
    assert not has_tc(tcp) and len(addrs(tcp)) == 40


def test_edns_size_is_honoured(resolver: Resolver) -> None:
    m = ask(resolver, "big.service.rumor.", "A", use_edns=0, payload=4096)
    assert not has_tc(m) and len(addrs(m)) == 40
    m = ask(resolver, "big.service.rumor.", "SRV", use_edns=0, payload=1232)
    out = resolver.handle(dns.message.make_query("big.service.rumor.", "SRV", use_edns=0,
                                                 payload=1232).to_wire())
    assert isinstance(out, bytes) and len(out) <= 1232
    assert has_tc(m) and 0 < len(m.answer[0]) < 40
    assert m.edns == 0 and m.payload == 4096
    # every SRV kept has its glue
    assert len(m.additional) == len(m.answer[0])
    # a tiny advertised size means 512 (RFC 6891 §6.2.5)
    out = resolver.handle(dns.message.make_query("big.service.rumor.", "A", use_edns=0,
                                                 payload=100).to_wire())
    assert isinstance(out, bytes) and 400 < len(out) <= 512


def test_max_udp_size_caps_edns(view: MemoryView) -> None:
    res = Resolver(DNSConfig(max_udp_size=600), view)
    out = res.handle(dns.message.make_query("big.service.rumor.", "A", use_edns=0,
                                            payload=4096).to_wire())
    assert isinstance(out, bytes) and len(out) <= 600
    assert has_tc(dns.message.from_wire(out))


def test_limits(view: MemoryView) -> None:
    res = Resolver(DNSConfig(a_record_limit=2), view)
    assert len(addrs(ask(res, "big.service.rumor.", tcp=True))) == 2
    assert not has_tc(ask(res, "big.service.rumor."))
    res = Resolver(DNSConfig(udp_answer_limit=3), view)
    m = ask(res, "big.service.rumor.", use_edns=False)
    assert len(addrs(m)) == 3 and not has_tc(m)
    assert len(addrs(ask(res, "big.service.rumor.", tcp=True))) == 40
    res = Resolver(DNSConfig(enable_truncate=False), view)
    m = ask(res, "big.service.rumor.", use_edns=False)
    assert not has_tc(m) and 0 < len(addrs(m)) < 40


# -- header handling ---------------------------------------------------------------------------
def test_rd_cd_copied_and_do(resolver: Resolver) -> None:
    q = dns.message.make_query("web.service.rumor.", "A", want_dnssec=True)
    q.flags &= ~dns.flags.RD
    q.flags |= dns.flags.CD
    m = dns.message.from_wire(resolver.handle(q.to_wire()))  # type: ignore[arg-type]
    assert not m.flags & dns.flags.RD and m.flags & dns.flags.CD
    assert m.ednsflags & dns.flags.DO
    m = ask(resolver, "web.service.rumor.")
    assert m.flags & dns.flags.RD and not m.flags & dns.flags.CD


def test_badvers(resolver: Resolver) -> None:
    q = dns.message.make_query("web.service.rumor.", "A", use_edns=1)
    m = dns.message.from_wire(resolver.handle(q.to_wire()))  # type: ignore[arg-type]
    assert m.rcode() == 16 and m.edns == 0


def test_fast_and_slow_paths_agree(view: MemoryView) -> None:
    """Queries the fast scan accepts must give what the strict parser path gives."""
    names = ["web.service.rumor.", "big.service.rumor.", "n1.node.rumor.", "nope.rumor.",
             "_web._tcp.rumor.", "example.com.", "rumor."]
    for name in names:
        for rdtype in ("A", "SRV", "AAAA", "TXT", "ANY"):
            for kw in ({"use_edns": False}, {"use_edns": 0, "payload": 1232},
                       {"use_edns": 0, "want_dnssec": True}):
                for tcp in (False, True):
                    wire = dns.message.make_query(name, rdtype, **kw).to_wire()
                    fast, slow = Resolver(DNSConfig(), view), Resolver(DNSConfig(), view)
                    a1 = fast.handle(wire, tcp)       # miss: slow path builds
                    a2 = fast.handle(wire, tcp)       # hit: fast path
                    b1 = slow._slow(wire, tcp)
                    b2 = slow._slow(wire, tcp)
                    assert a1 == b1 and a2 == b2, (name, rdtype, kw, tcp)
                    assert fast.counters.snapshot()["cache_hits"] == 1


def test_answer_function_is_pure(view: MemoryView) -> None:
    wire = dns.message.make_query("web.service.rumor.", "A").to_wire()
    out1, out2 = answer(wire, view), answer(wire, view)
    assert out1 == out2
    assert answer(wire[:5], view) is None
    out = answer(dns.message.make_query("example.org.", "A").to_wire(), view,
                 DNSConfig(recursors=("127.0.0.1",)))
    assert out is not None and out[3] & 0xF == 5


def test_cache_eviction(view: MemoryView) -> None:
    res = Resolver(DNSConfig(cache_max_entries=5), view)
    for i in range(20):
        ask(res, f"x{i}.service.rumor.")
    assert len(res._cache) <= 5 and res.counters.cache_evictions == 15


def test_serial_follows_index(view: MemoryView, resolver: Resolver) -> None:
    s1 = ask(resolver, "rumor.", "SOA").answer[0][0].serial
    view.add_node("n9", "10.0.0.9")
    s2 = ask(resolver, "rumor.", "SOA").answer[0][0].serial
    assert s2 > s1 == view.index - 1


def test_view_with_unencodable_names() -> None:
    v = MemoryView()
    v.add_node("x" * 70, "10.0.0.1")
    v.add_node("ok", "10.0.0.2")
    v.register("x" * 70, "svc", port=1)
    v.register("ok", "svc", port=2)
    res = Resolver(DNSConfig(), v)
    m = ask(res, "svc.service.rumor.", "SRV")
    assert [r.port for r in m.answer[0]] == [2]


def test_question_parse_roundtrip() -> None:
    wire = dns.message.make_query("Web.Service.Rumor.", "SRV", use_edns=0, payload=1400).to_wire()
    q = parse_query(wire)
    assert q.labels == (b"Web", b"Service", b"Rumor") and q.qtype == 33 and q.edns_size == 1400
    assert q.question == wire[12:12 + len(q.question)]
    assert struct.unpack("!H", wire[:2])[0] == q.id


def test_populated_view_helper_is_sorted() -> None:
    v = populated_view()
    names = [i.node for i in v.instances("big")]
    assert names == sorted(names)


def test_edns_sizes_share_a_few_cache_entries(view: MemoryView) -> None:
    """An attacker cycling advertised sizes cannot make one question fill the cache."""
    res = Resolver(DNSConfig(), view)
    for size in range(512, 4200, 7):
        out = res.handle(dns.message.make_query("big.service.rumor.", "A", use_edns=0,
                                                payload=size).to_wire())
        assert isinstance(out, bytes) and len(out) <= max(size, 512)
    assert len(res._cache) <= 6


def test_cache_byte_budget(view: MemoryView) -> None:
    res = Resolver(DNSConfig(cache_max_bytes=4000), view)
    for _ in range(80):
        ask(res, "big.service.rumor.", tcp=True)        # 40 rotations of ~700 bytes
    for i in range(30):
        ask(res, f"n{i % 3 + 1}.node.rumor.", "TXT")
    assert res._bytes <= 4000 + 2000
    assert len(addrs(ask(res, "big.service.rumor.", tcp=True))) == 40


def test_node_meta_txt_in_additional_can_be_turned_off(view: MemoryView) -> None:
    res = Resolver(DNSConfig.from_dict({"enable_additional_node_meta_txt": False}), view)
    m = ask(res, "n1.node.rumor.", "A")
    assert addrs(m) == ["10.0.0.1"] and not m.additional
    assert len(ask(res, "n1.node.rumor.", "TXT").answer[0]) == 2


def test_answer_does_not_leak_sync_callbacks(view: MemoryView) -> None:
    from dnsserver import DNSCounters
    counters = DNSCounters()
    wire = dns.message.make_query("web.service.rumor.", "A").to_wire()
    for _ in range(50):
        answer(wire, view, counters=counters)
    assert counters._syncs == [] and counters.snapshot()["queries"] == 50


class _BrokenView(MemoryView):
    def instances(self, *a: object, **k: object) -> list:  # type: ignore[override]
        raise RuntimeError("catalog bug")


def test_view_failure_gives_servfail_not_an_exception() -> None:
    v = _BrokenView()
    res = Resolver(DNSConfig(), v)
    for _ in range(3):
        out = res.handle(dns.message.make_query("web.service.rumor.", "A").to_wire())
        assert isinstance(out, bytes) and out[3] & 0xF == 2
    assert res.counters.drops["internal_error"] == 3


def test_exact_index_skips_queries_with_edns_options(view: MemoryView) -> None:
    import dns.edns
    res = Resolver(DNSConfig(), view)
    for i in range(5):
        q = dns.message.make_query("web.service.rumor.", "A", use_edns=0, options=[
            dns.edns.GenericOption(10, bytes([i]) * 8)])          # a client cookie
        assert len(addrs(ask(res, "web.service.rumor.", "A", use_edns=0, options=q.options))) == 3
    assert res._exact == {}
    for _ in range(3):
        ask(res, "web.service.rumor.", "A", use_edns=0)
    assert len(res._exact) == 1


def test_host_name_addresses_give_cname() -> None:
    v = MemoryView()
    v.add_node("n1", "10.0.0.1")
    v.add_node("n2", "10.0.0.2")
    v.register("n1", "ext", port=443, address="api.example.com")
    res = Resolver(DNSConfig(), v)
    m = ask(res, "ext.service.rumor.", "A")
    assert [(rs.rdtype, [r.to_text() for r in rs]) for rs in m.answer] == [
        (dns.rdatatype.CNAME, ["api.example.com."])]
    m = ask(res, "ext.service.rumor.", "SRV")
    assert m.answer[0][0].target.to_text() == "api.example.com." and not m.additional
    v.register("n2", "ext", port=443)                  # one instance with an address
    assert addrs(ask(res, "ext.service.rumor.", "A")) == ["10.0.0.2"]


def test_rotation_survives_counter_syncs(resolver: Resolver) -> None:
    """Reading the counters between queries must not reset the round-robin."""
    firsts = set()
    for _ in range(6):
        firsts.add(addrs(ask(resolver, "web.service.rumor.", use_edns=False))[0])
        resolver.counters.snapshot()
    assert firsts == {"10.0.0.1", "10.1.1.2", "10.0.0.3"}
    assert resolver.counters.snapshot()["queries"] == 6


@pytest.mark.parametrize("use_edns", [False, 0])
@pytest.mark.parametrize("tcp", [False, True])
def test_repeated_question_is_answered_by_the_header_scan(view: MemoryView, use_edns: int | bool,
                                                          tcp: bool) -> None:
    """A plain query (one question, ARCOUNT 0) and one with a bare OPT record both take the
    level-2 scan once cached: only the first of three differently-IDed copies reaches the
    strict parser (``_slow``)."""
    res = Resolver(DNSConfig(), view)
    slow_calls = []
    real_slow = res._slow

    def counting_slow(data: bytes, tcp: bool) -> bytes | Forward | None:
        slow_calls.append(data)
        return real_slow(data, tcp)

    res._slow = counting_slow  # type: ignore[method-assign]
    answers = []
    for qid in (1, 2, 3):
        q = dns.message.make_query("web.service.rumor.", "A", use_edns=use_edns, id=qid)
        out = res.handle(q.to_wire(), tcp)
        assert isinstance(out, bytes)
        answers.append(dns.message.from_wire(out))
    assert len(slow_calls) == 1
    assert [m.id for m in answers] == [1, 2, 3]
    assert all(set(addrs(m)) == {"10.0.0.1", "10.1.1.2", "10.0.0.3"} for m in answers)

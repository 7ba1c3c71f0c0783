"""Hypothesis fuzzing of the query path: never an exception, always a sane answer or a drop."""

from __future__ import annotations

import dns.message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnsserver import DNSConfig, Forward, Resolver

from .conftest import populated_view

_VIEW = populated_view()
_RES = Resolver(DNSConfig(), _VIEW)
_FWD = Resolver(DNSConfig(recursors=("127.0.0.1:5300",), alt_domain="consul"), _VIEW)

_NAMES = ["web.service.rumor.", "_web._tcp.rumor.", "n1.node.dc1.rumor.", "big.service.rumor.",
          "0a000001.addr.rumor.", "rumor.", "1.0.0.10.in-addr.arpa.", "x.example.",
          "v1.web.service.consul."]
_TYPES = ["A", "AAAA", "SRV", "TXT", "ANY", "PTR", "SOA", "NS", "AXFR", "MX"]


def _valid() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda n, t, e, p, d: dns.message.make_query(n, t, use_edns=e, payload=p,
                                                     want_dnssec=d).to_wire(),
        st.sampled_from(_NAMES), st.sampled_from(_TYPES), st.sampled_from([False, 0]),
        st.integers(0, 65535), st.booleans())


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(_valid()))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        if op == 0 and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif op == 1:
            del data[draw(st.integers(0, len(data))):]
        elif op == 2:
            pos = draw(st.integers(0, len(data)))
            data[pos:pos] = draw(st.binary(max_size=20))
        else:
            pos = draw(st.integers(0, max(len(data) - 2, 0)))
            data[pos:pos + 2] = b"\xc0" + bytes([draw(st.integers(0, 255))])
    return bytes(data)


def _check(res: Resolver, data: bytes, tcp: bool) -> None:
    out = res.handle(data, tcp)
    assert res.counters.drops.get("internal_error", 0) == 0
    if out is None or isinstance(out, Forward):
        return
    assert out[:2] == data[:2] and out[2] & 0x80
    assert len(out) <= (65535 if tcp else 4096)
    if not tcp and (len(data) < 12 or data[11] == 0):
        assert len(out) <= 512
    dns.message.from_wire(out)          # always well-formed


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.one_of(_mutated(), st.binary(max_size=600), _valid()), tcp=st.booleans())
def test_fuzz_mutated(data: bytes, tcp: bool) -> None:
    _check(_RES, data, tcp)
    _check(_FWD, data, tcp)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=st.binary(min_size=12, max_size=12), labels=st.lists(st.binary(max_size=70),
       max_size=8), tail=st.binary(max_size=40))
def test_fuzz_structured(header: bytes, labels: list[bytes], tail: bytes) -> None:
    body = b"".join(bytes([len(x) & 0xFF]) + x for x in labels) + b"\x00" + tail
    _check(_RES, header + body, False)

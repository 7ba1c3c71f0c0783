"""Shared helpers for the dnsserver unit tests: a populated in-memory catalog and a client."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver import DNSConfig, MemoryView, Resolver


def populated_view() -> MemoryView:
    """Three web instances (one with its own address, one warning), a db, a 40-instance
    service, an IPv6 node, node meta."""
    v = MemoryView("dc1")
    v.add_node("n1", "10.0.0.1", meta={"rack": "r1", "os": "linux"})
    v.add_node("n2", "10.0.0.2")
    v.add_node("n3", "10.0.0.3")
    v.add_node("v6", "fd00::6")
    v.register("n1", "web", port=8080, tags=["v1", "primary"], weight_passing=10,
               weight_warning=1)
    v.register("n2", "web", port=8081, tags=["v2"], address="10.1.1.2", weight_passing=10,
               weight_warning=3, status="warning")
    v.register("n3", "web", port=8082, tags=["v1"], weight_passing=10)
    v.register("n1", "db", port=5432)
    v.register("v6", "api6", port=443)
    for i in range(40):
        v.add_node(f"big{i:02d}", f"10.2.0.{i + 1}")
        v.register(f"big{i:02d}", "big", port=9000 + i)
    return v


@pytest.fixture
def view() -> MemoryView:
    return populated_view()


@pytest.fixture
def resolver(view: MemoryView) -> Resolver:
    return Resolver(DNSConfig(), view)


def ask(res: Resolver, name: str, rdtype: str | int = "A", *, tcp: bool = False,
        **kw: Any) -> dns.message.Message:
    """Send a query through ``res`` and parse the answer with dnspython."""
    q = dns.message.make_query(name, rdtype, **kw)
    out = res.handle(q.to_wire(), tcp)
    assert isinstance(out, bytes), out
    m = dns.message.from_wire(out)
    assert m.id == q.id
    return m


def addrs(m: dns.message.Message, rdtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(rdtype)
    return [r.to_text() for rrset in m.answer if rrset.rdtype == t for r in rrset]


def rcode(m: dns.message.Message) -> str:
    return dns.rcode.to_text(m.rcode())


def has_tc(m: dns.message.Message) -> bool:
    return bool(m.flags & dns.flags.TC)

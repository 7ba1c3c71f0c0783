"""Names of other datacenters: the resolver hands them back as ``Forward(datacenter=...)`` and
the server answers them from the view its ``RemoteViews`` returns (real UDP and TCP sockets)."""

from __future__ import annotations

import asyncio

import dns.message
import dns.query
import dns.rcode
import pytest

from dnsserver import DNSConfig, DNSServer, Forward, MemoryView, Resolver

from .conftest import addrs, ask


def _dc2() -> MemoryView:
    v = MemoryView("dc2")
    v.add_node("b1", "10.9.0.1")
    v.register("b1", "web", port=80, tags=["v1"])
    return v


@pytest.mark.parametrize("name", ["web.service.dc2.rumor.", "v1.web.service.dc2.rumor.",
                                  "web.service.dc2.dc.rumor.", "b1.node.dc2.rumor.",
                                  "WEB.service.DC2.rumor."])
def test_other_datacenter_is_handed_back(view: MemoryView, name: str) -> None:
    res = Resolver(DNSConfig(), view, remote=True)
    q = dns.message.make_query(name, "A").to_wire()
    for _ in range(2):   # the second time from the cache
        out = res.handle(q)
        assert isinstance(out, Forward) and out.datacenter == "dc2" and out.data == q


def test_without_remote_views_other_datacenters_are_nxdomain(view: MemoryView) -> None:
    res = Resolver(DNSConfig(), view)
    assert ask(res, "web.service.dc2.rumor.").rcode() == dns.rcode.NXDOMAIN
    # the local datacenter, also in Consul's explicit form, stays local
    assert addrs(ask(res, "db.service.dc1.dc.rumor.")) == ["10.0.0.1"]
    assert addrs(ask(Resolver(DNSConfig(), view, remote=True), "db.service.dc1.rumor.")) == [
        "10.0.0.1"]


def test_prepared_query_is_handed_back(view: MemoryView) -> None:
    res = Resolver(DNSConfig(), view, remote=True)
    q = dns.message.make_query("webq.query.rumor.", "SRV").to_wire()
    out = res.handle(q)
    assert isinstance(out, Forward) and (out.query, out.datacenter) == ("webq", "")
    assert ask(Resolver(DNSConfig(), view), "webq.query.rumor.").rcode() == dns.rcode.NXDOMAIN


class _Views:
    def __init__(self) -> None:
        self.views = {"dc2": _dc2()}
        self.asked: list[str] = []

    async def query_view(self, name: str) -> MemoryView | None:
        if name != "webq":
            return None
        v = MemoryView("dc2")
        v.add_node("b1", "10.9.0.1")
        v.register("b1", "webq", service_id="web", port=80)
        return v

    async def view_of(self, datacenter: str) -> MemoryView | None:
        self.asked.append(datacenter)
        await asyncio.sleep(0)
        return self.views.get(datacenter)


async def test_server_answers_from_the_remote_view(view: MemoryView) -> None:
    remote = _Views()
    server = DNSServer(DNSConfig(bind_addr="127.0.0.1", port=0), view, remote=remote)
    await server.start()
    try:
        port = server.udp_port

        def q(name: str, rdtype: str = "A", tcp: bool = False) -> dns.message.Message:
            m = dns.message.make_query(name, rdtype)
            f = dns.query.tcp if tcp else dns.query.udp
            return f(m, "127.0.0.1", port=port, timeout=3)

        r = await asyncio.to_thread(q, "web.service.dc2.rumor.")
        assert addrs(r) == ["10.9.0.1"]
        r = await asyncio.to_thread(q, "web.service.dc2.dc.rumor.", "SRV", True)
        assert "b1.node.dc2.rumor." in r.to_text()
        r = await asyncio.to_thread(q, "b1.node.dc2.rumor.")
        assert addrs(r) == ["10.9.0.1"]
        r = await asyncio.to_thread(q, "nope.service.dc2.rumor.")
        assert r.rcode() == dns.rcode.NXDOMAIN
        r = await asyncio.to_thread(q, "web.service.dc9.rumor.")
        assert r.rcode() == dns.rcode.NXDOMAIN
        # a change in the remote view shows at once (its own cache follows its index)
        remote.views["dc2"].register("b1", "web", service_id="web2", port=81, address="10.9.9.9")
        r = await asyncio.to_thread(q, "web.service.dc2.rumor.")
        assert sorted(addrs(r)) == ["10.9.0.1", "10.9.9.9"]
        assert "dc9" in remote.asked and "dc2" in remote.asked
        r = await asyncio.to_thread(q, "webq.query.rumor.", "SRV")
        assert "b1.node.dc2.rumor." in r.to_text() and " 80 " in r.to_text()
        r = await asyncio.to_thread(q, "nope.query.rumor.")
        assert r.rcode() == dns.rcode.NXDOMAIN
    finally:
        await server.stop()

"""The catalog as the DNS token sees it (the view handed to dnsserver), answered by the real
resolver: what the token cannot read is NXDOMAIN; a reload flushes the answer cache."""

from __future__ import annotations

from dnsserver import DNSConfig
from dnsserver.resolver import Resolver, answer
from registry.acl import ACL, ACLConfig
from registry.acl_view import ACLView
from registry.catalog import Catalog, NodeInfo, ServiceRecord

NXDOMAIN = 3


def _catalog() -> Catalog:
    cat = Catalog(datacenter="dc1", local_node="n1")
    with cat.batch():
        cat.put_node(NodeInfo(name="n1", address="10.0.0.1"), "alive")
        cat.put_node(NodeInfo(name="n2", address="10.0.0.2"), "alive")
        cat.put_service("n1", ServiceRecord(id="www", service="www", port=80))
        cat.put_service("n2", ServiceRecord(id="www2", service="www", port=80))
        cat.put_service("n1", ServiceRecord(id="db", service="db", port=5432))
    return cat


def _query(name: str) -> bytes:
    import struct

    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", 1, 1)


def _rcode_and_count(view: ACLView, name: str, res: Resolver | None = None) -> tuple[int, int]:
    out = res.handle(_query(name), False) if res is not None else answer(_query(name), view,
                                                                          DNSConfig())
    assert isinstance(out, bytes)
    return out[3] & 0x0F, int.from_bytes(out[6:8], "big")


ACLS = {"enabled": True, "default_policy": "deny",
        "policies": [{"name": "dns", "rules": 'service "www" { policy = "read" }\n'
                                              'node "n1" { policy = "read" }'},
                     {"name": "all", "rules": 'service_prefix "" { policy = "read" }\n'
                                              'node_prefix "" { policy = "read" }'}],
        "tokens": {"dns": "dns-secret"},
        "token_list": [{"secret_id": "dns-secret", "policies": ["dns"]}]}


def test_the_dns_token_decides_what_dns_answers() -> None:
    acl = ACL(ACLConfig.from_dict(ACLS))
    view = ACLView(_catalog(), acl)
    res = Resolver(DNSConfig(), view, forwarding=False)    # one resolver: its answer cache
    assert _rcode_and_count(view, "www.service.rumor", res) == (0, 1)   # only the one on n1
    assert _rcode_and_count(view, "db.service.rumor", res)[0] == NXDOMAIN
    assert _rcode_and_count(view, "n1.node.rumor") == (0, 1)
    assert _rcode_and_count(view, "n2.node.rumor")[0] == NXDOMAIN
    assert set(view.services()) == {"www"}
    # a reload that widens the DNS token's rights: answered at once (the index moved)
    before = view.index
    acl.reload(ACLConfig.from_dict({**ACLS, "token_list": [
        {"secret_id": "dns-secret", "policies": ["all"]}]}))
    assert view.index > before
    assert _rcode_and_count(view, "www.service.rumor", res) == (0, 2)   # not the cached answer
    assert _rcode_and_count(view, "db.service.rumor", res) == (0, 1)
    res.close()


def test_without_acls_the_view_is_the_whole_catalog() -> None:
    view = ACLView(_catalog(), ACL(ACLConfig()))
    assert set(view.services()) == {"www", "db"}
    assert _rcode_and_count(view, "www.service.rumor") == (0, 2)


async def test_the_dns_c_thread_follows_every_change_of_the_catalog_and_the_acls() -> None:
    """The agent's DNS path: cache hits answered by the C thread (dnsserver/_udpc.c, Server)
    from this very view, on real sockets. The first query after each change (an ACL reload, a
    register, a check going critical and back, a deregister) gets the new truth, and so does
    every query after it, while between changes the thread answers the repeats. (Without the
    extension, or with RUMOR_PURE_PYTHON or RUMOR_DNS_NO_THREAD set, the same answers are
    checked on the path in use; test_udp_batch.py fails in CI when the extension is missing.)"""
    import os

    import dns.asyncquery
    import dns.message

    from dnsserver import DNSServer
    from dnsserver import server as server_mod
    from registry.catalog import CheckRecord

    cat = _catalog()
    acl = ACL(ACLConfig.from_dict(ACLS))
    view = ACLView(cat, acl)
    srv = DNSServer(DNSConfig(port=0, bind_addr="127.0.0.1"), view)
    thread = server_mod._udpc is not None and not os.environ.get("RUMOR_DNS_NO_THREAD")
    assert srv.udp_thread is thread
    await srv.start()
    native_before = 0

    async def ask() -> set[str]:
        q = dns.message.make_query("www.service.rumor", "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=srv.udp_port, timeout=5)
        if r.rcode() == NXDOMAIN:
            return set()
        return {rd.address for rrset in r.answer for rd in rrset}

    async def expect(want: set[str]) -> None:
        nonlocal native_before
        for _ in range(6):                      # misses, then the thread's hits
            assert await ask() == want
        native = srv.counters.snapshot()["native_hits"]
        assert native > native_before or not thread, "the C thread answered none of the repeats"
        native_before = native

    try:
        await expect({"10.0.0.1"})                              # www2's node n2: not readable
        acl.reload(ACLConfig.from_dict({**ACLS, "token_list": [
            {"secret_id": "dns-secret", "policies": ["all"]}]}))
        await expect({"10.0.0.1", "10.0.0.2"})
        with cat.batch():
            cat.put_service("n1", ServiceRecord(id="www3", service="www", port=81,
                                                address="10.0.0.3"))
        await expect({"10.0.0.1", "10.0.0.2", "10.0.0.3"})
        for status, want in (("critical", {"10.0.0.1", "10.0.0.2"}),
                             ("passing", {"10.0.0.1", "10.0.0.2", "10.0.0.3"})):
            with cat.batch():
                cat.put_check("n1", CheckRecord(check_id="c3", name="c3", status=status,
                                                service_id="www3", service_name="www"))
            await expect(want)
        with cat.batch():
            cat.remove_service("n1", "www3")
        await expect({"10.0.0.1", "10.0.0.2"})
        acl.reload(ACLConfig.from_dict(ACLS))                   # back to the narrow token
        await expect({"10.0.0.1"})
    finally:
        await srv.stop()

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

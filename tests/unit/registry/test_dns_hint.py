"""``rumor dns``: which service (and tag) an NXDOMAIN was about, to explain it."""

from __future__ import annotations

import pytest

from registry.commands.dns import service_of


@pytest.mark.parametrize("qname, domain, found", [
    ("web.service.rumor.", "rumor.", ("web", "")),
    ("v1.web.service.rumor.", "rumor.", ("web", "v1")),
    ("web.service.dc1.rumor.", "rumor.", ("web", "")),
    ("WEB.Service.RUMOR.", "rumor.", ("WEB", "")),
    ("_web._tcp.service.rumor.", "rumor.", ("web", "")),
    ("_web._v1.service.rumor.", "rumor.", ("web", "v1")),
    ("web.service.consul.", "consul", ("web", "")),
    ("web.service.consul.", "rumor.", None),
    ("n1.node.rumor.", "rumor.", None),
    ("service.rumor.", "rumor.", None),
    ("a.b.web.service.rumor.", "rumor.", None),
])
def test_service_of(qname: str, domain: str, found: tuple[str, str] | None) -> None:
    assert service_of(qname, domain) == found

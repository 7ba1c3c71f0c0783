"""Host and longest-prefix routing, fabio-style urlprefix- tags, PROXY protocol headers."""

from __future__ import annotations

import pytest

from lb.config import Route
from lb.proxyproto import V2_SIGNATURE, proxy_header
from lb.routes import RouteTable, urlprefix_routes

TABLE = RouteTable([
    Route("default"),
    Route("api", path_prefix="/api"),
    Route("apiv2", path_prefix="/api/v2"),
    Route("shop", host="shop.example.com", path_prefix="/"),
    Route("shopapi", host="shop.example.com", path_prefix="/api"),
])


@pytest.mark.parametrize("host, path, service", [
    (b"other", b"/", "default"),
    (None, b"/index.html", "default"),
    (b"x", b"/api", "api"),
    (b"x", b"/api/v1/users", "api"),
    (b"x", b"/api/v2/users?q=1", "apiv2"),
    (b"shop.example.com", b"/cart", "shop"),
    (b"SHOP.example.com:8080", b"/api/x", "shopapi"),
    (b"shop.example.com", b"/api/v2/x", "shopapi"),   # host rules win over host-less ones
])
def test_match(host: bytes | None, path: bytes, service: str) -> None:
    t = TABLE.match(host, path)
    assert t is not None and t[0] == service


def test_no_match_and_single_fast_path() -> None:
    t = RouteTable([Route("api", path_prefix="/api")])
    assert t.match(b"h", b"/other") is None
    single = RouteTable([Route("web")])
    assert single.match(None, b"/anything") == ("web", None)


def test_first_rule_for_same_key_wins() -> None:
    t = RouteTable([Route("a", path_prefix="/x"), Route("b", path_prefix="/x")])
    assert t.match(None, "/x") == ("a", None)


def test_urlprefix_tags() -> None:
    routes = urlprefix_routes({
        "api": frozenset({"urlprefix-/api", "v1"}),
        "shop": frozenset({"urlprefix-shop.example.com/ opts strip=/x"}),
        "junk": frozenset({"urlprefix-nohostpath", "other"}),
    })
    assert Route("api", "", "/api", "urlprefix-/api") in routes
    assert Route("shop", "shop.example.com", "/",
                 "urlprefix-shop.example.com/ opts strip=/x") in routes
    t = RouteTable(routes)
    assert t.match(b"shop.example.com", b"/") == ("shop", ("urlprefix-shop.example.com/ opts "
                                                          "strip=/x"))
    assert t.match(b"x", b"/api/y") == ("api", "urlprefix-/api")


def test_proxy_v1() -> None:
    assert proxy_header("v1", ("192.0.2.1", 5555), ("127.0.0.1", 80)) == \
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n"
    assert proxy_header("v1", ("::1", 1), ("::1", 2)) == b"PROXY TCP6 ::1 ::1 1 2\r\n"


def test_proxy_v2() -> None:
    h = proxy_header("v2", ("192.0.2.1", 5555), ("127.0.0.1", 80))
    assert h[:12] == V2_SIGNATURE and h[12] == 0x21 and h[13] == 0x11
    assert int.from_bytes(h[14:16], "big") == 12 and len(h) == 28
    assert h[16:20] == bytes([192, 0, 2, 1]) and h[20:24] == bytes([127, 0, 0, 1])
    assert int.from_bytes(h[24:26], "big") == 5555 and int.from_bytes(h[26:28], "big") == 80
    h6 = proxy_header("v2", ("::1", 1), ("::2", 2))
    assert h6[13] == 0x21 and int.from_bytes(h6[14:16], "big") == 36 and len(h6) == 52
    with pytest.raises(ValueError):
        proxy_header("v9", ("::1", 1), ("::1", 2))

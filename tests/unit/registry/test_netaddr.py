"""The one place that decides the address an agent advertises (gossip, catalog, /v1/agent/self)."""

from __future__ import annotations

import ipaddress

from registry.config import build
from registry.netaddr import advertise_address, guess_local_ip


def test_an_explicit_address_is_advertised_as_given() -> None:
    assert advertise_address(build({"dev": True, "advertise_addr": "10.1.2.3"})) == "10.1.2.3"
    assert advertise_address(build({"dev": True, "bind_addr": "127.0.0.5"})) == "127.0.0.5"


def test_a_wildcard_bind_advertises_a_real_address_of_this_host() -> None:
    guessed = advertise_address(build({"dev": True, "bind_addr": "0.0.0.0"}))
    assert guessed == guess_local_ip()
    ip = ipaddress.ip_address(guessed)
    assert ip.version == 4 and not ip.is_unspecified

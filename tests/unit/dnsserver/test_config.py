"""DNSConfig: defaults, Consul's dns_config keys, errors that say what to fix."""

from __future__ import annotations

import pytest

from dnsserver import ConfigError, DNSConfig, SOAConfig


def test_defaults() -> None:
    c = DNSConfig().validate()
    assert c.domain == "rumor." and c.alt_domain == "" and c.port == 8600
    assert c.recursors == () and c.node_ttl == 0 and c.ttl_for_service("web") == 0
    assert c.soa == SOAConfig(refresh=3600, retry=600, expire=86400, min_ttl=0)
    assert c.glue_address == "127.0.0.1"


def test_from_dict_consul_keys() -> None:
    c = DNSConfig.from_dict({
        "node_ttl": "10s", "service_ttl": {"*": "5s", "web*": "1m", "web-admin": "2s"},
        "only_passing": True, "udp_answer_limit": 3, "a_record_limit": 5,
        "enable_truncate": False, "recursor_timeout": "500ms", "allow_stale": True,
        "max_stale": "87600h", "soa": {"refresh": 10, "retry": 20, "expire": 30, "min_ttl": 40},
    }, domain="Consul", port=0, recursors=["10.0.0.1", "[::1]:5353"])
    assert c.domain == "consul." and c.port == 0
    assert c.node_ttl == 10 and c.recursor_timeout == 0.5
    assert c.ttl_for_service("web-admin") == 2
    assert c.ttl_for_service("WEB-1") == 60
    assert c.ttl_for_service("db") == 5
    assert c.only_passing and c.udp_answer_limit == 3 and c.a_record_limit == 5
    assert not c.enable_truncate
    assert c.soa == SOAConfig(refresh=10, retry=20, expire=30, min_ttl=40)
    assert c.recursors == ("10.0.0.1", "[::1]:5353")


@pytest.mark.parametrize("mapping, overrides, message", [
    ({"node_ttl": "x"}, {}, "dns_config.node_ttl: 'x' is not a duration; write it like \"10s\""),
    ({"node_ttl": "-5s"}, {}, "dns_config.node_ttl: '-5s' is negative"),
    ({"service_ttl": {"*": "forever"}}, {}, "dns_config.service_ttl.*: 'forever' is not a duration"),
    ({"service_ttl": "5s"}, {}, "dns_config.service_ttl: '5s' is not a map"),
    ({"only_passing": "yes"}, {}, "dns_config.only_passing: 'yes' is not a boolean"),
    ({"udp_answer_limit": "3"}, {}, "dns_config.udp_answer_limit: '3' is not a whole number"),
    ({"a_record_limit": -1}, {}, "dns_config.a_record_limit: must be >= 0"),
    ({"soa": {"minttl": 1}}, {}, "dns_config.soa.minttl: unknown key"),
    ({"bogus": 1}, {}, "dns_config.bogus: unknown key"),
    ({}, {"port": 70000}, "dns.port: 70000 is not a port"),
    ({}, {"domain": "a..b"}, "dns.domain: 'a..b.' is not a DNS domain"),
    ({}, {"recursors": ("nameserver.example",)}, "is not an IP address"),
    ({}, {"recursors": ("10.0.0.1:99999",)}, "is not a port"),
    ({}, {"bind_addr": "localhost"}, "dns.bind_addr: 'localhost' is not an IP address"),
    ({}, {"max_udp_size": 100}, "dns.max_udp_size: 100; use 512-65535"),
    ({}, {"nope": 1}, "dns: unknown setting 'nope'"),
    ({"recursor_strategy": "fastest"}, {}, "recursor_strategy"),
    ({"service_ttl": {"w*b": "1s"}}, {}, "'*' may only end a key"),
])
def test_errors_name_the_setting(mapping: dict[str, object], overrides: dict[str, object],
                                 message: str) -> None:
    with pytest.raises(ConfigError) as info:
        DNSConfig.from_dict(mapping, **overrides)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_glue_address() -> None:
    assert DNSConfig(bind_addr="0.0.0.0").glue_address == "127.0.0.1"
    assert DNSConfig(bind_addr="10.0.0.5").glue_address == "10.0.0.5"
    assert DNSConfig(ns_address="192.0.2.1").validate().glue_address == "192.0.2.1"


def test_frozen() -> None:
    c = DNSConfig()
    with pytest.raises(AttributeError):
        c.port = 1  # type: ignore[misc]
    assert c.replace(port=53).port == 53

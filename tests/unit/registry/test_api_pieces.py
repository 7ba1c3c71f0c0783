"""Pure pieces of the API: filter expressions, definitions, ACL configuration and decisions."""

from __future__ import annotations

from typing import Any

import pytest

from registry.acl import ACL, ANONYMOUS_ACCESSOR, ACLConfig, token_of
from registry.api.bexpr import FilterError, compile_filter
from registry.definitions import DefinitionError, parse_check, parse_service
from registry.errors import ConfigError, PermissionDenied
from registry.service import parse_definitions

ENTRY: dict[str, Any] = {
    "Node": {"Node": "n1", "Meta": {"rack": "r1"}},
    "Service": {"ID": "web1", "Service": "web", "Tags": ["v1", "blue"], "Port": 8080,
                "Meta": {"env": "prod"}, "EnableTagOverride": False},
    "Checks": [{"CheckID": "serfHealth", "Status": "passing"},
               {"CheckID": "service:web1", "Status": "warning"}],
}


@pytest.mark.parametrize("expr,expected", [
    ('Service.ID == "web1"', True),
    ("Service.ID == web1", True),
    ('Service.ID != "web1"', False),
    ('"v1" in Service.Tags', True),
    ('"v9" not in Service.Tags', True),
    ("Service.Tags contains blue", True),
    ("Service.Tags not contains blue", False),
    ('Service.Meta.env == "prod"', True),
    ('Service.Meta["env"] == "prod"', True),
    ('"env" in Service.Meta', True),
    ("Service.Port == 8080", True),
    ("Service.EnableTagOverride == false", True),
    ("Checks.Status == warning", True),
    ("Checks.Status != critical", True),
    ("Checks.Status == critical", False),
    ('Node.Meta.rack == r1 and Service.Port == 8080', True),
    ('Node.Meta.rack == r2 or Service.Port == 8080', True),
    ('not (Node.Meta.rack == r1)', False),
    ('Service.Service matches "^we"', True),
    ('Service.Meta.missing is empty', True),
    ('Service.Tags is not empty', True),
    ('Node.Node == "n1" and (Service.ID == x or Service.ID == web1)', True),
])
def test_filter(expr: str, expected: bool) -> None:
    assert compile_filter(expr)(ENTRY) is expected


@pytest.mark.parametrize("expr", ["", "Service.ID ==", "Service.ID ~ x", "(Service.ID == x",
                                  "Service.ID == x and", "Service.ID matches \"(\"", "== x"])
def test_filter_errors(expr: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(expr)


def test_service_defaults_and_check_ids() -> None:
    s = parse_service({"name": "web", "checks": [{"ttl": "5s"}, {"tcp": "127.0.0.1:1", "interval": "1s"}]})
    assert s.record.id == "web" and s.record.port == 0
    assert [c.check_id for c in s.checks] == ["service:web:1", "service:web:2"]
    one = parse_service({"Name": "web", "ID": "w1", "Check": {"TTL": "5s"}})
    assert [c.check_id for c in one.checks] == ["service:w1"]
    assert one.checks[0].initial_status == "critical"
    c = parse_check({"Name": "x", "HTTP": "http://a/", "Interval": "1ms"})
    assert c.interval == 0.1  # raised to the floor
    assert c.timeout == 10.0
    assert parse_check({"Name": "n", "TTL": 30_000_000_000}).ttl == 30.0  # Go nanoseconds


@pytest.mark.parametrize("body,needle", [
    ({"Name": "web", "Port": -1}, "not a port"),
    ({"Name": "web", "Port": 1.5}, "whole number"),
    ({"Name": "web", "Port": True}, "whole number"),
    ({"Name": "a b"}, "spaces"),
    ({"Name": "web", "Weights": {"Passing": 0}}, "Weights"),
    ({"Name": "web", "Meta": {"consul-x": "1"}}, "reserved"),
    ({"Name": "web", "Meta": {"k": 1}}, "string"),
    ({"Name": "web", "Check": {"HTTP": "http://x/", "TTL": "5s", "Interval": "1s"}}, "one kind"),
    ({"Name": "web", "Check": {"TCP": "nohost", "Interval": "1s"}}, "host:port"),
    ({"Name": "web", "Check": {"TTL": "5s", "Status": "great"}}, "not a check status"),
    ({"Name": "web", "Check": {"GRPC": "x:1"}}, "Interval: must be > 0 for grpc"),
    ({"Name": "web", "Check": {"GRPC": "x/svc", "Interval": "1s"}}, "host:port"),
    ({"Name": "web", "Check": {"UDP": "x:0", "Interval": "1s"}}, "host:port"),
    ({"Name": "web", "Check": {"H2PING": "x", "Interval": "1s"}}, "host:port"),
    ({"Name": "web", "Check": {"Args": "ls -l", "Interval": "1s"}}, "list of strings"),
    ({"Name": "web", "Check": {"Script": "ls -l", "Interval": "1s"}}, "Args"),
    ({"Name": "web", "Check": {"OSService": "w3svc", "Interval": "1s"}}, "Windows"),
    ({"Name": "web", "Check": {"DockerContainerID": "c1", "Interval": "1s"}}, "needs Args"),
    ({"Name": "web", "Check": {"DockerContainerID": "a b", "Args": ["x"], "Interval": "1s"}},
     "container ID"),
    ({"Name": "web", "Check": {"Args": ["x"], "UDP": "a:1", "Interval": "1s"}}, "one kind"),
    ({"Name": "web", "Check": {"TTL": "1s", "OutputMaxSize": 0 - 1}}, "OutputMaxSize"),
    ({"Name": "web", "Check": {"TTL": "1s", "FailuresBeforeWarning": -1}}, ">= 0"),
    ({"Name": "web", "Checks": [{"TTL": "1s", "ID": "a"}, {"TTL": "1s", "ID": "a"}]}, "duplicate"),
    ({"Name": "web", "Checks": {"TTL": "1s"}}, "list"),
])
def test_service_refusals(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(DefinitionError) as e:
        parse_service(body)
    assert needle in e.value.message


@pytest.mark.parametrize("check,kind", [
    ({"Args": ["/bin/check", "-q"], "Interval": "5s"}, "script"),
    ({"ScriptArgs": ["/bin/check"], "Interval": "5s", "Timeout": "2s"}, "script"),
    ({"GRPC": "127.0.0.1:50051/orders", "GRPCUseTLS": True, "TLSSkipVerify": True,
      "Interval": "5s"}, "grpc"),
    ({"H2PING": "127.0.0.1:443", "H2PingUseTLS": True, "Interval": "5s"}, "h2ping"),
    ({"UDP": "127.0.0.1:53", "Interval": "5s"}, "udp"),
    ({"AliasService": "db1", "AliasNode": "n2"}, "alias"),
    ({"AliasNode": "n2"}, "alias"),
    ({"DockerContainerID": "web", "Args": ["/bin/check"], "Shell": "/bin/sh",
      "Interval": "5s"}, "docker"),
    ({"HTTP": "http://a/", "Interval": "5s", "DisableRedirects": True, "OutputMaxSize": 100,
      "SuccessBeforePassing": 2, "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3},
     "http"),
])
def test_every_check_kind_parses_and_round_trips(check: dict[str, Any], kind: str) -> None:
    c = parse_check({"Name": "c", **check})
    assert c.kind == kind
    assert parse_check(c.to_json()) == c
    assert c.runs_commands == (kind in ("script", "docker"))
    assert c.record(status="passing", output="").type == kind
    if kind == "script":
        assert c.timeout == (2.0 if "Timeout" in check else 30.0)  # Consul's script default
        assert c.args[0] == "/bin/check"
    if kind == "http":
        assert (c.disable_redirects, c.output_max_size, c.failures_before_warning) == \
            (True, 100, 1)


def test_failures_before_warning_defaults_to_critical() -> None:
    c = parse_check({"Name": "c", "TCP": "a:1", "Interval": "1s", "FailuresBeforeCritical": 3})
    assert c.failures_before_warning == 3


def test_config_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"services\[0\]\.port: 70000 is not a port; use 1-65535"):
        parse_definitions([{"name": "web", "port": 70000}], [])
    with pytest.raises(ConfigError, match="duplicate service ID"):
        parse_definitions([{"name": "web"}, {"name": "web"}], [])
    with pytest.raises(ConfigError, match=r"checks\[0\]\.service_id"):
        parse_definitions([], [{"name": "c", "ttl": "5s", "service_id": "nope"}])


def test_acl_config_and_decisions() -> None:
    """The older two-level form: secrets mapped to read/write become global-read/global-write
    tokens; initial_management may do everything; the default token serves tokenless requests."""
    cfg = ACLConfig.from_dict({"enabled": True, "default_policy": "deny",
                               "tokens": {"w": "write", "r": "read", "initial_management": "root",
                                          "default": "r"}})
    a = ACL(cfg)
    a.resolve("").require("service", "web", "read")  # the default token reads
    with pytest.raises(PermissionDenied, match="lacks permission 'service:write' on \"web\""):
        a.resolve("").require("service", "web", "write")
    a.resolve("root").require("operator", "", "write")
    a.resolve("w").require("key", "x", "write")
    with pytest.raises(PermissionDenied, match="ACL not found"):
        a.resolve("zzz")
    assert ACL(ACLConfig()).resolve("anything").allowed("acl", "", "write")  # disabled: all
    lst = ACLConfig.from_dict({"enabled": True, "tokens": [{"token": "t", "policy": "read"}]})
    assert [(t.secret_id, t.policies) for t in lst.token_list] == [("t", ("global-read",))]
    for bad in ({"default_policy": "maybe"}, {"tokens": {"x": ""}}, {"tokens": "x"},
                {"tokens": [{"policy": "read"}]}, {"bogus": 1}, {"enabled": "yes"},
                {"tokens": {"default": "nobody"}},
                {"token_list": [{"secret_id": "s", "policies": ["nope"]}]},
                {"token_list": [{"policies": []}]},
                {"policies": [{"rules": ""}]},
                {"policies": [{"name": "a"}, {"name": "a"}]}):
        with pytest.raises(ConfigError):
            ACLConfig.from_dict(bad)


def test_acl_policies_tokens_and_the_anonymous_token() -> None:
    cfg = ACLConfig.from_dict({
        "enabled": True, "default_policy": "deny",
        "policies": [{"name": "web", "rules": 'service_prefix "web" { policy = "write" }'},
                     {"name": "pub", "rules": {"service": {"www": {"policy": "read"}}}}],
        "token_list": [{"secret_id": "s-web", "accessor_id": "acc-web", "policies": ["web"]},
                       {"AccessorID": ANONYMOUS_ACCESSOR, "Policies": [{"Name": "pub"}]}],
    })
    a = ACL(cfg)
    web = a.resolve("s-web")
    assert web.allowed("service", "web-1", "write") and not web.allowed("service", "db", "read")
    with pytest.raises(PermissionDenied) as e:
        web.require("service", "db", "write")
    assert e.value.message == ("Permission denied: token with AccessorID 'acc-web' lacks "
                               "permission 'service:write' on \"db\"")
    anon = a.resolve("")
    assert anon.accessor_id == ANONYMOUS_ACCESSOR
    assert anon.allowed("service", "www", "read") and not anon.allowed("service", "web", "read")
    assert a.dns_identity() is anon
    gen = a.generation
    a.reload(ACLConfig.from_dict({"enabled": True, "default_policy": "allow"}))
    assert a.generation > gen and a.resolve("").allowed("service", "db", "write")
    with pytest.raises(ConfigError, match=r"acl.policies\[0\]: policy 'bad': line 2"):
        ACLConfig.from_dict({"policies": [{"name": "bad", "rules": 'service "a" {}\nnode x'}]})


def test_token_sources() -> None:
    assert token_of({"X-Consul-Token": "a", "Authorization": "Bearer b"}, {"token": "c"}) == "a"
    assert token_of({"Authorization": "Bearer b"}, {"token": "c"}) == "b"
    assert token_of({"Authorization": "Basic Zm9vOmJhcg=="}, {"token": "c"}) == "c"
    assert token_of({"Authorization": "Basic Zm9vOmJhcg=="}, {}) == ""


def test_service_tagged_addresses_are_address_port_objects() -> None:
    s = parse_service({"Name": "web", "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}}})
    assert s.record.tagged_addresses == {"lan": {"Address": "10.0.0.1", "Port": 80}}
    with pytest.raises(DefinitionError, match="TaggedAddresses.lan"):
        parse_service({"Name": "web", "TaggedAddresses": {"lan": "10.0.0.1"}})
    with pytest.raises(DefinitionError, match="not a port"):
        parse_service({"Name": "web", "TaggedAddresses": {"wan": {"Address": "x", "Port": 70000}}})

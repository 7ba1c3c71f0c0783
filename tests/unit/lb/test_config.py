"""ListenerSpec / LBConfig parsing and validation: clear reasons for every mistake."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lb import ConfigError, LBConfig, ListenerSpec, Route, listeners_from_config


def test_from_dict_consul_style_keys() -> None:
    s = ListenerSpec.from_dict({"Name": "web", "Bind": "127.0.0.1:9000", "Mode": "HTTP",
                                "Service": "web", "Tag": "v2", "Strategy": "least_conn"})
    assert (s.name, s.bind, s.mode, s.service, s.tag, s.strategy) == (
        "web", "127.0.0.1:9000", "http", "web", "v2", "least_conn")
    assert s.address == ("127.0.0.1", 9000)


def test_from_dict_is_case_insensitive_and_accepts_snake_case() -> None:
    s = ListenerSpec.from_dict({"name": "db", "BIND": "[::1]:5432", "service": "pg",
                                "proxy_protocol": "2", "idle_timeout": "90s",
                                "MaxConnections": "10", "strategy": "wrr"})
    assert s.address == ("::1", 5432)
    assert s.proxy_protocol == "v2" and s.idle_timeout == 90.0 and s.max_connections == 10
    assert s.strategy == "weighted_round_robin" and s.mode == "tcp"


def test_routes_objects_and_strings() -> None:
    s = ListenerSpec.from_dict({"Name": "edge", "Bind": "127.0.0.1:0", "Mode": "http",
                                "Routes": [{"Host": "API.example.com", "PathPrefix": "/v1",
                                            "Service": "api"}, "/static=files",
                                           "shop.example.com/=shop"]})
    assert s.routes == (Route("api", "api.example.com", "/v1"), Route("files", "", "/static"),
                        Route("shop", "shop.example.com", "/"))
    assert s.service == ""


@pytest.mark.parametrize("data, needle", [
    ({"Bind": "127.0.0.1:1", "Service": "a"}, "Name: required"),
    ({"Name": "a", "Service": "a"}, "Bind is required"),
    ({"Name": "a", "Bind": "localhost:80", "Service": "a"}, "not an IP address"),
    ({"Name": "a", "Bind": "127.0.0.1", "Service": "a"}, "has no port"),
    ({"Name": "a", "Bind": "127.0.0.1:70000", "Service": "a"}, "not a port"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "Mode": "udp"}, "Mode 'udp'"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "Strategy": "fastest"}, "Strategy"),
    ({"Name": "a", "Bind": "127.0.0.1:1"}, "Service is required"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "ProxyProtocol": "v3"}, "v1, v2"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "Routes": ["/x=b"]}, "need Mode http"),
    ({"Name": "a b", "Bind": "127.0.0.1:1", "Service": "a"}, "Name"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "Colour": "red"}, "unknown key"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Service": "a", "IdleTimeout": "soon"},
     "not a duration"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Mode": "http", "Routes": [{"PathPrefix": "api",
                                                               "Service": "b"}]}, "must start"),
    ({"Name": "a", "Bind": "127.0.0.1:1", "Mode": "http", "Routes": [{"Host": "h"}]},
     "Service: required"),
])
def test_bad_specs_say_why(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        ListenerSpec.from_dict(data)
    assert needle in str(e.value)
    assert isinstance(e.value, ValueError)


def test_to_dict_round_trip() -> None:
    s = ListenerSpec.from_dict({"Name": "edge", "Bind": "127.0.0.1:8080", "Mode": "http",
                                "Service": "web", "Routes": ["/api=api"], "URLPrefix": True})
    assert ListenerSpec.from_dict(s.to_dict()) == s


def test_lbconfig_defaults_and_from_dict() -> None:
    assert LBConfig().validate().connect_timeout == 2.0
    c = LBConfig.from_dict({"ConnectTimeout": "250ms", "max_connections": 10, "splice": False,
                            "drain-timeout": 3, "listeners": [{"ignored": True}]})
    assert c.connect_timeout == 0.25 and c.max_connections == 10 and c.splice is False
    assert c.drain_timeout == 3.0


@pytest.mark.parametrize("data, needle", [
    ({"connect_timeout": -1}, "negative"),
    ({"max_connections": 0}, "must be >= 1"),
    ({"nonsense": 1}, "unknown setting"),
    ({"splice": "maybe"}, "not a boolean"),
    ({"pool_size": "many"}, "not an integer"),
])
def test_lbconfig_errors(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        LBConfig.from_dict(data)
    assert needle in str(e.value)


def test_listeners_from_config() -> None:
    specs = listeners_from_config({"Listeners": [
        {"Name": "a", "Bind": "127.0.0.1:1", "Service": "x"},
        {"Name": "b", "Bind": "127.0.0.1:2", "Service": "y", "Mode": "http"}]})
    assert [s.name for s in specs] == ["a", "b"]
    with pytest.raises(ConfigError, match="used twice"):
        listeners_from_config({"listeners": [{"Name": "a", "Bind": "127.0.0.1:1", "Service": "x"},
                                             {"Name": "a", "Bind": "127.0.0.1:2", "Service": "y"}]})
    assert listeners_from_config({}) == []


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                          c, max_size=3),
                     max_leaves=8)
_keys = st.sampled_from(["Name", "Bind", "Mode", "Service", "Tag", "Strategy", "ProxyProtocol",
                         "Routes", "URLPrefix", "PassingOnly", "ConnectTimeout", "IdleTimeout",
                         "MaxConnections", "name", "bind", "other"])


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=8))
def test_from_dict_only_ever_raises_config_error(data: dict[str, object]) -> None:
    try:
        spec = ListenerSpec.from_dict(data)
    except ConfigError:
        return
    assert spec.validate() is spec


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.sampled_from(["connect_timeout", "max_connections", "splice",
                                        "pool_size", "drain_timeout", "x"]), _json, max_size=4))
def test_lbconfig_from_dict_only_ever_raises_config_error(data: dict[str, object]) -> None:
    try:
        LBConfig.from_dict(data)
    except ConfigError:
        pass

"""Agent configuration: files, flags, precedence and error messages that say what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.config import build, decode_key, parse_args_settings, split_hostport
from registry.errors import ConfigError


def test_dev_defaults() -> None:
    cfg = parse_args_settings(["-dev"])
    assert cfg.dev and cfg.bind_addr == "127.0.0.1" and cfg.client_addr == "127.0.0.1"
    assert (cfg.http_port, cfg.dns_port, cfg.serf_lan_port) == (8500, 8600, 7946)
    assert cfg.domain == "rumor." and cfg.datacenter == "dc1" and cfg.node_name


def test_one_or_two_dashes() -> None:
    a = parse_args_settings(["-dev", "-node", "x", "-http-port", "9000"])
    b = parse_args_settings(["--dev", "--node", "x", "--http-port", "9000"])
    assert a == b and a.node_name == "x" and a.http_port == 9000


def test_files_then_flags(tmp_path: Path) -> None:
    j = tmp_path / "a.json"
    j.write_text(json.dumps({"node_name": "from-json", "datacenter": "east",
                             "ports": {"http": 9100, "dns": 9200}, "retry_join": ["10.0.0.1"],
                             "service": {"name": "web", "port": 80}}))
    t = tmp_path / "b.toml"
    t.write_text('node_name = "from-toml"\n[[services]]\nname = "db"\nport = 5432\n')
    cfg = parse_args_settings(["-config-file", str(j), "-config-file", str(t),
                               "-data-dir", str(tmp_path), "-http-port", "9300"])
    assert cfg.node_name == "from-toml"       # later file wins
    assert cfg.datacenter == "east"
    assert cfg.http_port == 9300              # flag wins over file
    assert cfg.dns_port == 9200
    assert [s["name"] for s in cfg.services] == ["web", "db"]   # definitions accumulate
    assert cfg.retry_join == ("10.0.0.1",)


def test_config_dir(tmp_path: Path) -> None:
    (tmp_path / "10-base.json").write_text('{"datacenter": "dc9"}')
    (tmp_path / "20-svc.json").write_text('{"services": [{"name": "api", "port": 1}]}')
    (tmp_path / "README").write_text("not config")
    cfg = parse_args_settings(["-config-dir", str(tmp_path), "-dev"])
    assert cfg.datacenter == "dc9" and cfg.services[0]["name"] == "api"


@pytest.mark.parametrize("argv, needle", [
    (["-http-port", "70000", "-dev"], "ports.http: 70000 is not a port; use 1-65535"),
    (["-http-port", "abc", "-dev"], "-http-port: 'abc' is not a port number"),
    (["-bind", "not-an-ip", "-dev"], "bind_addr: 'not-an-ip' is not an IP address"),
    (["-node", "x"], "data_dir: not set; pass -data-dir DIR"),
    (["-encrypt", "!!!", "-dev"], "encrypt: not valid base64"),
    (["-encrypt", "YWJj", "-dev"], "encrypt: the key is 3 bytes; it must be 16, 24 or 32"),
    (["-log-level", "loud", "-dev"], "log_level: 'loud' is not a level"),
    (["-recursor", "dns.example:53", "-dev"], "recursors: 'dns.example' is not an IP address"),
    (["-tag", "novalue", "-dev"], "-tag: 'novalue' is not KEY=VALUE"),
    (["-datacenter", "a b", "-dev"], "datacenter: 'a b' may only hold"),
])
def test_bad_flags_name_the_setting(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_args_settings(argv)
    assert needle in str(e.value)


@pytest.mark.parametrize("content, suffix, needle", [
    ("{not json", ".json", "not valid JSON"),
    ("a = [", ".toml", "not valid TOML"),
    ('{"bogus_key": 1}', ".json", "unknown setting 'bogus_key'"),
    ('{"ports": {"htp": 1}}', ".json", "ports.htp is not a known port"),
    ('{"ports": {"http": "x"}}', ".json", "ports.http: 'x' is not a whole number"),
    ('[1, 2]', ".json", "the top level must be an object"),
    ('{"services": [3]}', ".json", "services[0]: must be an object"),
    ('{"log_json": "yes"}', ".json", "log_json: 'yes' must be true or false"),
])
def test_bad_files(tmp_path: Path, content: str, suffix: str, needle: str) -> None:
    f = tmp_path / f"c{suffix}"
    f.write_text(content)
    with pytest.raises(ConfigError) as e:
        parse_args_settings(["-config-file", str(f), "-dev"])
    assert needle in str(e.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        parse_args_settings(["-config-file", "/nonexistent/x.json", "-dev"])


def test_advertise_is_gossip_address() -> None:
    assert build({"dev": True, "advertise_addr": "10.1.2.3"}).gossip_address == "10.1.2.3"
    assert build({"dev": True}).gossip_address == "127.0.0.1"


@pytest.mark.parametrize("value, expected", [
    ("10.0.0.1", ("10.0.0.1", 7946)),
    ("10.0.0.1:8301", ("10.0.0.1", 8301)),
    ("[::1]:8301", ("::1", 8301)),
    ("::1", ("::1", 7946)),
    ("host.example", ("host.example", 7946)),
])
def test_split_hostport(value: str, expected: tuple[str, int]) -> None:
    assert split_hostport(value, 7946) == expected


def test_decode_key_sizes() -> None:
    import base64

    for n in (16, 24, 32):
        assert len(decode_key(base64.b64encode(b"k" * n).decode())) == n


def test_docker_and_script_settings(tmp_path: Path) -> None:
    from registry.service import docker_socket

    assert parse_args_settings(["-dev"]).docker == {}
    cfg = parse_args_settings(["-dev", "-docker"])
    assert cfg.docker == {"socket": "default"} and docker_socket(cfg) == ""
    cfg = parse_args_settings(["-dev", "-docker", "/run/podman/podman.sock",
                               "-enable-local-script-checks"])
    assert docker_socket(cfg) == "/run/podman/podman.sock"
    assert cfg.enable_local_script_checks and not cfg.enable_script_checks
    f = tmp_path / "a.toml"
    f.write_text('enable_script_checks = true\n[docker]\nsocket = "unix:///var/run/docker.sock"\n'
                 'address = "container"\n')
    cfg = parse_args_settings(["-dev", "-config-file", str(f)])
    assert docker_socket(cfg) == "/var/run/docker.sock" and cfg.docker["address"] == "container"
    assert cfg.enable_script_checks


@pytest.mark.parametrize("docker,needle", [
    ({"socket": "tcp://10.0.0.1:2375"}, "only unix sockets"),
    ({"socket": ""}, "docker.socket"),
    ({"address": "bridge"}, "docker.address"),
    ({"sock": "/x"}, "docker.sock: unknown setting"),
    ([1], "docker: must be an object"),
])
def test_bad_docker_settings(docker: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build({"dev": True, "docker": docker})
    with pytest.raises(ConfigError, match="enable_script_checks"):
        build({"dev": True, "enable_script_checks": "yes"})

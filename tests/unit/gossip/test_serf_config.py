"""SerfConfig validation, and the agent's translation into gossip configs (registry.membership)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gossip.errors import ConfigError, KeyringError
from gossip.keymanager import load_keyring_file, save_keyring_file
from gossip.security import Keyring, generate_key
from gossip.serf_config import RUMOR_TAG, SerfConfig
from registry.config import AgentConfig
from registry.errors import ConfigError as AgentConfigError
from registry.membership import load_keyring, prepare_gossip


def test_defaults_are_serfs() -> None:
    c = SerfConfig(node_name="a")
    c.validate()
    assert (c.reap_interval, c.reconnect_interval) == (15.0, 30.0)
    assert c.reconnect_timeout == c.tombstone_timeout == 24 * 3600
    assert (c.user_event_size_limit, c.query_size_limit, c.event_buffer) == (512, 1024, 512)
    assert c.effective_tags()[RUMOR_TAG]


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"node_name": ""}, "serf.node_name"),
        ({"tags": {RUMOR_TAG: "x"}}, "reserved"),
        ({"tags": {"big": "x" * 600}}, "512"),
        ({"reap_interval": 0.0}, "serf.reap_interval"),
        ({"user_event_size_limit": 10_000}, "9 KiB"),
        ({"event_handlers": ("nope=/x",)}, "event_handlers"),
        ({"protocol_version": 7}, "serf.protocol_version"),
    ],
)
def test_validate_names_the_setting(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as e:
        replace(SerfConfig(node_name="a"), **change).validate()  # type: ignore[arg-type]
    assert fragment in str(e.value)


def agent(**kw: object) -> AgentConfig:
    base: dict[str, object] = {"node_name": "n1", "data_dir": "/tmp/x", "bind_addr": "127.0.0.1"}
    base.update(kw)
    return AgentConfig(**base)  # type: ignore[arg-type]


def test_prepare_gossip_profiles_and_overrides() -> None:
    p = prepare_gossip(agent(tags={"role": "web"}, gossip={"profile": "wan", "probe_interval": "6s",
                                                           "reconnect_timeout": "1h"}))
    assert p.memberlist.probe_interval == 6.0 and p.memberlist.gossip_interval == 0.5
    assert p.memberlist.delegate_protocol_version == 5
    assert p.serf.reconnect_timeout == 3600.0
    assert p.serf.tags == {"role": "web", "build": "1.17.0:rumor-0.1.0"}  # Consul's build tag
    assert p.serf.snapshot_path.endswith("serf/local.snapshot")
    local = prepare_gossip(agent(gossip={"profile": "local"}))
    assert local.memberlist.probe_timeout == 0.2 and local.serf.reconnect_interval == 2.0


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"gossip": {"profile": "moon"}}, "gossip.profile"),
        ({"gossip": {"bogus": 1}}, "gossip.bogus"),
        ({"gossip": {"probe_interval": "fast"}}, "gossip.probe_interval"),
        ({"gossip": {"name": "x"}}, "gossip.name"),
        ({"tags": {"rumor": "1"}}, "tags"),
        ({"event_handlers": ("what=/x",)}, "event_handlers"),
        ({"encrypt": "aGVsbG8="}, "encrypt"),
    ],
)
def test_prepare_gossip_errors_name_the_setting(kw: dict[str, object], fragment: str) -> None:
    with pytest.raises(AgentConfigError) as e:
        prepare_gossip(agent(**kw))
    assert str(e.value).startswith(fragment), str(e.value)


def test_keyring_file_roundtrip_and_errors(tmp_path: Path) -> None:
    k1, k2 = generate_key(), generate_key()
    path = tmp_path / "serf" / "local.keyring"
    assert load_keyring_file(path) is None
    save_keyring_file(path, Keyring([k2, k1]))
    assert load_keyring_file(path).keys == (k2, k1)  # type: ignore[union-attr]
    assert path.stat().st_mode & 0o777 == 0o600
    # the saved keyring wins over the encrypt key, as in Consul
    ring = load_keyring(path, (generate_key(),))
    assert ring is not None and ring.primary == k2
    assert load_keyring(tmp_path / "none", (k1,)).keys == (k1,)  # type: ignore[union-attr]
    assert load_keyring(tmp_path / "none", ()) is None
    path.write_text('["not base64!"]')
    with pytest.raises(KeyringError):
        load_keyring_file(path)
    with pytest.raises(AgentConfigError) as e:
        load_keyring(path, (k1,))
    assert str(e.value).startswith("encrypt:")

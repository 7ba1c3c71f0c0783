"""MemberlistConfig presets and validation."""

from __future__ import annotations

import dataclasses

import pytest

from gossip.config import MemberlistConfig, lan, local, wan
from gossip.errors import ConfigError


def test_presets_match_memberlist() -> None:
    c = lan(name="a")
    assert (c.probe_interval, c.probe_timeout, c.indirect_checks, c.suspicion_mult) == (
        1.0, 0.5, 3, 4)
    assert (c.gossip_interval, c.gossip_nodes, c.push_pull_interval, c.tcp_timeout) == (
        0.2, 3, 30.0, 10.0)
    assert c.vsn == (1, 5, 2, 2, 5, 4)
    w = wan(name="a")
    assert (w.probe_interval, w.probe_timeout, w.suspicion_mult, w.gossip_nodes) == (
        5.0, 3.0, 6, 4)
    assert (w.gossip_interval, w.gossip_to_the_dead_time, w.tcp_timeout) == (0.5, 60.0, 30.0)
    lo = local(name="a")
    assert (lo.probe_timeout, lo.indirect_checks, lo.retransmit_mult, lo.suspicion_mult) == (
        0.2, 1, 2, 3)
    assert (lo.gossip_interval, lo.push_pull_interval, lo.tcp_timeout) == (0.1, 15.0, 1.0)
    for cfg in (c, w, lo):
        assert cfg.validate() is cfg
    assert MemberlistConfig.lan(name="x", probe_interval=2.0).probe_interval == 2.0


def test_every_field_documented() -> None:
    import inspect

    src = inspect.getsource(MemberlistConfig)
    for f in dataclasses.fields(MemberlistConfig):
        idx = src.index(f"    {f.name}:")
        after = src[idx:].split("\n", 2)[1].strip()
        assert after.startswith('"""'), f"{f.name} has no docstring"


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"name": ""}, "gossip.name"),
        ({"bind_addr": "nope"}, "gossip.bind_addr"),
        ({"bind_port": 70000}, "gossip.bind_port"),
        ({"advertise_addr": "0.0.0.0"}, "gossip.advertise_addr"),
        ({"probe_timeout": 2.0}, "gossip.probe_timeout"),
        ({"probe_interval": 0}, "gossip.probe_interval"),
        ({"gossip_nodes": -1}, "gossip.gossip_nodes"),
        ({"udp_buffer_size": 100}, "gossip.udp_buffer_size"),
        ({"secret_keys": (b"short",)}, "gossip.secret_keys[0]"),
        ({"delegate_protocol_version": 6}, "gossip.delegate_protocol_version"),
        ({"protocol_version": 1}, "gossip.protocol_version"),
        ({"push_pull_interval": -1.0}, "gossip.push_pull_interval"),
        ({"eager_gossip_gap": -0.1}, "gossip.eager_gossip_gap"),
        ({"eager_gossip_burst": -1}, "gossip.eager_gossip_burst"),
    ],
)
def test_validate_names_setting(changes: dict[str, object], needle: str) -> None:
    cfg = lan(**{"name": "a", **changes})
    with pytest.raises(ConfigError) as ei:
        cfg.validate()
    assert needle in str(ei.value)
    assert isinstance(ei.value, ValueError)

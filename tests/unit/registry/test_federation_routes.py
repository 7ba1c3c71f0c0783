"""Which agent a request for another datacenter goes to, and the errors when none can take it.

The membership lists below are plain ``gossip.Member`` values, as the Gossip service returns
them; only the routing decision is under test (the forwarding itself is tested for real in
tests/integration/test_federation.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gossip import Member
from registry.errors import RequestError
from registry.federation import NO_PATH, Federation


class Pool:
    """What Federation reads of a Gossip service: members(), members_with_tag(),
    local_member(), coordinates()."""

    def __init__(self, me: str, members: list[Member]) -> None:
        self.me = me
        self._members = members

    def members(self) -> list[Member]:
        return list(self._members)

    def members_with_tag(self, tag: str) -> list[Member]:
        return [m for m in self._members if tag in m.tags]

    def local_member(self) -> Member:
        return next(m for m in self._members if m.name == self.me)

    def coordinates(self) -> dict[str, Any]:
        return {}      # none yet: the measured latencies order the datacenters


def wan(name: str, dc: str, http: str, status: str = "alive") -> Member:
    return Member(name=name, addr="10.0.0.1", port=8302, tags={"dc": dc, "rumor_http": http}, status=status)  # type: ignore[arg-type]


def fed_wan(*members: Member) -> Federation:
    pool = Pool("a.dc1", [wan("a.dc1", "dc1", "h-a:8500"), *members])
    return Federation("dc1", lan=None, wan=pool)  # type: ignore[arg-type]


def test_alive_members_of_that_datacenter_only_by_measured_latency() -> None:
    f = fed_wan(wan("b.dc2", "dc2", "h-b:8500"), wan("c.dc2", "dc2", "h-c:8500"),
                wan("d.dc2", "dc2", "h-d:8500", "failed"), wan("e.dc3", "dc3", "h-e:8500"))
    assert f.candidates("dc2", forwarded=False)[0] == ["h-b:8500", "h-c:8500"]   # by name
    f._rtt["h-c:8500"] = 0.010
    f._rtt["h-b:8500"] = 0.050
    assert f.candidates("dc2", forwarded=False)[0] == ["h-c:8500", "h-b:8500"]
    assert f.rtt("dc2") == 0.010 and f.rtt("dc1") == 0.0
    assert f.datacenters() == ["dc1", "dc2", "dc3"]      # ours, measured, never measured


@pytest.mark.parametrize("members, dc, text", [
    ((), "dc9", NO_PATH),
    ((wan("b.dc2", "dc2", "h-b:8500", "failed"),), "dc2", "its WAN members (b.dc2) are all down"),
])
def test_no_path(members: Any, dc: str, text: str) -> None:
    with pytest.raises(RequestError) as e:
        fed_wan(*members).candidates(dc, forwarded=False)
    assert e.value.status == 500 and text in e.value.message
    if dc == "dc9":
        assert e.value.message == NO_PATH        # Consul's exact text


def test_lan_only_agent_goes_through_its_wan_members_and_never_loops() -> None:
    lan = Pool("l1", [Member(name="l1", addr="10.0.0.2", port=7946),
                      Member(name="a", addr="10.0.0.1", port=7946, tags={"rumor_wan_http": "h-a:8500"}),
                      Member(name="z", addr="10.0.0.3", port=7946, tags={"rumor_wan_http": "h-z:8500"}, status="failed")])
    f = Federation("dc1", lan=lan)  # type: ignore[arg-type]
    assert f.candidates("dc2", forwarded=False)[0] == ["h-a:8500"]
    with pytest.raises(RequestError, match="not a WAN member"):
        f.candidates("dc2", forwarded=True)      # a forwarded request is not forwarded again
    alone = Federation("dc1", lan=Pool("l1", [Member(name="l1", addr="10.0.0.2", port=7946)]))  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="no WAN member of dc1 is alive"):
        alone.candidates("dc2", forwarded=False)
    assert alone.datacenters() == ["dc1"]

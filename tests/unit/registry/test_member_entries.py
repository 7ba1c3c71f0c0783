"""``/v1/agent/members`` bodies made from per-member encoded entries: byte for byte what
``json_response`` sends, and a member's entry made again only when Serf hands out a new
snapshot of it (Serf's snapshots: the same object until a field changes)."""

from __future__ import annotations

import json

from gossip.serf import _MemberState
from registry.api.base import json_response
from registry.api.gossip_routes import MemberEntries, member_json


def states(n: int) -> list[_MemberState]:
    return [_MemberState(name=f"n{i:03d}", addr=f"10.0.{i // 250}.{i % 250 + 1}", port=8301,
                         tags={"role": "node", "dc": "dc1", "id": str(i)}, vsn=(1, 5, 4, 2, 5, 4))
            for i in range(n)]


def expected(members: list) -> str:
    return json_response([member_json(m) for m in members]).text


def test_a_snapshot_is_the_same_object_until_a_field_changes() -> None:
    s = states(1)[0]
    a = s.snapshot()
    assert s.snapshot() is a
    s.status = "failed"
    b = s.snapshot()
    assert b is not a and b.status == "failed" and a.status == "alive"
    s.tags = {"role": "other"}
    assert s.snapshot().tags == {"role": "other"} and b.tags["role"] == "node"


def test_bodies_equal_json_response_for_short_and_long_lists() -> None:
    for n in (0, 1, 3, 50, 51, 120):
        entries = MemberEntries()
        members = [s.snapshot() for s in states(n)]
        body = entries.body(members)
        assert body == expected(members), n
        assert json.loads(body) == [member_json(m) for m in members]
        assert entries.body(members) == body


def test_only_a_changed_member_is_encoded_again() -> None:
    sts = states(5)
    entries = MemberEntries()
    entries.body([s.snapshot() for s in sts])
    before = {k: v[2] for k, v in entries._done.items()}
    sts[2].status = "left"
    members = [s.snapshot() for s in sts]
    assert entries.body(members) == expected(members)
    after = {k: v[2] for k, v in entries._done.items()}
    assert [k for k in before if after[k] is not before[k]] == ["n002"]
    assert '"Status": 3' in after["n002"]


def test_the_list_crossing_fifty_changes_every_entrys_spacing() -> None:
    sts = states(51)
    entries = MemberEntries()
    short = [s.snapshot() for s in sts[:50]]
    assert entries.body(short) == expected(short)
    full = [s.snapshot() for s in sts]
    assert entries.body(full) == expected(full)      # compact: no spaces anywhere
    assert entries.body(short) == expected(short)    # and back
    assert entries.body(full[:2]) == expected(full[:2])
    assert set(entries._done) == {"n000", "n001"}     # members no longer listed are let go

"""Catalog replication over an in-memory gossip bus: deltas, push-pull, failure, leave, partitions."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.events import Member, MemberFailed, MemberJoined
from registry.config import build
from registry.definitions import parse_check, parse_service
from registry.replication import Replicator
from registry.service import Registry, prepare_registry

from .fakebus import Bus


async def cluster(names: list[str], seed: int = 7) -> tuple[Bus, dict[str, Registry]]:
    bus = Bus(seed=seed)
    regs: dict[str, Registry] = {}
    for n in names:
        g = bus.add(n)
        cfg = build({"dev": True, "node_name": n, "bind_addr": "127.0.0.1"})
        reg = Registry(cfg, None, g, prepare_registry(cfg))
        await reg.start()
        regs[n] = reg
    # a join is a push-pull between the newcomer and a member
    for n in names[1:]:
        bus.push_pull(n, names[0], join=True)
    return bus, regs


async def stop(regs: dict[str, Registry]) -> None:
    for r in regs.values():
        await r.stop()


def digests(regs: dict[str, Registry]) -> set[str]:
    return {r.catalog.digest() for r in regs.values()}


async def register(reg: Registry, body: dict) -> None:  # type: ignore[type-arg]
    await reg.local.register_service(parse_service(body))


async def test_register_propagates_with_health() -> None:
    bus, regs = await cluster(["a", "b", "c", "d", "e"])
    await register(regs["a"], {"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"],
                               "Check": {"TTL": "30s", "Status": "passing"}})
    bus.run()
    for n, r in regs.items():
        inst = r.catalog.instances("web")
        assert [(i.node, i.service_id, i.port, i.health) for i in inst] == [("a", "web1", 8080, "passing")], n
    assert len(digests(regs)) == 1
    await stop(regs)


async def test_failing_check_is_critical_everywhere() -> None:
    bus, regs = await cluster(["a", "b", "c"])
    await register(regs["a"], {"Name": "web", "ID": "web1", "Check": {"TTL": "30s", "Status": "passing"}})
    bus.run()
    regs["a"].local.update_ttl("service:web1", "critical", "boom")
    bus.run()
    for r in regs.values():
        assert r.catalog.instances("web") == []
        checks = {c.check_id: c for c in r.catalog.entries("web")[0].checks}
        assert checks["service:web1"].status == "critical"
        assert checks["service:web1"].record.output == "boom"
    await stop(regs)


async def test_failed_member_critical_at_once_and_left_member_disappears() -> None:
    bus, regs = await cluster(["a", "b", "c"])
    await register(regs["a"], {"Name": "web", "ID": "web1", "Check": {"TTL": "30s", "Status": "passing"}})
    bus.run()
    snapshot_from_c = regs["c"].replicator.full_state()  # type: ignore[union-attr]
    bus.fail("a")
    for n in ("b", "c"):
        assert regs[n].catalog.instances("web") == []
        e = regs[n].catalog.entries("web")[0]
        assert e.checks[0].check_id == "serfHealth" and e.checks[0].status == "critical"
    bus.rejoin("a")
    assert len(regs["b"].catalog.instances("web")) == 1
    bus.leave("a")
    for n in ("b", "c"):
        assert regs[n].catalog.entries("web") == () and regs[n].catalog.node("a") is None
    # a stale copy from a slower peer must not bring it back
    regs["b"].replicator.merge_app_state(snapshot_from_c)  # type: ignore[union-attr]
    assert regs["b"].catalog.node("a") is None
    await stop(regs)


async def test_reaped_then_back_with_newer_versions() -> None:
    bus, regs = await cluster(["a", "b"])
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    bus.run()
    bus.fail("a")
    bus.reap("a")
    assert regs["b"].catalog.node("a") is None
    bus.rejoin("a")
    await register(regs["a"], {"Name": "web", "ID": "web1", "Port": 1})
    bus.push_pull("a", "b")
    assert [i.port for i in regs["b"].catalog.entries("web")] == [1]
    await stop(regs)


async def test_member_events_drive_one_status_cache_the_catalog_and_the_replicator() -> None:
    from gossip.events import Member, MemberUpdated, UserEventReceived

    bus, regs = await cluster(["a", "b"])
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    bus.run()
    b, gb = regs["b"], bus.nodes["b"]
    rep = b.replicator
    assert rep is not None

    def member(status: str) -> Member:
        return Member(name="a", addr="127.0.0.1", port=7946, status=status)

    # not a member event: nothing changes, nothing raises
    gb.emit_event(UserEventReceived(name="deploy", payload=b"x", ltime=1))
    assert b.catalog.node_status("a") == "alive" and rep.member_status("a") == "alive"
    # an update carries the member's status to the catalog and to the replicator's view
    gb.emit(MemberUpdated(member("leaving")))
    assert b.catalog.node_status("a") == "leaving" and rep.member_status("a") == "leaving"
    gb.emit(MemberUpdated(member("alive")))
    bus.fail("a")
    assert b.catalog.node_status("a") == "failed" and rep.member_status("a") == "failed"
    assert b.catalog.instances("web") == []
    bus.reap("a")
    assert b.catalog.node("a") is None and rep.member_status("a") is None
    assert "a" in rep.departed
    # joined again: no longer departed, and its newer record is accepted
    bus.rejoin("a")
    assert "a" not in rep.departed and rep.member_status("a") == "alive"
    await stop(regs)


async def test_partition_then_heal_converges() -> None:
    names = ["a", "b", "c", "d", "e", "f"]
    bus, regs = await cluster(names, seed=3)
    await register(regs["a"], {"Name": "web", "ID": "w-a"})
    bus.run()
    bus.partition({"a", "b", "c"}, {"d", "e", "f"})
    await register(regs["a"], {"Name": "web", "ID": "w-a2", "Tags": ["left-side"]})
    await regs["a"].local.deregister_service("w-a")
    await register(regs["d"], {"Name": "db", "ID": "db-d"})
    await register(regs["f"], {"Name": "web", "ID": "w-f"})
    bus.run()
    bus.anti_entropy(2)
    assert regs["b"].catalog.entries("db") == ()
    assert len(digests(regs)) > 1
    bus.heal()
    bus.run()
    bus.anti_entropy(3)
    assert len(digests(regs)) == 1
    r = regs["e"].catalog
    assert sorted(i.service_id for i in r.entries("web")) == ["w-a2", "w-f"]
    assert [i.service_id for i in r.entries("db")] == ["db-d"]
    await stop(regs)


async def test_lost_broadcasts_converge_by_push_pull_only() -> None:
    bus, regs = await cluster(["a", "b", "c", "d"])
    bus.route = lambda s, d: False  # every broadcast lost
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    await register(regs["a"], {"Name": "api", "ID": "api1"})
    await regs["a"].local.deregister_service("web1")
    bus.run()
    assert regs["b"].catalog.entries("api") == ()
    bus.heal()
    bus.queue_clear = [g.queue.clear() for g in bus.nodes.values()]
    for _ in range(4):
        bus.anti_entropy()
    assert len(digests(regs)) == 1
    assert [i.service_id for i in regs["d"].catalog.entries("api")] == ["api1"]
    assert regs["d"].catalog.entries("web") == ()
    await stop(regs)


async def test_deregister_propagates_and_out_of_order_delete_wins() -> None:
    bus, regs = await cluster(["a", "b"])
    sent: list[bytes] = []
    regs["a"].replicator.broadcast = lambda k, p: sent.append(p)  # type: ignore[union-attr]
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    await regs["a"].local.deregister_service("web1")
    put, delete = [m for m in sent if msgpack.unpackb(m)[2] in "Ss"][-2:]
    rb = regs["b"].replicator
    assert rb is not None
    rb.notify_app_message(delete)
    rb.notify_app_message(put)  # older, arrives late: must not resurrect
    assert regs["b"].catalog.entries("web") == ()
    rb.notify_app_message(put)  # duplicates are harmless
    assert regs["b"].catalog.entries("web") == ()
    await stop(regs)


async def test_big_check_output_still_fits_a_packet() -> None:
    bus, regs = await cluster(["a", "b"])
    sent: list[bytes] = []
    rep = regs["a"].replicator
    assert rep is not None
    orig = rep.broadcast
    rep.broadcast = lambda k, p: (sent.append(p), orig(k, p))  # type: ignore[assignment,func-returns-value]
    await register(regs["a"], {"Name": "web", "ID": "web1", "Check": {"TTL": "30s"}})
    regs["a"].local.update_ttl("service:web1", "passing", "x" * 4000)
    bus.run()
    assert all(len(p) <= 900 for p in sent)
    assert regs["b"].catalog.entries("web")[0].health == "passing"
    await stop(regs)


async def test_agent_that_lost_its_state_republishes_above_stale_copies() -> None:
    bus, regs = await cluster(["a", "b"])
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    bus.run()
    stale_version = regs["a"].local.version
    # "a" restarts with an empty data dir and a clock that went back
    a = regs["a"]
    a.local.version = 5
    a.local.services.clear()
    a.local.checks.clear()
    a.catalog.remove_service("a", "web1")
    bus.push_pull("a", "b")
    assert a.local.version > stale_version
    bus.run()
    bus.push_pull("a", "b")
    assert regs["b"].catalog.entries("web") == ()
    await stop(regs)


async def test_member_unknown_to_gossip_is_not_healthy() -> None:
    bus, regs = await cluster(["a", "b"])
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    state = regs["a"].replicator.full_state()  # type: ignore[union-attr]
    bus2, regs2 = await cluster(["x"])
    regs2["x"].replicator.merge_app_state(state)  # type: ignore[union-attr]
    assert [i.node for i in regs2["x"].catalog.entries("web")] == ["a"]
    assert regs2["x"].catalog.instances("web") == []  # not a live member as far as x knows
    await stop(regs)
    await stop(regs2)


async def test_hostile_input_is_dropped_and_counted() -> None:
    bus, regs = await cluster(["a"])
    rep = regs["a"].replicator
    assert rep is not None
    for junk in (b"", b"\xc1", msgpack.packb([1, "x"]), msgpack.packb([1, "n", "S", "i", 1, 0, [1]]),
                 msgpack.packb([1, "n", "Q", "i", 1, 0, None]), b"\x01notzlib", b"\x00" + msgpack.packb([2, [[1]]]),
                 b"\x05", msgpack.packb([1, "n", "C", "c", 5, 0, ["c", "n", "sick", "", "", "", "", [], "", "", ""]])):
        rep.notify_app_message(junk)
        rep.merge_app_state(junk)
    assert sum(rep.dropped.values()) >= 16
    assert regs["a"].catalog.node_names() == ["a"]
    await stop(regs)


def test_change_kinds_keep_their_wire_letters() -> None:
    # Deltas carry the kind as one letter, a put in capitals and a delete in lower case; agents
    # of different versions gossip with each other, so the letters must not change.
    from registry.local import ChangeKind, ItemType

    assert {k.name: k.value for k in ChangeKind} == {
        "SERVICE_PUT": "S", "SERVICE_DELETE": "s", "CHECK_PUT": "C", "CHECK_DELETE": "c",
        "NODE_INFO": "N"}
    assert [k for k in ChangeKind if k.deletes] == [ChangeKind.SERVICE_DELETE,
                                                     ChangeKind.CHECK_DELETE]
    assert {k.item_type for k in ChangeKind} == set(ItemType)
    assert msgpack.packb([ChangeKind.SERVICE_DELETE]) == msgpack.packb(["s"])


async def test_deltas_on_the_wire_name_each_change_by_its_letter() -> None:
    bus, regs = await cluster(["a", "b"])
    sent: list[list[object]] = []
    rep_a = regs["a"].replicator
    assert rep_a is not None
    broadcast = rep_a.broadcast
    rep_a.broadcast = lambda key, payload: (sent.append(msgpack.unpackb(payload)),
                                            broadcast(key, payload))[1]
    await register(regs["a"], {"Name": "web", "ID": "web1", "Check": {"TTL": "30s"}})
    await regs["a"].local.deregister_service("web1")
    assert [(m[2], m[3]) for m in sent] == [
        ("S", "web1"), ("C", "service:web1"), ("c", "service:web1"), ("s", "web1")]
    bus.run()
    assert regs["b"].catalog.entries("web") == ()
    # a delta with a kind that is not one of the letters is dropped and counted
    rep_b = regs["b"].replicator
    assert rep_b is not None
    for letter in ("Q", "", "SS", "n"):
        before = rep_b.dropped.get("bad_delta", 0)
        rep_b.notify_app_message(msgpack.packb([1, "a", letter, "x", 10**18, 0, None]))
        assert rep_b.dropped.get("bad_delta", 0) == before + 1, letter
    await stop(regs)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders_never_raise(data: bytes) -> None:
    from registry.catalog import Catalog, NodeInfo
    from registry.local import LocalState

    cat = Catalog(datacenter="dc1", local_node="a")
    local = LocalState(cat, NodeInfo(name="a"), None)
    rep = Replicator(cat, local, broadcast=lambda k, p: None, member_status=lambda n: "alive")
    rep.notify_app_message(data)
    rep.merge_app_state(data)
    rep.merge_app_state(b"\x00" + data)


async def test_thirty_nodes_converge_from_broadcasts() -> None:
    names = [f"n{i:02d}" for i in range(30)]
    bus, regs = await cluster(names, seed=11)
    for i, n in enumerate(names[:10]):
        await register(regs[n], {"Name": "web", "ID": f"web-{i}", "Port": 1000 + i})
    rounds = bus.run()
    have = [len(r.catalog.entries("web")) for r in regs.values()]
    assert have == [10] * 30, (rounds, have)
    assert len(digests(regs)) == 1
    await stop(regs)


@pytest.mark.parametrize("bad", [
    {"Name": "web", "Port": 70000}, {"Port": 1}, {"Name": "web", "Check": {"Args": ["true"]}},
])
def test_definitions_refused(bad: dict) -> None:  # type: ignore[type-arg]
    from registry.errors import RequestError

    with pytest.raises(RequestError):
        parse_service(bad)


def test_check_roundtrip_through_json() -> None:
    c = parse_check({"name": "h", "http": "http://127.0.0.1:1/x", "interval": "5s",
                     "header": {"X": ["1", "2"]}, "success_before_passing": 2})
    assert parse_check(c.to_json()) == c


async def test_leave_then_rejoin_without_restart_spreads_again() -> None:
    from .fakebus import rejoin_after_leave

    bus, regs = await cluster(["a", "b", "c", "d"])
    await register(regs["a"], {"Name": "web", "ID": "web1"})
    bus.run()
    g = bus.nodes["a"]
    delegate = g.delegate
    bus.leave("a")
    assert all(regs[n].catalog.entries("web") == () for n in "bcd")
    rejoin_after_leave(bus, g, delegate)
    bus.run()  # deltas only, no push-pull
    assert all([i.service_id for i in regs[n].catalog.entries("web")] == ["web1"] for n in "bcd")
    await stop(regs)


async def test_push_pull_sends_a_digest_and_only_what_the_initiator_lacks() -> None:
    bus, regs = await cluster([f"n{i}" for i in range(12)])
    for i in range(12):
        await register(regs[f"n{i}"], {"Name": "web", "ID": f"web{i}", "Port": 8000 + i,
                                       "Tags": ["a", "b"], "Meta": {"k": "v" * 20}})
    bus.run()
    bus.anti_entropy(3)
    assert len(digests(regs)) == 1
    a, b = regs["n0"].replicator, regs["n1"].replicator
    assert a is not None and b is not None
    full = len(a.full_state())
    # In sync: the initiator's digest is small and the answer carries no record.
    request = a.local_app_state(False)
    b.merge_app_state(request, False)
    answer = b.local_app_state(False)
    assert len(request) < full
    assert b._decode_state(answer) == (None, [])      # an answer with no record in it
    assert len(answer) < 16, answer
    a.merge_app_state(answer, False)
    assert len(digests(regs)) == 1


async def test_a_node_that_missed_every_broadcast_catches_up_by_pulling() -> None:
    bus, regs = await cluster(["a", "b", "c", "d"])
    bus.partition({"d"}, {"a", "b", "c"})
    await register(regs["a"], {"Name": "web", "ID": "w1", "Port": 1})
    await register(regs["b"], {"Name": "db", "ID": "d1", "Port": 2})
    bus.run()
    assert regs["d"].catalog.instances("web") == []
    bus.heal()
    bus.push_pull("d", "c")          # d starts the exchange: its digest, c answers what d lacks
    assert [i.service_id for i in regs["d"].catalog.instances("web")] == ["w1"]
    assert [i.service_id for i in regs["d"].catalog.instances("db")] == ["d1"]
    assert regs["d"].catalog.digest() == regs["c"].catalog.digest()
    bus.anti_entropy(4)               # random pulls spread the rest: every catalog the same
    assert len(digests(regs)) == 1
    await stop(regs)


async def test_members_coming_back_reconcile_at_once_without_periodic_push_pull() -> None:
    import asyncio

    names = ["a", "b", "c", "d", "e"]
    bus, regs = await cluster(names, seed=11)
    for reg in regs.values():
        assert reg.replicator is not None
        reg.replicator.heal_settle = 0.0  # every return here is brief: no wait for the others
    bus.partition({"a", "b"}, {"c", "d", "e"})
    for n in ("c", "d", "e"):
        for side in ("a", "b"):
            bus.nodes[side].emit(MemberFailed(Member(name=n, addr="127.0.0.1", port=7946,
                                                     status="failed")))
            bus.nodes[n].emit(MemberFailed(Member(name=side, addr="127.0.0.1", port=7946,
                                                  status="failed")))
    # writes on both sides during the cut, spread by gossip within each side only
    await register(regs["a"], {"Name": "web", "ID": "w-a"})
    await register(regs["d"], {"Name": "db", "ID": "db-d"})
    await regs["e"].local.register_service(parse_service({"Name": "web", "ID": "w-e"}))
    bus.run()
    assert len(digests(regs)) > 1
    bus.heal()
    # membership heals: every member sees the other side alive again
    for g in bus.nodes.values():
        for other in names:
            if other != g.name and g.view[other].status == "failed":
                g.emit(MemberJoined(Member(name=other, addr="127.0.0.1", port=7946)))
    for _ in range(3):
        await asyncio.sleep(0)  # the heal push-pulls run on the next turn of the loop
    assert len(digests(regs)) == 1  # no anti_entropy() call: the heal did it
    assert {i.service_id for i in regs["b"].catalog.instances("web")} == {"w-a", "w-e"}
    assert [i.service_id for i in regs["a"].catalog.instances("db")] == ["db-d"]
    for n in names:
        r = regs[n].replicator
        assert r is not None and r.counters["heal_push_pulls"] >= 1, n
        assert 1 <= len(bus.nodes[n].pushed_pulled) <= 3  # a burst is bounded
    # a member that merely updates (no return from failure) starts no exchange
    before = len(bus.nodes["a"].pushed_pulled)
    bus.nodes["a"].emit(MemberJoined(Member(name="b", addr="127.0.0.1", port=7946)))
    await asyncio.sleep(0)
    assert len(bus.nodes["a"].pushed_pulled) == before
    await stop(regs)


async def test_heal_push_pulls_are_spaced_and_bounded_when_many_come_back() -> None:
    import asyncio
    import time

    names = [f"n{i}" for i in range(10)]
    bus, regs = await cluster(names, seed=5)
    rep = regs["n0"].replicator
    assert rep is not None
    rep.heal_spacing, rep.heal_window = 0.05, 5.0
    g = bus.nodes["n0"]
    away = [0.0]
    rep.clock = lambda: time.monotonic() + away[0]
    for n in names[1:]:
        g.emit(MemberFailed(Member(name=n, addr="127.0.0.1", port=7946, status="failed")))
    away[0] = 60.0  # they were away a minute: not a brief absence
    started = time.monotonic()
    times: list[float] = []
    real = g.push_pull

    def timed(name: str, on_done: Any = None) -> bool:
        times.append(time.monotonic() - started)
        return real(name, on_done)

    rep.push_pull = timed
    # they come back one by one, a few milliseconds apart (as a heal looks from one node)
    for n in names[1:]:
        g.emit(MemberJoined(Member(name=n, addr="127.0.0.1", port=7946)))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)
    assert len(times) == 3  # the window's budget, not one per member
    assert all(b - a >= 0.04 for a, b in zip(times, times[1:], strict=False)), times
    assert rep.counters["heal_push_pulls"] == 3
    await stop(regs)


async def test_refuted_suspicions_of_our_own_side_do_not_use_up_the_heal_budget() -> None:
    """A heal, as one agent of the larger side sees it: the lone host's stale suspect and dead
    messages about this side arrive first, this side's members refute them (brief returns,
    some after a fleeting 'failed'), and only then does the lone host itself come back. The
    exchange with the lone host, the one that brings its writes, must still happen at once."""
    import asyncio

    from gossip.events import MemberRefuted

    names = ["a", "b", "c", "d", "lone"]
    bus, regs = await cluster(names, seed=3)
    rep = regs["a"].replicator
    assert rep is not None
    now = [1000.0]
    rep.clock = lambda: now[0]
    g = bus.nodes["a"]
    g.emit(MemberFailed(Member(name="lone", addr="127.0.0.1", port=7946, status="failed")))
    now[0] += 60.0                        # the cut lasts a minute
    for n in ("b", "c", "d"):             # the lone host's stale messages, refuted at once
        g.emit(MemberRefuted(Member(name=n, addr="127.0.0.1", port=7946)))
    g.emit(MemberFailed(Member(name="c", addr="127.0.0.1", port=7946, status="failed")))
    now[0] += 0.2
    g.emit(MemberJoined(Member(name="c", addr="127.0.0.1", port=7946)))
    await asyncio.sleep(0)                # one brief exchange may start before the lone one
    g.emit(MemberJoined(Member(name="lone", addr="127.0.0.1", port=7946)))
    rep.heal_spacing = 0.01
    for _ in range(20):
        await asyncio.sleep(0.02)
    assert "lone" in g.pushed_pulled, g.pushed_pulled
    assert len([n for n in g.pushed_pulled if n != "lone"]) <= 1, g.pushed_pulled
    assert rep.counters["heal_push_pulls"] == len(g.pushed_pulled)
    await stop(regs)


async def test_a_heal_push_pull_that_fails_is_tried_again() -> None:
    """The network heals one host at a time: the first exchange with a member that came back
    may fail (its side still drops our packets). It is tried again, not left to the periodic
    push-pull, and a member that stays unreachable is given up after HEAL_RETRIES."""
    import asyncio
    import time

    from registry.replication import HEAL_RETRIES

    bus, regs = await cluster(["a", "b", "c", "d"], seed=9)
    bus.partition({"d"}, {"a", "b", "c"})
    await register(regs["d"], {"Name": "web", "ID": "w-d"})
    bus.run()
    rep = regs["a"].replicator
    assert rep is not None
    rep.heal_spacing = rep.heal_settle = 0.01
    away = [0.0]
    rep.clock = lambda: time.monotonic() + away[0]
    g = bus.nodes["a"]
    g.emit(MemberFailed(Member(name="d", addr="127.0.0.1", port=7946, status="failed")))
    away[0] = 60.0
    refused = [1]   # a -> d fails once, then the cut is gone

    def route(src: str, dst: str) -> bool:
        if {src, dst} == {"a", "d"} and refused[0] > 0:
            refused[0] -= 1
            return False
        return True

    bus.route = route
    g.emit(MemberJoined(Member(name="d", addr="127.0.0.1", port=7946)))
    for _ in range(20):
        await asyncio.sleep(0.02)
    assert g.pushed_pulled == ["d", "d"]
    assert rep.counters["heal_push_pull_failures"] == 1
    assert [i.service_id for i in regs["a"].catalog.instances("web")] == ["w-d"]

    # unreachable for good: the first try and HEAL_RETRIES more, then the periodic one's job
    # (a brief absence this time: a failed exchange does not use up the window's brief one)
    rep.heal_window = 0.01          # so that the budget is not what stops it
    g.emit(MemberFailed(Member(name="c", addr="127.0.0.1", port=7946, status="failed")))
    bus.route = lambda src, dst: {src, dst} != {"a", "c"}
    g.emit(MemberJoined(Member(name="c", addr="127.0.0.1", port=7946)))
    for _ in range(30):
        await asyncio.sleep(0.02)
    assert g.pushed_pulled.count("c") == 1 + HEAL_RETRIES
    await stop(regs)


async def test_changes_made_together_travel_in_batches_within_the_delta_limit() -> None:
    bus, regs = await cluster(["a", "b"])
    rep_a, rep_b = regs["a"].replicator, regs["b"].replicator
    assert rep_a is not None and rep_b is not None
    for i in range(30):
        await register(regs["a"], {"Name": "web", "ID": f"web{i}", "Port": 8000 + i,
                                   "Tags": ["a-tag-to-take-some-room"]})
    bus.run()
    sent: list[tuple[str, bytes]] = []
    broadcast = rep_a.broadcast
    rep_a.broadcast = lambda key, payload: (sent.append((key, payload)),
                                            broadcast(key, payload))[1]
    regs["a"].local.republish_all()          # 31 changes at once: the node info, 30 services
    decoded = [msgpack.unpackb(p) for _, p in sent]
    assert len(sent) > 1 and all(m[0] == 4 for m in decoded)     # batches, several
    assert all(len(p) <= rep_a.delta_limit for _, p in sent)
    inner = [msgpack.unpackb(d) for m in decoded for d in m[1]]
    assert [(d[2], d[3]) for d in inner] == [("N", "")] + [("S", f"web{i}") for i in range(30)]
    assert all(key.startswith("B\x01") for key, _ in sent)
    assert rep_a.counters["batches_sent"] == len(sent)
    # b applies every delta of a batch, and passes a batch on only when it brought news
    before = rep_b.counters["deltas_rebroadcast"]
    for _, p in sent:
        rep_b.notify_app_message(p)
    assert rep_b.counters["deltas_rebroadcast"] == before + len(sent)
    for _, p in sent:
        rep_b.notify_app_message(p)          # the same again: stale, not passed on
    assert rep_b.counters["deltas_rebroadcast"] == before + len(sent)
    assert regs["b"].catalog.digest() == regs["a"].catalog.digest()
    # a bad batch, or a bad delta inside one, is dropped and counted; the good ones apply
    dropped = sum(rep_b.dropped.values())
    await register(regs["a"], {"Name": "db", "ID": "db1"})
    sent.clear()
    regs["a"].local.republish_all()
    good = [d for _, p in sent for d in msgpack.unpackb(p)[1]]
    for junk in (msgpack.packb([4, "x"]), msgpack.packb([4, [1, 2]]),
                 msgpack.packb([4, [b"\xc1", msgpack.packb([1, "x"]), *good]])):
        rep_b.notify_app_message(junk)
    assert sum(rep_b.dropped.values()) == dropped + 4
    assert [i.service_id for i in regs["b"].catalog.entries("db")] == ["db1"]
    await stop(regs)


async def test_configured_services_leave_as_one_batch() -> None:
    """An agent's start applies its configured services and checks together: the replication
    gets one list of changes and sends one batch, not a gossip message per item (issue 13:
    every other agent of the pool decodes and re-broadcasts each message a joiner sends)."""
    from registry.catalog import Catalog, NodeInfo
    from registry.definitions import parse_check
    from registry.local import LocalState

    cat = Catalog(datacenter="dc1", local_node="a")
    local = LocalState(cat, NodeInfo(name="a"), None)
    sent: list[tuple[str, bytes]] = []
    rep = Replicator(cat, local, broadcast=lambda k, p: sent.append((k, p)),
                     member_status=lambda n: "alive")
    seen: list[int] = []
    local.listeners.append(lambda changes: seen.append(len(changes)))
    sdefs = [parse_service({"Name": f"svc-{k}", "ID": f"a-{k}", "Port": 1000 + k})
             for k in range(5)]
    cdefs = [parse_check({"Name": "disk", "CheckID": "disk", "TTL": "30s"})]
    await local.apply_parsed_config(sdefs, cdefs)
    assert seen == [6]
    assert rep.counters["deltas_sent"] == 6 and rep.counters["batches_sent"] == 1
    assert len(sent) == 1
    # the batch carries every item, and a peer that applies it has the whole record
    cat2 = Catalog(datacenter="dc1", local_node="b")
    peer = Replicator(cat2, LocalState(cat2, NodeInfo(name="b"), None),
                      broadcast=lambda k, p: None, member_status=lambda n: "alive")
    peer.notify_app_message(sent[0][1])
    assert set(cat2.node_services("a")) == {f"a-{k}" for k in range(5)}
    # a change made alone still leaves at once, by itself
    await local.register_service(parse_service({"Name": "web", "ID": "web-1", "Port": 80}))
    assert seen == [6, 1] and len(sent) == 2
    await local.stop()


async def test_a_heal_seen_a_second_after_the_cut_reconciles_with_the_other_side() -> None:
    """The order of events of a failed CI run (stop 26), as node0 of a 2/3 cut saw it: the cut
    was seen about a second before it healed, so every member of the other side came back
    'brief' too, and the one brief exchange of the window went to the first brief return, a
    member of our own side refuting the other side's stale suspicion. Nothing then fetched the
    other side's writes until the periodic push-pull, 30 s later. The brief exchange must go to
    the member whose failure began first, also when our own side's returns fill the queue, and
    at once: that member failed longer ago than the settle (1 s) would wait."""
    import asyncio

    from gossip.events import MemberRefuted

    names = ["a", "b", "c", "d", "e", "x", "y", "z"]
    bus, regs = await cluster(names, seed=5)
    rep = regs["a"].replicator
    assert rep is not None
    now = [1000.0]
    rep.clock = lambda: now[0]
    rep.heal_spacing = 0.05
    assert rep.heal_settle == 1.0
    g = bus.nodes["a"]

    def member(n: str, status: str = "alive") -> Member:
        return Member(name=n, addr="127.0.0.1", port=7946, status=status)

    g.emit(MemberFailed(member("x", "failed")))      # the cut seen
    now[0] += 0.33
    g.emit(MemberFailed(member("z", "failed")))
    now[0] += 0.7                                     # the heal, 1.03 s after the cut was seen
    for n in ("b", "c", "d"):                         # our side refutes the stale suspicions
        g.emit(MemberRefuted(member(n)))
    g.emit(MemberFailed(member("e", "failed")))      # a stale 'dead', refuted 5 ms later
    now[0] += 0.005
    g.emit(MemberJoined(member("e")))
    g.emit(MemberJoined(member("x")))                # the other side: back, 'brief' too
    g.emit(MemberFailed(member("y", "failed")))
    now[0] += 0.005
    g.emit(MemberJoined(member("y")))
    g.emit(MemberJoined(member("z")))
    for _ in range(10):               # 0.2 s: well within the settle
        await asyncio.sleep(0.02)
    assert g.pushed_pulled == ["x"], g.pushed_pulled
    assert rep.counters["heal_push_pulls"] == 1
    await stop(regs)


async def test_a_brief_return_of_our_own_side_waits_for_the_settle() -> None:
    """A refuted suspicion or a fleeting 'failed' (our own side, as a heal's stale news
    arrives) waits ``heal_settle`` before its exchange, so that the other side's members,
    back in the same second, can be chosen over it."""
    import asyncio

    from gossip.events import MemberRefuted

    bus, regs = await cluster(["a", "b", "c"], seed=6)
    rep = regs["a"].replicator
    assert rep is not None
    rep.heal_settle = 0.3
    g = bus.nodes["a"]
    g.emit(MemberRefuted(Member(name="b", addr="127.0.0.1", port=7946)))
    g.emit(MemberFailed(Member(name="c", addr="127.0.0.1", port=7946, status="failed")))
    g.emit(MemberJoined(Member(name="c", addr="127.0.0.1", port=7946)))
    await asyncio.sleep(0.15)
    assert g.pushed_pulled == []
    await asyncio.sleep(0.4)
    assert g.pushed_pulled == ["c"], g.pushed_pulled  # failed, if briefly: before a refuted one
    await stop(regs)


async def test_a_pull_fills_a_gap_in_the_answering_nodes_own_record() -> None:
    """A bench straggler (partition_heal-164934, trials 3 and 8): after a heal, an agent kept
    the lone host's deregistered instance for up to 60 s although it had just push-pulled with
    that host. It had the host's *latest* change by gossip but missed an earlier one (the
    deregistration), so its digest said it was complete up to an older version and knew the
    newest: the host compared only the newest and answered with nothing. A gap in the
    answering node's own record must be answered with that record."""
    bus, regs = await cluster(["a", "b"])
    await register(regs["a"], {"Name": "web", "ID": "w1"})
    bus.run()
    assert [i.service_id for i in regs["b"].catalog.instances("web")] == ["w1"]
    sent: list[bytes] = []
    ra, rb = regs["a"].replicator, regs["b"].replicator
    assert ra is not None and rb is not None
    ra.broadcast = lambda k, p: sent.append(p)  # type: ignore[method-assign]
    await regs["a"].local.deregister_service("w1")   # lost on the way to b
    await register(regs["a"], {"Name": "api", "ID": "api1"})
    rb.notify_app_message(sent[-1])                    # only the newest change arrives
    assert [i.service_id for i in regs["b"].catalog.instances("api")] == ["api1"]
    assert [i.service_id for i in regs["b"].catalog.instances("web")] == ["w1"]
    bus.push_pull("b", "a")                            # b pulls from a itself
    assert regs["b"].catalog.instances("web") == []
    assert regs["b"].catalog.digest() == regs["a"].catalog.digest()
    await stop(regs)


async def test_a_restarted_agent_reconciles_with_a_member_it_first_knew_as_failed() -> None:
    """A bench straggler (kill -9 trials, partition_heal KV record): an agent restarted during
    a cut learns the other side's records from its own side's seed, while gossip does not
    know those members at all (a joiner's view holds no failed member). When they came back
    after the heal, nothing marked them as returning, so there was no heal push-pull and their
    cut-time writes waited for a periodic one (23 s after the membership heal). A member
    whose record we took from others while it was not alive is one that comes back."""
    import asyncio

    bus, regs = await cluster(["a", "c"])
    await register(regs["c"], {"Name": "web", "ID": "w-c"})
    bus.run()
    bus.partition({"a", "b"}, {"c"})
    g = bus.add("b")                                  # b (re)starts during the cut
    g.view.pop("c")                                   # its gossip never saw c
    cfg = build({"dev": True, "node_name": "b", "bind_addr": "127.0.0.1"})
    b = Registry(cfg, None, g, prepare_registry(cfg))
    await b.start()
    regs["b"] = b
    rep = b.replicator
    assert rep is not None
    now = [1000.0]
    rep.clock = lambda: now[0]
    bus.push_pull("b", "a", join=True)                # c's record, from a
    assert [i.service_id for i in b.catalog.entries("web")] == ["w-c"]
    await regs["c"].local.deregister_service("w-c")   # c writes during the cut
    bus.run()
    assert [i.service_id for i in b.catalog.entries("web")] == ["w-c"]
    bus.heal()
    now[0] += 60.0
    g.emit(MemberJoined(Member(name="c", addr="127.0.0.1", port=7946)))
    for _ in range(5):
        await asyncio.sleep(0.01)
    assert g.pushed_pulled == ["c"], g.pushed_pulled
    assert b.catalog.entries("web") == ()
    # a member learnt alive and its record with it is no return: no exchange
    g2 = bus.nodes["a"]
    before = list(g2.pushed_pulled)
    g2.emit(MemberJoined(Member(name="b", addr="127.0.0.1", port=7946)))
    await asyncio.sleep(0.01)
    assert g2.pushed_pulled == before
    await stop(regs)

"""The registry's replication over real gossip cores: whole simulated nodes (memberlist + Serf +
the registry's application channel) on a virtual clock, through ``gossip.sim.SimGossip``.

Unlike ``fakebus`` (a model of the gossip facade), the deltas here ride memberlist's
piggy-backing and Serf's Rumor-only queue, and the full exchanges ride real push/pulls, with
suspicion, failure, Serf's reconnect and the digest exchange as the agent runs them.
"""

from __future__ import annotations

import random

from gossip.sim import Simulator
from registry.config import build
from registry.definitions import parse_service
from registry.service import Registry, prepare_registry


async def cluster(names: list[str], seed: int = 5) -> tuple[Simulator, dict[str, Registry]]:
    sim = Simulator(seed=seed)
    regs: dict[str, Registry] = {}
    for n in names:
        sim.add_gossip_node(n)
        cfg = build({"dev": True, "node_name": n, "bind_addr": "127.0.0.1"})
        reg = Registry(cfg, None, sim.facade(n), prepare_registry(cfg))
        await reg.start()
        regs[n] = reg
    for n in names[1:]:
        sim.join(n, [names[0]])
    assert sim.run_for(10.0, stop=lambda: all(
        len([m for m in sim.facade(n).members() if m.status == "alive"]) == len(names)
        for n in names))
    return sim, regs


def converged(regs: dict[str, Registry], names: list[str] | None = None) -> bool:
    chosen = [regs[n] for n in (names or list(regs))]
    return len({r.catalog.digest() for r in chosen}) == 1


async def register(reg: Registry, name: str, sid: str, port: int) -> None:
    await reg.local.register_service(parse_service({"Name": name, "ID": sid, "Port": port}))


async def test_registrations_spread_over_real_gossip() -> None:
    sim, regs = await cluster(["a", "b", "c", "d", "e"])
    await register(regs["a"], "web", "web1", 8080)
    await register(regs["c"], "db", "db1", 5432)

    def everywhere() -> bool:
        return all([i.service_id for i in r.catalog.instances("web")] == ["web1"]
                   and [i.service_id for i in r.catalog.instances("db")] == ["db1"]
                   for r in regs.values())

    assert sim.run_for(5.0, stop=everywhere)
    assert converged(regs)
    for r in regs.values():
        await r.stop()


async def test_catalogs_equal_after_a_partition_with_writes_on_both_sides() -> None:
    names = ["a", "b", "c", "d", "e"]
    sim, regs = await cluster(names)
    sim.run_for(3.0)
    left, right = {"a", "b"}, {"c", "d", "e"}
    base = sim.route

    def route(src: tuple[str, int], dst: tuple[str, int], kind: str, now: float) -> float | None:
        x, y = sim.by_addr[src].name, sim.by_addr[dst].name
        if (x in left) != (y in left):
            return None
        return base(src, dst, kind, now)

    sim.route = route
    # each side declares the other failed
    assert sim.run_for(60.0, stop=lambda: all(
        m.status == "failed" for m in sim.facade("a").members() if m.name in right))
    await register(regs["a"], "web", "web-a", 1)
    await register(regs["d"], "web", "web-d", 2)
    assert sim.run_for(10.0, stop=lambda: converged(regs, ["a", "b"])
                       and converged(regs, ["c", "d", "e"]))
    assert not converged(regs)
    sim.route = base
    assert sim.run_for(120.0, stop=lambda: converged(regs)), \
        {n: sorted(i.service_id for i in r.catalog.instances("web")) for n, r in regs.items()}
    for r in regs.values():
        assert sorted(i.service_id for i in r.catalog.instances("web")) == ["web-a", "web-d"]
    for r in regs.values():
        await r.stop()


async def test_a_refuted_suspicion_reconciles_the_catalogs_at_once() -> None:
    """A member cut off just long enough to be suspected (not failed) misses a delta; when it
    refutes, the registry hears ``MemberRefuted`` and pulls from it. Periodic push-pull is off
    here (no other way for the lost delta to arrive), so without the heal the catalogs stay
    different."""
    from gossip import MemberlistConfig, MemberRefuted
    from gossip.state import NodeStatus

    names = ["a", "b", "c", "d", "e"]
    sim = Simulator(seed=7)
    regs: dict[str, Registry] = {}
    for n in names:
        sim.add_gossip_node(n, config=MemberlistConfig.local(name=n, push_pull_interval=0.0))
        cfg = build({"dev": True, "node_name": n, "bind_addr": "127.0.0.1"})
        reg = Registry(cfg, None, sim.facade(n), prepare_registry(cfg))
        await reg.start()
        assert reg.replicator is not None
        reg.replicator.clock = lambda: sim.now  # its heal timers run on the virtual clock
        reg.replicator.call_later = sim.call_later
        regs[n] = reg
    for n in names[1:]:
        sim.join(n, [names[0]])
    assert sim.run_for(10.0, stop=lambda: all(
        len([m for m in sim.facade(n).members() if m.status == "alive"]) == len(names)
        for n in names))
    sim.run_for(5.0)
    assert converged(regs)
    refuted: list[tuple[str, str]] = []
    for n in names:
        sim.facade(n).add_listener(
            lambda ev, n=n: refuted.append((n, ev.member.name))
            if isinstance(ev, MemberRefuted) else None)

    base = sim.route
    cut = True

    def route(src: tuple[str, int], dst: tuple[str, int], kind: str, now: float) -> float | None:
        if cut and "e" in (sim.by_addr[src].name, sim.by_addr[dst].name):
            return None
        return base(src, dst, kind, now)

    sim.route = route
    await register(regs["e"], "web", "web-e", 1)  # its delta goes nowhere

    def suspected() -> bool:
        nd = sim.nodes["a"].memberlist.node("e")
        return nd is not None and nd.status == NodeStatus.SUSPECT

    assert sim.run_for(10.0, stop=suspected)
    sim.run_for(0.5)  # e's retransmits of the delta are spent on the cut
    cut = False
    assert sim.run_for(10.0, stop=lambda: converged(regs)), \
        ({n: [i.service_id for i in r.catalog.entries("web")] for n, r in regs.items()},
         refuted)
    assert ("a", "e") in refuted
    assert all(sim.facade("a").member(x).status == "alive" for x in names)  # type: ignore[union-attr]
    assert regs["a"].replicator is not None
    assert regs["a"].replicator.stats()["refuted"] >= 1
    for r in regs.values():
        await r.stop()


async def _missed_record(record_wait: float) -> tuple[bool, float, dict[str, int]]:
    """f joins a settled pool of five while c hears none of the gossip that carries records
    (for 10 s: every copy of f's record and its restamp is spent by then). c lists f as a
    member all along. Periodic push-pull and the join resync are off. Whether c had f's
    record 60 simulated seconds after the join, when it came, and c's replication
    counters."""
    from gossip import MemberlistConfig

    names = ["a", "b", "c", "d", "e", "f"]
    sim = Simulator(seed=11)
    regs: dict[str, Registry] = {}
    for n in names:
        sim.add_gossip_node(n, config=MemberlistConfig.local(
            name=n, push_pull_interval=0.0, join_resync=False))
        cfg = build({"dev": True, "node_name": n, "bind_addr": "127.0.0.1"})
        reg = Registry(cfg, None, sim.facade(n), prepare_registry(cfg))
        await reg.start()
        assert reg.replicator is not None
        reg.replicator.clock = lambda: sim.now
        reg.replicator.call_later = sim.call_later
        reg.replicator.record_wait = record_wait
        reg.replicator.rng = random.Random(n)   # the record wait's random share, reproducible
        regs[n] = reg
    for n in names[1:5]:
        sim.join(n, ["a"])
    sim.run_for(5.0)
    c = regs["c"].replicator
    assert c is not None
    hear = c.notify_app_message
    deaf = True
    c.notify_app_message = lambda buf: None if deaf else hear(buf)  # type: ignore[method-assign]
    await register(regs["f"], "web", "web-f", 1)
    start = sim.now
    sim.join("f", ["a"])
    sim.run_for(10.0)
    deaf = False
    assert sim.facade("c").member("f") is not None
    assert "f" not in {n.name for n in regs["c"].catalog.nodes()}, "c should have missed f"
    got = sim.run_for(50.0, stop=lambda: any(
        i.service_id == "web-f" for i in regs["c"].catalog.instances("web")))
    for r in regs.values():
        await r.stop()
    return got, sim.now - start, c.stats()


async def test_a_member_that_missed_a_joiners_record_pulls_it() -> None:
    """With no record of a member that joined ``record_wait`` to twice that seconds ago, the
    agent pulls it from that member (a push-pull in the heal budget). Without the check, and
    with the periodic push-pull off, c never gets f's record."""
    got, _, stats = await _missed_record(1e9)
    assert not got and stats["record_wait_push_pulls"] == 0
    got, after, stats = await _missed_record(15.0)
    assert got and 15.0 <= after <= 32.0, after
    assert stats["record_wait_push_pulls"] == 1

"""Serf cores on real memberlist cores in the in-process simulator (virtual clock, fake network).

Checks the §7.9 outcomes end to end without sockets: a graceful leave shows 'left' everywhere, a
crash shows 'failed', tags and user events spread, and intents order statuses.
"""

from __future__ import annotations

import random

from gossip.config import MemberlistConfig
from gossip.events import UserEventReceived
from gossip.serf import Serf, SerfDelegate
from gossip.serf_config import RUMOR_TAG, SerfConfig
from gossip.sim import Simulator


def build(n: int, seed: int = 3) -> tuple[Simulator, dict[str, Serf]]:
    sim = Simulator(seed=seed)
    serfs: dict[str, Serf] = {}
    for i in range(n):
        name = f"n{i}"
        s = Serf(SerfConfig.local(name, tags={"idx": str(i)}), rng=random.Random(i),
                 gossip_interval=0.1, retransmit_mult=4, now=sim.now)
        d = SerfDelegate(s, lambda: sim.now)
        node = sim.add_node(name, MemberlistConfig.local(name=name, delegate_protocol_version=5,
                                                         retransmit_mult=4),
                            delegate=d)
        s.set_local_address(*node.addr)
        serfs[name] = s
    for name in list(serfs)[1:]:
        sim.join(name, ["n0"])
    sim.run_for(1.0)
    for s in serfs.values():
        s.broadcast_join_intent(s.clock.time(), sim.now)
    return sim, serfs


def statuses(s: Serf) -> dict[str, str]:
    return {m.name: m.status for m in s.members()}


def test_join_tags_and_statuses_converge() -> None:
    sim, serfs = build(5)
    ok = sim.run_for(10.0, stop=lambda: all(
        statuses(s) == {f"n{i}": "alive" for i in range(5)} for s in serfs.values()))
    assert ok, {n: statuses(s) for n, s in serfs.items()}
    sim.run_for(3.0)
    m = serfs["n4"].member("n2")
    assert m is not None and m.tags["idx"] == "2" and RUMOR_TAG in m.tags
    assert m.delegate_cur == 5 and m.protocol_max == 5
    # everyone has everyone's join intent LTime
    assert all(s.status_ltime("n3") == serfs["n3"].status_ltime("n3") for s in serfs.values())


def test_graceful_leave_is_left_and_crash_is_failed() -> None:
    sim, serfs = build(4)
    sim.run_for(5.0)
    leaver = serfs["n3"]
    assert leaver.start_leave(sim.now)
    sim.run_for(1.0)
    sim.leave("n3")
    sim.run_for(1.0)
    sim.stop("n3")
    ok = sim.run_for(5.0, stop=lambda: all(statuses(serfs[n]).get("n3") == "left" for n in ("n0", "n1", "n2")))
    assert ok, {n: statuses(serfs[n]) for n in ("n0", "n1", "n2")}
    sim.stop("n2")  # crash: no intent
    ok = sim.run_for(60.0, stop=lambda: all(statuses(serfs[n]).get("n2") == "failed" for n in ("n0", "n1")))
    assert ok, {n: statuses(serfs[n]) for n in ("n0", "n1")}
    assert statuses(serfs["n0"])["n3"] == "left"


def test_user_event_reaches_everyone_once() -> None:
    sim, serfs = build(5)
    sim.run_for(3.0)
    for s in serfs.values():
        while s.next_event() is not None:
            pass
    serfs["n1"].user_event("deploy", b"v42", True, sim.now)

    def delivered() -> bool:
        return all(any(e.name == "deploy" for e in s.recent_events()) for s in serfs.values())

    assert sim.run_for(5.0, stop=delivered)
    sim.run_for(5.0)
    for name, s in serfs.items():
        evs = []
        while (e := s.next_event()) is not None:
            if isinstance(e, UserEventReceived):
                evs.append(e)
        assert [(e.name, e.payload) for e in evs] == [("deploy", b"v42")], name


def test_tag_update_spreads() -> None:
    sim, serfs = build(3)
    sim.run_for(3.0)
    serfs["n0"].set_tags({"role": "db"})
    sim.nodes["n0"].core.update_node(sim.now)
    sim._flush(sim.nodes["n0"])
    ok = sim.run_for(5.0, stop=lambda: all(
        (m := s.member("n0")) is not None and m.tags.get("role") == "db" for s in serfs.values()))
    assert ok


def test_partition_heals_through_serf_reconnect() -> None:
    """Both sides declare each other failed; only Serf's reconnect (a push/pull join to a failed
    member) brings them back, since memberlist stops probing dead nodes."""
    sim, serfs = build(4)
    sim.run_for(3.0)
    cut = {"n3"}
    base = sim.route

    def route(src: tuple[str, int], dst: tuple[str, int], kind: str, now: float) -> float | None:
        a = sim.by_addr[src].name if src in sim.by_addr else ""
        b = sim.by_addr[dst].name if dst in sim.by_addr else ""
        if (a in cut) != (b in cut):
            return None
        return base(src, dst, kind, now)

    sim.route = route

    def step(dt: float) -> None:
        # the driver's job: Serf timers, and reconnect requests turned into memberlist joins
        end = sim.now + dt
        while sim.now < end:
            sim.run_for(0.5)
            for name, s in serfs.items():
                s.handle_timer(sim.now)
                while (act := s.next_action()) is not None:
                    sim.nodes[name].core.join([(act.addr, act.port)], sim.now)
                    sim._flush(sim.nodes[name])

    def all_status(names: list[str], node: str, status: str) -> bool:
        return all(statuses(serfs[n]).get(node) == status for n in names)

    for _ in range(120):
        step(1.0)
        if all_status(["n0", "n1", "n2"], "n3", "failed") and \
                list(statuses(serfs["n3"]).values()).count("failed") == 3:
            break
    assert all_status(["n0", "n1", "n2"], "n3", "failed")
    assert list(statuses(serfs["n3"]).values()).count("failed") == 3
    attempts_before = sum(s.counters["serf.reconnect.attempts"] for s in serfs.values())
    sim.route = base
    for _ in range(60):
        step(1.0)
        if all(set(statuses(s).values()) == {"alive"} for s in serfs.values()):
            break
    assert all(set(statuses(s).values()) == {"alive"} for s in serfs.values()), \
        {n: statuses(s) for n, s in serfs.items()}
    assert sum(s.counters["serf.reconnect.attempts"] for s in serfs.values()) > attempts_before

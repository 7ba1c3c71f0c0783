"""Push/pulls handled in slices (issue 13: no callback over 20 ms at thousands of members).

Deterministic: cores driven by hand on a fixed clock, ``push_pull_slice`` tiny so that a few
dozen members take many slices. Each ``handle_timer(now)`` call is one callback of the driver.
"""

from __future__ import annotations

import random

import pytest

from gossip import MemberlistConfig, codec
from gossip.codec.gomsgpack import go_pack
from gossip.delegate import NodeJoined
from gossip.errors import MalformedPacket
from gossip.events import MemberJoined
from gossip.memberlist import JoinCompleted, Memberlist, PendingAnswer
from gossip.messages import Alive, ErrResp, PushNodeState, PushPull
from gossip.sim import Simulator

NOW = 100.0
K = 4


def core(name: str, port: int, k: int = K) -> Memberlist:
    cfg = MemberlistConfig.lan(name=name, bind_addr="10.0.0.1", bind_port=port,
                               push_pull_slice=k, enable_compression=False,
                               push_pull_interval=0.0)
    m = Memberlist(cfg, now=NOW, rng=random.Random(port))
    while m.next_event() is not None:  # its own join
        pass
    return m


def seed(m: Memberlist, names: list[str], inc: int = 1) -> None:
    for i, n in enumerate(names):
        m._alive_node(Alive(incarnation=inc, node=n, addr=f"10.0.1.{i + 1}", port=7946,
                            meta=b"", vsn=m.config.vsn), NOW)
    m.broadcasts.reset()
    m.packets_to_send()
    while m.next_event() is not None:
        pass


def joined(m: Memberlist) -> list[str]:
    out = []
    while (ev := m.next_event()) is not None:
        if isinstance(ev, NodeJoined):
            out.append(ev.node.name)
    return out


def answer_of(a: Memberlist, data: bytes, addr: tuple[str, int]) -> tuple[bytes, int]:
    """Hand ``data`` to ``a`` as an inbound stream and run its slices: (answer, callbacks)."""
    got = a.handle_stream(data, addr, NOW)
    callbacks = 1
    if isinstance(got, PendingAnswer):
        ready: dict[int, bytes | None] = {}
        while got.id not in ready:
            assert a.working and a.next_deadline() is not None
            assert a.next_deadline() <= NOW  # type: ignore[operator]  # due at once
            a.handle_timer(NOW)
            callbacks += 1
            ready.update(a.answers_ready())
        answer = ready[got.id]
    else:
        answer = got
    assert isinstance(answer, bytes)
    return answer, callbacks


MEMBERS = [f"m{i:02d}" for i in range(40)]


def test_a_big_push_pull_is_answered_and_merged_a_slice_at_a_time_in_order() -> None:
    a, b = core("a", 1), core("b", 2)
    seed(a, MEMBERS)
    assert b.push_pull_with(a.advertise, NOW)
    req = b.streams_to_open()[-1]
    answer, callbacks = answer_of(a, req.data, b.advertise)
    assert callbacks > 40 // K  # 42 states encoded at most K per callback
    msg = codec.decode_stream(answer, None)
    assert isinstance(msg, PushPull)
    order = [s.name for s in msg.states if s.name != "b"]
    assert sorted(order) == sorted(["a", *MEMBERS])

    b.stream_result(req.id, answer, None, NOW)
    seen = joined(b)
    assert len(seen) <= K
    while b.working:
        b.handle_timer(NOW)
        got = joined(b)
        assert len(got) <= K  # one slice: at most K states merged
        seen += got
    assert seen == order  # the events come out in the order of the states
    assert {n.name for n in b.members()} == {"a", "b", *MEMBERS}
    assert b.counters.push_pull_failures == 0


def test_a_newer_incarnation_learnt_during_a_merge_is_not_overwritten() -> None:
    a, b = core("a", 1), core("b", 2)
    seed(a, MEMBERS)
    b.push_pull_with(a.advertise, NOW)
    req = b.streams_to_open()[-1]
    answer, _ = answer_of(a, req.data, b.advertise)
    msg = codec.decode_stream(answer, None)
    assert isinstance(msg, PushPull)
    last = msg.states[-1].name if msg.states[-1].name != "b" else msg.states[-2].name
    b.stream_result(req.id, answer, None, NOW)
    assert b.working and b.node(last) is None  # the cursor has not reached it
    # gossip brings a newer incarnation of it between two slices
    b._alive_node(Alive(incarnation=7, node=last, addr="10.9.9.9", port=7946, meta=b"new",
                        vsn=b.config.vsn), NOW)
    while b.working:
        b.handle_timer(NOW)
    node = b.node(last)
    assert node is not None and node.incarnation == 7 and node.meta == b"new"
    assert node.addr == "10.9.9.9"


def test_the_answer_is_one_consistent_view_while_members_change_between_slices() -> None:
    a, b = core("a", 1), core("b", 2)
    seed(a, MEMBERS)
    b.push_pull_with(a.advertise, NOW)
    req = b.streams_to_open()[-1]
    got = a.handle_stream(req.data, b.advertise, NOW)
    assert isinstance(got, PendingAnswer)
    views = []
    ready: dict[int, bytes | None] = {}
    step = 0
    while got.id not in ready:
        views.append({n.name: n.incarnation for n in a.all_nodes()})
        # a member changes between every two slices
        name = MEMBERS[step % len(MEMBERS)]
        n = a.node(name)
        assert n is not None
        a._alive_node(Alive(incarnation=n.incarnation + 1, node=name, addr=n.addr,
                            port=n.port, meta=n.meta, vsn=n.vsn), NOW)
        a.handle_timer(NOW)
        ready.update(a.answers_ready())
        step += 1
    answer = ready[got.id]
    assert isinstance(answer, bytes)
    msg = codec.decode_stream(answer, None)
    assert isinstance(msg, PushPull)
    sent = {s.name: s.incarnation for s in msg.states}
    assert sent in views  # exactly the member list of one moment, not a mix
    assert sent != views[-1]  # (and members did change while it was encoded)


def test_join_completes_after_the_last_slice_of_its_merge() -> None:
    a, b = core("a", 1), core("b", 2)
    seed(a, MEMBERS)
    jid = b.join([a.advertise], NOW)
    req = b.streams_to_open()[-1]
    answer, _ = answer_of(a, req.data, b.advertise)
    b.stream_result(req.id, answer, None, NOW)
    events = []
    while True:
        while (ev := b.next_event()) is not None:
            events.append(ev)
        if not b.working:
            break
        assert not any(isinstance(e, JoinCompleted) for e in events)
        b.handle_timer(NOW)
    assert isinstance(events[-1], JoinCompleted) and events[-1].join_id == jid
    assert events[-1].num_joined == 1
    assert sum(isinstance(e, NodeJoined) for e in events) == len(MEMBERS) + 1  # a and the members


def test_push_pulls_are_merged_one_after_the_other() -> None:
    a, c, b = core("a", 1), core("c", 3), core("b", 2)
    seed(a, MEMBERS[:20])
    seed(c, MEMBERS[20:])
    b.push_pull_with(a.advertise, NOW)
    b.push_pull_with(c.advertise, NOW)
    req_a, req_c = b.streams_to_open()
    ans_a, _ = answer_of(a, req_a.data, b.advertise)
    ans_c, _ = answer_of(c, req_c.data, b.advertise)
    b.stream_result(req_a.id, ans_a, None, NOW)
    b.stream_result(req_c.id, ans_c, None, NOW)  # queued behind the first
    seen = joined(b)
    while b.working:
        b.handle_timer(NOW)
        seen += joined(b)
    first = {"a", *MEMBERS[:20]}
    assert set(seen[:len(first)]) == first
    assert set(seen[len(first):]) == {"c", *MEMBERS[20:]}


def _state(name: str, port: int = 7946) -> bytes:
    return go_pack({"Name": name, "Addr": bytes([10, 0, 2, 1]), "Port": port, "Meta": b"",
                    "Incarnation": 1, "State": 0, "Vsn": bytes([1, 5, 2, 2, 5, 4])})


def test_a_bad_state_deep_in_a_push_pull_merges_nothing_and_gets_an_error_answer() -> None:
    a = core("a", 1)
    states = [_state(f"x{i}") for i in range(30)]
    states[25] = _state("bad", port=70000)
    data = codec.push_pull_bytes(False, states, b"")
    with pytest.raises(MalformedPacket):
        codec.decode_stream(data, None)  # the strict reader refuses it at once
    lazy = codec.decode_stream(data, None, lazy=True)  # the lazy one finds it later
    assert isinstance(lazy, PushPull) and len(lazy.states) == 30
    answer, _ = answer_of(a, data, ("10.0.2.1", 7946))
    assert isinstance(codec.decode_stream(answer, None), ErrResp)
    assert a.num_members() == 1  # none of the 25 good states before it was merged
    assert a.counters.drops.get("stream_bad_value", 0) + sum(
        v for k, v in a.counters.drops.items() if k.startswith("stream_")) >= 1


@pytest.mark.parametrize("compress", [False, True])
def test_lazy_reading_gives_the_same_push_pull(compress: bool) -> None:
    states = tuple(PushNodeState(name=f"n{i}", addr=f"10.0.0.{i + 1}", port=7946,
                                 meta=b"\x01m", incarnation=i + 1, state=0,
                                 vsn=(1, 5, 2, 2, 5, 4)) for i in range(50))
    msg = PushPull(join=True, states=states, user_state=b"\x02user")
    data = codec.encode_stream(msg, compress=compress)
    strict = codec.decode_stream(data, None)
    lazy = codec.decode_stream(data, None, lazy=True)
    assert isinstance(lazy, PushPull) and isinstance(lazy.states, codec.LazyStates)
    assert lazy == strict == msg
    assert lazy.states[3] == states[3] and lazy.states[-1] == states[-1]
    assert lazy.states.decode(10, 20) == list(states[10:20])
    # fed in small pieces, as the transport reads a socket
    reader = codec.StreamReader(None, lazy=True)
    out = None
    for i in range(0, len(data), 7):
        out = reader.feed(data[i:i + 7]) or out
    assert out == msg


def test_whole_nodes_join_a_pool_in_slices_serf_events_before_the_join_result() -> None:
    sim = Simulator(seed=5, record_events=True)
    cfg = MemberlistConfig.local(name="x", push_pull_slice=8)
    names = [f"w{i}" for i in range(40)]
    for n in names:
        sim.add_gossip_node(n, config=cfg)
    sim.seed_membership()
    sim.add_gossip_node("new", config=cfg)
    jid = sim.command("new", lambda core, now: core.join([sim.nodes["w0"].addr], now))
    sim.run_for(5.0, lambda: bool(sim.joins_completed("new")))
    events = [ev for _, ev in sim.nodes["new"].events]
    done = [i for i, ev in enumerate(events) if isinstance(ev, JoinCompleted)]
    assert done and events[done[0]].join_id == jid  # type: ignore[union-attr]
    before = {ev.member.name for ev in events[:done[0]] if isinstance(ev, MemberJoined)}
    assert before >= set(names)  # every member was merged (and told) before the join result
    assert sim.run_for(10.0, sim.converged)  # and the news of "new" reaches everyone

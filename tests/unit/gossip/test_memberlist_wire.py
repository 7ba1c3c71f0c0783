"""How the core puts things on the wire: budget, CRC, compression, reaping, handoff cap."""

from __future__ import annotations

import random

from gossip import codec
from gossip.config import MemberlistConfig
from gossip.memberlist import Memberlist
from gossip.messages import AckResp, Alive, Dead, Ping, Suspect, UserMsg
from gossip.state import NodeStatus

from .fakenet import FakeNet

PEER = ("10.0.0.2", 7946)


def make(**kw: object) -> Memberlist:
    cfg = MemberlistConfig.lan(name="me", bind_addr="10.0.0.1", bind_port=7946, **kw)
    return Memberlist(cfg, now=0.0, rng=random.Random(3))


def test_piggyback_fills_budget_and_never_exceeds_it() -> None:
    m = make(enable_compression=False)
    for i in range(200):
        m.receive_packet(codec.encode_message(
            Alive(1, f"node-with-a-long-name-{i:04d}", "10.0.1.1", 1000 + i, b"x" * 40)),
            PEER, 0.1)
    m.packets_to_send()
    m.receive_packet(codec.encode_message(Ping(9, "me")), PEER, 0.2)
    (data, addr), = m.packets_to_send()
    assert addr == PEER
    assert 1300 < len(data) <= 1400
    dec = codec.decode_packet(data)
    assert isinstance(dec.messages[0], AckResp) and dec.messages[0].seq_no == 9
    assert all(isinstance(x, Alive) for x in dec.messages[1:])
    # the same budget holds for gossip rounds
    m.handle_timer(10.0)
    for data, _ in m.packets_to_send():
        assert len(data) <= 1400


def test_crc_only_for_pmax5_and_compression_only_when_shorter() -> None:
    m = make()
    m.receive_packet(codec.encode_message(Alive(1, "v5", "10.0.0.2", 7946, b"")), PEER, 0.1)
    m.receive_packet(codec.encode_message(
        Alive(1, "v4", "10.0.0.3", 7946, b"", (1, 4, 2, 2, 5, 4))), PEER, 0.1)
    m.packets_to_send()
    m.broadcasts.reset()
    m.receive_packet(codec.encode_message(Ping(1, "me")), ("10.0.0.2", 7946), 0.2)
    m.receive_packet(codec.encode_message(Ping(2, "me")), ("10.0.0.3", 7946), 0.2)
    m.receive_packet(codec.encode_message(Ping(3, "me")), ("10.0.0.9", 7946), 0.2)
    out = m.packets_to_send()
    assert [d[0] for d, _ in out] == [12, 2, 2]  # CRC for the PMax 5 node only
    # a large compressible user message is compressed, a small one is not
    m.send_user_msg(PEER, b"a" * 600)
    m.send_user_msg(PEER, b"tiny")
    big, small = m.packets_to_send()
    assert big[0][0] in (9, 12) and len(big[0]) < 300
    assert small[0][0] in (8, 12)
    assert isinstance(codec.decode_packet(big[0]).messages[0], UserMsg)


def test_dead_nodes_gossiped_to_then_reaped() -> None:
    cfg = MemberlistConfig.lan(name="x", gossip_to_the_dead_time=5.0)
    net = FakeNet(seed=21)
    net.cluster(3, cfg)
    net.run_until(lambda: net.sim.converged(), 5.0)
    net.sim.stop("n2")
    net.run_until(lambda: net.sim.view("n0")["n2"] == "dead", 30.0)
    assert net.sim.nodes["n0"].core.node("n2") is not None
    net.run_until(lambda: net.sim.nodes["n0"].core.node("n2") is None, 30.0)
    assert net.sim.nodes["n0"].core.counters.reaped == 1


def test_left_nodes_are_kept() -> None:
    m = make()
    m.receive_packet(codec.encode_message(Alive(1, "a", "10.0.0.2", 7946, b"")), PEER, 0.1)
    m.receive_packet(codec.encode_message(Dead(1, "a", "a")), PEER, 0.2)
    assert m.node("a").status == NodeStatus.LEFT  # type: ignore[union-attr]
    for t in range(1, 200):
        m.handle_timer(float(t))
    assert m.node("a") is not None  # memberlist 0.2.2 never reaps left nodes
    # a left node may come back from another address
    m.receive_packet(codec.encode_message(Alive(2, "a", "10.0.0.7", 7946, b"")), PEER, 300.0)
    assert m.node("a").addr == "10.0.0.7"  # type: ignore[union-attr]
    assert m.node("a").status == NodeStatus.ALIVE  # type: ignore[union-attr]


def test_remote_dead_in_push_pull_is_only_suspect() -> None:
    from gossip.messages import PushNodeState, PushPull

    m = make()
    pp = PushPull(join=False, states=(
        PushNodeState("b", "10.0.0.5", 7946, b"", 1, 0),
        PushNodeState("c", "10.0.0.6", 7946, b"", 1, 0),
    ))
    m.handle_stream(codec.encode_stream(pp), PEER, 0.1)
    pp2 = PushPull(join=False, states=(PushNodeState("b", "10.0.0.5", 7946, b"", 1, 2),
                                       PushNodeState("c", "10.0.0.6", 7946, b"", 1, 3)))
    m.handle_stream(codec.encode_stream(pp2), PEER, 0.2)
    assert m.node("b").status == NodeStatus.SUSPECT  # type: ignore[union-attr]
    assert m.node("c").status == NodeStatus.LEFT  # type: ignore[union-attr]


def test_leave_alone_is_immediately_done_and_ignores_alive_about_self() -> None:
    m = make()
    m.leave(1.0)
    assert m.has_left and m.leave_broadcast_done
    assert m.local_node.status == NodeStatus.LEFT
    m.receive_packet(codec.encode_message(Alive(99, "me", "10.0.0.1", 7946, b"")), PEER, 2.0)
    assert m.local_node.status == NodeStatus.LEFT
    m.receive_packet(codec.encode_message(Suspect(99, "me", "x")), PEER, 2.0)
    assert m.incarnation == 1


def test_handoff_queue_cap() -> None:
    m = make(handoff_queue_depth=10)
    parts = [codec.encode_message(Alive(1, f"n{i}", "10.0.0.9", 2000 + i, b""))
             for i in range(50)]
    m.receive_packet(codec.make_compound(parts), PEER, 0.1)
    assert m.counters.drops["handoff_queue_full"] == 40
    assert len(m.all_nodes()) == 11

"""Pure Serf logic on a manual clock: clocks, statuses (§7.9), intents, events, push/pull, reaping."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import codec
from gossip.events import (
    MemberFailed,
    MemberJoined,
    MemberLeft,
    MemberReaped,
    MemberUpdated,
    UserEventReceived,
)
from gossip.serf import LamportClock, ReconnectRequested, Serf, SerfError, decode_tags, encode_tags
from gossip.serf_config import RUMOR_TAG, SerfConfig
from gossip.serf_messages import JoinIntent, LeaveIntent, UserEvent

VSN = (1, 5, 2, 2, 5, 5)


def make(name: str = "me", **kw: object) -> Serf:
    cfg = SerfConfig.local(name, **kw)
    s = Serf(cfg, rng=random.Random(1), gossip_interval=0.1, retransmit_mult=2, now=0.0)
    s.set_local_address("127.0.0.1", 7946)
    s.node_joined(name, "127.0.0.1", 7946, encode_tags(cfg.effective_tags()), VSN, 0.0)
    return s


def events(s: Serf) -> list[object]:
    out = []
    while (e := s.next_event()) is not None:
        out.append(e)
    return out


def status(s: Serf, name: str) -> str | None:
    m = s.member(name)
    return m.status if m else None


@pytest.mark.parametrize(
    "start, ops, end",
    [
        (1, [("witness", 0)], 1),
        (1, [("witness", 1)], 2),
        (1, [("witness", 10)], 11),
        (5, [("witness", 3)], 5),
        (1, [("inc", 0), ("inc", 0)], 3),
        (1, [("witness", 4), ("inc", 0)], 6),
    ],
)
def test_lamport_clock(start: int, ops: list[tuple[str, int]], end: int) -> None:
    c = LamportClock(start)
    for op, v in ops:
        if op == "inc":
            c.increment()
        else:
            c.witness(v)
    assert c.time() == end


def test_tags_roundtrip_and_legacy() -> None:
    assert decode_tags(encode_tags({"role": "web", "dc": "east"})) == {"role": "web", "dc": "east"}
    assert encode_tags({}) == b"\xff\x80"
    assert decode_tags(b"") == {"role": ""}
    assert decode_tags(b"db") == {"role": "db"}
    assert decode_tags(b"\xff\xc1garbage") == {}


def test_rumor_tag_is_advertised_and_reserved() -> None:
    s = make()
    assert RUMOR_TAG in decode_tags(s.node_meta(512))
    meta = s.set_tags({"role": "api"})
    assert decode_tags(meta)["role"] == "api" and RUMOR_TAG in decode_tags(meta)
    with pytest.raises(SerfError):
        s.set_tags({"x": "y" * 600})


def test_status_transitions_of_section_7_9() -> None:
    s = make()
    events(s)
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({"role": "db"}), VSN, 1.0)
    (ev,) = events(s)
    assert isinstance(ev, MemberJoined) and ev.member.tags == {"role": "db"}
    # alive --memberlist dead--> failed
    s.node_left("a", 2.0)
    (ev,) = events(s)
    assert isinstance(ev, MemberFailed) and status(s, "a") == "failed"
    # failed --leave intent (force-leave)--> left
    assert s.handle_leave_intent(LeaveIntent(ltime=5, node="a"), 3.0)
    (ev,) = events(s)
    assert isinstance(ev, MemberLeft) and status(s, "a") == "left"
    # left --memberlist join--> alive
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 4.0)
    assert status(s, "a") == "alive"
    events(s)
    # alive --leave intent (newer)--> leaving; older one ignored
    assert not s.handle_leave_intent(LeaveIntent(ltime=5, node="a"), 5.0)
    assert s.handle_leave_intent(LeaveIntent(ltime=6, node="a"), 5.0)
    assert status(s, "a") == "leaving"
    # leaving --join intent (newer)--> alive
    assert not s.handle_join_intent(JoinIntent(ltime=6, node="a"), 5.0)
    assert s.handle_join_intent(JoinIntent(ltime=7, node="a"), 5.0)
    assert status(s, "a") == "alive"
    # leaving --memberlist dead--> left (graceful leave)
    s.handle_leave_intent(LeaveIntent(ltime=8, node="a"), 6.0)
    s.node_left("a", 6.0)
    (ev,) = events(s)
    assert isinstance(ev, MemberLeft) and status(s, "a") == "left"
    # a second memberlist dead does nothing
    s.node_left("a", 7.0)
    assert events(s) == []


def test_update_event_carries_new_tags() -> None:
    s = make()
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({"v": "1"}), VSN, 1.0)
    events(s)
    s.node_updated("a", "10.0.0.1", 7946, encode_tags({"v": "2"}), VSN, 2.0)
    (ev,) = events(s)
    assert isinstance(ev, MemberUpdated) and ev.member.tags == {"v": "2"}


def test_status_counts_and_members_with_tag_agree_with_the_member_list() -> None:
    """The counts /v1/agent/self reads and the tag lookup the federation uses give what the
    whole member list says, through joins, updates, failures and leaves."""
    s = make()
    for i in range(6):
        s.node_joined(f"m{i}", f"10.0.0.{i}", 7946,
                      encode_tags({"wan": "x"} if i % 2 else {}), VSN, 1.0)
    s.node_left("m1", 2.0)                                       # failed
    s.handle_leave_intent(LeaveIntent(ltime=9, node="m2"), 3.0)  # leaving
    s.node_left("m2", 3.0)                                       # left
    s.node_updated("m4", "10.0.0.4", 7946, encode_tags({"wan": "y"}), VSN, 4.0)
    members = s.members()
    counts: dict[str, int] = {}
    for m in members:
        counts[m.status] = counts.get(m.status, 0) + 1
    assert s.status_counts() == counts == {"alive": 5, "failed": 1, "left": 1}
    assert s.members_with_tag("wan") == [m for m in members if "wan" in m.tags]
    assert [m.name for m in s.members_with_tag("wan")] == ["m1", "m3", "m4", "m5"]
    assert s.members_with_tag("nothing") == []


def test_intents_for_unknown_nodes_are_buffered_newest_wins() -> None:
    s = make()
    assert s.handle_join_intent(JoinIntent(ltime=3, node="b"), 1.0)
    assert s.handle_leave_intent(LeaveIntent(ltime=4, node="b"), 1.0)
    assert not s.handle_join_intent(JoinIntent(ltime=2, node="b"), 1.0)  # older: not new
    s.node_joined("b", "10.0.0.2", 7946, encode_tags({}), VSN, 2.0)
    assert status(s, "b") == "leaving"
    assert s.status_ltime("b") == 4
    # the member clock witnessed every intent
    assert s.clock.time() == 5


def test_buffered_intents_expire() -> None:
    s = make(recent_intent_timeout=10.0, reap_interval=1.0)
    s.handle_leave_intent(LeaveIntent(ltime=9, node="c"), 0.0)
    s.handle_timer(20.0)
    s.node_joined("c", "10.0.0.3", 7946, encode_tags({}), VSN, 21.0)
    assert status(s, "c") == "alive" and s.status_ltime("c") == 0


def test_leave_intent_about_ourselves_is_refuted() -> None:
    s = make()
    assert not s.handle_leave_intent(LeaveIntent(ltime=10, node="me"), 1.0)
    assert status(s, "me") == "alive"
    sent = s.get_broadcasts(2, 1400)
    msgs = [codec.decode_serf(b) for b in sent]
    joins = [m for m in msgs if isinstance(m, JoinIntent)]
    assert joins and joins[0].node == "me" and joins[0].ltime >= 11


def test_graceful_leave_sequence() -> None:
    s = make()
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 0.0)
    done: list[bool] = []
    assert s.start_leave(1.0, on_sent=done.append)
    assert status(s, "me") == "leaving"
    # the intent goes out retransmit_limit times, then on_sent fires
    for _ in range(10):
        s.get_broadcasts(2, 1400)
    assert done == [True]


def test_leave_alone_needs_no_broadcast() -> None:
    s = make()
    assert not s.start_leave(1.0)


def test_force_leave_and_prune() -> None:
    s = make()
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 0.0)
    s.node_left("a", 1.0)
    events(s)
    assert s.force_leave("a", 2.0)
    assert status(s, "a") == "left"
    assert isinstance(events(s)[0], MemberLeft)
    s.node_joined("b", "10.0.0.2", 7946, encode_tags({}), VSN, 0.0)
    s.node_left("b", 1.0)
    events(s)
    assert s.force_leave("b", 2.0, prune=True)
    assert s.member("b") is None
    kinds = [type(e) for e in events(s)]
    assert kinds == [MemberLeft, MemberReaped]
    assert not s.force_leave("nobody", 3.0)


def test_user_event_dedupe_and_min_time() -> None:
    s = make()
    events(s)
    e = UserEvent(ltime=3, name="deploy", payload=b"v1", cc=True)
    assert s.handle_user_event(e, 1.0)
    assert not s.handle_user_event(e, 1.0)  # duplicate
    assert s.handle_user_event(UserEvent(ltime=3, name="deploy", payload=b"v2"), 1.0)
    assert s.handle_user_event(UserEvent(ltime=3, name="other", payload=b"v1"), 1.0)
    got = [(x.name, x.payload) for x in events(s) if isinstance(x, UserEventReceived)]
    assert got == [("deploy", b"v1"), ("deploy", b"v2"), ("other", b"v1")]
    s.event_min_time = 10
    assert not s.handle_user_event(UserEvent(ltime=9, name="old"), 1.0)
    assert s.handle_user_event(UserEvent(ltime=10, name="new"), 1.0)


def test_user_event_too_old_is_dropped() -> None:
    s = make()
    s.handle_user_event(UserEvent(ltime=2000, name="x"), 0.0)
    assert not s.handle_user_event(UserEvent(ltime=2000 - 600, name="y"), 0.0)
    assert s.counters["serf.events.too_old"] == 1
    # a ring slot reused by a later LTime forgets the old entry
    assert s.handle_user_event(UserEvent(ltime=1999, name="x"), 0.0)


def test_user_event_size_limits() -> None:
    s = make()
    s.user_event("n", b"x" * 470, True, 0.0)
    with pytest.raises(SerfError):
        s.user_event("n", b"x" * 512, True, 0.0)  # name + payload over 512
    with pytest.raises(SerfError):
        s.user_event("n", b"x" * 500, True, 0.0)  # encoded message over 512
    # local delivery and gossip
    evs = [e for e in events(s) if isinstance(e, UserEventReceived)]
    assert len(evs) == 1
    out = [codec.decode_serf(b) for b in s.get_broadcasts(2, 1400)]
    assert any(isinstance(m, UserEvent) and m.name == "n" for m in out)


def test_event_clock_advances_for_own_events() -> None:
    s = make()
    a = s.user_event("a", b"", True, 0.0)
    b = s.user_event("b", b"", True, 0.0)
    assert b.ltime == a.ltime + 1
    assert s.recent_events()[-1].name == "b"


def test_reap_and_reconnect_on_a_manual_clock() -> None:
    s = make(reconnect_timeout=30.0, tombstone_timeout=60.0, reap_interval=5.0,
             reconnect_interval=10.0)
    s.node_joined("f", "10.0.0.6", 7946, encode_tags({}), VSN, 0.0)
    s.node_joined("l", "10.0.0.7", 7946, encode_tags({}), VSN, 0.0)
    s.node_left("f", 1.0)
    s.handle_leave_intent(LeaveIntent(ltime=5, node="l"), 1.0)
    s.node_left("l", 1.0)
    events(s)
    actions = []
    t = 1.0
    while t < 100.0:
        t += 0.5
        s.handle_timer(t)
        while (a := s.next_action()) is not None:
            actions.append((t, a))
        for e in events(s):
            if isinstance(e, MemberReaped):
                actions.append((t, e.member.name))
    reconnects = [a for _, a in actions if isinstance(a, ReconnectRequested)]
    assert reconnects and all(r.name == "f" and r.addr == "10.0.0.6" for r in reconnects)
    reaped = {a: t for t, a in actions if isinstance(a, str)}
    assert 31.0 <= reaped["f"] <= 40.0
    assert 61.0 <= reaped["l"] <= 70.0
    assert s.member("f") is None and s.member("l") is None


def test_reconnect_probability_is_failed_over_alive() -> None:
    s = make(reconnect_interval=1.0, reconnect_timeout=1e9)
    for i in range(9):
        s.node_joined(f"n{i}", "10.0.0.1", 7946 + i, encode_tags({}), VSN, 0.0)
    s.node_left("n0", 0.0)
    n = 0
    for i in range(1, 2001):
        s.handle_timer(float(i))
        while s.next_action() is not None:
            n += 1
    # one failed, nine alive (self + 8): about 1/9 of 2000 ticks
    assert 150 < n < 300


def test_push_pull_merge() -> None:
    a, b = make("a"), make("b")
    for s in (a, b):
        for name in ("x", "y"):
            s.node_joined(name, "10.0.0.9", 7946, encode_tags({}), VSN, 0.0)
    a.handle_leave_intent(LeaveIntent(ltime=7, node="x"), 0.0)
    a.node_left("x", 0.0)
    a.handle_join_intent(JoinIntent(ltime=4, node="y"), 0.0)
    a.user_event("hello", b"world", False, 0.0)
    events(b)
    b.merge_remote_state(a.local_state(False), False, 1.0)
    assert status(b, "x") == "leaving"  # b's memberlist still says alive: leaving until it dies
    assert b.status_ltime("y") == 4
    assert b.clock.time() >= a.clock.time() - 1
    got = [e for e in events(b) if isinstance(e, UserEventReceived)]
    assert [(e.name, e.payload, e.coalesce) for e in got] == [("hello", b"world", False)]
    # a join without replay ignores events that happened before it
    c = make("c")
    c.join_ignore_events = True
    c.merge_remote_state(a.local_state(True), True, 1.0)
    assert not [e for e in events(c) if isinstance(e, UserEventReceived)]


def test_push_pull_app_state_roundtrip() -> None:
    a, b = make("a"), make("b")
    got: list[tuple[bytes, bool]] = []
    a.app_delegate_state = lambda join: b"catalog" + (b"-join" if join else b"")
    b.app_delegate_merge = lambda buf, join: got.append((buf, join))
    b.merge_remote_state(a.local_state(True), True, 0.0)
    assert got == [(b"catalog-join", True)]
    # garbage state is counted, not raised
    b.merge_remote_state(b"\x02\xc1\xc1", False, 0.0)
    b.merge_remote_state(b"", False, 0.0)
    assert sum(v for k, v in b.counters.items() if k.startswith("serf.dropped")) == 2


def test_receive_never_raises_on_garbage() -> None:
    s = make()
    for junk in (b"", b"\x00", b"\x03\x81", b"\x04\xff\xff", b"\x09\x80", b"\x7f", b"\x01" + b"\xc1" * 40):
        s.receive(junk, 0.0)
    assert sum(v for k, v in s.counters.items() if k.startswith("serf.dropped")) >= 6


def test_gossip_between_two_cores() -> None:
    a, b = make("a"), make("b")
    for s, other in ((a, "b"), (b, "a")):
        s.node_joined(other, "127.0.0.1", 7000, encode_tags({}), VSN, 0.0)
    a.user_event("e1", b"p", True, 0.0)
    a.broadcast_join_intent(a.clock.time(), 0.0)
    events(b)
    for raw in a.get_broadcasts(2, 1400):
        b.receive(raw, 0.1)
    evs = events(b)
    assert any(isinstance(e, UserEventReceived) and e.name == "e1" for e in evs)
    assert b.status_ltime("a") == a.status_ltime("a")
    # b re-gossips what was new to it, but not twice
    again = [codec.decode_serf(x) for x in b.get_broadcasts(2, 1400)]
    assert any(isinstance(m, UserEvent) for m in again)


def test_app_messages_only_for_rumor_destinations() -> None:
    a = make("a")
    a.broadcast_app("svc/web", b"v1")
    a.broadcast_app("svc/web", b"v2")  # newest per key wins
    assert a.get_broadcasts(2, 1400, dest_is_rumor=False) == []
    assert a.get_broadcasts(2, 1400, dest_is_rumor=True) == [b"\x80v2"]
    got: list[bytes] = []
    b = make("b")
    b.app_delegate_message = got.append
    b.receive(b"\x80v2", 0.0)
    assert got == [b"v2"]
    with pytest.raises(SerfError):
        a.broadcast_app("big", b"x" * 5000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_receive_fuzz_never_raises(data: bytes) -> None:
    s = make()
    s.receive(data, 0.0)
    s.receive(bytes([3]) + data, 0.0)  # as a user event body
    s.receive(bytes([4]) + data, 0.0)  # as a query body
    s.merge_remote_state(bytes([2]) + data, True, 0.0)


def test_flap_and_queue_depth_are_counted() -> None:
    s = make(flap_timeout=60.0, queue_check_interval=5.0, queue_depth_warning=3)
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 0.0)
    s.node_left("a", 1.0)
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 30.0)  # back within 60 s
    assert s.counters["serf.member.flap"] == 1
    for i in range(5):
        s.user_event(f"e{i}", b"", True, 30.0)
    s.handle_timer(31.0)
    assert s.counters["serf.queue.events"] == 5


def test_local_state_is_reused_until_something_in_it_changes() -> None:
    """Issue 13: a join storm's seed sends the same Serf state in push/pull after push/pull;
    it is encoded once, and every change that it carries makes a fresh one."""
    s = make()
    app = [b"app-1"]
    s.app_delegate_state = lambda join: app[0]

    def fresh() -> bytes:
        saved = s._local_cache
        s._local_cache = None
        out = s.local_state(False)
        s._local_cache = saved
        return out

    seen: list[bytes] = []

    def check(what: str) -> None:
        got = s.local_state(False)
        assert got == fresh(), what
        assert s.local_state(False) is got, what  # nothing changed since: the same bytes
        assert all(got != old for old in seen), f"{what}: not in the state"
        seen.append(got)

    check("start")
    s.node_joined("a", "10.0.0.1", 7946, encode_tags({}), VSN, 1.0)
    check("a member joined")
    s.handle_join_intent(JoinIntent(ltime=7, node="a"), 1.0)
    check("its join intent (status LTime and clock)")
    s.handle_leave_intent(LeaveIntent(ltime=9, node="a"), 1.0)
    s.node_left("a", 2.0)
    check("it left")
    s.handle_user_event(UserEvent(ltime=3, name="deploy", payload=b"x", cc=False), 2.0)
    check("a user event")
    s.handle_user_event(UserEvent(ltime=3, name="other", payload=b"y", cc=False), 2.0)
    check("a second event in the same slot (no clock change)")
    s.query_clock.witness(40)
    check("the query clock")
    app[0] = b"app-2"
    check("the application's state")
    assert s.force_leave("a", 3.0, prune=True) or s.member("a") is None
    s.node_joined("b", "10.0.0.2", 7946, encode_tags({}), VSN, 3.0)
    s.node_left("b", 4.0)
    check("another member failed")
    s._erase(s._members["b"])
    check("a member reaped")

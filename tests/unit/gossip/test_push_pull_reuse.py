"""A join storm at the seed (issue 13): the push/pull answer is built once while nothing in it
changes, and an answer whose stream has timed out in the queue is not built at all.

Deterministic: cores driven by hand on an injected clock."""

from __future__ import annotations

import random

import pytest

from gossip import MemberlistConfig, codec
from gossip.delegate import NullDelegate
from gossip.memberlist import Memberlist, PendingAnswer
from gossip.messages import Alive, Dead, PushPull
from gossip.security import Keyring

NOW = 100.0
MEMBERS = [f"m{i:02d}" for i in range(40)]


class _State(NullDelegate):
    def __init__(self) -> None:
        self.state = b"app-v1"
        self.calls = 0

    def local_state(self, join: bool) -> bytes:
        self.calls += 1
        return self.state


def core(name: str, port: int, *, compress: bool = True, k: int = 4,
         keyring: Keyring | None = None) -> Memberlist:
    cfg = MemberlistConfig.lan(name=name, bind_addr="10.0.0.1", bind_port=port,
                               push_pull_slice=k, enable_compression=compress,
                               push_pull_interval=0.0)
    m = Memberlist(cfg, now=NOW, rng=random.Random(port), keyring=keyring)
    for i, n in enumerate(MEMBERS):
        m._alive_node(Alive(incarnation=1, node=n, addr=f"10.0.1.{i + 1}", port=7946,
                            meta=b"", vsn=m.config.vsn), NOW)
    m.broadcasts.reset()
    m.packets_to_send()
    while m.next_event() is not None:
        pass
    return m


def request(p: Memberlist, to: tuple[str, int], now: float = NOW) -> bytes:
    """The push/pull ``p`` sends to ``to`` (built in slices)."""
    assert p.push_pull_with(to, now)
    while not (reqs := p.streams_to_open()):
        p.handle_timer(now)
    return reqs[-1].data


def fresh(m: Memberlist, join: bool) -> bytes:
    """The payload built from scratch (no reuse), as before the cache."""
    raw = m._push_pull_message(join)
    return codec.compress_message(raw) if m.config.enable_compression else raw


def payload(m: Memberlist, join: bool) -> bytes:
    out: bytes = m._run_now(m._push_pull_payload(join))
    return out


@pytest.mark.parametrize("compress", [True, False])
def test_the_reused_payload_equals_a_fresh_one_and_every_change_invalidates_it(
        compress: bool) -> None:
    m = core("a", 1, compress=compress)
    d = _State()
    m.delegate = d
    first = payload(m, True)
    assert first == fresh(m, True)
    assert payload(m, True) is first and m.counters.push_pull_reused == 1

    # the join flag is in the message
    other = payload(m, False)
    assert other != first and other == fresh(m, False)

    # a member's new incarnation
    n = m.node("m07")
    assert n is not None
    m._alive_node(Alive(incarnation=5, node="m07", addr=n.addr, port=n.port, meta=n.meta,
                        vsn=n.vsn), NOW)
    after_inc = payload(m, False)
    assert after_inc != other and after_inc == fresh(m, False)
    msg = codec.decode_stream(after_inc, None)
    assert isinstance(msg, PushPull)
    assert {s.name: s.incarnation for s in msg.states}["m07"] == 5

    # a member's state (suspect -> dead), then a new member
    m._dead_node(Dead(incarnation=5, node="m07", from_node="a"), NOW)
    after_dead = payload(m, False)
    assert after_dead != after_inc and after_dead == fresh(m, False)
    m._alive_node(Alive(incarnation=1, node="new", addr="10.0.2.1", port=7946, meta=b"",
                        vsn=m.config.vsn), NOW)
    after_new = payload(m, False)
    assert after_new != after_dead and after_new == fresh(m, False)

    # the delegate's state (Serf's clocks, the application's)
    reused = m.counters.push_pull_reused
    assert payload(m, False) is after_new and m.counters.push_pull_reused == reused + 1
    d.state = b"app-v2"
    after_app = payload(m, False)
    assert after_app != after_new and after_app == fresh(m, False)
    assert m.counters.push_pull_reused == reused + 1


def test_a_reused_answer_is_still_encrypted_with_a_fresh_nonce() -> None:
    ring = Keyring([b"k" * 16])
    a = core("a", 1, keyring=ring)
    b = core("b", 2, keyring=ring)
    answers = []
    for _ in range(2):
        got = a.handle_stream(request(b, a.advertise), b.advertise, NOW)
        while isinstance(got, PendingAnswer):
            a.handle_timer(NOW)
            ready = dict(a.answers_ready())
            if got.id in ready:
                got = ready[got.id]
        assert isinstance(got, bytes)
        answers.append(got)
    assert a.counters.push_pull_reused >= 1
    assert answers[0] != answers[1]  # not the same ciphertext twice
    msgs = [codec.decode_stream(x, ring) for x in answers]
    assert msgs[0] == msgs[1] and isinstance(msgs[0], PushPull)


def test_an_answer_whose_stream_timed_out_in_the_queue_is_not_built() -> None:
    a = core("a", 1)
    peers = [core(f"p{i}", 10 + i) for i in range(3)]
    reqs = [(p, request(p, a.advertise)) for p in peers]
    # three push/pulls arrive at once; each takes many slices (40+ members, 4 per slice)
    ids = []
    for p, req in reqs:
        got = a.handle_stream(req, p.advertise, NOW)
        assert isinstance(got, PendingAnswer)
        ids.append(got.id)
    # the first is answered on time
    ready: dict[int, bytes | None] = {}
    while ids[0] not in ready:
        a.handle_timer(NOW)
        ready.update(a.answers_ready())
    assert isinstance(ready[ids[0]], bytes)
    # then the clock jumps past the streams' timeout: the queued ones are abandoned at once,
    # nothing of them built
    late = NOW + a.config.tcp_timeout
    a.handle_timer(late)
    ready.update(a.answers_ready())
    a.handle_timer(late)
    ready.update(a.answers_ready())
    assert ready[ids[1]] is None and ready[ids[2]] is None
    assert not a.working
    assert a.counters.push_pull_answers_abandoned == 2
    # a push/pull that arrives now is answered normally
    p = peers[0]
    got = a.handle_stream(request(p, a.advertise, late), p.advertise, late)
    assert isinstance(got, PendingAnswer)
    while not (r := dict(a.answers_ready())):
        a.handle_timer(late + 0.5)
    assert isinstance(r[got.id], bytes)
    assert a.counters.push_pull_answers_abandoned == 2


def test_an_answer_cut_off_mid_way_is_abandoned_before_its_next_slice() -> None:
    a = core("a", 1)
    p = core("p", 2)
    got = a.handle_stream(request(p, a.advertise), p.advertise, NOW)
    assert isinstance(got, PendingAnswer)
    a.handle_timer(NOW)  # one more slice on time
    assert a.working and not a.answers_ready()
    a.handle_timer(NOW + a.config.tcp_timeout + 0.1)
    assert a.answers_ready() == [(got.id, None)]
    assert not a.working and a.counters.push_pull_answers_abandoned == 1

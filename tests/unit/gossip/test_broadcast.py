"""Tests of the transmit-limited queue (cf. memberlist queue_test.go)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.broadcast import Broadcast, TransmitLimitedQueue, retransmit_limit


@pytest.mark.parametrize(
    ("mult", "n", "limit"),
    [(4, 0, 0), (4, 1, 4), (4, 3, 4), (4, 9, 4), (4, 10, 8), (4, 99, 8), (4, 100, 12),
     (4, 999, 12), (4, 1000, 16), (2, 5, 2), (3, 99, 6)],
)
def test_retransmit_limit(mult: int, n: int, limit: int) -> None:
    assert retransmit_limit(mult, n) == limit


def test_order_least_transmitted_then_largest_then_newest() -> None:
    q = TransmitLimitedQueue(1, lambda: 10)  # limit 2 transmits
    q.queue_bytes(b"a" * 10, "a")
    q.queue_bytes(b"b" * 30, "b")
    q.queue_bytes(b"c" * 20, "c")
    q.queue_bytes(b"d" * 20, "d")
    assert q.lengths().count(20) == 2
    # free space for one 30-byte message only -> the largest
    assert q.get_broadcasts(2, 33) == [b"b" * 30]
    # tier 0 now holds d, c (d newer first), a; b is at tier 1
    out = q.get_broadcasts(2, 1000)
    assert out == [b"d" * 20, b"c" * 20, b"a" * 10, b"b" * 30]
    # every message has 1 transmit left except b, which is done
    out = q.get_broadcasts(2, 1000)
    assert sorted(out) == [b"a" * 10, b"c" * 20, b"d" * 20]
    assert len(q) == 0
    assert q.get_broadcasts(2, 1000) == []


def test_named_replaces_and_notifies() -> None:
    done: list[tuple[str, bool]] = []
    q = TransmitLimitedQueue(4, lambda: 3)
    q.queue(Broadcast(b"old", "n1", on_done=lambda s: done.append(("old", s))))
    q.queue(Broadcast(b"other", "n2"))
    q.queue(Broadcast(b"new", "n1", on_done=lambda s: done.append(("new", s))))
    assert done == [("old", False)]
    assert len(q) == 2
    assert sorted(q.get_broadcasts(0, 100)) == [b"new", b"other"]
    for _ in range(3):
        q.get_broadcasts(0, 100)
    assert done == [("old", False), ("new", True)]
    assert len(q) == 0


def test_fill_respects_limit_and_overhead() -> None:
    q = TransmitLimitedQueue(4, lambda: 3)
    for i in range(100):
        q.queue_bytes(bytes([i]) * 100)
    out = q.get_broadcasts(2, 1398)
    assert sum(len(m) + 2 for m in out) <= 1398
    assert len(out) == 13


def test_accept_filter_keeps_skipped_messages() -> None:
    q = TransmitLimitedQueue(1, lambda: 5)  # limit 1: sent once then gone
    q.queue_bytes(b"app", "k", rumor_only=True)
    q.queue_bytes(b"serf")
    out = q.get_broadcasts(2, 100, accept=lambda b: not b.rumor_only)
    assert out == [b"serf"]
    assert len(q) == 1
    assert q.get_broadcasts(2, 100, accept=lambda b: True) == [b"app"]
    assert len(q) == 0


def test_prune_drops_most_sent() -> None:
    q = TransmitLimitedQueue(4, lambda: 1000)
    q.queue_bytes(b"x" * 5, "x")
    q.get_broadcasts(0, 100)  # x now has 1 transmit
    q.queue_bytes(b"y" * 5, "y")
    q.queue_bytes(b"z" * 5, "z")
    assert q.prune(2) == 1
    assert sorted(q.get_broadcasts(0, 100)) == [b"y" * 5, b"z" * 5]
    q.reset()
    assert len(q) == 0


def _reference_fill(pending: list[tuple[int, int, int, bytes]], overhead: int,
                    limit: int) -> list[bytes]:
    """The fill rule spelled out plainly: tiers by transmits, and in each tier scan largest
    first (newest first on equal size), taking every message that still fits."""
    out: list[bytes] = []
    used = 0
    for _tx, _neg_len, _neg_id, msg in sorted(pending):
        if limit - used - overhead <= 0:
            break
        if len(msg) <= limit - used - overhead:
            out.append(msg)
            used += overhead + len(msg)
    return out


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), max_size=60),
       rounds=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 1500)), min_size=1,
                       max_size=8))
def test_fill_matches_the_plain_rule(sizes: list[int], rounds: list[tuple[int, int]]) -> None:
    """The queue skips over messages too large for the space left by bisecting; what it picks
    must be exactly what a linear scan picks, round after round."""
    q = TransmitLimitedQueue(3, lambda: 50)   # limit 6 transmits
    limit_tx = retransmit_limit(3, 50)
    queued = [Broadcast(bytes([i % 251]) * n) for i, n in enumerate(sizes)]
    for b in queued:
        q.queue(b)
    tx = {id(b): 0 for b in queued}
    for overhead, limit in rounds:
        live = [b for b in queued if tx[id(b)] < limit_tx]
        expect = _reference_fill([(tx[id(b)], -len(b.message), -b.id, b.message) for b in live],
                                 overhead, limit)
        got = q.get_broadcasts(overhead, limit)
        assert got == expect
        picked = {id(m) for m in got}
        for b in live:
            if id(b.message) in picked:
                tx[id(b)] += 1
        assert len(q) == sum(1 for b in queued if tx[id(b)] < limit_tx)


def test_below_takes_only_messages_sent_fewer_times() -> None:
    q = TransmitLimitedQueue(4, lambda: 50)   # limit 8 transmits
    q.queue_bytes(b"old", "old")
    for _ in range(3):
        assert q.get_broadcasts(0, 100) == [b"old"]   # "old" has now gone out 3 times
    q.queue_bytes(b"new", "new")
    assert q.get_broadcasts(0, 100, below=3) == [b"new"]
    assert q.get_broadcasts(0, 100, below=3) == [b"new"]
    assert q.get_broadcasts(0, 100, below=3) == [b"new"]
    assert q.get_broadcasts(0, 100, below=3) == []    # both at 3 now: nothing fresh
    assert sorted(q.get_broadcasts(0, 100)) == [b"new", b"old"]   # a regular round takes all

"""The KV store's merge, anti-entropy and clock, deterministic (no sockets, manual clocks)."""

from __future__ import annotations

import random

import msgpack
import pytest

from registry.appchannel import AppChannel
from registry.kv import (
    BUCKETS,
    KV_TAG,
    VALUE_MAX,
    HybridClock,
    KVError,
    KVReplicator,
    KVStore,
    stamp_seconds,
)


class Wall:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def store(writer: str, wall: Wall | None = None, **kw: object) -> KVStore:
    return KVStore(writer, clock=HybridClock(wall or Wall()), **kw)  # type: ignore[arg-type]


def keyspace(s: KVStore) -> dict[str, tuple[bytes | None, int, str]]:
    return {k: (e.value, e.stamp, e.writer) for k, e in s.entries.items()}


def test_hlc_never_goes_back_and_passes_witnessed_stamps() -> None:
    w = Wall(100.0)
    c = HybridClock(w)
    a = c.now()
    w.t = 50.0  # the wall clock stepped back
    b = c.now()
    assert b > a
    c.witness(a + 10_000)
    assert c.now() > a + 10_000
    assert stamp_seconds(HybridClock(Wall(12.5)).now()) == 12.5


def test_put_get_list_keys_separator() -> None:
    s = store("n1")
    for k in ["web/a", "web/b/c", "web/b/d", "webx", "db/x"]:
        s.put(k, k.encode())
    assert s.get("web/a") is not None and s.get("web/a").value == b"web/a"  # type: ignore[union-attr]
    assert [e.key for e in s.under("web/")] == ["web/a", "web/b/c", "web/b/d"]
    assert s.keys("web/", "/") == ["web/a", "web/b/"]
    assert s.keys("", "/") == ["db/", "web/", "webx"]
    assert s.keys("web") == ["web/a", "web/b/c", "web/b/d", "webx"]


def test_indexes_create_modify_and_query_index() -> None:
    s = store("n1")
    e1 = s.put("a", b"1")
    assert (e1.create_index, e1.modify_index) == (1, 1)
    s.put("b", b"x")
    e2 = s.put("a", b"2")
    assert (e2.create_index, e2.modify_index) == (1, 3)
    assert s.query_index("a", False) == 3
    assert s.query_index("zzz", False) == 3  # nothing there: the store's index
    s.delete("b")
    assert s.query_index("b", False) == 4 and s.get("b") is None
    e3 = s.put("b", b"again")
    assert e3.create_index == 5


def test_limits() -> None:
    s = store("n1")
    with pytest.raises(KVError) as e:
        s.put("k", b"x" * (VALUE_MAX + 1))
    assert e.value.status == 413
    with pytest.raises(KVError):
        s.put("", b"x")
    s.put("k", b"x" * VALUE_MAX)


def test_newest_wins_and_ties_break_on_writer_in_any_order() -> None:
    w = Wall()
    a, b = store("aaa", w), store("bbb", w)
    ea = a.put("k", b"from-a")
    eb = b.put("k", b"from-b")  # same wall time: the same stamp, writer "bbb" > "aaa"
    assert ea.stamp == eb.stamp
    a.merge([eb])
    b.merge([ea])
    assert a.get("k").value == b.get("k").value == b"from-b"  # type: ignore[union-attr]
    assert a.buckets == b.buckets


def test_delete_beats_older_put_and_loses_to_newer() -> None:
    w = Wall()
    a, b = store("a", w), store("b", w)
    old = a.put("k", b"1")
    w.t += 1
    tomb = b.delete("k") or b.merge([old]) and b.delete("k")
    assert tomb and not tomb[0].live
    a.merge(tomb)
    assert a.get("k") is None
    a.merge([old])  # a stale copy comes back: still deleted
    assert a.get("k") is None
    w.t += 1
    newer = a.put("k", b"2")
    b.merge([newer])
    assert b.get("k").value == b"2"  # type: ignore[union-attr]


def test_random_orders_converge() -> None:
    rng = random.Random(7)
    w = Wall()
    writers = [store(f"n{i}", w) for i in range(4)]
    log = []
    for _ in range(300):
        s = rng.choice(writers)
        k = f"k{rng.randrange(12)}"
        w.t += rng.choice([0, 0, 0.001, 1])
        if rng.random() < 0.3:
            log.extend(s.delete(k))
        else:
            log.append(s.put(k, str(rng.random()).encode()))
    replicas = []
    for seed in range(3):
        r = store(f"r{seed}", w)
        msgs = [e.__class__(e.key, e.value, e.flags, e.stamp, e.writer) for e in log]
        random.Random(seed).shuffle(msgs)
        r.merge(msgs + msgs[:50])  # duplicates change nothing
        replicas.append(r)
    assert keyspace(replicas[0]) == keyspace(replicas[1]) == keyspace(replicas[2])
    assert replicas[0].buckets == replicas[1].buckets


def test_tombstones_pruned_by_age_and_cap() -> None:
    w = Wall()
    s = store("n1", w, tombstone_ttl=100.0, tombstone_max=2)
    for i in range(4):
        s.put(f"k{i}", b"v")
        w.t += 1
        s.delete(f"k{i}")
    idx = s.index
    assert s.prune(w.t) == 2 and s.tombstones == 2  # over the cap: the oldest go
    assert sorted(s.entries) == ["k2", "k3"]
    w.t += 200
    assert s.prune(w.t) == 2 and not s.entries and s.index == idx
    # an expired delete of a key we never held is not remembered
    other = store("n2", Wall(w.t - 500))
    other.put("old", b"v")
    t = other.delete("old")
    assert s.merge(t) == [] and not s.entries


class Net:
    """Broadcasts land in a list; the test delivers them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def __call__(self, key: str, payload: bytes) -> None:
        self.sent.append((key, payload))


def pushpull(init: KVReplicator, answer: KVReplicator) -> None:
    answer.merge_state(init.local_state(0.0))
    init.merge_state(answer.local_state(0.0))


def test_deltas_spread_and_rebroadcast_once() -> None:
    w = Wall()
    na, nb = Net(), Net()
    a = KVReplicator(store("a", w), na)
    b = KVReplicator(store("b", w), nb)
    e = a.store.put("cfg/x", b"1")
    a.on_local_writes([e], 0.0)
    (_key, msg), = na.sent
    assert msg.startswith(KV_TAG)
    b.notify_message(msg)
    assert b.store.get("cfg/x").value == b"1"  # type: ignore[union-attr]
    assert len(nb.sent) == 1  # learned something new: passes it on
    b.notify_message(msg)
    assert len(nb.sent) == 1 and b.counters["deltas_stale"] == 1


def test_big_value_goes_by_push_pull() -> None:
    w = Wall()
    na = Net()
    a = KVReplicator(store("a", w), na)
    b = KVReplicator(store("b", w), Net())
    e = a.store.put("big", b"x" * 100_000)
    a.on_local_writes([e], 0.0)
    assert na.sent == [] and a.counters["delta_oversize"] == 1
    b.merge_state(a.local_state(0.0))  # a starts a push-pull: its big write rides along
    assert b.store.get("big") is not None


def test_anti_entropy_converges_a_partition() -> None:
    w = Wall()
    reps = [KVReplicator(store(f"n{i}", w), Net()) for i in range(4)]
    for i, r in enumerate(reps):
        for j in range(50):
            r.store.put(f"k{j}", f"{i}-{j}".encode())
            w.t += 0.001
        r.store.delete(f"k{i}")
    for _ in range(3):
        for i, r in enumerate(reps):
            pushpull(r, reps[(i + 1) % 4])
            pushpull(r, reps[(i + 2) % 4])
    spaces = [keyspace(r.store) for r in reps]
    assert all(s == spaces[0] for s in spaces)
    # n3 wrote last: its values everywhere, and its delete of k3 too
    assert reps[0].store.get("k3") is None
    assert reps[2].store.get("k0").value == b"3-0"  # type: ignore[union-attr]
    # in sync: the next answer carries nothing
    reps[0].merge_state(reps[1].local_state(0.0))
    assert msgpack.unpackb(reps[0].local_state(0.0)[1:]) == [3, []]


def test_answer_budget_spreads_over_exchanges() -> None:
    w = Wall()
    a = KVReplicator(store("a", w), Net(), answer_budget=20_000)
    b = KVReplicator(store("b", w), Net())
    for j in range(100):
        a.store.put(f"k{j}", b"v" * 1000)
    rounds = 0
    while keyspace(a.store) != keyspace(b.store):
        pushpull(b, a)
        rounds += 1
        assert rounds < 20
    assert rounds > 1


@pytest.mark.parametrize("buf", [
    b"", b"\x07", b"\x01garbage", b"\x00" + msgpack.packb([2, b"short", []]),
    b"\x00" + msgpack.packb([3, [["k", 5, 0, 1, "w"]]]),
    b"\x00" + msgpack.packb([3, [["k", b"v", -1, 1, "w"]]]),
    b"\x00" + msgpack.packb({"a": 1}),
])
def test_hostile_states_are_dropped(buf: bytes) -> None:
    r = KVReplicator(store("a"), Net())
    r.merge_state(buf)
    assert r.dropped and not r.store.entries


@pytest.mark.parametrize("buf", [
    KV_TAG, KV_TAG + b"\xc1", KV_TAG + msgpack.packb([1, "", b"v", 0, 1, "w"]),
    KV_TAG + msgpack.packb([1, "k", b"v" * (VALUE_MAX + 1), 0, 1, "w"]),
    KV_TAG + msgpack.packb([1, "k", "str-not-bytes", 0, 1, "w"]),
])
def test_hostile_deltas_are_dropped(buf: bytes) -> None:
    r = KVReplicator(store("a"), Net())
    r.notify_message(buf)
    assert r.dropped and not r.store.entries


class FakeCatalog:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.states: list[bytes] = []

    def notify_app_message(self, buf: bytes) -> None:
        self.messages.append(buf)

    def local_app_state(self, join: bool = False) -> bytes:
        return b"\x01catalog-state"

    def merge_app_state(self, buf: bytes, join: bool = False) -> None:
        self.states.append(buf)


def test_app_channel_routes_both_parts() -> None:
    cat = FakeCatalog()
    kv = KVReplicator(store("a"), Net())
    ch = AppChannel(cat, [(b"RKV1", kv)], clock=lambda: 0.0)
    ch.notify_app_message(msgpack.packb([1, "n", "S", "x", 1, 0, None]))
    assert len(cat.messages) == 1
    peer = KVReplicator(store("b"), Net())
    peer.store.put("k", b"v")
    ch2 = AppChannel(FakeCatalog(), [(b"RKV1", peer)], clock=lambda: 0.0)
    ch.merge_app_state(ch2.local_app_state())
    assert cat.states == [b"\x01catalog-state"]
    # an older Rumor's state (no trailer) goes to the catalog whole
    ch.merge_app_state(b"\x01old-state")
    assert cat.states[-1] == b"\x01old-state"
    assert len(kv.store.digest()) == 8 * BUCKETS

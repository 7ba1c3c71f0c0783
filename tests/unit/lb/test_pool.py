"""Pool membership on view changes, passive health (ejection, back-off) and draining."""

from __future__ import annotations

from collections import Counter

from lb.memview import MemInstance
from lb.pool import Pool


def inst(port: int, **kw: object) -> MemInstance:
    return MemInstance("web", port, node=kw.pop("node", f"n{port}"), **kw)  # type: ignore[arg-type]


def test_update_keeps_identity_and_counters() -> None:
    p = Pool("web", None, "round_robin")
    assert p.update([inst(1), inst(2)], 0.0)
    b1 = p.backends[0]
    b1.requests = 7
    assert not p.update([inst(1), inst(2)], 1.0)      # same set: no change
    p.update([inst(1), inst(2), inst(3)], 2.0)
    assert p.backends[0] is b1 and b1.requests == 7
    assert [b.port for b in p.backends] == [1, 2, 3]


def test_new_instance_enters_rotation() -> None:
    p = Pool("web", None, "round_robin")
    p.update([inst(1), inst(2)], 0.0)
    assert {p.pick(0.0).port for _ in range(4)} == {1, 2}  # type: ignore[union-attr]
    p.update([inst(1), inst(2), inst(3)], 0.0)
    c = Counter(p.pick(0.0).port for _ in range(30))  # type: ignore[union-attr]
    assert c == {1: 10, 2: 10, 3: 10}


def test_removed_without_connections_is_gone_with_connections_drains() -> None:
    p = Pool("web", None, "round_robin", drain_timeout=10.0)
    p.update([inst(1), inst(2), inst(3)], 0.0)
    b2, b3 = p.backends[1], p.backends[2]
    b3.conns.add(object())
    p.update([inst(1)], 5.0)
    assert [b.port for b in p.backends] == [1]
    assert b2.draining and b2 not in p.draining.values()
    assert b3.draining and p.draining[b3.key] is b3 and b3.drain_deadline == 15.0
    assert p.left == [b2, b3]
    assert all(p.pick(6.0).port == 1 for _ in range(5))  # type: ignore[union-attr]
    assert p.expire_drains(14.0) == []
    assert p.expire_drains(15.0) == [b3]
    assert not p.draining


def test_drained_backend_leaves_when_its_connections_end() -> None:
    p = Pool("web", None, "round_robin", drain_timeout=10.0)
    p.update([inst(1), inst(2)], 0.0)
    b2 = p.backends[1]
    token = object()
    b2.conns.add(token)
    p.update([inst(1)], 1.0)
    b2.conns.discard(token)
    assert p.expire_drains(2.0) == []
    assert not p.draining


def test_instance_coming_back_while_draining_is_reused() -> None:
    p = Pool("web", None, "round_robin")
    p.update([inst(1), inst(2)], 0.0)
    b2 = p.backends[1]
    b2.conns.add(object())
    p.update([inst(1)], 1.0)
    p.update([inst(1), inst(2)], 2.0)
    assert p.backends[1] is b2 and not b2.draining and not p.draining


def test_empty_pool_picks_nothing() -> None:
    p = Pool("web", None, "round_robin")
    assert p.pick(0.0) is None
    p.update([inst(1)], 0.0)
    assert p.pick(0.0, exclude=[p.backends[0]]) is None


def test_exclude_skips_tried() -> None:
    p = Pool("web", None, "round_robin")
    p.update([inst(1), inst(2), inst(3)], 0.0)
    tried = [p.backends[0], p.backends[1]]
    assert all(p.pick(0.0, tried).port == 3 for _ in range(5))  # type: ignore[union-attr]


def test_ejection_after_consecutive_failures_and_backoff() -> None:
    p = Pool("web", None, "round_robin", eject_after=3, eject_backoff=5.0, eject_backoff_max=12.0)
    p.update([inst(1), inst(2)], 0.0)
    bad = p.backends[0]
    assert not p.report_failure(bad, 0.0)
    assert not p.report_failure(bad, 0.0)
    p.report_success(bad)                     # a success resets the run
    assert not p.report_failure(bad, 0.0)
    assert not p.report_failure(bad, 0.0)
    assert p.report_failure(bad, 1.0)
    assert bad.ejections == 1 and bad.ejected_until == 6.0
    assert all(p.pick(2.0).port == 2 for _ in range(6))  # type: ignore[union-attr]
    # back-off over: admitted again, one more failure re-ejects with a doubled back-off
    assert {p.pick(6.0).port for _ in range(4)} == {1, 2}  # type: ignore[union-attr]
    assert p.report_failure(bad, 7.0)
    assert bad.ejected_until == 17.0
    assert all(p.pick(10.0).port == 2 for _ in range(4))  # type: ignore[union-attr]
    assert p.report_failure(bad, 17.0) is False   # admitted at 17? not yet picked: no-op count
    p.pick(17.0)
    bad.fails = 2
    assert p.report_failure(bad, 17.5)
    assert bad.ejected_until == 17.5 + 12.0      # capped at eject_backoff_max


def test_all_ejected_panics_rather_than_refusing() -> None:
    p = Pool("web", None, "round_robin", eject_after=1, eject_backoff=100.0)
    p.update([inst(1), inst(2)], 0.0)
    for b in p.backends:
        p.report_failure(b, 0.0)
    assert p.pick(1.0) is not None


def test_weights_follow_health() -> None:
    p = Pool("web", None, "weighted_round_robin")
    p.update([inst(1, weight_passing=3, weight_warning=1),
              inst(2, weight_passing=1, weight_warning=1)], 0.0)
    c = Counter(p.pick(0.0).port for _ in range(40))  # type: ignore[union-attr]
    assert c == {1: 30, 2: 10}
    assert p.update([inst(1, weight_passing=3, weight_warning=1, health="warning"),
                     inst(2, weight_passing=1, weight_warning=1)], 1.0)
    c = Counter(p.pick(1.0).port for _ in range(40))  # type: ignore[union-attr]
    assert c == {1: 20, 2: 20}


def test_service_address_overrides_node_address() -> None:
    p = Pool("web", None, "round_robin")
    p.update([MemInstance("web", 80, address="", node_address="10.0.0.9", node="a"),
              MemInstance("web", 81, address="127.0.0.5", node="b")], 0.0)
    assert [b.host for b in p.backends] == ["10.0.0.9", "127.0.0.5"]


def test_standby_takes_over_when_passive_health_leaves_nothing_and_gives_back() -> None:
    """A Failover listener's pool: dc1's only backend dies. The first request that fails to
    connect there goes on to the standby (dc2) at once; after eject_after failures dc1 is
    ejected and dc2 serves without trying dc1; when the back-off ends dc1 is tried first
    again (and kept when it answers)."""
    p = Pool("web", None, "round_robin", eject_after=3, eject_backoff=5.0)
    p.update([inst(1, datacenter="dc1")], 0.0)
    p.standby = Pool("web", None, "round_robin", eject_after=3, eject_backoff=5.0)
    p.standby.update([inst(8, node="b1", datacenter="dc2"), inst(9, node="b2")], 0.0)
    local = p.pick(0.0)
    assert local is not None and local.port == 1
    # the request failed on dc1: its retry goes to the standby, not to a 503
    assert not p.report_failure(local, 0.0)
    retry = p.pick(0.0, [local])
    assert retry is not None and retry.port in (8, 9)
    # without that exclusion dc1 is still first (one failure does not eject)
    assert p.pick(0.1) is local
    assert not p.report_failure(local, 0.1)
    assert p.report_failure(local, 0.2)                   # the third in a row: ejected
    assert {p.pick(1.0).port for _ in range(4)} == {8, 9}  # type: ignore[union-attr]
    # failures on a standby backend count there, not here
    b8 = next(b for b in p.standby.backends if b.port == 8)
    for t in (1.0, 1.1, 1.2):
        p.report_failure(b8, t)
    assert b8.ejected_until > 1.2 and local.ejected_until == 5.2
    assert [p.pick(2.0).port for _ in range(3)] == [9, 9, 9]  # type: ignore[union-attr]
    # the back-off is over: dc1 is admitted again, and stays once it answers
    assert p.pick(5.3) is local
    p.report_success(local)
    assert [p.pick(6.0).port for _ in range(3)] == [1, 1, 1]  # type: ignore[union-attr]


def test_standby_of_an_empty_pool_and_none_at_all() -> None:
    p = Pool("web", None, "round_robin")
    assert p.pick(0.0) is None
    p.standby = Pool("web", None, "round_robin")
    assert p.pick(0.0) is None
    p.standby.update([inst(8)], 0.0)
    got = p.pick(0.0)
    assert got is not None and got.port == 8
    assert p.pick(0.0, [got]) is None                     # tried everywhere: nothing left

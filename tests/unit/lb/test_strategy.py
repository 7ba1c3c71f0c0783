"""Backend choice without a network: distribution and state of each strategy."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lb.strategy import Backend, LeastConn, Random, RoundRobin, WeightedRoundRobin, make_strategy


def backends(n: int, weights: list[int] | None = None) -> list[Backend]:
    return [Backend("127.0.0.1", 8000 + i, node=f"n{i}", service_id=f"s{i}",
                    weight=(weights[i] if weights else 1)) for i in range(n)]


def test_round_robin_is_strictly_cyclic() -> None:
    bs = backends(3)
    rr = RoundRobin()
    picks = [rr.choose(bs).port for _ in range(9)]
    assert picks == [8000, 8001, 8002] * 3


def test_round_robin_even_over_many() -> None:
    bs = backends(5)
    rr = RoundRobin()
    c = Counter(rr.choose(bs).port for _ in range(1000))
    assert set(c.values()) == {200}


def test_least_conn_prefers_idle_and_rotates_ties() -> None:
    bs = backends(3)
    lc = LeastConn()
    bs[0].active = 5
    bs[1].active = 1
    bs[2].active = 1
    picks = Counter(lc.choose(bs).port for _ in range(10))
    assert picks[8000] == 0
    assert picks[8001] == picks[8002] == 5
    bs[2].active = 0
    assert lc.choose(bs).port == 8002


def test_least_conn_tracks_changing_load() -> None:
    bs = backends(3)
    lc = LeastConn()
    for _ in range(30):
        b = lc.choose(bs)
        b.active += 1
    assert [b.active for b in bs] == [10, 10, 10]


def test_random_uses_injected_rng() -> None:
    bs = backends(4)
    a = [Random(random.Random(7)).choose(bs).port for _ in range(1)]
    r1, r2 = Random(random.Random(42)), Random(random.Random(42))
    assert [r1.choose(bs).port for _ in range(50)] == [r2.choose(bs).port for _ in range(50)]
    c = Counter(Random(random.Random(1)).choose(bs).port for _ in range(1))
    assert a and c
    r = Random(random.Random(3))
    c = Counter(r.choose(bs).port for _ in range(4000))
    assert all(800 < v < 1200 for v in c.values())


def test_weighted_round_robin_exact_and_smooth() -> None:
    bs = backends(3, [5, 1, 1])
    w = WeightedRoundRobin()
    seq = [w.choose(bs).port for _ in range(7)]
    assert Counter(seq) == {8000: 5, 8001: 1, 8002: 1}
    # smooth: the heavy backend never gets all five in a row
    assert seq != [8000] * 5 + [8001, 8002]
    assert "".join("a" if p == 8000 else "b" for p in seq).count("aaaaa") == 0
    c = Counter(w.choose(bs).port for _ in range(700))
    assert c == {8000: 500, 8001: 100, 8002: 100}


def test_weighted_zero_weight_never_chosen() -> None:
    bs = backends(3, [2, 0, 1])
    w = WeightedRoundRobin()
    c = Counter(w.choose(bs).port for _ in range(30))
    assert c == {8000: 20, 8002: 10}
    allzero = backends(2, [0, 0])
    assert w.choose(allzero) is allzero[0]


@pytest.mark.parametrize("name", ["round_robin", "least_conn", "random", "weighted_round_robin"])
def test_make_strategy(name: str) -> None:
    s = make_strategy(name, random.Random(0))
    bs = backends(2)
    assert s.choose(bs) in bs


def test_make_strategy_unknown() -> None:
    with pytest.raises(ValueError):
        make_strategy("fastest")

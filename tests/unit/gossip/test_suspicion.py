"""Table tests for the Lifeguard suspicion helpers (cf. memberlist suspicion_test.go)."""

from __future__ import annotations

import math

import pytest

from gossip.suspicion import (
    Suspicion,
    remaining_suspicion_time,
    suspicion_confirmations,
    suspicion_timeouts,
)


@pytest.mark.parametrize(
    ("n", "confirmations", "k", "elapsed", "min_t", "max_t", "expected"),
    [
        # memberlist's own table (TestSuspicion_remainingSuspicionTime)
        (0, 0, 3, 0.0, 2.0, 30.0, 30.0),
        (1, 1, 3, 2.0, 2.0, 30.0, 14.0),
        (2, 2, 3, 3.0, 2.0, 30.0, 4.810),
        (3, 3, 3, 4.0, 2.0, 30.0, -2.0),
        (4, 4, 3, 5.0, 2.0, 30.0, -3.0),
        (5, 5, 3, 10.0, 2.0, 30.0, -8.0),
        # k = 0: always min
        (6, 0, 0, 1.0, 4.0, 24.0, 3.0),
    ],
)
def test_remaining_suspicion_time(
    n: int, confirmations: int, k: int, elapsed: float, min_t: float, max_t: float,
    expected: float,
) -> None:
    got = remaining_suspicion_time(confirmations, k, elapsed, min_t, max_t)
    assert got == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("n", "min_t", "max_t"),
    [(1, 4.0, 24.0), (3, 4.0, 24.0), (10, 4.0, 24.0), (20, 5.204, 31.224), (100, 8.0, 48.0),
     (1000, 12.0, 72.0)],
)
def test_timeouts_lan(n: int, min_t: float, max_t: float) -> None:
    lo, hi = suspicion_timeouts(4, 6, n, 1.0)
    assert lo == pytest.approx(min_t)
    assert hi == pytest.approx(max_t)


@pytest.mark.parametrize(("mult", "n", "k"), [(4, 3, 0), (4, 4, 2), (4, 100, 2), (3, 3, 1),
                                                (3, 2, 0), (6, 10, 4), (6, 5, 0)])
def test_confirmations(mult: int, n: int, k: int) -> None:
    assert suspicion_confirmations(mult, n) == k


def test_suspicion_object_shortens_and_ignores_duplicates() -> None:
    s = Suspicion("a", 1, 2, 4.0, 24.0, start=100.0)
    assert s.deadline == 124.0
    assert not s.confirm("a")  # the original accuser does not count
    assert s.confirm("b")
    assert s.deadline == pytest.approx(
        100.0 + math.floor(1000 * (24.0 - math.log(2) / math.log(3) * 20.0)) / 1000, abs=1e-9)
    assert not s.confirm("b")
    assert s.confirm("c")
    assert s.deadline == pytest.approx(104.0)
    assert not s.confirm("d")  # k reached
    assert s.confirmations == 2


def test_suspicion_without_confirmations_uses_min() -> None:
    s = Suspicion("a", 1, 0, 4.0, 24.0, start=10.0)
    assert s.deadline == 14.0
    assert not s.confirm("b")

"""Table tests for the Lifeguard awareness score (cf. memberlist awareness_test.go)."""

from __future__ import annotations

import pytest

from gossip.awareness import Awareness


def test_awareness_table() -> None:
    # (delta, expected score, expected scaled 1 s timeout) as in memberlist's test
    cases = [(0, 0, 1.0), (-1, 0, 1.0), (-10, 0, 1.0), (1, 1, 2.0), (-1, 0, 1.0), (10, 7, 8.0),
             (-1, 6, 7.0), (-1, 5, 6.0), (-1, 4, 5.0), (-1, 3, 4.0), (-1, 2, 3.0), (-1, 1, 2.0),
             (-1, 0, 1.0), (-1, 0, 1.0)]
    a = Awareness(8)
    for delta, score, timeout in cases:
        a.apply_delta(delta)
        assert a.health_score() == score
        assert a.scale_timeout(1.0) == pytest.approx(timeout)


@pytest.mark.parametrize("mult", [1, 2, 8])
def test_awareness_bounds(mult: int) -> None:
    a = Awareness(mult)
    assert a.apply_delta(100) == mult - 1
    assert a.apply_delta(-100) == 0

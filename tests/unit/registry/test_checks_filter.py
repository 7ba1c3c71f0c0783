"""Pure pieces of the check runners: flap damping and HTTP status mapping."""

from __future__ import annotations

import pytest

from registry.checks import StatusFilter, cut_output, http_status_of


@pytest.mark.parametrize("sbp,fbc,initial,feed,expected", [
    (0, 0, "critical", ["passing"], ["passing"]),
    (2, 0, "critical", ["passing", "passing"], ["critical", "passing"]),
    (2, 0, "critical", ["passing", "critical", "passing", "passing"],
     ["critical", "critical", "critical", "passing"]),
    (0, 3, "passing", ["critical", "critical", "critical"], ["passing", "passing", "critical"]),
    (0, 3, "passing", ["critical", "passing", "critical", "critical"],
     ["passing", "passing", "passing", "passing"]),
    (0, 3, "passing", ["warning"], ["warning"]),  # warning is never delayed
    (1, 1, "critical", ["passing", "critical"], ["passing", "critical"]),
])
def test_status_filter(sbp: int, fbc: int, initial: str, feed: list[str],
                       expected: list[str]) -> None:
    f = StatusFilter(sbp, fbc, initial)
    assert [f.feed(s) for s in feed] == expected


@pytest.mark.parametrize("code,status", [
    (200, "passing"), (204, "passing"), (299, "passing"), (301, "critical"), (429, "warning"),
    (404, "critical"), (500, "critical"), (503, "critical"),
])
def test_http_status(code: int, status: str) -> None:
    assert http_status_of(code) == status


def test_output_is_capped() -> None:
    assert cut_output("ok") == "ok"
    long = cut_output("é" * 5000)
    assert len(long.encode()) <= 4096 + 40 and long.endswith("(output truncated)")

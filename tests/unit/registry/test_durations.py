from __future__ import annotations

import pytest

from registry.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0), ("1.5s", 1.5),
    ("0", 0.0), ("", 0.0), ("100us", 1e-4), ("2h45m", 9900.0), (5, 5.0), (0.5, 0.5),
])
def test_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10", "s", "10x", "1m30", "-5s", True, None, [1], "1s 2s", -1])
def test_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration(bad, what="interval")
    assert str(e.value).startswith("interval:")


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (0.25, "250ms"), (10, "10s"), (90, "1m30s"),
                                           (3600, "1h0m0s")])
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)

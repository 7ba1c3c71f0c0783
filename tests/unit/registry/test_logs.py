"""The monitor ring: lines formatted when read, tracebacks formatted at once."""

from __future__ import annotations

import logging

from registry.logs import MonitorHandler, TextFormatter


def _logger(h: MonitorHandler) -> logging.Logger:
    lg = logging.getLogger(f"test-monitor-{id(h)}")
    lg.propagate = False
    lg.setLevel(logging.DEBUG)
    lg.addHandler(h)
    return lg


def test_backlog_formats_kept_records_in_order() -> None:
    h = MonitorHandler(keep=3)
    h.setFormatter(TextFormatter())
    lg = _logger(h)
    for i in range(5):
        lg.info("line %d of %s", i, "five")
    got = h.backlog()
    assert [lvl for lvl, _ in got] == [logging.INFO] * 3
    assert [line.rsplit(": ", 1)[1] for _, line in got] == [
        "line 2 of five", "line 3 of five", "line 4 of five"]


def test_traceback_is_formatted_when_logged_not_kept_as_frames() -> None:
    h = MonitorHandler()
    h.setFormatter(TextFormatter())
    lg = _logger(h)
    try:
        raise ValueError("boom")
    except ValueError:
        lg.exception("it failed")
    (_, item), = h.recent
    assert isinstance(item, str) and "ValueError: boom" in item and "it failed" in item


def test_live_subscriber_gets_formatted_lines() -> None:
    h = MonitorHandler()
    h.setFormatter(TextFormatter())
    lg = _logger(h)
    seen: list[tuple[int, str]] = []
    h.subscribers.add(lambda lvl, line: seen.append((lvl, line)))
    lg.warning("disk %s", "full")
    assert len(seen) == 1 and seen[0][0] == logging.WARNING and seen[0][1].endswith("disk full")
    assert h.backlog() == seen

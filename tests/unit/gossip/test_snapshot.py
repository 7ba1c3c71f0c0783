"""The snapshot log: replay rules, crash-cut lines, compaction with atomic rename."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossip.snapshot import Snapshot, replay


@pytest.mark.parametrize(
    "lines, rejoin, alive, clock, left",
    [
        ([], False, {}, 0, False),
        (["alive: a 1.2.3.4:7946", "alive: b 1.2.3.5:7946"], False, {"a": "1.2.3.4:7946", "b": "1.2.3.5:7946"}, 0, False),
        (["alive: a 1.2.3.4:7946", "not-alive: a"], False, {}, 0, False),
        (["alive: a 1.2.3.4:7946", "clock: 7", "leave"], False, {}, 0, True),
        (["alive: a 1.2.3.4:7946", "clock: 7", "leave"], True, {"a": "1.2.3.4:7946"}, 7, False),
        (["alive: a 1.2.3.4:7946", "leave", "alive: b 1.2.3.5:1"], False, {"b": "1.2.3.5:1"}, 0, False),
        (["# comment", "clock: x", "junk", "alive: nohost", "clock: 3"], False, {}, 3, False),
        (["alive: a [::1]:7946"], False, {"a": "[::1]:7946"}, 0, False),
    ],
)
def test_replay(lines: list[str], rejoin: bool, alive: dict[str, str], clock: int, left: bool) -> None:
    st = replay(lines, rejoin)
    assert st.alive == alive and st.clock == clock and st.left == left


def test_write_load_and_cut_last_line(tmp_path: Path) -> None:
    p = tmp_path / "serf" / "snapshot"
    s = Snapshot(p)
    s.load()
    s.alive("a", "10.0.0.1", 7946)
    s.alive("a", "10.0.0.1", 7946)  # unchanged: not written twice
    s.alive("b", "10.0.0.2", 7946)
    s.not_alive("b")
    s.clocks(5, 2, 1)
    s.flush()
    text = p.read_text()
    assert text.count("alive: a") == 1 and "not-alive: b" in text
    with open(p, "a") as f:
        f.write("alive: c 10.0.0.3:79")  # crash in the middle of a line
    st = Snapshot(p).load()
    assert st.alive == {"a": "10.0.0.1:7946"} and (st.clock, st.event_clock, st.query_clock) == (5, 2, 1)


def test_leave_clears_rejoin(tmp_path: Path) -> None:
    p = tmp_path / "snap"
    s = Snapshot(p)
    s.load()
    s.alive("a", "10.0.0.1", 7946)
    s.leave()
    s.flush()
    assert Snapshot(p).load().alive == {}
    assert Snapshot(p, rejoin_after_leave=True).load().alive == {"a": "10.0.0.1:7946"}


def test_compaction_keeps_state_and_shrinks(tmp_path: Path) -> None:
    p = tmp_path / "snap"
    s = Snapshot(p, min_compact_size=2000)
    s.load()
    for i in range(400):
        s.alive(f"n{i % 5}", "10.0.0.1", 7000 + i)
        if i % 50 == 0:
            s.flush()
    s.clocks(99, 3, 4)
    s.flush()
    big = p.stat().st_size
    assert big > 2000
    s.flush()  # over the threshold: compacts
    small = p.stat().st_size
    assert small < 600
    assert not (tmp_path / "snap.compact").exists()
    st = Snapshot(p).load()
    assert len(st.alive) == 5 and st.clock == 99 and st.query_clock == 4


def test_write_error_is_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = Snapshot(blocker / "snap")  # parent is a file: cannot write
    s.alive("a", "1.1.1.1", 1)
    s.flush()
    assert s.write_errors == 1 and s.has_pending()

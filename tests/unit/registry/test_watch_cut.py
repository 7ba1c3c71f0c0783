"""``rumor watch``'s table cuts check output to its first line and a fixed width."""

from __future__ import annotations

import pytest

from registry.commands.watch import cut


@pytest.mark.parametrize("text, width, shown", [
    ("", 10, ""),
    ("ok", 10, "ok"),
    ("exactly10!", 10, "exactly10!"),
    ("eleven char", 10, "eleven ch…"),
    ("\n\n  first  \nsecond", 20, "first …"),
    ("first line\nsecond", 10, "first lin…"),
    ("<html>" + "x" * 100, 12, "<html>xxxxx…"),
])
def test_cut(text: str, width: int, shown: str) -> None:
    assert cut(text, width) == shown
    assert len(cut(text, width)) <= width

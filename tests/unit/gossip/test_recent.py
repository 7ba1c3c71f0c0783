"""The core's cache of recently handled broadcasts (what the packet decoder may skip)."""

from __future__ import annotations

from gossip.recent import RecentMessages


def test_recent_messages_window_and_bound() -> None:
    r = RecentMessages(window=2.0, max_entries=3)

    def seen(message: bytes | memoryview, now: float) -> bool:
        """``known``, then for a new message ``remember``, as receive_packet does."""
        h = r.known(message, now)
        if h is not None:
            r.remember((h,), now)
        return h is None

    assert not seen(b"\x02a", 0.0)
    assert seen(b"\x02a", 0.5)
    assert seen(memoryview(b"\x02a"), 1.0)      # same bytes, whatever the buffer type
    assert not seen(b"\x02b", 1.0)
    assert seen(b"\x02a", 2.5)                   # previous generation still counts
    assert not seen(b"\x02a", 6.0)               # two windows later: forgotten
    for i in range(3):
        assert not seen(bytes([8, i]), 6.0)
    # the current generation is full: a new one starts, the full one is still consulted
    assert not seen(b"\x08z", 6.0)
    assert seen(bytes([8, 0]), 6.0) and seen(b"\x08z", 6.0)

"""The core's memory of broadcasts handled lately, so that gossip's copies are skipped undecoded."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["RecentMessages"]


class RecentMessages:
    """Hashes of the broadcast messages (alive, suspect, dead, user) handled lately, so that
    the copies gossip keeps delivering are skipped before they are decoded.

    Epidemic dissemination hands every node each rumour several times (each holder sends it
    ``retransmit_mult * log(n)`` times); all four types are idempotent, so a byte-identical
    copy can change nothing that the first did not. Handling one costs a msgpack decode and a
    trip through the state machine; recognising it costs a hash. Hashes live between one and
    two ``window`` seconds (two generations, swapped when the window ends or the current one
    holds ``max_entries``), so memory stays bounded and an old message seen again much later
    is handled as usual. Python's keyed bytes hash keeps peers from forging collisions.
    A message counts as handled only once its whole packet was (``known`` while decoding,
    ``remember`` after): if handling fails, the next copy is read."""

    __slots__ = ("_current", "_previous", "_swap_at", "max_entries", "window")

    def __init__(self, window: float, max_entries: int = 2048) -> None:
        self.window = window
        self.max_entries = max_entries
        self._current: set[int] = set()
        self._previous: set[int] = set()
        self._swap_at = -math.inf

    def known(self, message: bytes | memoryview, now: float) -> int | None:
        """None if ``message`` was handled in the window; otherwise its hash, to hand to
        :meth:`remember` once it has been handled."""
        if now >= self._swap_at:
            self._swap(now)
        h = hash(message)
        if h in self._current or h in self._previous:
            return None
        return h

    def remember(self, hashes: Iterable[int], now: float) -> None:
        """Record messages as handled (hashes from :meth:`known`)."""
        for h in hashes:
            if now >= self._swap_at or len(self._current) >= self.max_entries:
                self._swap(now)
            self._current.add(h)

    def _swap(self, now: float) -> None:
        self._previous = self._current if now < self._swap_at + self.window else set()
        self._current = set()
        self._swap_at = now + self.window

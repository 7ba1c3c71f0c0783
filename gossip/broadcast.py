"""Transmit-limited broadcast queue (memberlist ``queue.go``), shared by memberlist and Serf.

Every queued message is piggy-backed on outgoing packets until it has been sent
``retransmit_limit(mult, n) = mult * ceil(log10(n + 1))`` times. Packets are filled tier by tier:
the least-transmitted messages first, and within a tier the largest one that still fits, newest
first on equal size. A broadcast with a ``name`` replaces any queued broadcast with the same name
(memberlist: a newer alive/suspect/dead about a node replaces the older one; the registry: the
newest payload per key wins).

The Serf layer keeps its own queues (intents, events, queries, the Rumor app channel) with this
same class; ``get_broadcasts(accept=...)`` lets it hold back Rumor-only messages for plain Serf
destinations without touching their transmit counts.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable

__all__ = ["Broadcast", "TransmitLimitedQueue", "retransmit_limit"]


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """How many times a broadcast is sent: ``retransmit_mult * ceil(log10(n + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n + 1))


_ids = itertools.count(1)
_FIRST_ID = -(1 << 62)
"""Sorts before every ``-id`` in a key, so ``(-size, _FIRST_ID)`` bisects to the first
message of that size."""


class Broadcast:
    """One queued message. ``on_done`` is called once when it is sent enough or replaced."""

    __slots__ = ("_key", "id", "message", "name", "on_done", "rumor_only", "transmits")

    def __init__(
        self,
        message: bytes,
        name: str | None = None,
        *,
        rumor_only: bool = False,
        on_done: Callable[[bool], None] | None = None,
    ) -> None:
        self.message = message
        """The bytes to send (memberlist: a whole encoded message; Serf: a user-message body)."""
        self.name = name
        """Invalidation key: a newer broadcast with the same name replaces this one."""
        self.rumor_only = rumor_only
        """Only for Rumor peers (the queue's ``accept`` filter decides)."""
        self.on_done = on_done
        """Called with True when sent the full number of times, False when replaced/pruned."""
        self.transmits = 0
        self.id = next(_ids)
        self._key = (-len(message), -self.id)

    def _finish(self, sent: bool) -> None:
        cb = self.on_done
        if cb is not None:
            self.on_done = None
            cb(sent)

    def __repr__(self) -> str:
        return f"Broadcast(name={self.name!r} len={len(self.message)} tx={self.transmits})"


def _key(b: Broadcast) -> tuple[int, int]:
    return b._key


class TransmitLimitedQueue:
    """Broadcasts waiting to be piggy-backed; see the module docstring for the order."""

    __slots__ = ("_by_name", "_count", "_tiers", "num_nodes", "retransmit_mult")

    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self.num_nodes = num_nodes
        """Callable giving the cluster size used for the retransmit limit."""
        # transmits -> list sorted by (-len, -id): largest first, newest first on equal size.
        self._tiers: dict[int, list[Broadcast]] = {}
        self._by_name: dict[str, Broadcast] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def queue(self, b: Broadcast) -> None:
        """Add ``b``, first dropping a queued broadcast with the same name."""
        if b.name is not None:
            old = self._by_name.get(b.name)
            if old is not None:
                self._remove(old)
                old._finish(False)
            self._by_name[b.name] = b
        self._insert(b)

    def queue_bytes(self, message: bytes, name: str | None = None, *,
                    rumor_only: bool = False) -> Broadcast:
        """Shortcut: wrap ``message`` in a :class:`Broadcast` and queue it."""
        b = Broadcast(message, name, rumor_only=rumor_only)
        self.queue(b)
        return b

    def _insert(self, b: Broadcast) -> None:
        tier = self._tiers.get(b.transmits)
        if tier is None:
            self._tiers[b.transmits] = [b]
        else:
            bisect.insort(tier, b, key=_key)
        self._count += 1

    def _remove(self, b: Broadcast) -> None:
        tier = self._tiers.get(b.transmits)
        if tier is None:
            return
        i = bisect.bisect_left(tier, b._key, key=_key)
        if i < len(tier) and tier[i] is b:
            del tier[i]
            self._count -= 1
            if not tier:
                del self._tiers[b.transmits]

    def get_broadcasts(
        self,
        overhead: int,
        limit: int,
        accept: Callable[[Broadcast], bool] | None = None,
        below: int | None = None,
    ) -> list[bytes]:
        """Messages to send now: each costs ``len + overhead``, all together at most ``limit``.

        Messages that ``accept`` refuses are skipped and keep their place and count. With
        ``below``, only messages sent fewer than ``below`` times so far are taken (the fresh
        ones an eager gossip round carries)."""
        if not self._count:
            return []
        transmit_limit = retransmit_limit(self.retransmit_mult, self.num_nodes())
        used = 0
        out: list[bytes] = []
        reinsert: list[Broadcast] = []
        for transmits in sorted(self._tiers):
            if below is not None and transmits >= below:
                break
            tier = self._tiers[transmits]
            i = 0
            while i < len(tier):
                free = limit - used - overhead
                if free <= 0:
                    break
                b = tier[i]
                mlen = -b._key[0]
                if mlen > free:
                    # the tier runs largest first: jump to the first message that fits
                    i = bisect.bisect_left(tier, (-free, _FIRST_ID), lo=i + 1, key=_key)
                    continue
                if accept is not None and not accept(b):
                    i += 1
                    continue
                out.append(b.message)
                used += overhead + mlen
                del tier[i]
                self._count -= 1
                if b.transmits + 1 >= transmit_limit:
                    if b.name is not None and self._by_name.get(b.name) is b:
                        del self._by_name[b.name]
                    b._finish(True)
                else:
                    b.transmits += 1
                    reinsert.append(b)
            if not tier:
                del self._tiers[transmits]
            if limit - used - overhead <= 0:
                break
        for b in reinsert:
            self._insert(b)
        return out

    def prune(self, max_retain: int) -> int:
        """Drop the most-transmitted broadcasts until at most ``max_retain`` remain."""
        dropped = 0
        while self._count > max_retain:
            top = max(self._tiers)
            tier = self._tiers[top]
            b = tier[-1]  # smallest, oldest in the most-sent tier (memberlist's Max())
            self._remove(b)
            if b.name is not None and self._by_name.get(b.name) is b:
                del self._by_name[b.name]
            b._finish(False)
            dropped += 1
        return dropped

    def reset(self) -> None:
        """Drop everything (each dropped broadcast's ``on_done(False)`` is called)."""
        tiers = self._tiers
        self._tiers = {}
        self._by_name = {}
        self._count = 0
        for tier in tiers.values():
            for b in tier:
                b._finish(False)

    def lengths(self) -> list[int]:
        """Sizes of queued messages (for tests and diagnostics)."""
        return [len(b.message) for tier in self._tiers.values() for b in tier]

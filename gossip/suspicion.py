"""Lifeguard suspicion timer (memberlist ``suspicion.go``), as plain data with no clock.

When a node is suspected the core starts a timer at ``max`` (or ``min`` when fewer than
``k >= 1`` other members could ever confirm). Each suspect message about the same node from a
new accuser is a confirmation, up to ``k``. After ``c`` confirmations the timeout, measured from
when the suspicion started, becomes::

    max - (ln(c + 1) / ln(k + 1)) * (max - min)       (never below min)

so independent evidence shortens the wait logarithmically (Lifeguard, "Dynamic suspicion
timeouts", Dadgar et al. 2017, section IV-B). The core owns the timer; this object only says when
it should fire.
"""

from __future__ import annotations

import math

__all__ = [
    "Suspicion",
    "remaining_suspicion_time",
    "suspicion_confirmations",
    "suspicion_timeouts",
]


def suspicion_timeouts(
    suspicion_mult: int, max_timeout_mult: int, n: int, probe_interval: float
) -> tuple[float, float]:
    """(min, max) suspicion timeout in seconds for a cluster of ``n`` known nodes.

    ``min = suspicion_mult * max(1, log10(max(1, n))) * probe_interval``; ``max = mult * min``.
    memberlist truncates ``min`` to whole milliseconds (``suspicionTimeout``), and so do we.
    """
    node_scale = max(1.0, math.log10(max(1.0, float(n))))
    # Go: time.Duration(suspicionMult) * time.Duration(nodeScale*1000) * interval / 1000
    min_t = suspicion_mult * math.floor(node_scale * 1000) * probe_interval / 1000.0
    return min_t, max_timeout_mult * min_t


def suspicion_confirmations(suspicion_mult: int, n: int) -> int:
    """k: confirmations that shorten the timer, ``suspicion_mult - 2``, or 0 if ``n - 2 < k``."""
    k = suspicion_mult - 2
    if n - 2 < k:
        return 0
    return max(0, k)


def remaining_suspicion_time(
    confirmations: int, k: int, elapsed: float, min_t: float, max_t: float
) -> float:
    """Seconds left on a suspicion timer after ``confirmations`` of ``k`` (may be negative)."""
    if k < 1:
        return min_t - elapsed
    frac = math.log(confirmations + 1.0) / math.log(k + 1.0)
    raw = max_t - frac * (max_t - min_t)
    # memberlist floors the timeout to whole milliseconds.
    timeout = math.floor(1000.0 * raw + 1e-9) / 1000.0
    timeout = max(timeout, min_t)
    return timeout - elapsed


class Suspicion:
    """One suspicion: who already accused, how many confirmations, when it fires."""

    __slots__ = (
        "_seen",
        "confirmations",
        "deadline",
        "incarnation",
        "k",
        "max_t",
        "min_t",
        "start",
    )

    def __init__(
        self,
        from_node: str,
        incarnation: int,
        k: int,
        min_t: float,
        max_t: float,
        start: float,
    ) -> None:
        self.incarnation = incarnation
        self.k = k
        self.min_t = min_t
        self.max_t = max_t
        self.start = start
        self.confirmations = 0
        # The first accuser does not count as a confirmation (memberlist seeds the set with it).
        self._seen = {from_node}
        self.deadline = start + (max_t if k >= 1 else min_t)
        """Clock time at which the node is declared dead if still suspect."""

    def confirm(self, from_node: str) -> bool:
        """Count a suspect message from ``from_node``; True if it was a new confirmation.

        A new confirmation moves :attr:`deadline` earlier (and the caller re-gossips it)."""
        if self.confirmations >= self.k:
            return False
        if from_node in self._seen:
            return False
        self._seen.add(from_node)
        self.confirmations += 1
        self.deadline = self.start + remaining_suspicion_time(
            self.confirmations, self.k, 0.0, self.min_t, self.max_t
        )
        return True

"""Lifeguard local health ("awareness", memberlist ``awareness.go``).

A score in ``0 .. max_multiplier-1``. A node that misses nacks, fails probes or has to refute
suspicions of itself is probably the slow one (overloaded, paused, losing packets), so it
stretches its own probe interval and ack deadline by ``score + 1`` instead of accusing others
(Lifeguard, "Local Health Aware Probe", Dadgar et al. 2017, section IV-A).
"""

from __future__ import annotations

__all__ = ["Awareness"]


class Awareness:
    """The health score and the timeout scaling it implies."""

    __slots__ = ("max_multiplier", "score")

    def __init__(self, max_multiplier: int) -> None:
        self.max_multiplier = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> int:
        """Add ``delta`` (clamped to 0..max-1) and return the new score."""
        score = self.score + delta
        if score < 0:
            score = 0
        elif score > self.max_multiplier - 1:
            score = self.max_multiplier - 1
        self.score = score
        return score

    def health_score(self) -> int:
        """Current score; 0 is healthy."""
        return self.score

    def scale_timeout(self, timeout: float) -> float:
        """``timeout * (score + 1)``."""
        return timeout * (self.score + 1)

"""Vivaldi network coordinates, compatible with Serf's: estimate the RTT between any two nodes.

Theory of operation (Dabek et al., "Vivaldi: A Decentralized Network Coordinate System",
SIGCOMM 2004, with the height vectors of the paper and the refinements of Ledlie et al.,
"Network Coordinates in the Wild", NSDI 2007, as Serf applies them):

* each node places itself in an 8-dimensional Euclidean space plus a non-negative *height* (the
  time spent on its own access link); the estimated RTT to another node is the distance between
  the two vectors plus both heights plus both *adjustments*;
* each measured RTT of a direct probe (the ack of our ping carries the peer's coordinate) acts
  as a spring between the two nodes: the node moves along the line between them by a force
  proportional to the error of its estimate, weighted by how sure it is of its own position
  compared with the peer (``error`` of each side, kept as a moving average);
* a per-peer median filter over the last three samples drops outliers (Ledlie);
* the *adjustment* term is the mean of the recent estimation residuals, which corrects for the
  non-Euclidean part of real networks;
* a weak gravity towards the origin keeps the whole system from drifting away.

Serf sends the coordinate in every UDP ack as ``0x01 + msgpack{Vec, Error, Adjustment, Height}``
(gossip.serf_messages.Coordinate); Serf's ``rtt`` command and Consul's ``/v1/coordinate``
endpoints read ``distance()`` of two coordinates. The constants below are Serf's defaults, so a
mixed Serf/Rumor pool computes the same estimates. Pure: the caller passes RTTs, randomness comes
from an injected ``random.Random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from .dclass import dataclass
from .serf_messages import Coordinate

__all__ = ["VivaldiClient", "VivaldiConfig", "distance", "origin"]

_ZERO = 1.0e-6
"""Below this a length or an RTT counts as zero (Serf's zeroThreshold)."""
MAX_RTT = 10.0
"""RTT samples above this many seconds are refused as bogus."""


@dataclass(frozen=True, kw_only=True, slots=True)
class VivaldiConfig:
    """Serf's coordinate defaults (``coordinate.DefaultConfig``)."""

    dimensionality: int = 8
    """Dimensions of the Euclidean part. Default 8."""
    error_max: float = 1.5
    """Largest (and initial) error estimate. Default 1.5."""
    ce: float = 0.25
    """How fast the error estimate follows new samples. Default 0.25."""
    cc: float = 0.25
    """How far one sample moves the coordinate (the spring constant). Default 0.25."""
    adjustment_window: int = 20
    """Samples averaged into the adjustment term; 0 disables it. Default 20."""
    height_min: float = 10.0e-6
    """Smallest height, seconds. Default 10 µs."""
    latency_filter_size: int = 3
    """Samples per peer in the median filter. Default 3."""
    gravity_rho: float = 150.0
    """Distance (seconds) at which gravity pulls as hard as one sample. Default 150."""


DEFAULT_CONFIG = VivaldiConfig()
"""Serf's defaults (frozen, so one instance serves every default argument)."""


def origin(config: VivaldiConfig = DEFAULT_CONFIG) -> Coordinate:
    """A new node's coordinate: the origin, with the largest error and the smallest height."""
    return Coordinate(vec=(0.0,) * config.dimensionality, error=config.error_max,
                      adjustment=0.0, height=config.height_min)


def _raw_distance(a: Coordinate, b: Coordinate) -> float:
    return math.dist(a.vec, b.vec) + a.height + b.height


def distance(a: Coordinate, b: Coordinate) -> float:
    """Estimated RTT in seconds between two nodes (Serf's ``DistanceTo``); the adjustment terms
    are used only while they keep the estimate positive."""
    raw = _raw_distance(a, b)
    adjusted = raw + a.adjustment + b.adjustment
    return adjusted if adjusted > 0.0 else raw


def compatible(a: Coordinate, b: Coordinate) -> bool:
    """Same dimensionality, every component finite."""
    return len(a.vec) == len(b.vec) and _valid(a) and _valid(b)


def _valid(c: Coordinate) -> bool:
    return all(math.isfinite(x) for x in (*c.vec, c.error, c.adjustment, c.height))


def _unit_vector_at(v1: Sequence[float], v2: Sequence[float],
                    rng: random.Random) -> tuple[tuple[float, ...], float]:
    """Unit vector pointing from v2 to v1 and the distance; a random direction when they
    coincide (two new nodes must be pushed apart somehow)."""
    diff = tuple(x - y for x, y in zip(v1, v2))
    mag = math.hypot(*diff)
    if mag > _ZERO:
        return tuple(x / mag for x in diff), mag
    rand = tuple(rng.random() - 0.5 for _ in diff)
    rmag = math.hypot(*rand)
    if rmag > _ZERO:
        return tuple(x / rmag for x in rand), 0.0
    return (0.0,) * len(diff), 0.0


def _apply_force(config: VivaldiConfig, c: Coordinate, force: float, other: Coordinate,
                 rng: random.Random) -> Coordinate:
    unit, mag = _unit_vector_at(c.vec, other.vec, rng)
    vec = tuple(x + u * force for x, u in zip(c.vec, unit))
    height = c.height
    if mag > _ZERO:
        height = max((c.height + other.height) * force / mag + c.height, config.height_min)
    return Coordinate(vec=vec, error=c.error, adjustment=c.adjustment, height=height)


class VivaldiClient:
    """One node's coordinate, updated from RTT samples: ``update(peer, peer_coord, rtt)``."""

    def __init__(self, config: VivaldiConfig = DEFAULT_CONFIG, *,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng or random.Random()
        self.coord = origin(config)
        self._origin = origin(config)
        self._adjust = [0.0] * config.adjustment_window
        self._adjust_at = 0
        self._samples: dict[str, list[float]] = {}
        self.resets = 0
        """Times the coordinate became invalid (NaN/inf) and was reset to the origin."""

    def forget(self, node: str) -> None:
        """Drop a peer's latency samples (it left or was reaped)."""
        self._samples.pop(node, None)

    def update(self, node: str, other: Coordinate, rtt: float) -> Coordinate:
        """Fold in one RTT sample (seconds) of a direct probe of ``node`` whose coordinate is
        ``other``; returns our new coordinate. Raises ValueError for an incompatible or
        non-finite coordinate, or an RTT outside [0, 10 s]. An RTT of 0 (a clock coarser than
        the network, as Serf sees on some hosts) counts as 1 µs, as in Serf."""
        if not compatible(self.coord, other):
            raise ValueError(f"coordinate of {node} is incompatible (dimensions "
                             f"{len(other.vec)}, expected {len(self.coord.vec)}) or not finite")
        if not 0.0 <= rtt <= MAX_RTT:
            raise ValueError(f"rtt {rtt!r} s to {node} is out of range")
        rtt = self._median(node, rtt)
        self._update_vivaldi(other, rtt)
        self._update_adjustment(other, rtt)
        self._update_gravity()
        if not _valid(self.coord):
            self.resets += 1
            self.coord = origin(self.config)
        return self.coord

    def _median(self, node: str, rtt: float) -> float:
        samples = self._samples.setdefault(node, [])
        samples.append(rtt)
        if len(samples) > self.config.latency_filter_size:
            del samples[0]
        return sorted(samples)[len(samples) // 2]

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        cfg = self.config
        c = self.coord
        rtt = max(rtt, _ZERO)
        dist = distance(c, other)
        wrongness = abs(dist - rtt) / rtt
        total = max(c.error + other.error, _ZERO)
        weight = c.error / total
        error = min(cfg.ce * weight * wrongness + c.error * (1.0 - cfg.ce * weight),
                    cfg.error_max)
        force = cfg.cc * weight * (rtt - dist)
        moved = _apply_force(cfg, c, force, other, self.rng)
        self.coord = Coordinate(vec=moved.vec, error=error, adjustment=moved.adjustment,
                                height=moved.height)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        window = self.config.adjustment_window
        if window == 0:
            return
        self._adjust[self._adjust_at] = rtt - _raw_distance(self.coord, other)
        self._adjust_at = (self._adjust_at + 1) % window
        c = self.coord
        self.coord = Coordinate(vec=c.vec, error=c.error, height=c.height,
                                adjustment=sum(self._adjust) / (2.0 * window))

    def _update_gravity(self) -> None:
        dist = distance(self._origin, self.coord)
        force = -1.0 * (dist / self.config.gravity_rho) ** 2
        self.coord = _apply_force(self.config, self.coord, force, self._origin, self.rng)

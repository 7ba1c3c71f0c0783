"""Vivaldi coordinates: distance case table, input checks, the median filter, convergence of a
simulated grid of nodes to its true RTTs."""

from __future__ import annotations

import math
import random

import pytest

from gossip.serf_messages import Coordinate
from gossip.vivaldi import VivaldiClient, VivaldiConfig, distance, origin

Z8 = (0.0,) * 8


def c(vec: tuple[float, ...] = Z8, height: float = 0.0, adj: float = 0.0) -> Coordinate:
    return Coordinate(vec=vec, error=1.5, adjustment=adj, height=height)


@pytest.mark.parametrize(("a", "b", "want"), [
    (c(), c(), 0.0),
    (c((3.0, 4.0) + (0.0,) * 6), c(), 5.0),                     # Euclidean part
    (c(height=0.1), c(height=0.2), 0.3),                        # heights add
    (c(adj=0.05), c(adj=0.05, height=0.1), 0.2),                # adjustments add...
    (c(adj=-1.0), c(height=0.1), 0.1),                          # ...unless they go negative
])
def test_distance(a: Coordinate, b: Coordinate, want: float) -> None:
    assert distance(a, b) == pytest.approx(want)
    assert distance(b, a) == pytest.approx(want)


def test_origin_is_serfs_new_coordinate() -> None:
    o = origin()
    assert o.vec == Z8 and o.error == 1.5 and o.height == 10e-6 and o.adjustment == 0.0


@pytest.mark.parametrize(("other", "rtt", "says"), [
    (c((0.0,) * 3), 0.01, "incompatible"),
    (c((math.nan,) + (0.0,) * 7), 0.01, "incompatible"),
    (c(), -0.001, "out of range"),
    (c(), 11.0, "out of range"),
])
def test_update_refuses_bad_input(other: Coordinate, rtt: float, says: str) -> None:
    cl = VivaldiClient(rng=random.Random(1))
    with pytest.raises(ValueError, match=says):
        cl.update("peer", other, rtt)
    assert cl.coord == origin()


def test_zero_rtt_is_used_as_serf_does() -> None:
    # a clock coarser than the network reads 0 (Serf: counted, then used as 1 µs)
    cl = VivaldiClient(rng=random.Random(1))
    after = cl.update("peer", c((0.010,) + (0.0,) * 7), 0.0)
    assert after != origin()
    assert all(math.isfinite(x) for x in after.vec)


def test_first_sample_pushes_nodes_apart_along_a_random_direction() -> None:
    cl = VivaldiClient(rng=random.Random(7))
    after = cl.update("peer", origin(), 0.050)
    assert math.hypot(*after.vec) > 0.0          # moved off the origin
    assert distance(after, origin()) > distance(origin(), origin())


def test_median_filter_ignores_one_outlier() -> None:
    a = VivaldiClient(rng=random.Random(1))
    b = VivaldiClient(rng=random.Random(1))
    peer = Coordinate(vec=(0.01,) + (0.0,) * 7, error=0.2, adjustment=0.0, height=1e-5)
    for rtt in (0.010, 0.011):
        a.update("p", peer, rtt)
        b.update("p", peer, rtt)
    a.update("p", peer, 0.010)
    b.update("p", peer, 5.0)          # one spike: the median of (0.010, 0.011, 5.0) is 0.011
    assert distance(b.coord, peer) < 0.05


def test_grid_converges_to_true_rtts() -> None:
    # 25 nodes on a 5x5 grid, 10 ms between neighbours; each round every node probes a random
    # peer, as a gossip probe round would. After enough rounds the estimates track the truth.
    rng = random.Random(42)
    pos = {f"n{x}{y}": (x * 0.010, y * 0.010) for x in range(5) for y in range(5)}
    nodes = {n: VivaldiClient(rng=random.Random(rng.random())) for n in pos}

    def true_rtt(a: str, b: str) -> float:
        return math.dist(pos[a], pos[b]) + 0.0002           # a little access-link time

    names = list(pos)
    for _ in range(400):
        for n in names:
            peer = rng.choice([m for m in names if m != n])
            nodes[n].update(peer, nodes[peer].coord, true_rtt(n, peer))
    errs = [abs(distance(nodes[a].coord, nodes[b].coord) - true_rtt(a, b)) / true_rtt(a, b)
            for a in names for b in names if a < b]
    assert sum(errs) / len(errs) < 0.10, sum(errs) / len(errs)
    assert all(nodes[n].coord.error < 1.0 for n in names)
    assert all(nodes[n].resets == 0 for n in names)


def test_config_defaults_are_serfs() -> None:
    cfg = VivaldiConfig()
    assert (cfg.dimensionality, cfg.error_max, cfg.ce, cfg.cc, cfg.adjustment_window,
            cfg.height_min, cfg.latency_filter_size, cfg.gravity_rho) == (
        8, 1.5, 0.25, 0.25, 20, 10e-6, 3, 150.0)

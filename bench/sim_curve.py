"""Failure detection and dissemination time vs N, up to 10,000 nodes, on the simulator.

    python -m bench.sim_curve [--nodes 100 500 1000 2000 5000 10000] [--trials 3] \
        [--out bench/results/DATE/sim_curve]
    python -m bench.sim_curve --plot ROUNDS_JSONL PNG

gossip/sim.py runs the real memberlist core of every node (memberlist's LAN profile: probe
every 1 s, gossip to 3 nodes every 0.2 s, suspicion_mult 4, retransmit_mult 4) on a virtual
clock and a fake network (0.5-1 ms one way, no loss), with Rumor's eager gossip rounds (news is
sent at once, not at the next 0.2 s tick; ``--no-eager`` for memberlist's timing). Per N, one cluster is built, then each
trial (a different origin and victim each time):

* **dissemination**: one node changes its meta (a new alive with a higher incarnation, the
  way a Serf tag change travels; Serf's user events ride the same piggy-backed gossip with the
  same ``retransmit_mult * ceil(log10(N + 1))`` limit): simulated seconds until every node
  holds the new incarnation (and until 99 % do);
* **failure detection**: the victim stops answering (kill -9): simulated seconds until 50 %,
  99 % and all of the other nodes have it dead (probe, Lifeguard suspicion with its
  confirmations, then the dead message's gossip).

Medians over the trials; the fit is ``t = a + b * log10(N)`` (least squares over the medians).

What it simplifies, so that 10,000 nodes fit in memory and tens of minutes:

* Bare memberlist nodes (no Serf layer, no application channel): failure detection and
  dissemination are memberlist's; a whole node's Serf state would double the memory.
* Periodic push/pull off (as in bench/gossip_sim.py): it does not change the UDP gossip
  measured here, and N push/pulls of N states each would dominate the run time.
* **Full membership up to ``--full-mesh-max`` (2,000) nodes.** Every node knowing every
  other costs ~370 B per pair (1.5 GB at 2,000; 37 GB at 10,000). Above it each node knows
  ``--view`` (256) random members plus every trial's origin and victim, and scales its
  retransmit limit and suspicion timeouts by the real N (memberlist's ``estNumNodes``; the
  bench's subclass reports N). Gossip then travels over a random graph of degree ~256, which
  spreads news in the same number of rounds as the full mesh (an expander); the victim is
  probed by ~N/256 nodes per interval instead of ~1, so its first failed probe comes sooner
  (by up to ~1 s) and the Lifeguard confirmations arrive earlier: detection above the
  full-mesh range is a slight underestimate. The rows say which mode they ran in.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossip import MemberlistConfig
from gossip.memberlist import Memberlist
from gossip.messages import Alive
from gossip.sim import Simulator
from gossip.state import NodeStatus


class _PoolSized(Memberlist):
    """A partial-view member that scales its retransmits and suspicion as one of ``pool``."""

    pool = 0

    def _num_nodes(self) -> int:
        return self.pool


def _seed_views(sim: Simulator, names: list[str], view: int, known_by_all: list[str],
                rng: random.Random) -> None:
    """Each node learns ``view`` random members plus ``known_by_all`` (no traffic)."""
    nodes = [sim.nodes[n] for n in names]
    alive = {n.name: Alive(incarnation=n.memberlist.incarnation, node=n.name, addr=n.addr[0],
                           port=n.addr[1], meta=b"", vsn=n.memberlist.config.vsn) for n in nodes}
    everyone = [alive[n] for n in names]
    extra = [alive[n] for n in known_by_all]
    for node in nodes:
        sim.feed_alives(node.name,
                        everyone if view >= len(names) else rng.sample(everyone, view) + extra)


def build(n: int, *, seed: int, full_mesh_max: int, view: int, trials: int, eager: bool
          ) -> tuple[Simulator, list[str], list[str], list[str], str]:
    sim = Simulator(seed=seed, record_events=False)
    cfg = MemberlistConfig.lan(name="x", enable_compression=False, push_pull_interval=0.0,
                               eager_gossip=eager)
    names = [f"n{i}" for i in range(n)]
    full = n <= full_mesh_max
    for i, name in enumerate(names):
        node = sim.add_node(name, cfg, ip=f"10.{i // 62500}.{(i // 250) % 250}.{i % 250 + 1}")
        if not full:
            ml = node.memberlist
            ml.__class__ = _PoolSized
            ml.pool = n  # type: ignore[attr-defined]
    rng = random.Random(seed)
    picked = rng.sample(names, 2 * trials)
    origins, victims = picked[:trials], picked[trials:]
    _seed_views(sim, names, n if full else view, origins + victims, rng)
    return sim, names, origins, victims, "full" if full else f"view {view}"


def _times(done: dict[int, float], t0: float, total: int) -> dict[str, float | None]:
    ts = sorted(done.values())

    def at(frac: float) -> float | None:
        k = math.ceil(frac * total)
        return round(ts[k - 1] - t0, 3) if 0 < k <= len(ts) else None

    return {"p50": at(0.5), "p99": at(0.99), "all": at(1.0)}


def _time_until(sim: Simulator, names: list[str], subject: str, t0: float, limit: float,
                check_every: float, seen: Callable[[Any], bool]) -> dict[str, float | None]:
    """Run ``sim`` until every running node of ``names`` but ``subject`` has ``seen`` its view
    of ``subject`` (a ``Node``), at most ``limit`` s; the times (see :func:`_times`)."""
    pending = {n for n in names if n != subject and sim.nodes[n].running}
    cores = {n: sim.nodes[n].memberlist for n in pending}
    done: dict[int, float] = {}
    total = len(pending)

    def check() -> bool:
        for name in list(pending):
            nd = cores[name].node(subject)
            if nd is not None and seen(nd):
                pending.discard(name)
                done[len(done)] = sim.now
        return not pending

    sim.run_for(limit, check, check_every=check_every)
    return _times(done, t0, total)


def disseminate(sim: Simulator, names: list[str], origin: str, limit: float
                ) -> dict[str, float | None]:
    node = sim.nodes[origin]
    ml = node.memberlist
    ml.delegate.meta = b"\x81\xa1v\xa1" + str(sim.now).encode()[-1:]  # type: ignore[union-attr]
    t0 = sim.now
    ml.update_node(t0)
    sim._flush(node)
    target = ml.incarnation
    return _time_until(sim, names, origin, t0, limit, 0.01,
                       lambda nd: nd.incarnation >= target)


def detect(sim: Simulator, names: list[str], victim: str, limit: float
           ) -> dict[str, float | None]:
    sim.stop(victim)
    return _time_until(sim, names, victim, sim.now, limit, 0.05,
                       lambda nd: nd.status >= NodeStatus.DEAD)


def measure(n: int, *, trials: int, seed: int, full_mesh_max: int, view: int,
            eager: bool = True) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    load_before = os.getloadavg()[0]
    sim, names, origins, victims, mode = build(n, seed=seed, full_mesh_max=full_mesh_max,
                                               view=view, trials=trials, eager=eager)
    build_s = time.perf_counter() - wall
    sim.run_for(3.0)  # the tickers get going
    rows = []
    for origin, victim in zip(origins, victims, strict=True):
        d = disseminate(sim, names, origin, 60.0)
        sim.run_for(5.0)  # the broadcast dies down
        f = detect(sim, names, victim, 180.0)
        rows.append({"dissemination": d, "detection": f})
        sim.run_for(5.0)

    def med(kind: str, key: str) -> float | None:
        vals = [r[kind][key] for r in rows if r[kind][key] is not None]
        return round(statistics.median(vals), 3) if len(vals) == len(rows) else None

    return {
        "nodes": n, "membership": mode, "trials": trials, "seed": seed, "eager_gossip": eager,
        "dissemination_all_s": med("dissemination", "all"),
        "dissemination_p99_s": med("dissemination", "p99"),
        "detection_p50_s": med("detection", "p50"),
        "detection_p99_s": med("detection", "p99"),
        "detection_all_s": med("detection", "all"),
        "trials_raw": rows,
        "build_wall_s": round(build_s, 1),
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
    }


def fit(rows: list[dict[str, Any]], key: str) -> tuple[float, float] | None:
    """Least squares ``t = a + b * log10(N)`` over the rows that have ``key``."""
    pts = [(math.log10(r["nodes"]), r[key]) for r in rows if r.get(key) is not None]
    if len(pts) < 2:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - b * mx, b


COLUMNS = [("dissemination_all_s", "dissemination, all (s)"),
           ("dissemination_p99_s", "dissemination, 99 % (s)"),
           ("detection_p50_s", "detection, 50 % (s)"),
           ("detection_p99_s", "detection, 99 % (s)"),
           ("detection_all_s", "detection, all (s)")]


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| N | membership | " + " | ".join(t for _, t in COLUMNS) + " | wall (CPU) s |",
           "|---" * (len(COLUMNS) + 3) + "|"]
    for r in rows:
        cells = [f"{r[k]:.2f}" if r[k] is not None else "-" for k, _ in COLUMNS]
        out.append(f"| {r['nodes']:,} | {r['membership']} | " + " | ".join(cells)
                   + f" | {r['wall_s']:.0f} ({r['cpu_s']:.0f}) |")
    out.append("")
    for k, title in COLUMNS:
        ab = fit(rows, k)
        if ab is not None:
            sign = "+" if ab[1] >= 0 else "-"
            out.append(f"    fit {title}: t = {ab[0]:.2f} {sign} {abs(ab[1]):.2f} * log10(N)")
    return "\n".join(out)


def plot(rounds: Path, png: Path) -> None:
    """The curves as a PNG (needs the ``bench`` extra: matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in rounds.read_text().splitlines() if line.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, keys, title in (
            (axes[0], COLUMNS[:2], "dissemination of a change"),
            (axes[1], COLUMNS[2:], "failure detection (kill -9)")):
        for key, label in keys:
            pts = [(r["nodes"], r[key]) for r in rows if r.get(key) is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            ab = fit(rows, key)
            if ab is not None and pts:
                xs = [pts[0][0], pts[-1][0]]
                ax.plot(xs, [ab[0] + ab[1] * math.log10(x) for x in xs], linestyle=":",
                        color=ax.lines[-1].get_color(), alpha=0.7)
        ax.set_xscale("log")
        ax.set_xlabel("nodes N (log scale; dotted: a + b log10 N)")
        ax.set_ylabel("simulated seconds")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    full = max((r["nodes"] for r in rows if r["membership"] == "full"), default=0)
    fig.suptitle(f"gossip/sim.py, memberlist LAN profile, medians of {rows[0]['trials']} "
                 f"trials (full membership up to N = {full:,}, partial views above)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+",
                    default=[100, 500, 1000, 2000, 5000, 10000])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--full-mesh-max", type=int, default=2000)
    ap.add_argument("--view", type=int, default=256)
    ap.add_argument("--no-eager", action="store_true",
                    help="memberlist's timing: news waits for the next regular gossip round "
                         "(Rumor's default sends it in an eager round at once)")
    ap.add_argument("--out", type=Path, help="directory for rounds.jsonl, table.md, PNG")
    ap.add_argument("--plot", nargs=2, metavar=("ROUNDS_JSONL", "PNG"),
                    help="only draw the PNG of a run's rounds")
    args = ap.parse_args(argv)
    if args.plot:
        plot(Path(args.plot[0]), Path(args.plot[1]))
        return 0
    rows = []
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(args.nodes):
        row = measure(n, trials=args.trials, seed=args.seed + i,
                      full_mesh_max=args.full_mesh_max, view=args.view,
                      eager=not args.no_eager)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with (args.out / "rounds.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
    text = table(rows)
    print(text)
    if args.out:
        (args.out / "table.md").write_text(text + "\n")
        plot(args.out / "rounds.jsonl", args.out / "sim_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

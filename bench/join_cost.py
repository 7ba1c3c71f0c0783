"""What each join costs the agents already in a pool, and how soon the pool converges after it.

Starts ``--nodes`` whole ``rumor agent``s on 127.0.0.1 (ports of their own), ``--spacing``
seconds apart, each with ``--services`` services from a config file and (all but the first)
``-retry-join`` to the first with ``-retry-interval 1s``: the start pattern of issue 13
(``bench/gossip_vs_serf.py --converge`` runs the same pattern at 200 in namespaces, beside
Serf). Two figures per run:

- ``join_cpu_ms_per_agent``: the CPU (user + system, ``/proc/PID/stat``) that the agents
  started before the last ``--window`` joins spent during them, per agent and per join. This
  is what a join costs everyone else (receiving, re-broadcasting and applying the joiner's
  alive message, Serf intent and catalog record), the figure that decides how many agents the
  machine carries before the pool saturates it; it includes their idle cost (~1-2 ms/s).
- ``converge_median_s`` / ``converge_max_s``: from the last start, when each agent's metrics
  first show every member alive, every node and every instance, and no critical check (as
  ``gossip_vs_serf.converged`` asks first), polled every ``--poll`` s, at most ``--timeout``.
  ``late_agents`` names those that took longer than 5 s (None: never), ``lacking_at_5s``
  what each agent not converged 5 s after the last start was missing then, and
  ``stranger_syncs`` counts the pool's push/pulls with senders it did not know as members
  (``gossip.stranger_sync``: an agent that missed a join hears from the joiner), and
  ``record_pulls`` its push/pulls for the records of a member that joined 15-30 s before
  while none of them had arrived, ``heal_pulls`` those with members that came back from a
  failure (none expected in a start pattern).

``--tree NAME=DIR`` (repeatable) runs the same pattern from other source trees (e.g. an
older commit: ``git worktree add DIR COMMIT`` with the C extensions copied in), interleaved
with this one (``who=main``), ``--rounds`` times. Rounds go to ``rounds.jsonl`` under
``bench/results/<date>/join_cost-<time>/`` (``bench/runinfo.py``).

    python bench/join_cost.py --nodes 100 --rounds 3 --tree base=/work/wt/base

Nothing is pinned: the pool fills both cores, as in the issue's pattern.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.interp import bench_env, precompile, rumor_python
from bench.runinfo import ROOT, Run, metrics_converged, prometheus_values

PACKAGES = ("gossip", "registry", "dnsserver", "lb")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def get(port: int, path: str) -> bytes:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("GET", path)
        return c.getresponse().read()
    finally:
        c.close()


def converged(port: int, n: int, services: int) -> bool:
    try:
        text = get(port, "/v1/agent/metrics?format=prometheus").decode()
    except OSError:
        return False
    return metrics_converged(prometheus_values(text), n, n * services)


def what_lacks(port: int, n: int, services: int) -> dict[str, Any]:
    """What an agent that has not converged is missing: members it does not list alive,
    nodes not in its catalog, and its count of instances and critical checks."""
    want = {f"n{i}" for i in range(n)}
    out: dict[str, Any] = {}
    try:
        members = json.loads(get(port, "/v1/agent/members"))
        alive = {m["Name"] for m in members if m.get("Status") == 1}
        nodes = {x["Node"] for x in json.loads(get(port, "/v1/catalog/nodes"))}
        metrics = prometheus_values(get(port, "/v1/agent/metrics?format=prometheus").decode())
    except (OSError, ValueError) as exc:
        return {"error": repr(exc)}
    if want - alive:
        status = {m["Name"]: m.get("Status") for m in members}
        # Serf's codes: 0 none, 2 leaving, 3 left, 4 failed; None: not a member at all
        out["members_not_alive"] = {x: status.get(x) for x in sorted(want - alive)}
    if want - nodes:
        out["nodes_not_in_catalog"] = sorted(want - nodes)
    inst = metrics.get("rumor_registry_instances")
    if inst != n * services:
        out["instances"] = inst
    if metrics.get('rumor_registry_checks{status="critical"}', 0):
        out["critical"] = metrics.get('rumor_registry_checks{status="critical"}')
    out["stranger_syncs"] = metrics.get("rumor_gossip_stranger_syncs_total")
    return out


def one_run(tree: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n, window = args.nodes, args.window
    python = rumor_python()
    procs: list[subprocess.Popen[bytes]] = []
    base = args.base_port
    t0 = time.monotonic()
    c0: list[float] = []
    t_window = 0.0
    try:
        for i in range(n):
            cfg = work / f"c{i}.json"
            cfg.write_text(json.dumps({"services": [
                {"Name": f"svc-{k}", "ID": f"n{i}-svc-{k}", "Port": 1000 + k}
                for k in range(args.services)]}))
            argv = [python, "-m", "registry.cli", "agent", "-node", f"n{i}",
                    "-bind", "127.0.0.1", "-client", "127.0.0.1",
                    "-serf-lan-port", str(base + i), "-http-port", str(base + 1000 + i),
                    "-dns-port", str(base + 2000 + i), "-data-dir", str(work / f"d{i}"),
                    "-log-level", "warn", "-profile", "lan", "-config-file", str(cfg)]
            if i:
                argv += ["-retry-join", f"127.0.0.1:{base}", "-retry-interval", "1s"]
            delay = t0 + i * args.spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if i == n - window:
                c0 = [cpu_s(p.pid) for p in procs]
                t_window = time.monotonic()
            procs.append(subprocess.Popen(argv, cwd=tree, env=bench_env(),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t_last = time.monotonic()
        c1 = [cpu_s(p.pid) for p in procs[:n - window]]
        load = Path("/proc/loadavg").read_text().split()[0]
        done: dict[int, float] = {}
        lacking: dict[str, Any] = {}
        while len(done) < n and time.monotonic() - t_last < args.timeout:
            for i in range(n):
                if i not in done and converged(base + 1000 + i, n, args.services):
                    done[i] = time.monotonic() - t_last
            if not lacking and time.monotonic() - t_last > 5.0:
                lacking = {f"n{i}": what_lacks(base + 1000 + i, n, args.services)
                           for i in range(n) if i not in done}
            time.sleep(args.poll)
        times = sorted(done.values())
        spent = sum(c1) - sum(c0)
        syncs = record_pulls = heal_pulls = 0.0
        for i in range(n):
            try:
                m = prometheus_values(get(base + 1000 + i, "/v1/agent/metrics?format=prometheus")
                                      .decode())
            except OSError:
                continue
            syncs += m.get("rumor_gossip_stranger_syncs_total", 0.0)
            record_pulls += m.get('rumor_registry_reconciles_total{reason="missing_record"}', 0.0)
            heal_pulls += m.get('rumor_registry_reconciles_total{reason="came_back"}', 0.0)
        late = {f"n{i}": round(done[i], 1) if i in done else None
                for i in range(n) if done.get(i, args.timeout) > 5.0}
        return {
            "nodes": n, "spacing_s": args.spacing, "window_joins": window,
            "window_s": round(t_last - t_window, 2),
            "join_cpu_ms_per_agent": round(spent / (n - window) / window * 1000, 2),
            "load_at_last_start": load,
            "converged": f"{len(times)}/{n}",
            "converge_median_s": round(statistics.median(times), 2) if times else None,
            "converge_max_s": round(times[-1], 2) if len(times) == n else None,
            "cpu_s_per_agent_median": round(statistics.median(cpu_s(p.pid) for p in procs), 2),
            "late_agents": late,
            "lacking_at_5s": lacking,
            "stranger_syncs": int(syncs),
            "record_pulls": int(record_pulls),
            "heal_pulls": int(heal_pulls),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--spacing", type=float, default=1.0)
    ap.add_argument("--services", type=int, default=5)
    ap.add_argument("--window", type=int, default=20,
                    help="the last joins over which the others' CPU is measured")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--poll", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--base-port", type=int, default=27000)
    ap.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                    help="also run the pattern from this source tree, interleaved")
    ap.add_argument("--quick", action="store_true", help="smoke run (not kept)")
    args = ap.parse_args()
    if not 0 < args.window < args.nodes:
        ap.error("--window must be between 0 and --nodes")
    trees = {"main": ROOT}
    for spec in args.tree:
        name, _, d = spec.partition("=")
        trees[name] = Path(d).resolve()
    for t in trees.values():
        precompile(*(t / p for p in PACKAGES))
    run = Run("join_cost", tools=["taskset"], quick=args.quick,
              params={**vars(args), "trees": {k: str(v) for k, v in trees.items()}})
    ok = False
    try:
        for rnd in range(1, args.rounds + 1):
            order = list(trees) if rnd % 2 else list(reversed(trees))
            for who in order:
                work = Path(tempfile.mkdtemp(prefix="rumor-join-cost-"))
                try:
                    fig = one_run(trees[who], args, work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                run.round(rnd, who, f"join_cost N={args.nodes} every {args.spacing:g}s", fig)
                print(f"round {rnd} {who:6} " + " ".join(f"{k}={v}" for k, v in fig.items()),
                      flush=True)
        ok = True
    finally:
        run.close(ok)


if __name__ == "__main__":
    main()

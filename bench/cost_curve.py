"""One real agent's cost as the pool grows: a ``rumor agent`` joined by ``bench.swarm``.

    python -m bench.cost_curve --nodes 100 500 1000 2000 5000 [--instances 20] [--idle 10]
                               [--rounds 3] [--agent-core 0] [--load-core 1]

For each N: a fresh agent on free loopback ports, then ``python -m bench.swarm --nodes N
--instances 20 --join <agent>``; measured on the agent: the time from the swarm's start to a
full catalog (N * instances instances and N + 1 alive members; the swarm binds its sockets and
joins in batches before it prints ``swarm ready``, also recorded), the loop's longest timer
lateness during the join and the number of slow callbacks (lateness over 20 ms) it counted then
(``loop_lag_max_ms`` and ``slow_callbacks`` of ``/v1/agent/self``, read just before the swarm
starts and once the catalog is full), the latency of ``/v1/agent/self`` polled every 50 ms
through the join (p50, p99, max), then over ``--idle`` seconds of a quiet pool: CPU seconds per
second (``/proc/<pid>/stat``), gossip bytes per second in and out (``rumor.gossip.bytes.total``
of ``/v1/agent/metrics``), RSS, and the push/pulls it did. The agent runs on ``--agent-core``,
the swarm and this process on ``--load-core`` (``''``: unpinned). Rounds interleave the sizes
(every N once per round); one JSON line per measurement on stdout and in
``bench/results/<date>/cost_curve-<time>/rounds.jsonl`` with the machine and load averages in
``run.json``. ``--plot ROUNDS PNG`` draws a run's curve, medians per N (the ``bench`` extra:
matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.runinfo import Run


def _pin(core: str) -> list[str]:
    return ["taskset", "-c", core] if core else []


class _SelfPoller(threading.Thread):
    """GET /v1/agent/self every ``every`` seconds; the latency of each answer."""

    def __init__(self, base: str, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.base, self.every = base, every
        self.latencies: list[float] = []
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.perf_counter()
            try:
                _get(self.base + "/v1/agent/self")
                self.latencies.append(time.perf_counter() - t)
            except OSError:
                self.failures += 1
            self._halt.wait(self.every)

    def stop(self) -> dict[str, Any]:
        self._halt.set()
        self.join(15)
        xs = sorted(self.latencies)
        if not xs:
            return {"self_failures": self.failures}
        return {"self_requests": len(xs), "self_failures": self.failures,
                "self_p50_ms": round(1e3 * xs[len(xs) // 2], 1),
                "self_p99_ms": round(1e3 * xs[min(len(xs) - 1, int(len(xs) * 0.99))], 1),
                "self_max_ms": round(1e3 * xs[-1], 1)}


def _free() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _gossip_bytes(base: str) -> float:
    m = _get(base + "/v1/agent/metrics")
    return float(sum(c["Sum"] for c in m["Counters"] if c["Name"] == "rumor.gossip.bytes.total"))


def measure(n: int, instances: int, idle: float, agent_core: str = "0",
            load_core: str = "1") -> dict[str, Any]:
    http, serf = _free(), _free()
    data = tempfile.mkdtemp(prefix="cost-curve-")
    agent = subprocess.Popen(
        [*_pin(agent_core), sys.executable, "-m", "registry.cli", "agent", "-node", "real", "-bind", "127.0.0.1",
         "-client", "127.0.0.1", "-http-port", str(http), "-dns-port", "0",
         "-serf-lan-port", str(serf), "-data-dir", data],
        cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http}"
    out: dict[str, Any] = {"nodes": n, "instances_per_node": instances,
                           "load_before": os.getloadavg()[0]}
    swarm = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(base + "/v1/agent/self")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        lag0 = _get(base + "/v1/agent/self")["Stats"]["runtime"]
        poller = _SelfPoller(base)
        poller.start()
        started = time.monotonic()
        swarm = subprocess.Popen(
            [*_pin(load_core), sys.executable, "-m", "bench.swarm", "--nodes", str(n), "--instances",
             str(instances), "--join", f"127.0.0.1:{serf}"],
            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert swarm.stdout is not None
        line = swarm.stdout.readline().strip()
        if line != f"swarm ready {n}":
            raise RuntimeError(f"swarm said {line!r}")
        ready = time.monotonic()
        while True:
            st = _get(base + "/v1/agent/self")["Stats"]
            if (st["registry"]["instances"] == str(n * instances)
                    and st["serf_lan"]["alive"] == str(n + 1)):
                break
            if time.monotonic() - ready > 300:
                out["incomplete"] = st["registry"]["instances"]
                break
            time.sleep(0.05)
        out["full_catalog_s"] = round(time.monotonic() - started, 2)
        out["swarm_ready_s"] = round(ready - started, 2)
        out.update(poller.stop())
        out["loop_lag_max_ms_during_join"] = float(st["runtime"]["loop_lag_max_ms"])
        out["loop_lag_max_ms_before_join"] = float(lag0["loop_lag_max_ms"])
        out["slow_callbacks_during_join"] = (int(st["runtime"]["slow_callbacks"])
                                             - int(lag0["slow_callbacks"]))
        time.sleep(2)  # the join's tail
        c0, b0, p0 = _cpu(agent.pid), _gossip_bytes(base), int(
            _get(base + "/v1/agent/self")["Stats"]["registry"]["repl_full_sent"])
        t0 = time.monotonic()
        time.sleep(idle)
        dt = time.monotonic() - t0
        c1, b1 = _cpu(agent.pid), _gossip_bytes(base)
        st = _get(base + "/v1/agent/self")["Stats"]
        out["idle_cpu_per_s"] = round((c1 - c0) / dt, 3)
        out["gossip_bytes_per_s"] = round((b1 - b0) / dt)
        out["rss_mib"] = round(_rss_mib(agent.pid), 1)
        out["push_pull_answers_in_idle"] = int(st["registry"]["repl_full_sent"]) - p0
        out["full_bytes_sent_total"] = int(st["registry"]["repl_full_bytes_sent"])
        out["load_after"] = os.getloadavg()[0]
    finally:
        for p in (swarm, agent):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(data, ignore_errors=True)
    return out


def _medians(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    ns = sorted({r["nodes"] for r in rows if key in r})
    return ns, [statistics.median(r[key] for r in rows if r["nodes"] == n and key in r)
                for n in ns]


def plot(rounds: Path, png: Path) -> None:
    """The curve as a PNG, medians per N (needs the ``bench`` extra: matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in rounds.read_text().splitlines() if line.strip()]
    series = [("full_catalog_s", "time to a full catalog (s)"),
              ("loop_lag_max_ms_during_join", "loop lag max during the join (ms)"),
              ("self_p99_ms", "/v1/agent/self p99 during the join (ms)"),
              ("idle_cpu_per_s", "idle CPU (CPU-s per s)"),
              ("gossip_bytes_per_s", "gossip bytes/s (idle)"),
              ("rss_mib", "agent RSS (MiB)")]
    series = [(k, t) for k, t in series if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.4))
    for ax, (key, title) in zip(axes, series, strict=True):
        ns, ys = _medians(rows, key)
        ax.plot(ns, ys, marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("pool size N (20 instances each)")
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"One rumor agent joined by bench.swarm, medians ({rounds.parent.name})",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--agent-core", default="0", help="core of the agent ('': unpinned)")
    ap.add_argument("--load-core", default="1",
                    help="core of the swarm and of this process ('': unpinned)")
    ap.add_argument("--plot", nargs=2, metavar=("ROUNDS_JSONL", "PNG"),
                    help="only draw the PNG of a run's rounds")
    args = ap.parse_args()
    if args.plot:
        plot(Path(args.plot[0]), Path(args.plot[1]))
        return
    if args.load_core:
        os.sched_setaffinity(0, {int(args.load_core)})
    run = Run("cost_curve", tools=["taskset"], params=vars(args))
    ok = False
    try:
        for rnd in range(1, args.rounds + 1):
            for n in args.nodes:
                row = measure(n, args.instances, args.idle, args.agent_core, args.load_core)
                run.round(rnd, "rumor", f"n{n}", row)
                print(json.dumps({"round": rnd, **row}), flush=True)
        ok = True
    finally:
        run.close(ok)
    try:
        plot(run.dir / "rounds.jsonl", run.dir / "cost_curve.png")
    except ImportError:
        print("# no matplotlib (the bench extra): no plot", flush=True)


if __name__ == "__main__":
    main()

"""Rumor's gossip layer against swim-protocol 0.6.3, the Python SWIM library the gossip issue
names as the Python peer to beat, side by side in one run.

swim-protocol has no runtime join and no RPC, so both kinds are measured the way its own
``swim-protocol-sync`` tool runs: N processes started at once on loopback, each given the
first one as its peer, and polled for what they see (swim-protocol: the ``.online`` and
``.offline`` directories the sync tool keeps; Rumor: ``tests/harness/gossip_node.py``, the bare
gossip layer, memberlist + Serf, over its stdin/stdout). Both are Python processes doing the
same job, so the figures compare implementations, not languages:

- join: from the moment the first process is spawned (interpreter start-up included, the same
  for both) until each lists the other N-1 alive (median agent, slowest agent); Rumor's nodes
  join once at start, so its seed is started and listening before the others are spawned,
  which puts one start-up (~0.3 s) on Rumor's side only;
- RSS per process and CPU seconds per process per idle minute, after convergence;
- detection: ``kill -9`` of one process, time until every other lists it failed/offline
  (median and last observer), repeated ``--trials`` times.

swim-protocol is installed on first use into ``bench/.venv-swim`` (pip, from PyPI); nothing of
it is imported into Rumor. Its defaults are used (ping every 1 s, suspect timeout 5 s), and
Rumor's gossip layer runs its LAN profile (probe every 1 s, suspicion 4-24 s scaled by log N).

    python bench/swim_peer.py --n 10 --trials 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interp import bench_env, precompile, rumor_python

VENV = ROOT / "bench" / ".venv-swim"
SWIM_VERSION = "0.6.3"


def swim_binary() -> Path:
    exe = VENV / "bin" / "swim-protocol-sync"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q",
                        f"swim-protocol=={SWIM_VERSION}"], check=True)
    return exe


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class SwimNode:
    def __init__(self, i: int, base: int, seed: int, workdir: Path, exe: Path) -> None:
        self.name = f"127.0.0.1:{base + i}"
        self.dir = workdir / f"swim{i}"
        argv = [str(exe), "--secret", "bench", "--name", self.name]
        if base + i != seed:
            argv += ["--peer", f"127.0.0.1:{seed}"]
        self.proc = subprocess.Popen(argv + [str(self.dir)], env=bench_env(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def online(self) -> set[str]:
        try:
            return set(os.listdir(self.dir / ".online"))
        except OSError:
            return set()

    def offline(self) -> set[str]:
        try:
            return set(os.listdir(self.dir / ".offline"))
        except OSError:
            return set()


class RumorNode:
    def __init__(self, i: int, base: int, seed: int) -> None:
        self.name = f"g{i}"
        argv = [rumor_python(), "-m", "tests.harness.gossip_node", "-name", self.name,
                "-bind", "127.0.0.1", "-port", str(base + i), "-profile", "lan"]
        if base + i != seed:
            argv += ["-join", f"127.0.0.1:{seed}"]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=bench_env(), text=True, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lock = threading.Lock()
        self.ready = threading.Event()
        threading.Thread(target=self._wait_ready, daemon=True).start()

    def _wait_ready(self) -> None:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline():   # the "ready" line, once joined
            self.ready.set()

    def _members(self) -> list[dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self.ready.is_set():
            return []
        with self.lock:
            self.proc.stdin.write('{"op": "members"}\n')
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())["result"]  # type: ignore[no-any-return]

    def online(self) -> set[str]:
        return {m["name"] for m in self._members()
                if m["status"] == "alive" and m["name"] != self.name}

    def offline(self) -> set[str]:
        return {m["name"] for m in self._members() if m["status"] == "failed"}


def poll(nodes: list[Any], pred: Any, t0: float, timeout: float) -> list[float]:
    """Each node's first time (from t0) at which ``pred(node)`` holds, polled every 0.1 s."""
    done: dict[int, float] = {}
    while len(done) < len(nodes) and time.monotonic() - t0 < timeout:
        for i, x in enumerate(nodes):
            if i in done:
                continue
            try:
                ok = pred(x)
            except (OSError, ValueError):
                ok = False
            if ok:
                done[i] = time.monotonic() - t0
        time.sleep(0.1)
    return sorted(done.values())


def run(kind: str, n: int, trials: int, idle: float, workdir: Path) -> dict[str, Any]:
    base = 28000 if kind == "swim" else 29000
    exe = swim_binary() if kind == "swim" else None
    t0 = time.monotonic()
    nodes: list[Any] = []
    try:
        for i in range(n):
            nodes.append(SwimNode(i, base, base, workdir, exe) if exe
                         else RumorNode(i, base, base))
            if i == 0 and exe is None:
                # a Rumor node joins once, at start, so the seed must be listening first
                # (swim-protocol retries its peer): the seed's start-up counts against Rumor
                nodes[0].ready.wait(30)
        names = {x.name for x in nodes}
        times = poll(nodes, lambda x: len(x.online() & names) >= n - 1, t0, 120)
        out: dict[str, Any] = {"kind": kind, "n": n, "converged": f"{len(times)}/{n}",
                               "join_median": statistics.median(times) if times else None,
                               "join_max": times[-1] if len(times) == n else None}
        time.sleep(3)
        c0 = [cpu_seconds(x.proc.pid) for x in nodes]
        time.sleep(idle)
        c1 = [cpu_seconds(x.proc.pid) for x in nodes]
        out["idle_cpu_s_per_min"] = statistics.median((b - a) * 60 / idle for a, b in zip(c0, c1))
        out["rss_mib"] = statistics.median(rss_mib(x.proc.pid) for x in nodes)
        present = list(nodes)
        med: list[float] = []
        last: list[float] = []
        for _ in range(trials):
            if len(present) < 4:
                break
            victim = present.pop()
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            t1 = time.monotonic()
            t = poll(present, lambda x, v=victim.name: v in x.offline(), t1, 90)
            if t:
                med.append(statistics.median(t))
            if len(t) == len(present):
                last.append(t[-1])
        out["detect_median"] = statistics.median(med) if med else None
        out["detect_max"] = statistics.median(last) if last else None
        out["detect_trials"] = [round(x, 2) for x in med]
        return out
    finally:
        for x in nodes:
            if x.proc.poll() is None:
                x.proc.kill()
                x.proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--idle", type=float, default=20.0)
    args = p.parse_args()
    swim_binary()
    # both kinds as installed packages are: with their bytecode caches written
    precompile(*(ROOT / d for d in ("gossip", "tests")),
               *sorted((VENV / "lib").glob("python*/site-packages/swim")))
    results = []
    with tempfile.TemporaryDirectory(prefix="rumor-swim-") as tmp:
        for kind in ("swim", "rumor"):
            r = run(kind, args.n, args.trials, args.idle, Path(tmp))
            print(json.dumps(r), flush=True)
            results.append(r)
    s, m = results
    print()
    print(f"Rumor's nodes ran under {rumor_python()}; swim-protocol under {VENV}.")
    print("| N | metric | swim-protocol 0.6.3 | Rumor gossip layer | Rumor/swim |")
    print("|---|---|---|---|---|")
    for key, label in [("join_median", "join, median (s, start-up included)"),
                       ("join_max", "join, slowest (s)"),
                       ("detect_median", "kill -9 seen, median observer (s)"),
                       ("detect_max", "kill -9 seen, last observer (s)"),
                       ("idle_cpu_s_per_min", "idle CPU s/process/min"),
                       ("rss_mib", "RSS MiB/process")]:
        a, b = s.get(key), m.get(key)
        ratio = f"{b / a:.2f}x" if a and b else "n/a"
        fa = f"{a:.2f}" if isinstance(a, float) else str(a)
        fb = f"{b:.2f}" if isinstance(b, float) else str(b)
        print(f"| {args.n} | {label} | {fa} | {fb} | {ratio} |")
    print(f"| {args.n} | converged | {s['converged']} | {m['converged']} | |")
    print(f"| {args.n} | kill -9 per-trial medians (s) | {s['detect_trials']} | "
          f"{m['detect_trials']} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

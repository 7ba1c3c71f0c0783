"""Join burst diagnostic: N bare gossip nodes vs N whole agents, convergence and CPU.

Every node but the first joins the first at once; the script reports when each node lists all
N alive (median, max) and the CPU all nodes spent in the first seconds. Comparing the bare
gossip layer (``tests/harness/gossip_node.py``: memberlist + Serf, nothing else) with whole
``rumor agent`` processes shows what the rest of the agent adds to a join burst.

    python bench/join_burst.py --n 50
"""

from __future__ import annotations

import argparse
import json
import os
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
sys.path.insert(0, str(ROOT))

from bench.interp import bench_env, rumor_python


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bare:
    """A bare gossip node driven over stdin/stdout."""

    def __init__(self, i: int, base: int) -> None:
        self.port = base + i
        self.proc = subprocess.Popen(
            [rumor_python(), "-m", "tests.harness.gossip_node", "-name", f"g{i}", "-bind",
             "127.0.0.1", "-port", str(self.port), "-profile", "lan"], cwd=ROOT,
            env=bench_env(), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        json.loads(self.proc.stdout.readline())
        self.lock = threading.Lock()

    def cmd(self, obj: dict[str, Any]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps(obj) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())["result"]

    def join(self, addr: str) -> None:
        self.cmd({"op": "join", "addrs": [addr]})

    def alive(self) -> int:
        return sum(1 for m in self.cmd({"op": "members"}) if m["status"] == "alive")


class Whole:
    """A whole ``rumor agent``, driven over its HTTP API."""

    def __init__(self, i: int, base: int, workdir: Path) -> None:
        self.port = base + i
        self.http = base + 1000 + i
        self.proc = subprocess.Popen(
            [rumor_python(), "-m", "registry.cli", "agent", "-node", f"a{i}", "-bind",
             "127.0.0.1", "-serf-lan-port", str(self.port), "-http-port", str(self.http),
             "-dns-port", str(base + 2000 + i), "-data-dir", str(workdir / f"a{i}"),
             "-log-level", "warn"], cwd=ROOT, env=bench_env(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self._get("/v1/agent/self")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _get(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def join(self, addr: str) -> None:
        self._get(f"/v1/agent/join/{addr}", "PUT")

    def alive(self) -> int:
        return sum(1 for m in self._get("/v1/agent/members") if m["Status"] == 1)


def burst(nodes: list[Any], n: int, poll: float) -> dict[str, Any]:
    time.sleep(1)
    c0 = [cpu_seconds(x.proc.pid) for x in nodes]
    t0 = time.monotonic()
    seed = f"127.0.0.1:{nodes[0].port}"
    joins = [threading.Thread(target=x.join, args=(seed,)) for x in nodes[1:]]
    for t in joins:
        t.start()
    done: dict[int, float] = {}
    while len(done) < n and time.monotonic() - t0 < 60:
        for i, x in enumerate(nodes):
            if i not in done and x.alive() == n:
                done[i] = time.monotonic() - t0
        time.sleep(poll)
    for t in joins:
        t.join()
    time.sleep(max(0.0, 3 - (time.monotonic() - t0)))
    c1 = [cpu_seconds(x.proc.pid) for x in nodes]
    spent = [b - a for a, b in zip(c0, c1)]
    times = sorted(done.values())
    return {"converged": f"{len(times)}/{n}",
            "median_s": round(statistics.median(times), 2) if times else None,
            "max_s": round(times[-1], 2) if len(times) == n else None,
            "cpu_per_joiner_ms": round(statistics.median(spent[1:]) * 1000),
            "cpu_seed_ms": round(spent[0] * 1000), "cpu_total_s": round(sum(spent), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--poll", type=float, default=0.1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="rumor-burst-") as tmp:
        for kind in ("bare gossip", "whole agent"):
            nodes: list[Any] = []
            try:
                for i in range(args.n):
                    nodes.append(Bare(i, 26000) if kind == "bare gossip"
                                 else Whole(i, 27000, Path(tmp)))
                print(kind, json.dumps(burst(nodes, args.n, args.poll)), flush=True)
            finally:
                for x in nodes:
                    x.proc.kill()
                    x.proc.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Idle CPU of whole Rumor agents beside Serf agents: CPU seconds per agent per idle minute.

For each round it starts N agents of one kind on 127.0.0.1 (LAN profile; Rumor as whole
agents: HTTP API, DNS and LB on, no services), joins them all to the first, waits until every
agent lists N alive members, lets them settle, and reads each agent's CPU time from
/proc/PID/stat over an idle window. Kinds alternate within each round (the first kind
alternates between rounds), so neither always runs on a warmer or quieter machine. Every
agent of every kind is pinned to the same core (``--agent-core``). It prints, per kind, the
median over rounds of the CPU-s per agent per minute (min-max), and Rumor / Serf. An agent's
CPU is the sum of its threads' run time in ``/proc/PID/task/*/schedstat`` (nanoseconds; an idle
agent uses a few ms a second, which /proc/PID/stat's 10 ms ticks resolve only over many agents
or minutes); threads that ended inside the window are not counted (neither agent starts any
while idle). Without schedstat the ticks of /proc/PID/stat are read.

``--baseline DIR`` also runs the agent of another tree (e.g. ``git archive main`` unpacked,
with the built C extensions copied in) as a third kind, ``baseline``, for before/after
figures in the same rounds. Unlike ``bench/gossip_vs_serf.py`` this needs no network
namespace and no root: ports are taken from a free range of loopback, and nothing counts
bytes. The raw rounds are kept like every bench's (``bench/runinfo.py``).

    python bench/idle_cpu.py                        # N = 10, 5 rounds, 30 s window
    python bench/idle_cpu.py --sizes 10,30 --rounds 3 --idle 20 --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interp import bench_env, precompile, rumor_python, terminate
from bench.runinfo import Run
from bench.serfrpc import SerfRPC

STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def free_base(count: int, lo: int = 30000, hi: int = 60000) -> int:
    """A base port such that base .. base+count-1 are free on loopback for TCP and UDP now."""
    import random

    for _ in range(200):
        base = random.randrange(lo, hi - count)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class Agent:
    def __init__(self, kind: str, i: int, ports: tuple[int, int, int], workdir: Path,
                 tree: Path, core: str | None) -> None:
        self.kind, self.i = kind, i
        self.gossip_port, self.ctl_port, self.dns_port = (b + i for b in ports)
        self.name = f"{kind[0]}{i}"
        self.workdir, self.tree, self.core = workdir, tree, core
        self.proc: subprocess.Popen[bytes] | None = None
        self._rpc: SerfRPC | None = None
        self._http: http.client.HTTPConnection | None = None

    @property
    def gossip_addr(self) -> str:
        return f"127.0.0.1:{self.gossip_port}"

    def start(self) -> None:
        if self.kind == "serf":
            argv = ["serf", "agent", "-node", self.name, "-bind", self.gossip_addr,
                    "-rpc-addr", f"127.0.0.1:{self.ctl_port}", "-log-level", "warn",
                    "-profile", "lan"]
        else:
            argv = [rumor_python(), "-m", "registry.cli", "agent", "-node", self.name,
                    "-bind", "127.0.0.1", "-client", "127.0.0.1",
                    "-serf-lan-port", str(self.gossip_port), "-http-port", str(self.ctl_port),
                    "-dns-port", str(self.dns_port),
                    "-data-dir", str(self.workdir / f"{self.name}-data"),
                    "-log-level", "warn", "-profile", "lan"]
        if self.core is not None:
            argv = ["taskset", "-c", self.core, *argv]
        with open(self.workdir / f"{self.name}.log", "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=self.tree, env=bench_env())

    def members(self) -> dict[str, str]:
        if self.kind == "serf":
            if self._rpc is None:
                self._rpc = SerfRPC(f"127.0.0.1:{self.ctl_port}")
            return self._rpc.members()
        return {m["Name"]: STATUS.get(m["Status"], "?")
                for m in json.loads(self._request("GET", "/v1/agent/members"))}

    def _request(self, method: str, path: str) -> bytes:
        if self._http is None:
            self._http = http.client.HTTPConnection("127.0.0.1", self.ctl_port, timeout=10)
        try:
            self._http.request(method, path)
            resp = self._http.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status} {body!r}")
        return body

    def join(self, addr: str) -> None:
        if self.kind == "serf":
            self.members()
            assert self._rpc is not None
            self._rpc.join([addr])
        else:
            self._request("PUT", f"/v1/agent/join/{addr}")

    def close(self) -> None:
        if self._rpc is not None:
            self._rpc.close()
        if self._http is not None:
            self._http.close()
        self._rpc = self._http = None

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        pid = self.proc.pid
        try:
            total = 0
            for task in os.listdir(f"/proc/{pid}/task"):
                try:
                    total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
                except FileNotFoundError:
                    continue    # the thread ended between the listing and the read
            return total / 1e9
        except (OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.close()
        if self.proc is not None:
            terminate(self.proc)


def until(pred: Any, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return
        except (OSError, RuntimeError, ValueError, http.client.HTTPException):
            pass   # not up yet: ask again
        time.sleep(0.2)
    raise RuntimeError(f"timed out: {what}")


def run_one(kind: str, n: int, idle: float, settle: float, tree: Path,
            core: str | None) -> dict[str, Any]:
    base = free_base(3 * n)
    ports = (base, base + n, base + 2 * n)
    with tempfile.TemporaryDirectory(prefix=f"idlecpu-{kind}-") as tmp:
        agents = [Agent(kind, i, ports, Path(tmp), tree, core) for i in range(n)]
        try:
            for a in agents:
                a.start()
            for a in agents:
                until(lambda a=a: a.members() is not None, 180, f"{a.name} up")
            for a in agents[1:]:
                a.join(agents[0].gossip_addr)
            names = {a.name for a in agents}
            for a in agents:
                until(lambda a=a: sum(1 for k, v in a.members().items()
                                      if k in names and v == "alive") == n, 120,
                      f"{a.name} converged")
            for a in agents:
                a.close()     # no polling connections during the window
            time.sleep(settle)
            c0 = [a.cpu_seconds() for a in agents]
            t0 = time.monotonic()
            time.sleep(idle)
            c1 = [a.cpu_seconds() for a in agents]
            wall = time.monotonic() - t0
            per_min = sorted((y - x) * 60 / wall for x, y in zip(c0, c1))
            return {"kind": kind, "n": n, "idle_s": round(wall, 2),
                    "cpu_s_per_min_median": statistics.median(per_min),
                    "cpu_s_per_min_mean": statistics.fmean(per_min),
                    "cpu_s_per_min": [round(x, 4) for x in per_min]}
        finally:
            for a in agents:
                a.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--idle", type=float, default=30.0, help="idle window (s)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds after convergence before the window (join retransmissions "
                         "and the join resync are over by then)")
    ap.add_argument("--agent-core", default="0", help="core for every agent ('' = unpinned)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another tree whose agent runs as kind 'baseline' in the same rounds")
    ap.add_argument("--quick", action="store_true", help="N = 5, 1 round, 5 s window")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.idle, args.settle = "5", 1, 5.0, 3.0
    core = args.agent_core or None
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds: list[tuple[str, Path]] = [("serf", ROOT), ("rumor", ROOT)]
    if args.baseline is not None:
        kinds.append(("baseline", args.baseline.resolve()))
    precompile(*(t / p for _, t in kinds if _ != "serf"
                 for p in ("gossip", "registry", "dnsserver", "lb")))
    rumor_python()
    run = Run("idle_cpu", quick=args.quick, tools=["serf", "taskset"],
              params={"sizes": sizes, "rounds": args.rounds, "idle_s": args.idle,
                      "settle_s": args.settle, "agent_core": core,
                      "baseline": str(args.baseline) if args.baseline else None})
    results: dict[tuple[str, int], list[float]] = {}
    try:
        for r in range(args.rounds):
            for n in sizes:
                order = kinds if r % 2 == 0 else kinds[::-1]
                for kind, tree in order:
                    res = run_one("serf" if kind == "serf" else kind, n, args.idle,
                                  args.settle, tree, core)
                    run.round(r, kind, f"N={n}", res)
                    results.setdefault((kind, n), []).append(res["cpu_s_per_min_mean"])
                    print(f"round {r} N={n} {kind:8s} {res['cpu_s_per_min_mean']:.4f} "
                          f"CPU-s/agent/min (agents {res['cpu_s_per_min'][0]:.3f}-"
                          f"{res['cpu_s_per_min'][-1]:.3f})", flush=True)
    except BaseException:
        run.close(ok=False)
        raise
    run.close()
    print(f"\nidle CPU, CPU-s per agent per minute (mean over the agents of a round): median "
          f"of {args.rounds} rounds (min-max)")
    for n in sizes:
        serf = statistics.median(results[("serf", n)])
        for kind, _ in kinds:
            v = results[(kind, n)]
            med = statistics.median(v)
            ratio = f"  {med / serf:.2f}x Serf" if kind != "serf" and serf > 0 else ""
            print(f"N={n:3d} {kind:8s} {med:.4f} ({min(v):.4f}-{max(v):.4f}){ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

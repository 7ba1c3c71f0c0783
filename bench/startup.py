"""Start-up cost of one agent: CPU seconds until it answers, and its RSS then, beside Serf's.

Each round starts, one after the other (the order turns every round), a Debian ``serf agent``,
a default ``rumor agent`` (HTTP API, DNS and the load balancer on, as a user's ``rumor agent
-data-dir ...`` runs), and ``rumor agent -dev``, each on ports of its own on 127.0.0.1. For
each it measures:

- ``cpu_s``: CPU time of the process (every thread's run time, ``/proc/PID/task/*/schedstat``,
  to the nanosecond; ``cpu_ticks_s`` is user + system from ``/proc/PID/stat`` in 10 ms steps)
  from its exec until it first answers: Rumor's ``GET /v1/agent/self`` with 200, Serf's RPC
  handshake and ``members``. The harness polls every ``--poll`` seconds from the other core;
- ``wall_s``: the time from the spawn to that answer;
- ``rss_mib``: VmRSS at that answer, and ``rss_settled_mib`` ``--settle`` seconds later (the
  agent hands start-up garbage back to the OS once it is up);

then stops it (SIGTERM). Each round also runs the ``floor``: the same interpreter importing
asyncio, uvloop and httptools (what the agent's HTTP server, registry/web, stands on) and
nothing else of Rumor's (CPU by ``getrusage`` and RSS at the end of the imports), i.e. what any
agent built on them pays before its own code runs. ``floor-aiohttp`` (``--kinds``) is the same
with ``aiohttp.web`` instead, which served the API until 2026-12-07 (imported without aiohttp's
client, ``registry/lazyaiohttp.py``); in runs before that date it is the one named ``floor``.
Every agent runs on one core (``--core``, by ``taskset``, which execs:
same PID) and the harness on the other (``--harness-core``). The machine and the load average
before and after are recorded, and every measured start is a line of ``rounds.jsonl`` under
``bench/results/<date>/startup-<time>/`` (``bench/runinfo.py``); ``bench/report.py`` makes the
RESULTS.md table from it.

Two ways Python may find Rumor's own modules, measured apart:

- ``cached`` (the figure of record): the interpreter and dependencies of ``bench/.venv-rumor``
  (``pip install .``, as a user installs it; ``bench/interp.py``), the source tree
  byte-compiled beforehand, bytecode caches allowed: what an installed agent does, since pip
  writes the caches of what it installs;
- ``compile`` (``--compile``): the same, but Rumor's four packages are copied without their
  caches and PYTHONDONTWRITEBYTECODE is set, so every start compiles them from source. This is
  a checkout run with ``pip install -e`` on a machine that sets PYTHONDONTWRITEBYTECODE (this
  one does); the dependencies still have their caches, as pip wrote them.

    python bench/startup.py                    # 7 rounds, cached
    python bench/startup.py --compile          # also the compile-every-start figure
    python bench/startup.py --baseline DIR     # also an older tree's agent (who=baseline)
    python bench/startup.py --quick            # smoke run: 2 rounds, no figures kept
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
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

from bench.interp import bench_env, precompile, rumor_python
from bench.runinfo import Run
from bench.serfrpc import SerfRPC

PACKAGES = ("gossip", "registry", "dnsserver", "lb")
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 now (gossip needs both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process, threads included (``/proc/PID/stat``; clock ticks,
    so 10 ms steps)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds_fine(pid: int) -> float:
    """The same to the nanosecond: the run time of each live thread
    (``/proc/PID/task/*/schedstat``). Threads that already exited are missing; neither agent
    ends a thread while it starts (the figure agrees with :func:`cpu_seconds` to its step)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def answers(kind: str, port: int) -> bool:
    """Does the agent answer its API on ``port`` now?"""
    try:
        if kind == "serf":
            rpc = SerfRPC(f"127.0.0.1:{port}", timeout=2.0)
            try:
                rpc.members()
            finally:
                rpc.close()
            return True
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            conn.request("GET", "/v1/agent/self")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, RuntimeError, ConnectionError):
        return False


def argv_of(kind: str, python: str, workdir: Path, ports: dict[str, int]) -> list[str]:
    if kind == "serf":
        return ["serf", "agent", "-node", "s0", "-bind", f"127.0.0.1:{ports['gossip']}",
                "-rpc-addr", f"127.0.0.1:{ports['api']}", "-log-level", "warn"]
    common = ["-node", "r0", "-serf-lan-port", str(ports["gossip"]),
              "-http-port", str(ports["api"]), "-dns-port", str(ports["dns"]),
              "-log-level", "warn"]
    if kind == "rumor-dev":
        return [python, "-m", "registry.cli", "agent", "-dev", *common]
    data = workdir / f"data-{time.monotonic_ns()}"
    return [python, "-m", "registry.cli", "agent", "-bind", "127.0.0.1",
            "-client", "127.0.0.1", "-data-dir", str(data), *common]


_FLOOR_END = """
ru = resource.getrusage(resource.RUSAGE_SELF)
rss = re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
print(ru.ru_utime + ru.ru_stime, rss, flush=True)
os._exit(0)
"""

FLOORS = {
    "floor": """
import asyncio, os, re, resource, uvloop
import httptools, json, ssl
""" + _FLOOR_END,
    "floor-aiohttp": """
import asyncio, os, re, resource, uvloop
from registry.lazyaiohttp import defer_aiohttp_init
defer_aiohttp_init()
from aiohttp import web
""" + _FLOOR_END,
}
"""The floors: what the interpreter and the HTTP and loop dependencies cost by themselves (CPU
by getrusage at the end of the imports, before an exit that skips the interpreter's clean-up,
so that it compares with an agent's CPU at its first answer). ``floor`` imports what the agent's
HTTP server imports (asyncio, uvloop, httptools; registry/web); ``floor-aiohttp`` (not in the
default kinds) what it imported until 2026-12-07, ``aiohttp.web`` without aiohttp's client.
Runs before that date name the httptools floor ``floor-httptools`` and the aiohttp one
``floor``."""


def floor_once(kind: str, python: str, cwd: Path, env: dict[str, str],
               core: str | None) -> dict[str, Any]:
    argv = [python, "-c", FLOORS[kind]]
    if core is not None:
        argv = ["taskset", "-c", core, *argv]
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=True,
                       timeout=60)
    cpu, rss = p.stdout.split()
    return {"cpu_s": float(cpu), "wall_s": time.monotonic() - t0,
            "rss_mib": int(rss) / 1024, "rss_settled_mib": int(rss) / 1024}


def start_once(kind: str, *, python: str, workdir: Path, cwd: Path, env: dict[str, str],
               core: str | None, poll: float, settle: float, timeout: float) -> dict[str, Any]:
    if kind in FLOORS:
        return floor_once(kind, python, cwd, env, core)
    ports = {"gossip": free_port(), "api": free_port(), "dns": free_port()}
    argv = argv_of(kind, python, workdir, ports)
    if core is not None:
        argv = ["taskset", "-c", core, *argv]       # taskset execs: the same PID
    with open(workdir / f"{kind}.log", "ab") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode}; see "
                                   f"{workdir / (kind + '.log')}")
            if answers(kind, ports["api"]):
                wall = time.monotonic() - t0
                cpu = cpu_seconds_fine(proc.pid)
                ticks = cpu_seconds(proc.pid)
                rss = rss_mib(proc.pid)
                break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"{kind} did not answer within {timeout} s")
            time.sleep(poll)
        time.sleep(settle)
        return {"cpu_s": cpu, "cpu_ticks_s": ticks, "wall_s": wall, "rss_mib": rss,
                "rss_settled_mib": rss_mib(proc.pid),
                "cpu_settled_s": cpu_seconds_fine(proc.pid)}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def uncached_tree(dest: Path) -> Path:
    """A copy of Rumor's packages without bytecode caches (for ``--compile``)."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    ap.add_argument("--kinds", default="serf,rumor,rumor-dev,floor",
                    help="what to start each round (default serf,rumor,rumor-dev,floor; "
                         "also floor-aiohttp)")
    ap.add_argument("--compile", action="store_true",
                    help="also measure Rumor compiling its own modules at every start")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="also start the default agent from this source tree (e.g. an older "
                         "commit: git archive COMMIT gossip registry dnsserver lb | tar -x -C "
                         "DIR, with the C extensions copied in), as who=baseline")
    ap.add_argument("--core", default="0", help="core the agents run on ('' for none)")
    ap.add_argument("--harness-core", default="1", help="core of this harness ('' for none)")
    ap.add_argument("--poll", type=float, default=0.005, help="seconds between polls")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds after ready before the second RSS reading (default 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, not kept")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 2
    if args.harness_core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in args.harness_core.split(",")})
    kinds = args.kinds.split(",")
    python = rumor_python()
    precompile(*(ROOT / p for p in PACKAGES))
    modes = ["cached"] + (["compile"] if args.compile else [])
    if args.baseline is not None:
        precompile(*(args.baseline / p for p in PACKAGES))
    run = Run("startup", tools=["serf", "taskset"], quick=args.quick,
              params={"rounds": args.rounds, "kinds": kinds, "modes": modes,
                      "core": args.core, "harness_core": args.harness_core,
                      "poll": args.poll, "settle": args.settle, "python": python,
                      "baseline": str(args.baseline) if args.baseline else None})
    ok = False
    try:
        with tempfile.TemporaryDirectory(prefix="rumor-startup-") as tmp:
            work = Path(tmp)
            trees = {"cached": ROOT}
            envs = {"cached": bench_env()}
            if "compile" in modes:
                trees["compile"] = uncached_tree(work / "uncached")
                envs["compile"] = dict(bench_env(), PYTHONDONTWRITEBYTECODE="1")
            results: dict[tuple[str, str], list[dict[str, Any]]] = {}
            if args.baseline is not None:
                trees["baseline"] = args.baseline
                envs["baseline"] = bench_env()
            jobs = [(k, "cached") for k in kinds]
            jobs += [("rumor", "baseline")] if args.baseline is not None else []
            jobs += [(k, "compile") for k in kinds
                     if k in ("rumor", "rumor-dev") and "compile" in modes]
            for rnd in range(args.rounds):
                order = jobs[rnd % len(jobs):] + jobs[:rnd % len(jobs)]   # turn every round
                for kind, mode in order:
                    fig = start_once(kind, python=python, workdir=work, cwd=trees[mode],
                                     env=envs[mode], core=args.core or None, poll=args.poll,
                                     settle=args.settle, timeout=60)
                    test = "start" if mode != "compile" else "start-compile"
                    who = "rumor" if kind.startswith("rumor") else kind
                    if mode == "baseline":
                        who = "baseline"
                    if kind == "rumor-dev":
                        test += "-dev"
                    run.round(rnd, who, test, fig)
                    results.setdefault((kind, mode), []).append(fig)
                    print(f"round {rnd} {kind:9} {mode:7} cpu {fig['cpu_s']:.3f} s  wall "
                          f"{fig['wall_s']:.3f} s  rss {fig['rss_mib']:.1f} MiB "
                          f"(settled {fig['rss_settled_mib']:.1f})", flush=True)
            print()
            print(f"{'who':10} {'mode':8} {'CPU-s to ready med (min-max)':30} "
                  f"{'wall s med':>10} {'RSS MiB at ready':>17} {'RSS settled':>12}")
            for (kind, mode), figs in results.items():
                cpu = [f["cpu_s"] for f in figs]
                print(f"{kind:10} {mode:8} {statistics.median(cpu):.3f} ({min(cpu):.3f}-"
                      f"{max(cpu):.3f}){'':12} "
                      f"{statistics.median(f['wall_s'] for f in figs):10.3f} "
                      f"{statistics.median(f['rss_mib'] for f in figs):17.1f} "
                      f"{statistics.median(f['rss_settled_mib'] for f in figs):12.1f}")
            summary = {f"{k}/{m}": {"cpu_s_median": statistics.median(f["cpu_s"] for f in figs),
                                    "rss_settled_mib_median": statistics.median(
                                        f["rss_settled_mib"] for f in figs)}
                       for (k, m), figs in results.items()}
            run.note("medians", json.loads(json.dumps(summary)))
        ok = True
    finally:
        run.close(ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Catalog propagation across N real ``rumor agent`` processes on loopback.

    python bench/registry_propagation.py [--sizes 10,30] [--profile lan] [--trials 5]

For each cluster size: starts N agents (each its own process, data dir and ports; the others
join the first), waits until every agent sees N alive members, then measures, with one blocking
query per observer agent (so nothing polls):
  register   a service registered on agent 0 -> visible on every other agent
  fail       its TTL check failed on agent 0 -> critical on every other agent
  deregister -> gone on every other agent
  kill -9    agent 0 killed -> its instance critical (serfHealth) on every other agent
Reports the median and max over trials of the time until the LAST agent saw the change.
Every process is started here and stopped by its PID (harness in tests/harness/agents.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.agents import AgentProcess, Cluster, wait_for  # noqa: E402


def get(a: AgentProcess, path: str, timeout: float = 60) -> tuple[int, Any]:
    with urllib.request.urlopen(f"http://{a.http_addr}{path}", timeout=timeout) as r:
        return int(r.headers.get("X-Consul-Index", "0")), json.loads(r.read())


def until_all(observers: list[AgentProcess], path: str, cond: Callable[[Any], bool],
              action: Callable[[], None], timeout: float = 60) -> float:
    """Run ``action``; return seconds until every observer's blocking read satisfies cond."""
    done: list[float] = []
    lock = threading.Lock()
    start = [0.0]
    ready = threading.Barrier(len(observers) + 1)

    def watch(a: AgentProcess) -> None:
        idx, data = get(a, path)
        ready.wait()
        deadline = time.monotonic() + timeout
        while not cond(data) and time.monotonic() < deadline:
            idx, data = get(a, f"{path}{'&' if '?' in path else '?'}index={idx}&wait=10s")
        with lock:
            done.append(time.monotonic())

    threads = [threading.Thread(target=watch, args=(a,), daemon=True) for a in observers]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(0.05)  # let the blocking reads reach the agents
    start[0] = time.monotonic()
    action()
    for t in threads:
        t.join(timeout + 15)
    return max(done) - start[0]


def run_size(n: int, profile: str, trials: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"rumor-bench-prop{n}-"))
    cluster = Cluster(tmp)
    res: dict[str, list[float]] = {"register": [], "fail": [], "deregister": [], "kill9": []}
    try:
        t0 = time.monotonic()
        extra = ["-profile", profile, "-log-level", "warn"]
        seed = cluster.add("node0", extra_args=extra).start(timeout=60)
        agents = [seed]
        for first in range(1, n, 5):  # start in batches: 30 Python start-ups on 2 cores
            batch = [cluster.add(f"node{i}", join=[seed.gossip_addr], extra_args=extra)
                     for i in range(first, min(n, first + 5))]
            for a in batch:
                a.start(wait=False)
            for a in batch:
                a.wait_ready(timeout=90)
            agents.extend(batch)
        wait_for(lambda: all(sum(1 for s in a.members().values() if s == "alive") == n
                             for a in agents), 120, 0.5, what=f"{n} alive members")
        startup = time.monotonic() - t0
        src, observers = agents[0], agents[1:]
        path = "/v1/health/service/bench"
        for k in range(trials):
            sid = f"bench-{k}"
            res["register"].append(until_all(observers, path, lambda d, s=sid: any(
                e["Service"]["ID"] == s for e in d), lambda s=sid: src.http(
                "PUT", "/v1/agent/service/register",
                {"Name": "bench", "ID": s, "Check": {"TTL": "1h", "Status": "passing"}})))
            res["fail"].append(until_all(observers, path + "?passing", lambda d, s=sid: not any(
                e["Service"]["ID"] == s for e in d), lambda s=sid: src.http(
                "PUT", f"/v1/agent/check/fail/service:{s}")))
            res["deregister"].append(until_all(observers, path, lambda d, s=sid: not any(
                e["Service"]["ID"] == s for e in d), lambda s=sid: src.http(
                "PUT", f"/v1/agent/service/deregister/{s}")))
        # kill -9 of the source (once: it does not come back in this run)
        src.http("PUT", "/v1/agent/service/register",
                 {"Name": "bench", "ID": "victim", "Check": {"TTL": "1h", "Status": "passing"}})
        wait_for(lambda: all(get(a, path + "?passing")[1] for a in observers), 30, 0.1,
                 what="victim visible")
        res["kill9"].append(until_all(observers, path + "?passing", lambda d: d == [], src.kill,
                                      timeout=120))
    finally:
        cluster.close()
    out: dict[str, Any] = {"agents": n, "profile": profile, "startup_s": round(startup, 1)}
    for k, v in res.items():
        if v:
            out[f"{k}_s_median"] = round(statistics.median(v), 3)
            out[f"{k}_s_max"] = round(max(v), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,30")
    ap.add_argument("--profile", default="lan")
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    for n in (int(x) for x in args.sizes.split(",")):
        print(json.dumps(run_size(n, args.profile, args.trials)), flush=True)


if __name__ == "__main__":
    main()

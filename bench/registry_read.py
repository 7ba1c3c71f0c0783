"""Read throughput of /v1/health/service/web?passing (20 instances) vs a bare aiohttp ceiling.

    python bench/registry_read.py [--duration 5] [--rounds 3] [--connections 32]

Starts a real ``rumor agent`` (uvloop, as ``rumor agent`` runs) with 20 passing instances of
``web`` and, in the same run, a bare aiohttp server (uvloop) answering a constant body of the
same size; wrk hammers each in turn (interleaved rounds, server pinned to CPU 0, wrk to CPU 1).
The figures of merit: Rumor's req/s as a share of the bare server's (``ratio_rps``), and,
steadier on a shared machine, the server CPU time per request (utime+stime from /proc over the
wrk run) with ``ratio_cpu`` = bare CPU/req over Rumor CPU/req, which is the throughput share on
an otherwise idle core. The catalog, the JSON encoding (cached per resource index) and the
Consul headers should cost little on top of aiohttp itself. Every process is started here and killed by its PID. On a shared 2-core
machine the figures are noisy; read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRK = "/usr/bin/wrk"
PATH = "/v1/health/service/web?passing"

BARE = r'''
import sys, asyncio, uvloop
from aiohttp import web
body = open(sys.argv[2], "rb").read()
headers = {"X-Consul-Index": "42", "X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0",
           "X-Consul-Effective-Consistency": "leader"}
async def handle(request):
    return web.Response(body=body, headers=headers, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/health/service/web", handle)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def put(url: str, body: object) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT")
    urllib.request.urlopen(req, timeout=5).read()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wrk(url: str, duration: int, conns: int, pid: int = 0) -> tuple[float, float, float]:
    """(req/s, p99 ms, server CPU µs per request)."""
    cpu0 = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(["taskset", "-c", "1", WRK, "-t1", f"-c{conns}", f"-d{duration}s",
                          "--latency", url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = (cpu_seconds(pid) - cpu0) / max(1, total) * 1e6 if pid else float("nan")
    return rps, p99, cpu_us


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rumor-bench-read-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hp = free_port()
        agent = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "registry.cli", "agent", "-dev",
             "-node", "bench", "-http-port", str(hp), "-dns-port", "-1", "-serf-lan-port",
             str(free_port()), "-log-level", "warn", "-data-dir", str(tmp / "data")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(agent)
        base = f"http://127.0.0.1:{hp}"
        wait_http(base + "/v1/agent/self")
        for i in range(20):
            put(base + "/v1/agent/service/register", {
                "Name": "web", "ID": f"web-{i}", "Port": 8000 + i, "Tags": ["v1", f"i{i}"],
                "Address": f"10.0.0.{i + 1}", "Meta": {"version": "1.2.3"},
                "Check": {"TTL": "1h", "Status": "passing"}})
        body = urllib.request.urlopen(base + PATH).read()
        assert len(json.loads(body)) == 20
        (tmp / "body.json").write_bytes(body)
        bp = free_port()
        bare = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", BARE, str(bp),
                                 str(tmp / "body.json")], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(bare)
        wait_http(f"http://127.0.0.1:{bp}{PATH}")
        wrk(base + PATH, 1, args.connections)  # warm-up
        wrk(f"http://127.0.0.1:{bp}{PATH}", 1, args.connections)
        rumor_r, bare_r = [], []
        for _ in range(args.rounds):
            bare_r.append(wrk(f"http://127.0.0.1:{bp}{PATH}", args.duration, args.connections,
                              bare.pid))
            rumor_r.append(wrk(base + PATH, args.duration, args.connections, agent.pid))
        r = statistics.median(x[0] for x in rumor_r)
        b = statistics.median(x[0] for x in bare_r)
        print(json.dumps({
            "body_bytes": len(body), "connections": args.connections, "duration_s": args.duration,
            "rounds": args.rounds,
            "rumor_rps": round(r), "rumor_p99_ms": round(statistics.median(x[1] for x in rumor_r), 2),
            "bare_aiohttp_rps": round(b), "bare_p99_ms": round(statistics.median(x[1] for x in bare_r), 2),
            "ratio_rps": round(r / b, 3),
            "rumor_cpu_us_per_req": round(rc := statistics.median(x[2] for x in rumor_r), 1),
            "bare_cpu_us_per_req": round(bc := statistics.median(x[2] for x in bare_r), 1),
            "ratio_cpu": round(bc / rc, 3),
        }, indent=1))
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()


if __name__ == "__main__":
    main()

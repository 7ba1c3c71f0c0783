#!/usr/bin/env python3
"""Rumor's DNS server against dnsmasq, side by side in one run (a benchmark, not a test).

For each server, interleaved over ``--rounds`` rounds, with the server pinned to one core
(``taskset -c 0``) and dnsperf to the other (``-c 1``):

* peak rate: dnsperf closed loop (``-q 100``, no ``-Q``) for an A query of a 3-instance service
  and for an SRV query of it; q/s, loss %, mean latency;
* fixed rate: ``-Q 5000`` (``--rate``) for ``--rate-seconds``, A and SRV queries mixed; the
  server's CPU time per query from /proc/PID/stat (utime+stime) before/after, the loss, and the
  p99 latency from dnsperf's per-query verbose output.

dnsmasq answers the same records from ``--host-record`` / ``--srv-host`` with ``--no-resolv``
(the script checks both answers match). With ``--rumor embedded`` (default) Rumor's side is a
process that, like the real agent, also serves an aiohttp app and keeps idle asyncio tasks
ticking (gossip-like timers), on uvloop; with ``--rumor agent`` it is the real
``rumor agent -dev`` with the instances registered over HTTP. CPU per query is also reported
for the peak runs, with how busy the server core was (near 100%: the server was the limit).
Figures are medians over the rounds. The machine, the load average before and after, every
round's figures and dnsperf's summaries are kept (``bench/runinfo.py``); ``bench/report.py``
makes the RESULTS.md table from them.

    python bench/dns_vs_dnsmasq.py                      # full run (5 rounds, ~4 minutes)
    python bench/dns_vs_dnsmasq.py --rumor agent        # against the real agent
    python bench/dns_vs_dnsmasq.py --quick              # smoke run (2 short rounds, no figures)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
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

from bench.runinfo import Run

DNSPERF = shutil.which("dnsperf") or "/usr/bin/dnsperf"
DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"
TICK = os.sysconf("SC_CLK_TCK")

A_QUERY = "web.service.rumor A"
SRV_QUERY = "_web._tcp.service.rumor SRV"
# (node, node address, service address, port): the service's own address differs from its
# node's, so SRV targets are <hexip>.addr.dc1.rumor. in both Rumor modes (embedded and agent).
INSTANCES = [("n1", "192.0.2.1", "10.0.0.1", 8080), ("n2", "192.0.2.2", "10.0.0.2", 8081),
             ("n3", "192.0.2.3", "10.0.0.3", 8082)]


# -- the Rumor side (``--serve``) ----------------------------------------------------------------
async def _serve(port: int, idle_tasks: int) -> None:
    from aiohttp import web

    from dnsserver import DNSConfig, DNSServer, MemoryView

    view = MemoryView("dc1")
    for node, node_addr, addr, p in INSTANCES:
        view.add_node(node, node_addr)
        view.register(node, "web", port=p, address=addr)
    server = DNSServer(DNSConfig(port=port), view)
    await server.start()

    async def status(_req: web.Request) -> web.Response:
        return web.json_response({"index": view.index, "dns": server.counters.snapshot()})

    app = web.Application()
    app.router.add_get("/v1/status", status)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()

    async def ticker(i: int) -> None:            # gossip-like timers: wake, do a little, sleep
        rng = random.Random(i)
        members = list(range(30))
        while True:
            await asyncio.sleep(0.2 + rng.random() * 0.05)
            rng.shuffle(members)
            json.dumps(members[:3])

    tasks = [asyncio.create_task(ticker(i)) for i in range(idle_tasks)]
    print(server.udp_port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await runner.cleanup()
    await server.stop()


# -- process helpers -------------------------------------------------------------------------------
def _free_port() -> int:
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])          # utime, stime (fields 14 and 15)


def _wait_answer(port: int, proc: subprocess.Popen[bytes], deadline: float = 15) -> None:
    q = bytes.fromhex("abcd01000001000000000000") + b"\x03web\x07service\x05rumor\x00\x00\x01\x00\x01"
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited rc={proc.returncode}")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(q, ("127.0.0.1", port))
            s.recvfrom(512)
            return
        except OSError:
            pass
        finally:
            s.close()
    raise RuntimeError("server does not answer")


class Server:
    def __init__(self, name: str, cmd: list[str], port: int | None) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if port is None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            port = int(line)
        self.port = port
        _wait_answer(port, self.proc)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_rumor(core: str, idle_tasks: int) -> Server:
    cmd = [TASKSET, "-c", core, sys.executable, str(Path(__file__).resolve()), "--serve",
           "--idle-tasks", str(idle_tasks)]
    return Server("rumor", cmd, None)


def start_agent(core: str) -> tuple[Server, str]:
    """The real agent (``rumor agent -dev``) with the three instances registered over HTTP."""
    import urllib.request

    data_dir = tempfile.mkdtemp(prefix="dnsbench-agent-")
    http, dns_port, serf = _free_port(), _free_port(), _free_port()
    cmd = [TASKSET, "-c", core, sys.executable, "-m", "registry.cli", "agent", "-dev",
           "-node", "bench", "-data-dir", data_dir, "-http-port", str(http), "-dns-port",
           str(dns_port), "-serf-lan-port", str(serf), "-log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    end = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/agent/self", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > end:
                proc.kill()
                raise RuntimeError("the agent did not start") from None
            time.sleep(0.2)
    for i, (_node, _node_addr, addr, p) in enumerate(INSTANCES):
        body = json.dumps({"Name": "web", "ID": f"web-{i + 1}", "Port": p,
                           "Address": addr}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{http}/v1/agent/service/register",
                                     data=body, method="PUT")
        urllib.request.urlopen(req, timeout=5).read()
    server = Server.__new__(Server)
    server.name, server.proc, server.port = "rumor", proc, dns_port
    _wait_answer(dns_port, proc)
    return server, data_dir


def idle_cpu_ms_per_s(server: Server, seconds: float = 5.0) -> float:
    """The server process's CPU use with no queries (its background work), ms per second."""
    before = _cpu_ticks(server.proc.pid)
    time.sleep(seconds)
    return (_cpu_ticks(server.proc.pid) - before) / TICK * 1000 / seconds


def start_dnsmasq(core: str) -> Server:
    port = _free_port()
    args = [TASKSET, "-c", core, DNSMASQ, "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts",
            "-p", str(port), "--listen-address=127.0.0.1", "--bind-interfaces", "--pid-file=",
            "--user=root", "--log-facility=/dev/null", "--local-ttl=0"]
    for _node, _node_addr, addr, p in INSTANCES:
        target = f"{bytes(map(int, addr.split('.'))).hex()}.addr.dc1.rumor"
        args.append(f"--host-record=web.service.rumor,{addr}")
        args.append(f"--host-record={target},{addr}")
        args.append(f"--srv-host=_web._tcp.service.rumor,{target},{p},1,1")
    return Server("dnsmasq", args, port)


# -- dnsperf ----------------------------------------------------------------------------------------
def dnsperf(port: int, query_file: str, core: str, seconds: float, rate: int | None = None,
            verbose: bool = False, keep: Any = None) -> dict[str, float]:
    """Run dnsperf; ``keep(text)`` gets its output (without the per-query lines of -v)."""
    cmd = [TASKSET, "-c", core, DNSPERF, "-s", "127.0.0.1", "-p", str(port), "-d", query_file,
           "-l", str(seconds), "-q", "100", "-t", "2"]
    if rate:
        cmd += ["-Q", str(rate)]
    if verbose:
        cmd.append("-v")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                         check=False).stdout
    res: dict[str, float] = {}
    m = re.search(r"Queries sent:\s+(\d+)", out)
    res["sent"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Queries completed:\s+(\d+)", out)
    res["completed"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Queries lost:\s+(\d+)", out)
    res["lost"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Queries per second:\s+([\d.]+)", out)
    res["qps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    res["avg_lat_us"] = float(m.group(1)) * 1e6 if m else 0.0
    res["loss_pct"] = 100.0 * res["lost"] / res["sent"] if res["sent"] else 100.0
    if verbose:
        lats = sorted(float(x) for x in re.findall(r"^> \w+ .* ([\d.]+)$", out, re.MULTILINE))
        res["p99_us"] = lats[int(len(lats) * 0.99) - 1] * 1e6 if lats else 0.0
        res["p50_us"] = lats[len(lats) // 2] * 1e6 if lats else 0.0
    if "Queries per second" not in out:
        raise RuntimeError("dnsperf failed:\n" + out[-2000:])
    if keep is not None:
        keep("\n".join(line for line in out.splitlines() if not line.startswith("> ")) + "\n")
    return res


def check_same_records(servers: dict[str, Server]) -> dict[str, dict[str, int]]:
    """Both servers must give the same records (3 A; 3 SRV with 3 A glue); returns sizes."""
    import dns.message
    import dns.query

    sizes: dict[str, dict[str, int]] = {}
    for name, srv in servers.items():
        sizes[name] = {}
        for line in (A_QUERY, SRV_QUERY):
            qname, qtype = line.split()
            q = dns.message.make_query(qname, qtype, use_edns=False)
            wire = dns.query.udp(q, "127.0.0.1", port=srv.port, timeout=3).to_wire()
            m = dns.message.from_wire(wire)
            n_ans = sum(len(rs) for rs in m.answer)
            n_add = sum(len(rs) for rs in m.additional)
            want = (3, 0) if qtype == "A" else (3, 3)
            targets = sorted(str(r.target) for rs in m.answer for r in rs if qtype == "SRV")
            if qtype == "SRV" and targets != ["0a000001.addr.dc1.rumor.",
                                              "0a000002.addr.dc1.rumor.",
                                              "0a000003.addr.dc1.rumor."]:
                raise RuntimeError(f"{name} SRV targets differ: {targets}")
            if (n_ans, n_add) != want:
                raise RuntimeError(f"{name} answers {line} with {n_ans} answers and {n_add} "
                                   f"additional records, expected {want}")
            sizes[name][qtype] = len(wire)
    return sizes


def measure(server: Server, files: dict[str, str], args: argparse.Namespace,
            keep: Any = None) -> dict[str, float]:
    """One round of one server; ``keep(name, text)`` gets dnsperf's outputs."""
    row: dict[str, float] = {}
    for kind in ("A", "SRV"):
        before = _cpu_ticks(server.proc.pid)
        t0 = time.monotonic()
        r = dnsperf(server.port, files[kind], args.load_core, args.seconds,
                    keep=(lambda text, k=kind: keep(f"peak-{k}", text)) if keep else None)
        wall = time.monotonic() - t0
        cpu = (_cpu_ticks(server.proc.pid) - before) / TICK
        row[f"{kind}_qps"] = r["qps"]
        row[f"{kind}_loss_pct"] = r["loss_pct"]
        row[f"{kind}_avg_us"] = r["avg_lat_us"]
        # CPU per query at peak is robust to a busy machine, where q/s is not; the server
        # core's busy share says whether the server (near 100%) or the load was the limit.
        row[f"{kind}_cpu_us_per_query"] = cpu * 1e6 / r["completed"] if r["completed"] else 0.0
        row[f"{kind}_server_busy_pct"] = 100.0 * cpu / wall if wall else 0.0
    before = _cpu_ticks(server.proc.pid)
    t0 = time.monotonic()
    r = dnsperf(server.port, files["MIX"], args.load_core, args.rate_seconds, rate=args.rate,
                verbose=True, keep=(lambda text: keep("rate", text)) if keep else None)
    ticks = _cpu_ticks(server.proc.pid) - before
    row["rate_wall_s"] = time.monotonic() - t0
    row["rate_completed"] = r["completed"]
    row["rate_loss_pct"] = r["loss_pct"]
    row["rate_p99_us"] = r.get("p99_us", 0.0)
    row["rate_p50_us"] = r.get("p50_us", 0.0)
    row["cpu_us_per_query"] = (ticks / TICK) * 1e6 / r["completed"] if r["completed"] else 0.0
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--idle-tasks", type=int, default=10,
                   help="gossip-like timer tasks beside the DNS server (embedded mode)")
    p.add_argument("--rumor", choices=("embedded", "agent"), default="embedded",
                   help="embedded: DNSServer + aiohttp + idle tasks in one process (default); "
                        "agent: the real `rumor agent -dev` with the instances registered")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (2 rounds, 1 s peaks, 2 s at the fixed rate), recorded under "
                        "bench/out/quick: checks the bench works, gives no figures")
    p.add_argument("--out", type=Path, help="directory for the raw rounds (default: "
                   "bench/results/<date>/dns_vs_dnsmasq-<mode>-<time>)")
    p.add_argument("--seconds", type=float, default=5, help="length of each peak run")
    p.add_argument("--rate", type=int, default=5000, help="q/s of the fixed-rate run")
    p.add_argument("--rate-seconds", type=float, default=10,
                   help="length of the fixed-rate run")
    p.add_argument("--server-core", default="0")
    p.add_argument("--load-core", default="1")
    p.add_argument("--json", help="write the raw rows here")
    args = p.parse_args()
    if args.serve:
        try:
            import uvloop
            uvloop.run(_serve(0, args.idle_tasks))
        except ImportError:
            asyncio.run(_serve(0, args.idle_tasks))
        return
    idle_window = 5.0
    if args.quick:
        args.rounds, args.seconds, args.rate_seconds, idle_window = 2, 1.0, 2.0, 1.0
    run = Run(f"dns_vs_dnsmasq-{args.rumor}", tools=["dnsmasq", "dnsperf", "taskset"],
              quick=args.quick, out=args.out, params={
                  "rumor": args.rumor, "rounds": args.rounds, "peak_seconds": args.seconds,
                  "rate": args.rate, "rate_seconds": args.rate_seconds,
                  "server_core": args.server_core, "load_core": args.load_core,
                  "idle_tasks": args.idle_tasks if args.rumor == "embedded" else None,
                  "dnsmasq": "--no-resolv --no-hosts --local-ttl=0, records from "
                             "--host-record/--srv-host (as it is)"})
    ok = False
    tmp = tempfile.mkdtemp(prefix="dnsbench-")
    files = {}
    for kind, lines in (("A", [A_QUERY]), ("SRV", [SRV_QUERY]), ("MIX", [A_QUERY, SRV_QUERY])):
        path = os.path.join(tmp, f"{kind}.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        files[kind] = path

    rows: dict[str, list[dict[str, float]]] = {"dnsmasq": [], "rumor": []}
    agent_dir = None
    servers = {"dnsmasq": start_dnsmasq(args.server_core)}
    if args.rumor == "agent":
        servers["rumor"], agent_dir = start_agent(args.server_core)
    else:
        servers["rumor"] = start_rumor(args.server_core, args.idle_tasks)
    try:
        idle = {n: idle_cpu_ms_per_s(s, idle_window) for n, s in servers.items()}
        run.note("idle_cpu_ms_per_s", idle)
        print("idle CPU (ms per s): " + ", ".join(f"{n} {v:.1f}" for n, v in idle.items())
              + f"  [rumor = {args.rumor}]", flush=True)
        sizes = check_same_records(servers)
        run.note("response_bytes", sizes)
        print("response sizes (bytes): " + ", ".join(
            f"{n} A={v['A']} SRV={v['SRV']}" for n, v in sizes.items()), flush=True)
        for rnd in range(args.rounds):
            order = ["dnsmasq", "rumor"] if rnd % 2 == 0 else ["rumor", "dnsmasq"]
            for name in order:
                row = measure(servers[name], files, args, keep=lambda what, text, n=name, i=rnd: (
                    run.keep(f"round{i + 1}-{n}-{what}.dnsperf.txt", text)))
                rows[name].append(row)
                run.round(rnd + 1, name, "dns", row)
                print(f"round {rnd + 1} {name:8s} " + " ".join(
                    f"{k}={v:.1f}" for k, v in row.items()), flush=True)
        ok = True
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if agent_dir:
            shutil.rmtree(agent_dir, ignore_errors=True)
        run.close(ok)

    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in rows.items()}
    d, r = med["dnsmasq"], med["rumor"]
    print()
    print(f"rumor = {args.rumor}; medians over {args.rounds} round(s); server on core {args.server_core}, dnsperf on "
          f"core {args.load_core}; peak = closed loop -q 100 for {args.seconds:g}s; "
          f"fixed = -Q {args.rate} for {args.rate_seconds:g}s")
    print(f"{'':30s}{'dnsmasq':>12s}{'rumor':>12s}{'ratio':>9s}")
    for key, label, better_high in (
            ("A_qps", "peak A q/s", True), ("A_loss_pct", "  loss %", False),
            ("A_avg_us", "  mean latency us", False),
            ("SRV_qps", "peak SRV q/s", True), ("SRV_loss_pct", "  loss %", False),
            ("SRV_avg_us", "  mean latency us", False),
            ("A_cpu_us_per_query", "CPU us/query @peak A", False),
            ("A_server_busy_pct", "  server core busy %", False),
            ("SRV_cpu_us_per_query", "CPU us/query @peak SRV", False),
            ("SRV_server_busy_pct", "  server core busy %", False),
            ("cpu_us_per_query", f"CPU us/query @{args.rate}/s", False),
            ("rate_loss_pct", f"  loss % @{args.rate}/s", False),
            ("rate_p50_us", f"  p50 latency us @{args.rate}/s", False),
            ("rate_p99_us", f"  p99 latency us @{args.rate}/s", False)):
        ratio = r[key] / d[key] if d[key] else float("nan")
        print(f"{label:30s}{d[key]:12.1f}{r[key]:12.1f}{ratio:9.2f}")
    verdict = {    # issue 18's targets
        "peak_A_ratio>=1.0": r["A_qps"] / d["A_qps"] >= 1.0,
        "peak_SRV_ratio>=1.0": r["SRV_qps"] / d["SRV_qps"] >= 1.0,
        "cpu_ratio<=1.1": r["cpu_us_per_query"] / d["cpu_us_per_query"] <= 1.1
        if d["cpu_us_per_query"] else False,
        "zero_loss_at_rate": r["rate_loss_pct"] == 0.0,
        "p99_at_rate_ratio<=1.2": r["rate_p99_us"] / d["rate_p99_us"] <= 1.2
        if d["rate_p99_us"] else False,
        "peak_loss<0.1%": r["A_loss_pct"] < 0.1 and r["SRV_loss_pct"] < 0.1,
    }
    print("targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in verdict.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "medians": med,
                                               "targets": verdict}, indent=2))


if __name__ == "__main__":
    main()

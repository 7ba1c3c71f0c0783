"""Rumor's load balancer (lb/) side by side with HAProxy, in front of the same nginx backends.

    python bench/lb_vs_haproxy.py [--duration 5] [--rounds 5] [--connections 50]
    python bench/lb_vs_haproxy.py --quick          # smoke run: 2 rounds of 1 s, not figures

Starts three nginx backends (Debian nginx, own temp config and prefix, daemon off, loopback
ports), HAProxy (Debian, ``maxconn 4000``, round-robin; ``tune.bufsize 65536``; TCP mode
spliced, as its users configure it for speed, since Rumor's TCP mode splices too: see
``haproxy_conf``) and Rumor's proxy (``python -m lb --uvloop``, in its own process with an in-memory
view), then measures with wrk (keep-alive, fixed connections and duration), the proxy pinned to
CPU 0 and wrk + nginx to CPU 1 (taskset):

  http-small  HTTP mode, 100-byte body: req/s, p99 latency, proxy CPU µs per request
  tcp-small   TCP mode, 100-byte body: same
  tcp-1mb     TCP mode, 1 MiB body: MiB/s and proxy CPU ms per MiB
  tcp idle    TCP mode, proxy RSS growth per open idle connection (--idle-conns)

Runs are interleaved (HAProxy, Rumor, Rumor, HAProxy, ...) and the medians reported with the
ratios Rumor / HAProxy. Proxy CPU comes from /proc/PID/stat (utime + stime). Every process is
started here and killed by its PID on exit. This is a benchmark, not a test: on a shared
2-core machine the figures are noisy. The machine, the load average before and after, and
every round's figures and wrk output are kept (``bench/runinfo.py``); ``bench/report.py``
makes the RESULTS.md table from them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.runinfo import Run

HAPROXY = "/usr/sbin/haproxy"
NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_BODY = "x" * 99 + "\n"           # 100 bytes
PROXY_CPU = "0"
LOAD_CPU = "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime/stime are fields 14/15 -> index 11/12 here
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cpu: str | None, log: Path, **kw: object) -> \
            subprocess.Popen[bytes]:
        if cpu is not None:
            argv = ["taskset", "-c", cpu, *argv]
        with open(log, "wb") as f:     # the child keeps its own copy of the descriptor
            p = subprocess.Popen(argv, stdout=kw.pop("stdout", f),  # type: ignore[arg-type]
                                 stderr=f, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


def nginx_conf(tmp: Path, ports: list[int]) -> Path:
    (tmp / "www").mkdir(exist_ok=True)
    (tmp / "www" / "big").write_bytes(os.urandom(1 << 20))
    servers = "\n".join(f"""
    server {{
        listen 127.0.0.1:{p} reuseport backlog=4096;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
        root {tmp / 'www'};
        location = /small {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
        location = /big {{ default_type application/octet-stream; }}
    }}""" for p in ports)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
master_process off;
pid {tmp / 'nginx.pid'};
error_log {tmp / 'nginx-error.log'} warn;
worker_rlimit_nofile 8192;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    {servers}
}}
""")
    return conf


def haproxy_conf(tmp: Path, backends: list[int], http_port: int, tcp_port: int,
                 bulk_port: int | None = None) -> Path:
    """HAProxy's config. TCP mode has ``option splice-auto`` on ``tcp_port`` (the small-body
    row), and, on ``bulk_port`` (the 1 MiB row), ``option splice-request`` and
    ``option splice-response``: measured on 2026-12-06 (strace, and CPU per MiB), splice-auto
    never spliced these 1 MiB answers (HAProxy moved them with recvfrom/sendto, at about
    twice the CPU per MiB), while the forced options did. Forcing splice costs HAProxy CPU on
    100-byte exchanges, so each row gets HAProxy's faster setting; Rumor has one TCP listener
    (it always splices, lb/_splicec.c doing a readable event's splices in C)."""
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""
global
    maxconn 4000
    nbthread 1
    tune.bufsize 65536

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    maxconn 4000

frontend fe_http
    mode http
    bind 127.0.0.1:{http_port}
    default_backend be_http

backend be_http
    mode http
    balance roundrobin
    http-reuse safe
{servers}

frontend fe_tcp
    mode tcp
    option splice-auto
    bind 127.0.0.1:{tcp_port}
    default_backend be_tcp

backend be_tcp
    mode tcp
    option splice-auto
    balance roundrobin
{servers}
""" + ("" if bulk_port is None else f"""
frontend fe_tcp_bulk
    mode tcp
    option splice-request
    option splice-response
    bind 127.0.0.1:{bulk_port}
    default_backend be_tcp_bulk

backend be_tcp_bulk
    mode tcp
    option splice-request
    option splice-response
    balance roundrobin
{servers}
"""))
    return conf


def rumor_conf(tmp: Path, backends: list[int], http_port: int, tcp_port: int) -> Path:
    conf = tmp / "rumor-lb.json"
    conf.write_text(json.dumps({
        "lb": {"max_connections": 4000},
        "listeners": [
            {"Name": "http", "Bind": f"127.0.0.1:{http_port}", "Mode": "http",
             "Service": "web"},
            {"Name": "tcp", "Bind": f"127.0.0.1:{tcp_port}", "Mode": "tcp", "Service": "web"},
        ],
        "services": {"web": [{"Port": p, "Node": f"n{i}"} for i, p in enumerate(backends)]},
    }))
    return conf


@dataclass
class Result:
    rps: float
    p99_ms: float
    bytes_per_s: float
    requests: int
    cpu_s: float
    raw: str = ""

    @property
    def cpu_us_per_req(self) -> float:
        return self.cpu_s / max(1, self.requests) * 1e6

    @property
    def mib_s(self) -> float:
        return self.bytes_per_s / (1 << 20)

    @property
    def cpu_ms_per_mib(self) -> float:
        total_mib = self.bytes_per_s * self._duration / (1 << 20)
        return self.cpu_s / max(1e-9, total_mib) * 1e3

    _duration: float = 1.0


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "KB": 1 << 10, "MB": 1 << 20,
          "GB": 1 << 30}


def parse_wrk(out: str) -> tuple[float, float, float, int]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float("nan")
    if m:
        p99 = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
    t = re.search(r"Transfer/sec:\s+([\d.]+)(\w*)", out)
    bps = float(t.group(1)) * _UNITS.get(t.group(2), 1) if t else 0.0
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p99, bps, n


def run_wrk(url: str, pid: int, duration: float, conns: int, threads: int = 2) -> Result:
    argv = ["taskset", "-c", LOAD_CPU, WRK, f"-t{threads}", f"-c{conns}", f"-d{max(1, round(duration))}s",
            "--latency", url]
    c0 = cpu_seconds(pid)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30,
                          check=False)
    out = proc.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed on {url}: {out}{proc.stderr}")
    c1 = cpu_seconds(pid)
    rps, p99, bps, n = parse_wrk(out)
    if "Non-2xx" in out or "Socket errors" in out:
        errs = re.findall(r"(Non-2xx.*|Socket errors.*)", out)
        print(f"    note: {url}: {'; '.join(errs)}", file=sys.stderr)
    r = Result(rps, p99, bps, n, c1 - c0, out)
    r._duration = duration
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (2 rounds of 1 s, 50 idle connections), recorded under "
                         "bench/out/quick: checks the bench works, gives no figures")
    ap.add_argument("--out", type=Path, help="directory for the raw rounds (default: "
                    "bench/results/<date>/lb_vs_haproxy-<time>)")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (small body)")
    ap.add_argument("--bulk-connections", type=int, default=8, help="wrk connections (1 MiB)")
    ap.add_argument("--idle-conns", type=int, default=1000,
                    help="TCP connections held open to measure proxy memory per connection "
                         "(0 to skip)")
    ap.add_argument("--json", type=Path, help="also write the medians here")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds, args.idle_conns = 1.0, 2, min(args.idle_conns, 50)
    for tool in (HAPROXY, NGINX, WRK, "/usr/bin/taskset"):
        if not Path(tool).exists():
            print(f"missing {tool}", file=sys.stderr)
            return 2
    run = Run("lb_vs_haproxy", tools=["haproxy", "nginx", "wrk", "taskset"], quick=args.quick,
              out=args.out, params={
                  "duration_s": args.duration, "rounds": args.rounds,
                  "connections": args.connections, "bulk_connections": args.bulk_connections,
                  "idle_conns": args.idle_conns, "proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU,
                  "haproxy": "nbthread 1, maxconn 4000, tune.bufsize 65536, http: http-reuse "
                             "safe; tcp 100 B: option splice-auto; tcp 1 MiB: option "
                             "splice-request + splice-response (splice-auto did not splice "
                             "1 MiB answers here)",
                  "rumor": "python -m lb --uvloop, in-memory view"})
    ok = False
    tmp = Path(tempfile.mkdtemp(prefix="lb-bench-"))
    procs = Procs()
    try:
        backends = [free_port() for _ in range(3)]
        hp_http, hp_tcp, hp_bulk, ru_http, ru_tcp = (free_port() for _ in range(5))
        procs.start([NGINX, "-p", str(tmp), "-c", str(nginx_conf(tmp, backends))], LOAD_CPU,
                    tmp / "nginx.out")
        for p in backends:
            wait_port(p)
        hap = procs.start([HAPROXY, "-db", "-f", str(haproxy_conf(tmp, backends, hp_http,
                                                                  hp_tcp, hp_bulk))],
                          PROXY_CPU, tmp / "haproxy.out")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        rum = procs.start([sys.executable, "-m", "lb", str(rumor_conf(tmp, backends, ru_http,
                                                                      ru_tcp)), "--uvloop"],
                          PROXY_CPU, tmp / "rumor.out", env=env, cwd=str(ROOT))
        for p in (hp_http, hp_tcp, hp_bulk, ru_http, ru_tcp):
            wait_port(p)
        # pids of the proxies themselves (taskset execs, so the pid is the proxy's)
        targets = {"haproxy": (hap.pid, hp_http, hp_tcp, hp_bulk),
                   "rumor": (rum.pid, ru_http, ru_tcp, ru_tcp)}
        tests = {
            "http-small": lambda port: (f"http://127.0.0.1:{port[0]}/small", args.connections),
            "tcp-small": lambda port: (f"http://127.0.0.1:{port[1]}/small", args.connections),
            "tcp-1mb": lambda port: (f"http://127.0.0.1:{port[2]}/big", args.bulk_connections),
        }
        print(f"# warm-up; then {args.rounds} interleaved rounds of {args.duration:g}s per run",
              flush=True)
        for pid, *ports in targets.values():
            for t in tests.values():
                url, c = t(ports)
                run_wrk(url, pid, 1.0, c)
        results: dict[str, dict[str, list[Result]]] = {t: {"haproxy": [], "rumor": []}
                                                      for t in tests}
        for rnd in range(args.rounds):
            order = ["haproxy", "rumor"] if rnd % 2 == 0 else ["rumor", "haproxy"]
            for tname, t in tests.items():
                for who in order:
                    pid, *ports = targets[who]
                    url, c = t(ports)
                    r = run_wrk(url, pid, args.duration, c)
                    results[tname][who].append(r)
                    run.round(rnd + 1, who, tname, {
                        "rps": r.rps, "p99_ms": r.p99_ms, "mib_s": r.mib_s,
                        "requests": r.requests, "cpu_s": r.cpu_s,
                        "cpu_us_per_req": r.cpu_us_per_req, "cpu_ms_per_mib": r.cpu_ms_per_mib,
                        "duration_s": args.duration, "connections": c})
                    run.keep(f"round{rnd + 1}-{tname}-{who}.wrk.txt", r.raw)
                    print(f"  round {rnd + 1} {tname:10s} {who:8s} {r.rps:10.0f} req/s  "
                          f"p99 {r.p99_ms:7.2f} ms  {r.mib_s:8.1f} MiB/s  "
                          f"cpu {r.cpu_us_per_req:7.1f} us/req", flush=True)
        summary = report(results)
        if args.idle_conns:
            mem = {who: idle_memory(pid, tport, args.idle_conns)
                   for who, (pid, _hport, tport, _bulk) in targets.items()}
            print(f"tcp idle   haproxy {mem['haproxy']:6.1f} KiB per connection | rumor "
                  f"{mem['rumor']:6.1f} KiB per connection ({args.idle_conns} open, RSS growth)")
            summary["tcp-idle-kib-per-conn"] = mem
            for who, kib in mem.items():
                run.round(1, who, "tcp-idle", {"kib_per_conn": kib, "conns": args.idle_conns})
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        ok = True
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        run.close(ok)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def idle_memory(pid: int, port: int, n: int) -> float:
    """RSS growth of the proxy per open, idle TCP-mode connection (each also holds one to
    nginx): open n, send one request on each so the backend side is connected too."""
    socks = []
    before = rss_kib(pid)
    try:
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(c)
        for c in socks:
            c.settimeout(5)
            c.recv(4096)
        time.sleep(0.3)
        after = rss_kib(pid)
    finally:
        for c in socks:
            c.close()
    return (after - before) / n


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def report(results: dict[str, dict[str, list[Result]]]) -> dict[str, object]:
    out: dict[str, object] = {}
    print("\n# medians (Rumor / HAProxy)")
    for tname, by in results.items():
        h, r = by["haproxy"], by["rumor"]
        if tname == "tcp-1mb":
            hm, rm = med([x.mib_s for x in h]), med([x.mib_s for x in r])
            hc, rc = med([x.cpu_ms_per_mib for x in h]), med([x.cpu_ms_per_mib for x in r])
            print(f"{tname:10s} haproxy {hm:8.1f} MiB/s {hc:6.2f} ms CPU/MiB | rumor {rm:8.1f} "
                  f"MiB/s {rc:6.2f} ms CPU/MiB | throughput {rm / hm:5.2f}x  "
                  f"CPU/MiB {rc / hc:5.2f}x")
            out[tname] = {"haproxy_mib_s": hm, "rumor_mib_s": rm, "ratio": rm / hm,
                          "haproxy_cpu_ms_per_mib": hc, "rumor_cpu_ms_per_mib": rc}
        else:
            hr, rr = med([x.rps for x in h]), med([x.rps for x in r])
            hp, rp = med([x.p99_ms for x in h]), med([x.p99_ms for x in r])
            hc, rc = med([x.cpu_us_per_req for x in h]), med([x.cpu_us_per_req for x in r])
            print(f"{tname:10s} haproxy {hr:8.0f} req/s p99 {hp:6.2f} ms {hc:5.1f} us/req | "
                  f"rumor {rr:8.0f} req/s p99 {rp:6.2f} ms {rc:5.1f} us/req | "
                  f"req/s {rr / hr:5.2f}x  p99 {rp / hp:5.2f}x  CPU/req {rc / hc:5.2f}x")
            out[tname] = {"haproxy_rps": hr, "rumor_rps": rr, "rps_ratio": rr / hr,
                          "haproxy_p99_ms": hp, "rumor_p99_ms": rp, "p99_ratio": rp / hp,
                          "haproxy_cpu_us": hc, "rumor_cpu_us": rc, "cpu_ratio": rc / hc}
    return out


if __name__ == "__main__":
    sys.exit(main())

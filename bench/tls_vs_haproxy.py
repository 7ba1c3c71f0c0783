"""Rumor's TLS HTTP listener side by side with HAProxy terminating the same ECDSA P-256
certificate, in front of the same nginx backends.

    python bench/tls_vs_haproxy.py [--duration 5] [--rounds 5] [--connections 50]
    python bench/tls_vs_haproxy.py --quick         # smoke run: 2 rounds of 1 s, not figures

Both proxies terminate TLS with one ECDSA P-256 certificate made here (``cryptography``), TLS
1.2+ with ECDHE + AES-GCM/ChaCha20 for 1.2, ALPN http/1.1; HAProxy 2.6 (Debian, ``nbthread
1``, ``ssl-default-bind-ciphers ECDHE+AESGCM:ECDHE+CHACHA20``, ``ssl-min-ver TLSv1.2``) and
``python -m lb --uvloop`` (in-memory view). The proxy runs on CPU 0, the load generators and
nginx on CPU 1 (taskset), as in ``bench/lb_vs_haproxy.py``. Two rows:

  tls-handshakes  new TLS handshakes per second, measured with ``openssl s_time -new``
                  (a full handshake per connection, no session reuse, TLS 1.3 with X25519 and
                  the ECDSA certificate; one connection at a time: wrk cannot open a new
                  connection per request), and proxy CPU microseconds per handshake
  tls-keepalive   wrk over https (keep-alive, fixed connections), 100-byte body: req/s, p99
                  latency, proxy CPU microseconds per request

Issue 15's targets: handshakes >= 0.8x HAProxy, keep-alive req/s >= 0.6x. Runs alternate
(HAProxy first in odd rounds, Rumor first in even ones) and medians are reported. Every
round's figures and tool output are kept (``bench/runinfo.py``). On a shared 2-core machine
the figures are noisy; a ``--quick`` run only checks that the bench works.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lb_vs_haproxy import (  # noqa: E402
    HAPROXY,
    LOAD_CPU,
    NGINX,
    PROXY_CPU,
    WRK,
    Procs,
    cpu_seconds,
    free_port,
    med,
    nginx_conf,
    run_wrk,
    wait_port,
)
from bench.runinfo import Run  # noqa: E402

OPENSSL = "/usr/bin/openssl"
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def make_certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """An ECDSA P-256 self-signed certificate for localhost: (cert, key, cert+key for HAProxy)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cpem = cert.public_bytes(serialization.Encoding.PEM)
    kpem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    paths = tmp / "cert.pem", tmp / "key.pem", tmp / "haproxy.pem"
    paths[0].write_bytes(cpem)
    paths[1].write_bytes(kpem)
    paths[2].write_bytes(cpem + kpem)
    return paths


def haproxy_conf(tmp: Path, backends: list[int], port: int, combined: Path) -> Path:
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    conf = tmp / "haproxy.cfg"
    conf.write_text(f"""
global
    maxconn 4000
    nbthread 1
    tune.bufsize 65536
    ssl-default-bind-ciphers {CIPHERS}
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    maxconn 4000

frontend fe_https
    mode http
    bind 127.0.0.1:{port} ssl crt {combined} alpn http/1.1
    default_backend be_http

backend be_http
    mode http
    balance roundrobin
    http-reuse safe
{servers}
""")
    return conf


def rumor_conf(tmp: Path, backends: list[int], port: int, cert: Path, key: Path) -> Path:
    conf = tmp / "rumor-lb.json"
    conf.write_text(json.dumps({
        "lb": {"max_connections": 4000},
        "listeners": [{"Name": "https", "Bind": f"127.0.0.1:{port}", "Mode": "http",
                       "Service": "web", "TLS": {"Certificates": [
                           {"CertFile": str(cert), "KeyFile": str(key)}]}}],
        "services": {"web": [{"Port": p, "Node": f"n{i}"} for i, p in enumerate(backends)]},
    }))
    return conf


@dataclass
class Handshakes:
    rate: float          # handshakes per second (wall clock)
    count: int
    cpu_s: float         # the proxy's CPU over the run
    raw: str

    @property
    def cpu_us_per_handshake(self) -> float:
        return self.cpu_s / max(1, self.count) * 1e6


def run_s_time(port: int, pid: int, seconds: int) -> Handshakes:
    argv = ["taskset", "-c", LOAD_CPU, OPENSSL, "s_time", "-connect", f"127.0.0.1:{port}",
            "-new", "-time", str(seconds)]
    c0 = cpu_seconds(pid)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    c1 = cpu_seconds(pid)
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", p.stdout)
    if not m:
        raise RuntimeError(f"openssl s_time failed on port {port}: {p.stdout}{p.stderr}")
    n, secs = int(m.group(1)), float(m.group(2))
    return Handshakes(n / max(secs, 1e-9), n, c1 - c0, p.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (median taken)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (2 rounds of 1 s), recorded under bench/out/quick: checks "
                         "the bench works, gives no figures")
    ap.add_argument("--out", type=Path, help="directory for the raw rounds (default: "
                    "bench/results/<date>/tls_vs_haproxy-<time>)")
    ap.add_argument("--connections", type=int, default=50, help="wrk connections (keep-alive)")
    ap.add_argument("--json", type=Path, help="also write the medians here")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.rounds = 1.0, 2
    for tool in (HAPROXY, NGINX, WRK, OPENSSL, "/usr/bin/taskset"):
        if not Path(tool).exists():
            print(f"missing {tool}", file=sys.stderr)
            return 2
    run = Run("tls_vs_haproxy", tools=["haproxy", "nginx", "wrk", "openssl", "taskset"],
              quick=args.quick, out=args.out, params={
                  "duration_s": args.duration, "rounds": args.rounds,
                  "connections": args.connections, "proxy_cpu": PROXY_CPU,
                  "load_cpu": LOAD_CPU, "certificate": "ECDSA P-256, self-signed",
                  "handshakes": "openssl s_time -new (sequential full handshakes, TLS 1.3)",
                  "haproxy": f"nbthread 1, ciphers {CIPHERS}, ssl-min-ver TLSv1.2, alpn "
                             "http/1.1, http-reuse safe",
                  "rumor": "python -m lb --uvloop, in-memory view"})
    ok = False
    tmp = Path(tempfile.mkdtemp(prefix="tls-bench-"))
    procs = Procs()
    try:
        cert, key, combined = make_certificate(tmp)
        backends = [free_port() for _ in range(3)]
        hp_port, ru_port = free_port(), free_port()
        procs.start([NGINX, "-p", str(tmp), "-c", str(nginx_conf(tmp, backends))], LOAD_CPU,
                    tmp / "nginx.out")
        for p in backends:
            wait_port(p)
        hap = procs.start([HAPROXY, "-db", "-f", str(haproxy_conf(tmp, backends, hp_port,
                                                                  combined))],
                          PROXY_CPU, tmp / "haproxy.out")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        rum = procs.start([sys.executable, "-m", "lb",
                           str(rumor_conf(tmp, backends, ru_port, cert, key)), "--uvloop"],
                          PROXY_CPU, tmp / "rumor.out", env=env, cwd=str(ROOT))
        for p in (hp_port, ru_port):
            wait_port(p)
        targets = {"haproxy": (hap.pid, hp_port), "rumor": (rum.pid, ru_port)}
        seconds = max(1, round(args.duration))
        print(f"# warm-up; then {args.rounds} alternating rounds of {seconds}s per run",
              flush=True)
        for pid, port in targets.values():
            run_s_time(port, pid, 1)
            run_wrk(f"https://127.0.0.1:{port}/small", pid, 1.0, args.connections)
        hs: dict[str, list[Handshakes]] = {"haproxy": [], "rumor": []}
        ka: dict[str, list[object]] = {"haproxy": [], "rumor": []}
        for rnd in range(args.rounds):
            order = ["haproxy", "rumor"] if rnd % 2 == 0 else ["rumor", "haproxy"]
            for who in order:
                pid, port = targets[who]
                h = run_s_time(port, pid, seconds)
                hs[who].append(h)
                run.round(rnd + 1, who, "tls-handshakes", {
                    "handshakes_per_s": h.rate, "handshakes": h.count, "cpu_s": h.cpu_s,
                    "cpu_us_per_handshake": h.cpu_us_per_handshake, "duration_s": seconds})
                run.keep(f"round{rnd + 1}-tls-handshakes-{who}.s_time.txt", h.raw)
                print(f"  round {rnd + 1} tls-handshakes {who:8s} {h.rate:8.0f} /s  "
                      f"cpu {h.cpu_us_per_handshake:7.1f} us/handshake", flush=True)
            for who in order:
                pid, port = targets[who]
                r = run_wrk(f"https://127.0.0.1:{port}/small", pid, args.duration,
                            args.connections)
                ka[who].append(r)
                run.round(rnd + 1, who, "tls-keepalive", {
                    "rps": r.rps, "p99_ms": r.p99_ms, "requests": r.requests, "cpu_s": r.cpu_s,
                    "cpu_us_per_req": r.cpu_us_per_req, "duration_s": args.duration,
                    "connections": args.connections})
                run.keep(f"round{rnd + 1}-tls-keepalive-{who}.wrk.txt", r.raw)
                print(f"  round {rnd + 1} tls-keepalive  {who:8s} {r.rps:8.0f} req/s  "
                      f"p99 {r.p99_ms:7.2f} ms  cpu {r.cpu_us_per_req:7.1f} us/req", flush=True)
        summary = report(hs, ka)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=2))
        ok = True
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        run.close(ok)


def report(hs: dict[str, list[Handshakes]], ka: dict[str, list[object]]) -> dict[str, object]:
    print("\n# medians (Rumor / HAProxy)")
    hh, rh = med([x.rate for x in hs["haproxy"]]), med([x.rate for x in hs["rumor"]])
    hc, rc = (med([x.cpu_us_per_handshake for x in hs["haproxy"]]),
              med([x.cpu_us_per_handshake for x in hs["rumor"]]))
    print(f"tls-handshakes haproxy {hh:7.0f}/s {hc:6.1f} us CPU each | rumor {rh:7.0f}/s "
          f"{rc:6.1f} us CPU each | rate {rh / hh:5.2f}x (target >= 0.8x)  "
          f"CPU/handshake {rc / hc:5.2f}x")
    kh = med([x.rps for x in ka["haproxy"]])  # type: ignore[attr-defined]
    kr = med([x.rps for x in ka["rumor"]])  # type: ignore[attr-defined]
    ch = med([x.cpu_us_per_req for x in ka["haproxy"]])  # type: ignore[attr-defined]
    cr = med([x.cpu_us_per_req for x in ka["rumor"]])  # type: ignore[attr-defined]
    print(f"tls-keepalive  haproxy {kh:7.0f} req/s {ch:5.1f} us/req | rumor {kr:7.0f} req/s "
          f"{cr:5.1f} us/req | req/s {kr / kh:5.2f}x (target >= 0.6x)  CPU/req {cr / ch:5.2f}x")
    return {"tls-handshakes": {"haproxy_per_s": hh, "rumor_per_s": rh, "ratio": rh / hh,
                               "haproxy_cpu_us": hc, "rumor_cpu_us": rc, "cpu_ratio": rc / hc},
            "tls-keepalive": {"haproxy_rps": kh, "rumor_rps": kr, "rps_ratio": kr / kh,
                              "haproxy_cpu_us": ch, "rumor_cpu_us": cr, "cpu_ratio": cr / ch}}


if __name__ == "__main__":
    sys.exit(main())

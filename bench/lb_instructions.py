"""CPU instructions per request of Rumor's proxy and HAProxy, counted by callgrind: a figure that
does not move with the machine's load, for comparing two versions of lb/ on a busy machine.

    python bench/lb_instructions.py                      # this tree and HAProxy, HTTP + TCP
    python bench/lb_instructions.py --baseline DIR       # also an older tree (git archive)
    python bench/lb_instructions.py --modes http --requests 4000

Each proxy runs under ``valgrind --tool=callgrind`` in front of the nginx backends of
``bench/lb_vs_haproxy.py`` (same configs). A client keeps ``--connections`` keep-alive
connections, sends the 100-byte request on each and reads each answer, ``--warmup`` times;
then the counters are zeroed (``callgrind_control -z``), ``--requests`` more requests go
through and the counters are dumped. The figure is user-space instructions per request of the
proxy process: what the code costs, not the system calls (``strace -c`` counts those; both
proxies make the same ones per request in HTTP mode) and not cycles. It is the same from run
to run within about 0.5%, whatever else runs on the machine; wall-clock ratios come from
``bench/lb_vs_haproxy.py`` on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import lb_vs_haproxy as B


def _total(cgfile: Path) -> int:
    out = subprocess.run(["callgrind_annotate", str(cgfile)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"([\d,]+)(?: \(100\.0%\))?\s+PROGRAM TOTALS", out)
    if not m:
        raise RuntimeError(f"no total in callgrind_annotate's output for {cgfile}")
    return int(m.group(1).replace(",", ""))


def measure(who: str, tree: Path, mode: str, requests: int, conns: int, warmup: int) -> float:
    """Instructions per request of one proxy (``who``: haproxy or rumor from ``tree``)."""
    tmp = Path(tempfile.mkdtemp(prefix="lb-instr-"))
    procs = B.Procs()
    cgout = tmp / "callgrind.out"
    try:
        backends = [B.free_port() for _ in range(3)]
        http, tcp, bulk = B.free_port(), B.free_port(), B.free_port()
        procs.start([B.NGINX, "-p", str(tmp), "-c", str(B.nginx_conf(tmp, backends))], None,
                    tmp / "nginx.out")
        for p in backends:
            B.wait_port(p, 60)
        vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={cgout}",
              "--dump-instr=no"]
        if who == "haproxy":
            proc = procs.start(vg + [B.HAPROXY, "-db", "-f",
                                     str(B.haproxy_conf(tmp, backends, http, tcp, bulk))],
                               None, tmp / "proxy.out")
        else:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            proc = procs.start(vg + [sys.executable, "-m", "lb",
                                     str(B.rumor_conf(tmp, backends, http, tcp)), "--uvloop"],
                               None, tmp / "proxy.out", env=env, cwd=str(tree))
        port = http if mode == "http" else tcp
        B.wait_port(port, 300)      # (a Python start under valgrind takes a while)
        req = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
        try:
            size = _answer_size(socks[0], req)

            def one_round() -> None:
                for s in socks:
                    s.sendall(req)
                for s in socks:
                    got = 0
                    while got < size:
                        d = s.recv(65536)
                        if not d:
                            raise RuntimeError("the proxy closed a connection")
                        got += len(d)
                    if got != size:
                        raise RuntimeError(f"answer of {got} bytes, expected {size}")

            for _ in range(max(1, warmup // conns)):
                one_round()
            time.sleep(0.5)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                           capture_output=True)
            rounds = max(1, requests // conns)
            for _ in range(rounds):
                one_round()
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True,
                           capture_output=True)
        finally:
            for s in socks:
                s.close()
        dumps = sorted(tmp.glob("callgrind.out*"), key=lambda f: f.stat().st_mtime)
        return _total(dumps[-1]) / (rounds * conns)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def _answer_size(s: socket.socket, req: bytes) -> int:
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    if not m:
        raise RuntimeError(f"no Content-Length in {head!r}")
    clen = int(m.group(1))
    while len(rest) < clen:
        rest += s.recv(65536)
    return len(head) + 4 + clen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="http,tcp", help="http, tcp or both (comma)")
    ap.add_argument("--requests", type=int, default=2000, help="requests counted per run")
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=500, help="requests before counting")
    ap.add_argument("--baseline", type=Path, help="another tree of Rumor to count too")
    ap.add_argument("--no-haproxy", action="store_true")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            print(f"missing {tool} (Debian: valgrind)", file=sys.stderr)
            return 2
    who: list[tuple[str, Path]] = [("rumor", ROOT)]
    if args.baseline:
        who.append(("baseline", args.baseline.resolve()))
    if not args.no_haproxy:
        who.append(("haproxy", ROOT))
    for mode in args.modes.split(","):
        for name, tree in who:
            n = measure("haproxy" if name == "haproxy" else "rumor", tree, mode,
                        args.requests, args.connections, args.warmup)
            print(f"{mode:5s} {name:9s} {n:10,.0f} instructions per request "
                  f"({tree if name != 'haproxy' else B.HAPROXY})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

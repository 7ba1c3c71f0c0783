"""Gossip benchmark: Rumor agents side by side with real Serf agents, same sizes, same run.

For each N (default 10, 30, 50) and each kind (serf, rumor; the order alternates between sizes
so that neither always runs on a warmer machine), it starts N agents on loopback with the LAN
profile and measures:

- join: every agent but the seed joins the seed at once; time until every agent lists N alive
  members (median agent and slowest agent);
- idle: CPU seconds per agent per minute, RSS per agent, and gossip bytes per node per second,
  over an idle window after convergence;
- detection: ``kill -9`` of one agent; time until each other agent lists it as failed (median
  and max over observers);
- leave: graceful leave of another agent; time until every remaining agent lists it as left.

Detection and leave are repeated ``--trials`` times (a different victim and leaver each time,
observed by the agents still in the cluster) and the median over trials is reported, since one
event per run swings with where the victim sat in everyone's probe order. Joins and leaves are
issued over a control connection of their own, opened before the clock starts (Serf: an RPC
connection; Rumor: a keep-alive HTTP connection), never over the connection that polls members.

The whole run is repeated ``--rounds`` times, Serf and Rumor alternating which goes first,
and the headline of each figure is the median over rounds with min and max
(``bench/report.py``). Every agent, of both kinds, is pinned to one core (``--agent-core``)
and the harness that joins, kills and polls them to the other (``--load-core``).

Bytes are counted by iptables on the loopback of a network namespace the benchmark makes for
itself (the gossip ports of each kind lie in their own range), so nothing is added to the root
namespace. Rumor agents run as whole agents (HTTP API, DNS and LB included), which is what the
RSS target is about, from ``bench/.venv-rumor`` with bytecode caches (``bench/interp.py``);
that venv is built (with pip, which needs the package index) before entering the namespace,
which has no route out. The machine, the load average before and after, and every round's
figures are kept (``bench/runinfo.py``). Run as root:

    python bench/gossip_vs_serf.py                 # N = 10, 30, 50, 60 s idle window
    python bench/gossip_vs_serf.py --sizes 10 --idle 20
    python bench/gossip_vs_serf.py --quick         # smoke run: N = 5, one short round

At size (issue 13), every agent on a loopback address of its own (``--addr-per-agent``; one
namespace with many addresses rather than a namespace per agent: 200 namespaces that all talk
overflow the kernel's shared neighbour table), members polled every second:

    python bench/gossip_vs_serf.py --sizes 200 --addr-per-agent --poll 1 --idle 30 --trials 2 \
        --agent-core '' --load-core ''
    python bench/gossip_vs_serf.py --sizes 200 --addr-per-agent --converge 1,0.25 --poll 1 \
        --agent-core '' --load-core ''      # start 1 s / 0.25 s apart with -retry-join
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import http.client
import json
import os
import secrets
import shutil
import signal
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
from bench.runinfo import Run, metrics_converged, prometheus_values
from bench.serfrpc import SerfRPC

PORTS = {"serf": (20000, 21000), "rumor": (22000, 23000)}   # gossip base, rpc/http base
RUMOR_DNS_BASE = 24000
ADDR_PER_AGENT = False
"""``--addr-per-agent``: every agent on an address of its own (Serf 127.1.x.y, Rumor
127.2.x.y) with the default ports (gossip 7946, Serf RPC 7373, HTTP 8500, DNS 8600), instead of
127.0.0.1 with a port range per kind (which holds 100 agents of each kind)."""
KIND_NET = {"serf": 1, "rumor": 2}
STATUS = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}


# --- agents ---------------------------------------------------------------------------------

AGENT_CORE: str | None = "0"
"""The core every agent runs on (``--agent-core``; None: not pinned)."""


class Agent:
    def __init__(self, kind: str, i: int, workdir: Path, profile: str) -> None:
        self.kind, self.i, self.name = kind, i, f"{kind[0]}{i}"
        if ADDR_PER_AGENT:
            self.ip = f"127.{KIND_NET[kind]}.{i // 250}.{i % 250 + 1}"
            self.gossip_port = 7946
            self.ctl_port = 7373 if kind == "serf" else 8500
            self.dns_port = 8600
        else:
            gbase, cbase = PORTS[kind]
            self.ip = "127.0.0.1"
            self.gossip_port, self.ctl_port = gbase + i, cbase + i
            self.dns_port = RUMOR_DNS_BASE + i
        self.extra: list[str] = []   # more agent arguments (retry-join, config file)
        self.workdir = workdir
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self._rpc: SerfRPC | None = None
        self._http: http.client.HTTPConnection | None = None
        self._ctl: Any = None   # control connection (join/leave), see open_control()

    @property
    def gossip_addr(self) -> str:
        return f"{self.ip}:{self.gossip_port}"

    def start(self) -> None:
        log = open(self.workdir / f"{self.name}.log", "wb")
        if self.kind == "serf":
            argv = ["serf", "agent", "-node", self.name, "-bind", self.gossip_addr,
                    "-rpc-addr", f"{self.ip}:{self.ctl_port}", "-log-level", "warn",
                    "-profile", self.profile, *self.extra]
        else:
            argv = [rumor_python(), "-m", "registry.cli", "agent", "-node", self.name,
                    "-bind", self.ip, "-client", self.ip,
                    "-serf-lan-port", str(self.gossip_port), "-http-port", str(self.ctl_port),
                    "-dns-port", str(self.dns_port),
                    "-data-dir", str(self.workdir / f"{self.name}-data"),
                    "-log-level", "warn", "-profile", self.profile, *self.extra]
        if AGENT_CORE is not None:
            argv = ["taskset", "-c", AGENT_CORE, *argv]     # taskset execs: same pid
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=bench_env())
        log.close()

    def ready(self) -> bool:
        try:
            self.members()
            return True
        except Exception:
            self.close_conn()
            return False

    def close_control(self) -> None:
        if self._ctl is not None:
            self._ctl.close()
        self._ctl = None

    def close_conn(self) -> None:
        if self._rpc:
            self._rpc.close()
        if self._http:
            self._http.close()
        self._rpc = self._http = None

    def members(self) -> dict[str, str]:
        if self.kind == "serf":
            if self._rpc is None:
                self._rpc = SerfRPC(f"{self.ip}:{self.ctl_port}")
            return self._rpc.members()
        body = self._request("GET", "/v1/agent/members")
        return {m["Name"]: STATUS.get(m["Status"], "?") for m in json.loads(body)}

    def _request(self, method: str, path: str) -> bytes:
        for attempt in (1, 2):
            if self._http is None:
                self._http = http.client.HTTPConnection(self.ip, self.ctl_port, timeout=10)
            try:
                self._http.request(method, path)
                resp = self._http.getresponse()
                body = resp.read()
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {body!r}")
                return body
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close_conn()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def open_control(self) -> None:
        """Open the connection joins and leaves go over, apart from the polling one (two
        threads must never share an HTTP connection), before any clock starts."""
        if self.kind == "serf":
            # a join answers once its push-pull is done: 199 at once to one seed take long
            self._ctl = SerfRPC(f"{self.ip}:{self.ctl_port}", timeout=60)
        else:
            self._ctl = http.client.HTTPConnection(self.ip, self.ctl_port, timeout=60)
            self._ctl.request("GET", "/v1/agent/self")
            self._ctl.getresponse().read()

    def _control(self, method: str, path: str) -> None:
        if self._ctl is None:
            self.open_control()
        self._ctl.request(method, path)
        resp = self._ctl.getresponse()
        body = resp.read()
        if resp.status >= 400:
            raise RuntimeError(f"{self.name}: {method} {path}: {resp.status} {body!r}")

    def join(self, addr: str) -> None:
        if self.kind == "serf":
            if self._ctl is None:
                self.open_control()
            self._ctl.join([addr])
        else:
            self._control("PUT", f"/v1/agent/join/{addr}")

    def leave(self) -> None:
        if self.kind == "serf":
            if self._ctl is None:
                self.open_control()
            self._ctl.leave()
        else:
            self._control("PUT", "/v1/agent/leave")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, signalled: bool = False) -> None:
        self.close_conn()
        self.close_control()
        if self.proc and self.proc.poll() is None:
            if not signalled:
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.kill9()


def stop_all(agents: list[Agent]) -> None:
    """SIGTERM every agent first, then wait for each: the graceful leaves overlap instead of
    adding up (200 agents one after the other took minutes)."""
    for a in agents:
        if a.proc and a.proc.poll() is None:
            try:
                os.kill(a.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for a in agents:
        a.stop(signalled=True)


# --- measuring ------------------------------------------------------------------------------

def wait_all(agents: list[Agent], pred: Any, timeout: float, pool: cf.ThreadPoolExecutor,
             interval: float = 0.1, t0: float | None = None) -> dict[str, float]:
    """Poll every agent until ``pred(members)`` holds; return each agent's first time (s),
    measured from ``t0`` (default: now) to the sending of the request that showed it. All
    agents are polled at once (``pool`` has a worker per agent), so one slow answer does not
    delay the others' polls."""
    t0 = time.monotonic() if t0 is None else t0
    done: dict[str, float] = {}
    while len(done) < len(agents) and time.monotonic() - t0 < timeout:
        pending = [a for a in agents if a.name not in done]

        def check(a: Agent) -> tuple[str, bool, float]:
            # the time a member list is credited with is when its request was sent
            sent = time.monotonic() - t0
            try:
                return a.name, bool(pred(a.members())), sent
            except Exception:
                a.close_conn()
                return a.name, False, sent

        for name, ok, sent in pool.map(check, pending):
            if ok:
                done[name] = sent
        time.sleep(interval)
    return done


def bytes_counter(kind: str) -> int:
    """Bytes sent on the gossip ports of ``kind`` (UDP and TCP, both directions of TCP)."""
    out = subprocess.run(["iptables", "-nvxL", f"RB-{kind}"], capture_output=True, text=True,
                         check=True).stdout
    total = 0
    for line in out.splitlines()[2:]:
        parts = line.split()
        if len(parts) > 1 and parts[1].isdigit():
            total += int(parts[1])
    return total


def setup_counters() -> None:
    for kind, (gbase, _) in PORTS.items():
        chain = f"RB-{kind}"
        subprocess.run(["iptables", "-N", chain], check=True)
        subprocess.run(["iptables", "-I", "OUTPUT", "-j", chain], check=True)
        if ADDR_PER_AGENT:
            # one address range per kind, one port: UDP and TCP to a gossip port in the range,
            # and TCP answers from one (whatever address a TCP client leaves from)
            net = f"127.{KIND_NET[kind]}.0.0/16"
            for proto, match in (("udp", ["-d", net, "--dport", "7946"]),
                                 ("tcp", ["-d", net, "--dport", "7946"]),
                                 ("tcp", ["-s", net, "--sport", "7946"])):
                subprocess.run(["iptables", "-A", chain, "-p", proto, *match], check=True)
            continue
        rng = f"{gbase}:{gbase + 99}"
        subprocess.run(["iptables", "-A", chain, "-p", "udp", "--dport", rng], check=True)
        subprocess.run(["iptables", "-A", chain, "-p", "tcp", "--dport", rng], check=True)
        subprocess.run(["iptables", "-A", chain, "-p", "tcp", "--sport", rng], check=True)


POLL = 0.1
"""Seconds between two polls of one agent's member list (``--poll``)."""


def run_one(kind: str, n: int, idle: float, profile: str, workdir: Path,
            trials: int = 3) -> dict[str, Any]:
    agents = [Agent(kind, i, workdir, profile) for i in range(n)]
    pool = cf.ThreadPoolExecutor(max_workers=n)
    result: dict[str, Any] = {"kind": kind, "n": n}
    try:
        for a in agents:
            a.start()
        t0 = time.monotonic()
        while not all(a.ready() for a in agents):
            if time.monotonic() - t0 > max(180, 3 * n):   # whole agents on one pinned core
                raise RuntimeError(f"{kind}: agents did not start")
            time.sleep(0.2)
        names = {a.name for a in agents}
        seed = agents[0]
        for a in agents[1:]:
            a.open_control()

        # join: all at once, from their own threads, with the clock running from the start
        joiners = cf.ThreadPoolExecutor(max_workers=n)
        cpu0 = [a.cpu_seconds() for a in agents]
        t_join = time.monotonic()
        joins = [joiners.submit(a.join, seed.gossip_addr) for a in agents[1:]]
        seen = wait_all(agents, lambda m: sum(1 for k, v in m.items()
                                              if k in names and v == "alive") == n,
                        max(120, n), pool,
                        interval=POLL, t0=t_join)
        # CPU the agents spent from the joins to the last one converging (the members polls
        # included): on one pinned core this is what the join's time is made of
        spent = [a.cpu_seconds() - c for a, c in zip(agents, cpu0, strict=True)]
        result["join_cpu_s_per_agent"] = round(statistics.mean(spent), 4)
        result["join_cpu_s_seed"] = round(spent[0], 3)
        errors = []
        for f in joins:
            try:
                f.result()
            except Exception as e:  # noqa: BLE001 -- a join refused at size is a figure, not a crash
                errors.append(repr(e)[:200])
        joiners.shutdown()
        result["join_errors"] = len(errors)
        if errors:
            print(f"  {len(errors)} join(s) failed, first: {errors[0]}", flush=True)
        times = sorted(seen.values())
        result["join_median"] = statistics.median(times) if times else None
        result["join_max"] = max(times) if len(times) == n else None
        result["join_converged"] = f"{len(times)}/{n}"
        result["join_wall"] = time.monotonic() - t_join

        # idle window
        time.sleep(3)
        b0 = bytes_counter(kind)
        c0 = [a.cpu_seconds() for a in agents]
        time.sleep(idle)
        b1 = bytes_counter(kind)
        c1 = [a.cpu_seconds() for a in agents]
        per_min = [(y - x) * 60 / idle for x, y in zip(c0, c1)]
        result["idle_cpu_s_per_min"] = statistics.median(per_min)
        result["rss_mib"] = statistics.median(a.rss_mib() for a in agents)
        result["bytes_per_node_s"] = (b1 - b0) / n / idle

        # detection of kill -9 and graceful leave, ``trials`` times: victims and leavers are
        # taken from the end of the list; observers are the agents still in the cluster
        present = list(agents)
        det_med: list[float] = []
        det_max: list[float] = []
        lv_med: list[float] = []
        lv_max: list[float] = []
        seen_counts: list[str] = []
        for _ in range(trials):
            if len(present) < 4:
                break
            victim = present.pop()
            victim.kill9()
            seen = wait_all(present, lambda m, v=victim.name: m.get(v) == "failed", 90, pool, POLL)
            t = sorted(seen.values())
            seen_counts.append(f"{len(t)}/{len(present)}")
            if t:
                det_med.append(statistics.median(t))
            if len(t) == len(present):
                det_max.append(t[-1])
            leaver = present.pop()
            t_leave = time.monotonic()
            fut = pool.submit(leaver.leave)
            seen = wait_all(present, lambda m, v=leaver.name: m.get(v) == "left", 60, pool, POLL,
                            t0=t_leave)
            try:
                fut.result(timeout=10)
            except Exception as e:  # noqa: BLE001 -- serf may close the RPC as it shuts down
                print(f"  (leave of {leaver.name}: {e!r})", flush=True)
            t = sorted(seen.values())
            if t:
                lv_med.append(statistics.median(t))
            if len(t) == len(present):
                lv_max.append(t[-1])
            time.sleep(1)
        result["trials"] = len(seen_counts)
        result["detect_median"] = statistics.median(det_med) if det_med else None
        result["detect_max"] = statistics.median(det_max) if det_max else None
        result["detect_trials"] = [round(x, 2) for x in det_med]
        result["detect_seen"] = ", ".join(seen_counts)
        result["leave_median"] = statistics.median(lv_med) if lv_med else None
        result["leave_max"] = statistics.median(lv_max) if lv_max else None
        result["leave_trials"] = [round(x, 2) for x in lv_med]
    finally:
        stop_all(agents)
        pool.shutdown(wait=False, cancel_futures=True)
    return result


# --- convergence of a start pattern (issue 13) ----------------------------------------------

SERVICES = 5
"""Services each Rumor agent registers (config file) in the convergence run: svc-0..svc-4."""


def wait_each(agents: list[Agent], check: Any, timeout: float, pool: cf.ThreadPoolExecutor,
              interval: float, t0: float) -> dict[str, float]:
    """Like :func:`wait_all`, with ``check(agent) -> bool`` instead of a member-list test."""
    done: dict[str, float] = {}
    while len(done) < len(agents) and time.monotonic() - t0 < timeout:
        cycle = time.monotonic()

        def one(a: Agent) -> tuple[str, bool, float]:
            sent = time.monotonic() - t0
            try:
                return a.name, bool(check(a)), sent
            except Exception:  # noqa: BLE001 -- an agent still starting: not converged
                a.close_conn()
                return a.name, False, sent

        for name, ok, sent in pool.map(one, [a for a in agents if a.name not in done]):
            if ok:
                done[name] = sent
        time.sleep(max(0.0, interval - (time.monotonic() - cycle)))
    return done


def converged(a: Agent, names: set[str]) -> bool:
    """Serf: every agent listed alive. Rumor: that, and every instance of every agent passing.
    Rumor is first asked its metrics (a few KB: alive members, nodes, instances, checks by
    status), and only when those add up the member list and the five health answers (200
    entries each) are read and checked: the cheap answer keeps the 1 s polls of 200 agents from
    loading the machine they measure."""
    n = len(names)
    if a.kind == "serf":
        m = a.members()
        return sum(1 for k, v in m.items() if k in names and v == "alive") == n
    metrics = prometheus_values(
        a._request("GET", "/v1/agent/metrics?format=prometheus").decode())
    if not metrics_converged(metrics, n, n * SERVICES):
        return False
    m = a.members()
    if sum(1 for k, v in m.items() if k in names and v == "alive") != n:
        return False
    for k in range(SERVICES):
        body = json.loads(a._request("GET", f"/v1/health/service/svc-{k}?passing"))
        if {e["Node"]["Node"] for e in body} != names:
            return False
    return True


def run_converge(kind: str, n: int, spacing: float, profile: str, workdir: Path,
                 timeout: float) -> dict[str, Any]:
    """Start ``n`` agents ``spacing`` s apart, each (but the first) with ``-retry-join`` to the
    first and ``-retry-interval 1s``, Rumor's with ``SERVICES`` services from a config file;
    then, from the last start on, poll every agent (``POLL`` s) until it has converged."""
    agents = [Agent(kind, i, workdir / f"{kind}-{spacing}", profile) for i in range(n)]
    agents[0].workdir.mkdir(parents=True, exist_ok=True)
    seed = agents[0].gossip_addr
    names = {a.name for a in agents}
    for a in agents:
        if a.i:
            a.extra += ["-retry-join", seed, "-retry-interval", "1s"]
        if kind == "rumor":
            cfg = a.workdir / f"{a.name}.json"
            cfg.write_text(json.dumps({"services": [
                {"Name": f"svc-{k}", "ID": f"{a.name}-svc-{k}", "Port": 1000 + k}
                for k in range(SERVICES)]}))
            a.extra += ["-config-file", str(cfg)]
    pool = cf.ThreadPoolExecutor(max_workers=n)
    result: dict[str, Any] = {"kind": kind, "n": n, "spacing_s": spacing}
    try:
        t_first = time.monotonic()
        for a in agents:
            delay = t_first + a.i * spacing - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            a.start()
        t_last = time.monotonic()
        result["start_span_s"] = t_last - t_first
        result["load_at_last_start"] = Path("/proc/loadavg").read_text().split()[0]
        seen = wait_each(agents, lambda a: converged(a, names), timeout, pool, POLL, t_last)
        times = sorted(seen.values())
        result["converged"] = f"{len(times)}/{n}"
        result["converge_median"] = statistics.median(times) if times else None
        result["converge_max"] = times[-1] if len(times) == n else None
        result["stragglers"] = sorted(names - set(seen))[:20]
        result["exited"] = [a.name for a in agents if a.proc and a.proc.poll() is not None]
        result["rss_mib"] = statistics.median(a.rss_mib() for a in agents
                                              if a.proc and a.proc.poll() is None)
        result["cpu_s_median"] = statistics.median(a.cpu_seconds() for a in agents
                                                   if a.proc and a.proc.poll() is None)
    finally:
        stop_all(agents)
        pool.shutdown(wait=False, cancel_futures=True)
    return result


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.2f}{unit}"
    return f"{v}{unit}"


def ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "n/a"
    return f"{a / b:.2f}x"


def report(results: list[dict[str, Any]]) -> str:
    rows = ["kill -9 and leave rows: median over trials of each trial's median / last observer.",
            f"Rumor agents ran under {rumor_python()}.", "", "| N | metric | Serf | Rumor | Rumor/Serf |", "|---|---|---|---|---|"]
    metrics = [("join_median", "join, median agent (s)"), ("join_max", "join, slowest agent (s)"),
               ("detect_median", "kill -9 seen, median observer (s)"),
               ("detect_max", "kill -9 seen, last observer (s)"),
               ("leave_median", "leave seen, median observer (s)"),
               ("leave_max", "leave seen, last observer (s)"),
               ("idle_cpu_s_per_min", "idle CPU s/agent/min"), ("rss_mib", "RSS MiB/agent"),
               ("bytes_per_node_s", "idle gossip B/s/node")]
    for n in sorted({r["n"] for r in results}):
        s = next((r for r in results if r["n"] == n and r["kind"] == "serf"), {})
        m = next((r for r in results if r["n"] == n and r["kind"] == "rumor"), {})
        for key, label in metrics:
            rows.append(f"| {n} | {label} | {fmt(s.get(key))} | {fmt(m.get(key))} | "
                        f"{ratio(m.get(key), s.get(key))} |")
        rows.append(f"| {n} | converged / detected | {s.get('join_converged')} / "
                    f"{s.get('detect_seen')} | {m.get('join_converged')} / {m.get('detect_seen')} | |")
        rows.append(f"| {n} | kill -9 / leave, per-trial medians (s) | {s.get('detect_trials')} / "
                    f"{s.get('leave_trials')} | {m.get('detect_trials')} / "
                    f"{m.get('leave_trials')} | |")
    return "\n".join(rows)


def median_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (kind, N): the median over rounds of each number, the first round's text."""
    rows = []
    for key in dict.fromkeys((r["kind"], r["n"]) for r in results):
        group = [r for r in results if (r["kind"], r["n"]) == key]
        row = dict(group[0])
        for k, v in row.items():
            if isinstance(v, float) and k != "n":
                xs = [r[k] for r in group if isinstance(r.get(k), float)]
                row[k] = statistics.median(xs) if xs else None
        rows.append(row)
    return rows


def converge_report(results: list[dict[str, Any]]) -> str:
    rows = [("Seconds from the last start until each agent has converged (Serf: lists every "
             f"agent alive; Rumor: that and all {SERVICES} x N instances passing), polled every "
             f"{POLL:g} s."), "",
            "| N | start spacing | metric | Serf | Rumor | Rumor/Serf |", "|---|---|---|---|---|---|"]
    for key in dict.fromkeys((r["n"], r["spacing_s"]) for r in results):
        s = next((r for r in results if (r["n"], r["spacing_s"]) == key and r["kind"] == "serf"), {})
        m = next((r for r in results if (r["n"], r["spacing_s"]) == key and r["kind"] == "rumor"), {})
        for k, label in (("converge_median", "converged, median agent (s)"),
                         ("converge_max", "converged, last agent (s)"),
                         ("rss_mib", "RSS MiB/agent at the end"),
                         ("cpu_s_median", "CPU s/agent, start to end")):
            rows.append(f"| {key[0]} | {key[1]:g} s | {label} | {fmt(s.get(k))} | {fmt(m.get(k))} | "
                        f"{ratio(m.get(k), s.get(k))} |")
        rows.append(f"| {key[0]} | {key[1]:g} s | converged agents | {s.get('converged')} | "
                    f"{m.get('converged')} | |")
    return "\n".join(rows)


def inside_converge(args: argparse.Namespace, kinds: list[str], run: Run, tmp: Path) -> None:
    results = []
    n = int(args.sizes.split(",")[0])
    for rnd in range(args.rounds):
        for idx, spacing in enumerate(float(x) for x in args.converge.split(",")):
            order = kinds if (idx + rnd) % 2 == 0 else list(reversed(kinds))
            for kind in order:
                print(f"== round {rnd + 1} {kind} N={n} started {spacing:g} s apart", flush=True)
                r = run_converge(kind, n, spacing, args.profile, tmp, args.converge_timeout)
                print(json.dumps(r), flush=True)
                run.round(rnd + 1, kind, f"converge N={n} every {spacing:g}s", r)
                results.append(r)
    print(converge_report(results))


def inside(args: argparse.Namespace) -> int:
    global POLL, AGENT_CORE, ADDR_PER_AGENT
    POLL = args.poll
    ADDR_PER_AGENT = args.addr_per_agent
    AGENT_CORE = args.agent_core or None
    if args.load_core:
        os.sched_setaffinity(0, {int(c) for c in args.load_core.split(",")})
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    setup_counters()
    precompile(*(ROOT / d for d in ("gossip", "registry", "dnsserver", "lb")))
    sizes = [int(x) for x in args.sizes.split(",")]
    kinds = [k for k in ("serf", "rumor") if args.only in (None, k)]
    run = Run("gossip_vs_serf" + ("_converge" if args.converge else "_addrs" if
                                  ADDR_PER_AGENT else ""),
              tools=["serf", "taskset"], quick=args.quick,
              out=Path(args.out) if args.out else None, params={
                  "sizes": sizes, "rounds": args.rounds, "idle_s": args.idle,
                  "trials": args.trials, "profile": args.profile, "poll_s": args.poll,
                  "agent_core": args.agent_core, "load_core": args.load_core,
                  "addr_per_agent": ADDR_PER_AGENT, "converge": args.converge,
                  "converge_timeout": args.converge_timeout,
                  "rumor_python": rumor_python()})
    results = []
    ok = False
    try:
        with tempfile.TemporaryDirectory(prefix="rumor-bench-") as tmp:
            if args.converge:
                inside_converge(args, kinds, run, Path(tmp))
                ok = True
                return 0
            for rnd in range(args.rounds):
                for idx, n in enumerate(sizes):
                    order = kinds if (idx + rnd) % 2 == 0 else list(reversed(kinds))
                    for kind in order:
                        print(f"== round {rnd + 1} {kind} N={n}", flush=True)
                        r = run_one(kind, n, args.idle, args.profile, Path(tmp), args.trials)
                        print(json.dumps(r), flush=True)
                        run.round(rnd + 1, kind, f"N={n}", r)
                        results.append(r)
        ok = True
    finally:
        run.close(ok)
    print()
    print(f"medians over {args.rounds} round(s):" if args.rounds > 1 else "")
    print(report(median_rows(results)))
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "gossip_vs_serf.json").write_text(json.dumps(results, indent=1))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,30,50")
    p.add_argument("--idle", type=float, default=60.0, help="idle window in seconds")
    p.add_argument("--profile", default="lan")
    p.add_argument("--only", choices=["serf", "rumor"])
    p.add_argument("--trials", type=int, default=3,
                   help="kill -9 and leave trials per size; medians over trials (default 3)")
    p.add_argument("--poll", type=float, default=0.1,
                   help="seconds between polls of an agent's member list (default 0.1)")
    p.add_argument("--rounds", type=int, default=1,
                   help="times the whole comparison is repeated, Serf and Rumor alternating "
                        "which goes first; report.py takes medians over rounds (default 1; "
                        "`make bench` runs 5)")
    p.add_argument("--agent-core", default="0",
                   help="core every agent (Serf and Rumor) is pinned to; '' for none")
    p.add_argument("--load-core", default="1",
                   help="core(s) the harness (joins, kills, polls) is pinned to; '' for none")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (N = 5, 1 round, 1 trial, 3 s idle), recorded under "
                        "bench/out/quick: checks the bench works, gives no figures")
    p.add_argument("--out", help="directory for the raw rounds (default: "
                   "bench/results/<date>/gossip_vs_serf-<time>)")
    p.add_argument("--addr-per-agent", action="store_true",
                   help="every agent on a loopback address of its own with the default ports "
                        "(for N > 100); see ADDR_PER_AGENT")
    p.add_argument("--converge", default="",
                   help="instead of join/idle/detect: start the first N of --sizes agents this "
                        "many seconds apart (comma-separated list, e.g. 1,0.25), -retry-join to "
                        "the first, and time convergence after the last start")
    p.add_argument("--converge-timeout", type=float, default=300.0,
                   help="seconds after the last start an agent may take to converge")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.trials, args.idle = "5", 1, 1, 3.0
    if args.inside:
        return inside(args)
    if os.geteuid() != 0 or shutil.which("serf") is None:
        print("needs root and the Debian serf package", file=sys.stderr)
        return 1
    # pip needs the package index, which the namespace cannot reach: build the venv here
    python = rumor_python()
    ns = f"rmrbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        argv = ["ip", "netns", "exec", ns, sys.executable, str(Path(__file__).resolve()),
                "--inside", "--sizes", args.sizes, "--idle", str(args.idle),
                "--profile", args.profile, "--poll", str(args.poll),
                "--trials", str(args.trials), "--rounds", str(args.rounds),
                "--agent-core", args.agent_core, "--load-core", args.load_core,
                "--converge", args.converge,
                "--converge-timeout", str(args.converge_timeout)] + (
                    ["--addr-per-agent"] if args.addr_per_agent else []) + (
                    ["--only", args.only] if args.only else []) + (
                    ["--quick"] if args.quick else []) + (
                    ["--out", args.out] if args.out else [])
        inner = subprocess.Popen(argv, env={**os.environ, "RUMOR_BENCH_PYTHON": python})
        try:
            return inner.wait()
        except KeyboardInterrupt:
            # the inner run got the same Ctrl-C (one process group): let it stop its agents
            # (subprocess.call would SIGKILL it at once and leave them running)
            try:
                return inner.wait(60)
            except subprocess.TimeoutExpired:
                inner.kill()
                raise
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    raise SystemExit(main())

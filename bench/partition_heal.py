"""Partition heal, Rumor side by side with Serf (issue 13): five network namespaces, a cut, a heal.

Five hosts (network namespaces, one agent each, on one bridge: ``tests/harness/netns.Lab``, the
harness of ``tests/integration/test_heal_netns.py``, whose agent handling,
``tests/harness/agents.Cluster``, is reused as well). Each trial:

1. five agents of one kind start, the four others joining the first (LAN profile, the default);
   Rumor's each register a service ``web`` (``w<i>``, TTL check passing) and put a key
   ``base/k<i>``, and every agent sees all of it;
2. a random split (one or two hosts against the rest; the same split for Serf and Rumor in a
   trial) is cut with iptables DROP rules on input in the hosts' own namespaces (:func:`cut`);
3. once every agent lists the other side failed, Rumor gets writes on both sides: each side
   registers an ``api`` instance, deregisters one of its ``web`` instances and puts a key
   ``cut/<side>``; the larger side fails one ``web`` TTL check and deletes a ``base/`` key of
   the other side. In a ``kill -9`` trial one agent of the larger side is then killed, started
   again on its data dir and registers a ``db`` instance. The writes are awaited on their own
   side;
4. the cut is healed (rules flushed), and every agent is polled (in parallel, each through
   ``ip netns exec``: curl for Rumor's HTTP API, ``serf members`` for Serf) until it lists every
   other agent alive (**membership heal**) and, for Rumor, until its catalog (nodes, every
   instance with its checks' statuses) and its KV keyspace equal the truth, computed from the
   writes the bench made, not read from an agent (**catalog heal**, **KV heal**).

Times are from the start of the flush of the rules (five hosts, one after the other, ~0.1-0.3 s)
to the sending of the request that showed it; a trial's figure is its slowest agent. The issue's target: catalog heal <= 2x membership heal, <= 30 s.
Serf has no catalog; its trials have no writes and no restart. Run as root from the repository
root, with the dev venv (pytest is imported with the test helpers):

    .venv/bin/python bench/partition_heal.py               # 5 cut trials each, + 1 kill -9 trial
    .venv/bin/python bench/partition_heal.py --quick       # 1 trial each: checks the bench works
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures as cf
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.interp import precompile, rumor_python, terminate
from bench.runinfo import Run
from tests.harness import agents as agents_mod
from tests.harness import netns
from tests.harness.agents import AgentProcess, Cluster, wait_for
from tests.integration.test_registry_cluster import register

POLL = 0.25
"""Seconds between two polls of one agent after the heal."""


# --- Serf in the lab ------------------------------------------------------------------------

class SerfHost:
    """A ``serf agent`` in one namespace, RPC on the namespace's own loopback."""

    def __init__(self, host: netns.Host, name: str, workdir: Path, join: str | None) -> None:
        self.host, self.name = host, name
        argv = ["serf", "agent", "-node", name, "-bind", f"{host.ip}:7946",
                "-rpc-addr", "127.0.0.1:7373", "-log-level", "warn"]
        if join:
            argv += ["-join", join]
        with open(workdir / f"{name}.log", "wb") as log:
            self.proc = host.popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def members(self) -> dict[str, str]:
        p = self.host.run("serf", "members", "-rpc-addr", "127.0.0.1:7373", "-format", "json",
                          check=False, timeout=10)
        if p.returncode != 0:
            raise RuntimeError(p.stderr)
        return {m["name"]: m["status"] for m in json.loads(p.stdout)["members"]}

    def stop(self) -> None:
        terminate(self.proc)


# --- what a Rumor agent shows, and what it should show ---------------------------------------

def catalog_view(a: AgentProcess) -> dict[str, Any]:
    """Nodes, and every instance with its checks' statuses, as ``a`` answers them."""
    services: dict[str, list[Any]] = {}
    for name in sorted(a.http("GET", "/v1/catalog/services")):
        if name == "consul":
            continue
        services[name] = sorted(
            [e["Node"]["Node"], e["Service"]["ID"],
             sorted([c["CheckID"], c["Status"]] for c in e["Checks"])]
            for e in a.http("GET", f"/v1/health/service/{name}"))
    nodes = sorted(n["Node"] for n in a.http("GET", "/v1/catalog/nodes"))
    return {"nodes": nodes, "services": {k: v for k, v in services.items() if v}}


def kv_view(a: AgentProcess) -> dict[str, str]:
    try:
        entries = a.http("GET", "/v1/kv/?recurse")
    except Exception as e:  # an empty keyspace answers 404 (curl --fail-with-body: exit 22)
        if "exit 22" in str(e):
            return {}
        raise
    return {e["Key"]: base64.b64decode(e["Value"] or b"").decode() for e in entries or []}


class Truth:
    """The catalog and keyspace the bench's writes make (built from the writes, not read)."""

    def __init__(self, n: int) -> None:
        self.nodes = [f"node{i}" for i in range(n)]
        # (service, node, id) -> {check id: status}
        self.instances: dict[tuple[str, str, str], dict[str, str]] = {}
        self.kv: dict[str, str] = {}

    def add(self, service: str, node: str, sid: str, checks: dict[str, str]) -> None:
        self.instances[(service, node, sid)] = {"serfHealth": "passing", **checks}

    def remove(self, sid: str) -> None:
        self.instances = {k: v for k, v in self.instances.items() if k[2] != sid}

    def set_check(self, sid: str, check: str, status: str) -> None:
        for k, v in self.instances.items():
            if k[2] == sid:
                v[check] = status

    def view(self) -> dict[str, Any]:
        services: dict[str, list[Any]] = {}
        for (svc, node, sid), checks in self.instances.items():
            services.setdefault(svc, []).append([node, sid, sorted([c, s] for c, s in checks.items())])
        return {"nodes": sorted(self.nodes), "services": {k: sorted(v) for k, v in sorted(services.items())}}


def view_lacks(want: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """What ``got`` (a catalog view) lacks of ``want``: nodes, and instances by service (an
    instance whose checks' statuses differ counts as lacking)."""
    out: dict[str, Any] = {}
    nodes = sorted(set(want["nodes"]) - set(got["nodes"]))
    if nodes:
        out["nodes"] = nodes
    for svc, entries in want["services"].items():
        have = got["services"].get(svc, [])
        lacking = [e for e in entries if e not in have]
        if lacking:
            out[svc] = lacking
    return out


def kv_lacks(want: dict[str, str], view: dict[str, str]) -> dict[str, str]:
    """The keys of ``want`` that ``view`` lacks or holds with another value."""
    return {k: v for k, v in want.items() if view.get(k) != v}


STRAGGLER_LOG = ("reconcil", "push/pull", "refut", "came back", "failed", "join")
"""Substrings of a straggling agent's log lines kept in the round's record."""


def straggler_log(a: AgentProcess, since: float) -> list[str]:
    """The log lines about heals and push-pulls an agent wrote since ``since`` (wall clock)."""
    try:
        lines = a.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(since - 1))
    kept = [ln for ln in lines if ln[:19] >= stamp and any(k in ln for k in STRAGGLER_LOG)]
    return kept[-60:]


def kv_put(a: AgentProcess, key: str, value: str) -> None:
    a.http("PUT", f"/v1/kv/{key}", raw=value.encode())


# --- trials ---------------------------------------------------------------------------------

def split(rng: random.Random, n: int) -> tuple[list[int], list[int]]:
    idx = list(range(n))
    rng.shuffle(idx)
    k = rng.choice([1, 2])
    return sorted(idx[:k]), sorted(idx[k:])


def poll_until(items: list[Any], check: Any, t0: float, timeout: float) -> dict[int, float]:
    """Poll every item in parallel until ``check(item)`` holds; each item's first time, from
    ``t0`` to the sending of the request that showed it."""
    done: dict[int, float] = {}

    def one(i: int) -> None:
        while time.monotonic() - t0 < timeout:
            sent = time.monotonic() - t0
            try:
                if check(items[i]):
                    done[i] = sent
                    return
            except Exception:  # noqa: BLE001,S110 -- an agent not answering yet: not healed
                pass
            time.sleep(POLL)

    with cf.ThreadPoolExecutor(max_workers=len(items)) as pool:
        list(pool.map(one, range(len(items))))
    return done


def cut(lab: netns.Lab, left: list[int], right: list[int]) -> None:
    """A silent cut: every host drops what it *receives* from the other side (rules in the
    harness's fault chain of the host's own namespace, so ``lab.heal()`` flushes them).
    ``Lab.partition`` also drops outgoing packets, which makes ``sendto`` fail with EPERM: Serf
    (memberlist) takes a failed send for a local error, not a failed probe, so the side whose
    sends fail never declares the other side failed; a network partition is silent."""
    for a, b in ((left, right), (right, left)):
        for i in a:
            for j in b:
                lab.hosts[i].run("iptables", "-A", netns.CHAIN, "-s", lab.hosts[j].ip,
                                 "-j", "DROP")


def all_alive(members: dict[str, str], names: list[str]) -> bool:
    return all(members.get(x) == "alive" for x in names)


def trial_serf(lab: netns.Lab, left: list[int], right: list[int], workdir: Path,
               timeout: float) -> dict[str, Any]:
    hosts = lab.hosts
    names = [f"s{i}" for i in range(len(hosts))]
    agents: list[SerfHost] = []
    try:
        for i, h in enumerate(hosts):
            agents.append(SerfHost(h, names[i], workdir, None if i == 0 else f"{hosts[0].ip}:7946"))
            time.sleep(0.3 if i == 0 else 0)
        wait_for(lambda: all(all_alive(a.members(), names) for a in agents), 60, 0.5,
                 what="5 serf members alive")
        cut(lab, left, right)
        t_cut = time.monotonic()
        wait_for(lambda: all(a.members().get(names[j]) == "failed"
                             for i in left for j in right for a in [agents[i]])
                 and all(agents[j].members().get(names[i]) == "failed" for i in left for j in right),
                 90, 0.5, what="the cut seen (failed on both sides)")
        cut_seen = time.monotonic() - t_cut
        t_heal = time.monotonic()   # before the flush: the first hosts heal before the last
        lab.heal()
        seen = poll_until(agents, lambda a: all_alive(a.members(), names), t_heal, timeout)
        return {"kind": "serf", "cut_seen_s": cut_seen, "membership_healed": f"{len(seen)}/5",
                "membership_heal_s": max(seen.values()) if len(seen) == len(agents) else None,
                "membership_heal_median_s": statistics.median(seen.values()) if seen else None}
    finally:
        for a in agents:
            a.stop()
        lab.heal()


def trial_rumor(lab: netns.Lab, left: list[int], right: list[int], workdir: Path,
                timeout: float, restart: bool) -> dict[str, Any]:
    hosts = lab.hosts
    n = len(hosts)
    cluster = Cluster(workdir)
    truth = Truth(n)
    try:
        agents = cluster.start_in_hosts(hosts, extra_args=["-log-level", "info"])
        names = [a.name for a in agents]
        wait_for(lambda: all(all_alive(a.members(), names) for a in agents), 60, 0.5,
                 what="5 members alive")
        for i, a in enumerate(agents):
            register(a, {"Name": "web", "ID": f"w{i}",
                         "Check": {"TTL": "600s", "Status": "passing"}})
            truth.add("web", names[i], f"w{i}", {f"service:w{i}": "passing"})
            kv_put(a, f"base/k{i}", f"v{i}")
            truth.kv[f"base/k{i}"] = f"v{i}"
        wait_for(lambda: all(catalog_view(a) == truth.view() and kv_view(a) == truth.kv
                             for a in agents), 60, 0.5, what="the start catalog everywhere")
        cut(lab, left, right)
        t_cut = time.monotonic()
        wait_for(lambda: all(agents[i].members().get(names[j]) == "failed"
                             and agents[j].members().get(names[i]) == "failed"
                             for i in left for j in right), 90, 0.5,
                 what="the cut seen (failed on both sides)")
        cut_seen = time.monotonic() - t_cut
        # writes on both sides while they cannot talk
        for tag, side in (("L", left), ("R", right)):
            w = agents[side[0]]
            register(w, {"Name": "api", "ID": f"api-{tag}", "Port": 9000})
            truth.add("api", w.name, f"api-{tag}", {})
            d = side[-1]
            agents[d].http("PUT", f"/v1/agent/service/deregister/w{d}")
            truth.remove(f"w{d}")
            kv_put(w, f"cut/{tag}", f"written on {tag}")
            truth.kv[f"cut/{tag}"] = f"written on {tag}"
        if len(right) > 2:
            f = right[1]
            agents[f].http("PUT", f"/v1/agent/check/fail/service:w{f}")
            truth.set_check(f"w{f}", f"service:w{f}", "critical")
        agents[right[0]].http("DELETE", f"/v1/kv/base/k{left[0]}")
        del truth.kv[f"base/k{left[0]}"]
        restarted = None
        if restart:
            victim = agents[right[-1]]   # it deregistered its web: that must survive
            restarted = victim.name
            victim.kill()
            victim.start()
            register(victim, {"Name": "db", "ID": "db-restarted", "Port": 5432})
            truth.add("db", victim.name, "db-restarted", {})
        def seen_own_side(j: int, tag: str) -> bool:
            return (any(e["Service"]["ID"] == f"api-{tag}"
                        for e in agents[j].http("GET", "/v1/health/service/api"))
                    and f"cut/{tag}" in kv_view(agents[j]))

        # the restarted agent is not waited for: whether it caught up with its own side's
        # writes made before its restart, while still cut, is recorded, and the heal's figures
        # say when it has everything
        wait_for(lambda: all(seen_own_side(j, tag)
                             for tag, side in (("L", left), ("R", right)) for j in side
                             if agents[j].name != restarted),
                 60, 0.5, what="the writes seen on their own side")
        restarted_caught_up = None
        if restart:
            t_w = time.monotonic()
            while time.monotonic() - t_w < 20 and not restarted_caught_up:
                restarted_caught_up = seen_own_side(right[-1], "R")
                time.sleep(0.5)
        # what each agent lists just before the heal: across the cut, everyone should be failed
        before = {a.name: a.members() for a in agents}
        t_heal = time.monotonic()   # before the flush: the first hosts heal before the last
        lab.heal()
        wall_heal = time.time()
        want = truth.view()
        last_wrong: dict[str, tuple[float, dict[str, Any]]] = {}

        def catalog_ok(a: AgentProcess) -> bool:
            view = catalog_view(a)
            if view == want:
                return True
            last_wrong[a.name] = (round(time.monotonic() - t_heal, 2), view)
            return False

        last_wrong_kv: dict[str, tuple[float, dict[str, str]]] = {}

        def kv_ok(a: AgentProcess) -> bool:
            view = kv_view(a)
            if view == truth.kv:
                return True
            last_wrong_kv[a.name] = (round(time.monotonic() - t_heal, 2), view)
            return False

        with cf.ThreadPoolExecutor(max_workers=3) as pool:   # the three polls run at once
            fm = pool.submit(poll_until, agents, lambda a: all_alive(a.members(), names),
                             t_heal, timeout)
            fc = pool.submit(poll_until, agents, catalog_ok, t_heal, timeout)
            fk = pool.submit(poll_until, agents, kv_ok, t_heal, timeout)
            members, catalog, kv = fm.result(), fc.result(), fk.result()
        wrong = {a.name: catalog_view(a) for i, a in enumerate(agents) if i not in catalog}

        def slowest(seen: dict[int, float]) -> float | None:
            return max(seen.values()) if len(seen) == n else None

        out = {"kind": "rumor", "restart": restarted, "cut_seen_s": cut_seen,
               "restarted_had_own_side_writes_before_heal": restarted_caught_up,
               "membership_healed": f"{len(members)}/{n}", "membership_heal_s": slowest(members),
               "membership_heal_median_s": statistics.median(members.values()) if members else None,
               "catalog_healed": f"{len(catalog)}/{n}", "catalog_heal_s": slowest(catalog),
               "catalog_heal_median_s": statistics.median(catalog.values()) if catalog else None,
               "kv_healed": f"{len(kv)}/{n}", "kv_heal_s": slowest(kv),
               "alive_across_cut_before_heal": sorted(
                   f"{names[i]} lists {names[j]}" for a, b in ((left, right), (right, left))
                   for i in a for j in b if before[names[i]].get(names[j]) == "alive"),
               "per_agent": {a.name: [round(d.get(i, -1), 2) for d in (members, catalog, kv)]
                             for i, a in enumerate(agents)}}
        # an agent whose catalog or keyspace healed well after its membership did: what it
        # still lacked at its last wrong poll, and its log lines about the heal (issue 13's
        # stragglers)
        stragglers: dict[str, dict[str, Any]] = {}
        for what, healed_at, wrong_at, truth_view, lacks, suffix in (
                ("catalog", catalog, last_wrong, want, view_lacks, ""),
                ("kv", kv, last_wrong_kv, truth.kv, kv_lacks, " (KV)")):
            for i, a in enumerate(agents):
                healed = healed_at.get(i)
                if healed is None or healed <= max(5.0, 2 * members.get(i, 0.0)):
                    continue
                seen_at, view = wrong_at.get(a.name, (None, truth_view))
                stragglers[a.name + suffix] = {
                    f"{what}_heal_s": round(healed, 2),
                    "membership_heal_s": round(members.get(i, -1), 2),
                    "last_wrong_poll_s": seen_at,
                    "lacked": lacks(truth_view, view),
                    "extra": lacks(view, truth_view),
                    "log": straggler_log(a, wall_heal)}
        if stragglers:
            out["stragglers"] = stragglers
        if wrong:
            out["wrong_catalogs"] = wrong
            out["truth"] = want
        return out
    finally:
        cluster.close()
        lab.heal()


def fmt_stats(xs: list[float | None]) -> str:
    ys = [x for x in xs if x is not None]
    if not ys:
        return "n/a"
    miss = f" ({len(xs) - len(ys)} not healed)" if len(ys) < len(xs) else ""
    return f"{statistics.median(ys):.1f} [{min(ys):.1f}-{max(ys):.1f}]{miss}"


def main() -> int:
    global POLL
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=5, help="cut trials per kind (default 5)")
    p.add_argument("--restart-trials", type=int, default=1,
                   help="extra Rumor trials with kill -9 + restart during the cut (default 1)")
    p.add_argument("--timeout", type=float, default=150.0,
                   help="seconds after the heal an agent may take (default 150)")
    p.add_argument("--poll", type=float, default=POLL)
    p.add_argument("--seed", type=int, default=None, help="seed of the random splits")
    p.add_argument("--quick", action="store_true", help="1 trial each, no restart trial")
    p.add_argument("--out", help="directory for the raw rounds")
    args = p.parse_args()
    if args.quick:
        args.trials, args.restart_trials = 1, 0
    POLL = args.poll
    reason = netns.available()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    # Rumor's processes: the bench venv, with bytecode caches (bench/interp.py)
    agents_mod.PYTHON = rumor_python()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    precompile(*(ROOT / d for d in ("gossip", "registry", "dnsserver", "lb")))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run = Run("partition_heal", tools=["serf"], quick=args.quick,
              out=Path(args.out) if args.out else None,
              params={"trials": args.trials, "restart_trials": args.restart_trials,
                      "timeout_s": args.timeout, "poll_s": POLL, "seed": seed,
                      "rumor_python": agents_mod.PYTHON})
    results: list[dict[str, Any]] = []
    ok = False
    try:
        with netns.Lab(5) as lab, tempfile.TemporaryDirectory(prefix="rumor-heal-") as tmp:
            total = args.trials + args.restart_trials
            for t in range(total):
                left, right = split(rng, len(lab.hosts))
                restart = t >= args.trials
                kinds = ["rumor"] if restart else (["serf", "rumor"] if t % 2 == 0
                                                   else ["rumor", "serf"])
                for kind in kinds:
                    print(f"== trial {t + 1} {kind} split {left} | {right}"
                          + (" + kill -9 restart" if restart else ""), flush=True)
                    wd = Path(tmp) / f"{kind}-{t}"
                    wd.mkdir()
                    try:
                        if kind == "serf":
                            r = trial_serf(lab, left, right, wd, args.timeout)
                        else:
                            r = trial_rumor(lab, left, right, wd, args.timeout, restart)
                    except AssertionError as e:   # a step before the heal timed out
                        r = {"kind": kind, "restart": restart or None, "error": str(e)[:300]}
                        for log in sorted(wd.glob("*.log")):   # the agents' logs, kept
                            run.keep(f"trial{t + 1}-{kind}-{log.name}",
                                     "\n".join(log.read_text(errors="replace").splitlines()[-300:]))
                    r.update(trial=t + 1, split=[left, right])
                    print(json.dumps(r), flush=True)
                    run.round(t + 1, kind, "kill-9-restart" if restart else "cut", r)
                    results.append(r)
        ok = True
    finally:
        run.close(ok)
    serf = [r for r in results if r["kind"] == "serf"]
    rumor = [r for r in results if r["kind"] == "rumor" and not r["restart"]]
    rst = [r for r in results if r["kind"] == "rumor" and r["restart"]]
    print("\nslowest agent per trial, seconds after the heal: median [min-max] over trials\n")
    print("| metric | Serf | Rumor (cut) | Rumor (cut + kill -9 restart) |")
    print("|---|---|---|---|")
    for key, label in (("cut_seen_s", "cut seen (both sides list the other failed)"),
                       ("membership_heal_s", "membership heal"),
                       ("catalog_heal_s", "catalog heal"), ("kv_heal_s", "KV heal")):
        print(f"| {label} | {fmt_stats([r.get(key) for r in serf]) if key in ('cut_seen_s', 'membership_heal_s') else '-'} | "
              f"{fmt_stats([r.get(key) for r in rumor])} | {fmt_stats([r.get(key) for r in rst])} |")
    def ratios(rs: list[dict[str, Any]]) -> list[float | None]:
        return [r["catalog_heal_s"] / r["membership_heal_s"]
                if r.get("catalog_heal_s") and r.get("membership_heal_s") else None for r in rs]

    print(f"| catalog heal / membership heal (Rumor, per trial) | - | "
          f"{fmt_stats(ratios(rumor))}x | {fmt_stats(ratios(rst))}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

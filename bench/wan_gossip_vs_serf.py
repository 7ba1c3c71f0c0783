"""Idle WAN gossip cost per member: three Rumor WAN members vs three ``serf agent -profile wan``.

    sudo python bench/wan_gossip_vs_serf.py [--seconds 60]

Each member runs alone in its own network namespace (tests/harness/netns.py), so the bytes and
packets its interface sends (``/sys/class/net/<veth>/statistics``) are its gossip and nothing
else. Rumor: three agents, each the only agent of its own datacenter (dc1..dc3: their LAN pools
have one member and send nothing) and a WAN member (memberlist's WAN profile); Serf: three
agents with ``-profile wan``. Both pools are idle (no events, no queries). Prints bytes/s and
packets/s per member, the mean over the three.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness import netns  # noqa: E402
from tests.harness.agents import AgentProcess, wait_for  # noqa: E402


def tx(h: netns.Host) -> tuple[int, int]:
    out = h.run("cat", f"/sys/class/net/{h.veth}/statistics/tx_bytes",
                f"/sys/class/net/{h.veth}/statistics/tx_packets").stdout.split()
    return int(out[0]), int(out[1])


def measure(hosts: list[netns.Host], seconds: float) -> dict[str, float]:
    before = [tx(h) for h in hosts]
    time.sleep(seconds)
    after = [tx(h) for h in hosts]
    per = [((b2 - b1) / seconds, (p2 - p1) / seconds)
           for (b1, p1), (b2, p2) in zip(before, after, strict=True)]
    return {"bytes_per_s": round(statistics.fmean(b for b, _ in per), 1),
            "packets_per_s": round(statistics.fmean(p for _, p in per), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    out: dict[str, object] = {}
    work = Path("/tmp") / f"rumor-bench-wan-{int(time.time())}"
    work.mkdir()
    with netns.Lab(3) as lab:
        h = lab.hosts
        agents = []
        try:
            for i, host in enumerate(h):
                extra = ["-datacenter", f"dc{i + 1}", "-serf-wan-port", "8302",
                         "-retry-interval", "1s", "-dns-port", "-1"]
                if i:
                    extra += ["-retry-join-wan", f"{h[0].ip}:8302"]
                a = AgentProcess(f"w{i}", work, host=host, extra_args=extra)
                agents.append(a.start())

            def three() -> bool:
                ms = agents[0].http("GET", "/v1/agent/members?wan=1")
                return sum(1 for m in ms if m["Status"] == 1) == 3

            wait_for(three, 60, what="three Rumor WAN members")
            time.sleep(5)
            out["rumor"] = measure(h, args.seconds)
        finally:
            for a in agents:
                a.stop()
    with netns.Lab(3) as lab:
        h = lab.hosts
        procs = []
        try:
            for i, host in enumerate(h):
                argv = ["serf", "agent", "-node", f"s{i}", "-bind", f"{host.ip}:7946",
                        "-profile", "wan", "-rpc-addr", "127.0.0.1:7373"]
                if i:
                    argv += ["-join", f"{h[0].ip}:7946"]
                procs.append(host.popen(argv, stdout=open(work / f"s{i}.log", "wb"),
                                        stderr=open(work / f"s{i}.err", "wb")))
                time.sleep(1.0)

            def serf_three() -> bool:
                r = h[0].run("serf", "members", "-rpc-addr", "127.0.0.1:7373", check=False)
                return r.stdout.count(" alive") == 3

            wait_for(serf_three, 60, what="three serf agents")
            time.sleep(5)
            out["serf"] = measure(h, args.seconds)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=10)
    shutil.rmtree(work, ignore_errors=True)
    out["seconds"] = args.seconds
    out["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Federation costs on loopback: a read across datacenters vs a local one, the LB failover
switch time, and the WAN pool's gossip traffic per WAN member.

    python bench/federation.py [--reads 300] [--switches 5] [--wan-seconds 30]

In-process agents (real sockets, one event loop, like tests/integration/test_federation.py):
dc1 = a1 (WAN member, LB on) + l1 (LAN only); dc2 = b1, b2 (WAN members) + bl (LAN only, runs
``web``). Reads are sequential ``GET /v1/health/service/web`` from one aiohttp client:

* ``local``: l1 reading its own datacenter (an empty answer: web runs in dc2 only);
* ``one_hop``: a1 (a WAN member) reading ``?dc=dc2`` (a1 -> b1/b2);
* ``two_hops``: l1 (LAN only) reading ``?dc=dc2`` (l1 -> a1 -> b1/b2).

The switch time is from the moment dc1's only instance goes into maintenance to the first
request an LB listener with ``Failover: {Datacenters: [dc2]}`` serves from dc2 (and back).
WAN gossip: bytes and packets the WAN pool's memberlist sent per member per second, with the
WAN profile (5 s probes), over ``--wan-seconds``, idle (no events). All five agents share one
process and the machine may be shared: read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from lb.testing import start_http_backend  # noqa: E402
from tests.integration.registry_fixtures import eventually, start_agent, stop_agent  # noqa: E402


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(statistics.median(s) * 1000, 3),
            "p99_ms": round(s[int(len(s) * 0.99) - 1] * 1000, 3),
            "mean_ms": round(statistics.fmean(s) * 1000, 3)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rumor-bench-fed-"))
    fast = {"retry_interval": 0.2}
    agents = []
    back1 = await start_http_backend("in-dc1")
    back2 = await start_http_backend("in-dc2")
    try:
        a1 = await start_agent(tmp, "a1", datacenter="dc1", serf_wan_port=0, enable_lb=True,
                               **fast)
        agents.append(a1)
        assert a1.wan is not None
        wan1 = f"127.0.0.1:{a1.wan.bound_port}"
        l1 = await start_agent(tmp, "l1", datacenter="dc1",
                               start_join=[f"127.0.0.1:{a1.gossip_port}"], **fast)
        b1 = await start_agent(tmp, "b1", datacenter="dc2", serf_wan_port=0,
                               start_join_wan=[wan1], **fast)
        b2 = await start_agent(tmp, "b2", datacenter="dc2", serf_wan_port=0,
                               start_join_wan=[wan1],
                               start_join=[f"127.0.0.1:{b1.gossip_port}"], **fast)
        bl = await start_agent(tmp, "bl", datacenter="dc2",
                               start_join=[f"127.0.0.1:{b1.gossip_port}"], **fast)
        agents += [l1, b1, b2, bl]
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession() as s:
            async def put(a: Any, path: str, body: Any = None) -> Any:
                async with s.put(f"http://127.0.0.1:{a.http_port}{path}", json=body) as r:
                    assert r.status == 200, await r.text()
                    return await r.json(content_type=None)

            await put(bl, "/v1/agent/service/register",
                      {"Name": "web", "Port": back2.port, "Address": "127.0.0.1"})

            async def ok(a: Any, path: str) -> bool:
                async with s.get(f"http://127.0.0.1:{a.http_port}{path}") as r:
                    return r.status == 200 and "bl" in await r.text()

            await eventually(lambda: ok(l1, "/v1/health/service/web?dc=dc2"), timeout=20,
                             what="dc2 from l1")

            async def timed(a: Any, path: str) -> list[float]:
                url = f"http://127.0.0.1:{a.http_port}{path}"
                samples = []
                for _ in range(args.reads):
                    t0 = time.perf_counter()
                    async with s.get(url) as r:
                        await r.read()
                        assert r.status == 200
                    samples.append(time.perf_counter() - t0)
                return samples

            reads = {}
            for _ in range(2):   # interleaved twice, the second pass is kept
                reads = {
                    "local": _ms(await timed(l1, "/v1/health/service/web")),
                    "one_hop": _ms(await timed(a1, "/v1/health/service/web?dc=dc2")),
                    "two_hops": _ms(await timed(l1, "/v1/health/service/web?dc=dc2")),
                }
            out["reads"] = reads

            # LB failover switch time
            await put(a1, "/v1/agent/service/register",
                      {"Name": "web", "Port": back1.port, "Address": "127.0.0.1"})
            info = await put(a1, "/v1/lb/listener", {
                "Name": "web", "Bind": "127.0.0.1:0", "Mode": "http", "Service": "web",
                "Failover": {"Datacenters": ["dc2"]}})
            addr = info["Address"]

            async def served() -> str:
                async with s.get(f"http://{addr}/") as r:
                    return await r.text()

            async def until(text: str) -> float:
                t0 = time.perf_counter()
                while await served() != text:
                    if time.perf_counter() - t0 > 20:
                        raise RuntimeError(f"never switched to {text}")
                return time.perf_counter() - t0

            await until("in-dc1")
            switch, back = [], []
            for _ in range(args.switches):
                await put(a1, "/v1/agent/service/maintenance/web?enable=true")
                switch.append(await until("in-dc2"))
                await put(a1, "/v1/agent/service/maintenance/web?enable=false")
                back.append(await until("in-dc1"))
            out["failover_switch"] = _ms(switch)
            out["failback_switch"] = _ms(back)

            # WAN gossip cost per member (idle)
            pools = [a.wan for a in (a1, b1, b2) if a.wan is not None]

            def sent() -> list[tuple[int, int]]:
                res = []
                for g in pools:
                    c = g.counters
                    res.append((int(c.get("memberlist.bytes_out", 0)),
                                int(c.get("memberlist.packets_out", 0))))
                return res

            before = sent()
            await asyncio.sleep(args.wan_seconds)
            after = sent()
            per = [((b2_ - b1_) / args.wan_seconds, (p2 - p1) / args.wan_seconds)
                   for (b1_, p1), (b2_, p2) in zip(before, after, strict=True)]
            out["wan_gossip_per_member"] = {
                "members": len(pools),
                "bytes_per_s": round(statistics.fmean(x for x, _ in per), 1),
                "packets_per_s": round(statistics.fmean(y for _, y in per), 2)}
        return out
    finally:
        for a in agents:
            await stop_agent(a)
        await back1.close()
        await back2.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--switches", type=int, default=5)
    p.add_argument("--wan-seconds", type=float, default=30.0)
    ns = p.parse_args()
    t0 = time.time()
    res = asyncio.run(main(ns))
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    res["utc"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0))
    print(json.dumps(res, indent=2))

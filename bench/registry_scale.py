"""The catalog at scale: 10,000 instances over 200 nodes in one agent's catalog.

    python bench/registry_scale.py [--nodes 200] [--per-node 50] [--services 100]

Runs a real agent in this process (HTTP API on a free loopback port, gossip on a free port with
no peers) and fills its catalog the way replication does: 199 remote node records, each with
``per-node`` instances and one check per instance, merged from full push-pull states
(``Replicator.merge_app_state``), plus this node's own ``per-node`` registrations. Reports:
RSS growth (and per instance), ``max_loop_stall_ms``: the longest single loop callback while
the state of every remote node is merged (sent as one answer, as a seed answers a joiner),
the size and time of this agent's answer to a joiner, the size of its digest, merge time,
latency of ``/v1/health/service/<name>`` (100 instances) fresh after a change and cached,
``/v1/catalog/services``, and the wake-up latency of a blocking query: from a check status
change arriving as a gossip delta to the blocked client holding the answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import msgpack  # type: ignore[import-untyped]  # noqa: E402

from registry.agent import Agent  # noqa: E402
from registry.catalog import CheckRecord, NodeInfo, ServiceRecord  # noqa: E402
from registry.config import build  # noqa: E402
from registry.replication import MSG_DELTA, enc_check, enc_info, enc_service  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--per-node", type=int, default=50)
    ap.add_argument("--services", type=int, default=100)
    args = ap.parse_args()
    import tempfile

    tmp = tempfile.mkdtemp(prefix="rumor-bench-scale-")
    agent = Agent(build({"node_name": "n000", "data_dir": tmp, "bind_addr": "127.0.0.1",
                         "http_port": 0, "dns_port": -1, "serf_lan_port": 0, "enable_lb": False,
                         "enable_dns": False, "log_level": "warn"}))
    await agent.start()
    reg = agent.registry
    rep = reg.replicator
    assert rep is not None
    base = f"http://127.0.0.1:{agent.http_port}"
    version = int(time.time() * 1e6)
    # gossip would report these members alive; there are no real peers in this bench
    for n in range(1, args.nodes):
        reg._member_status[f"n{n:03d}"] = "alive"  # noqa: SLF001
    # the remote nodes, as the one push-pull answer a joiner gets from its seed (MSG_FULL)
    n_inst = 0
    records = []
    if True:
        for n in range(1, args.nodes):
            name = f"n{n:03d}"
            info = NodeInfo(name=name, node_id=f"00000000-0000-0000-0000-{n:012d}",
                            address=f"10.{n // 250}.{n % 250}.1", datacenter="dc1",
                            meta={"rack": f"r{n % 8}"})
            svcs, chks = [], []
            for i in range(args.per_node):
                svc = f"svc-{(n * args.per_node + i) % args.services}"
                sid = f"{svc}-{n}-{i}"
                svcs.append([version, enc_service(ServiceRecord(
                    id=sid, service=svc, tags=("v1", f"z{i % 3}"), port=20000 + i,
                    meta={"version": "1.0"}))])
                chks.append([version, enc_check(CheckRecord(
                    check_id=f"service:{sid}", name="http", status="passing",
                    output="HTTP GET http://127.0.0.1/health: 200 OK Output: ok",
                    service_id=sid, service_name=svc, type="http", interval="10s",
                    timeout="1s"))])
                n_inst += 1
            records.append([name, version, [version, enc_info(info)], svcs, chks, []])
    import zlib
    state = b"\x01" + zlib.compress(msgpack.packb([2, records]), 6)
    del records
    from gossip.memory import release_free_memory

    release_free_memory()
    rss0 = rss_mib()  # building the state above is not the agent's work
    await asyncio.sleep(0)
    stalls.clear()
    cpu_stalls.clear()
    t0 = time.perf_counter()
    rep.merge_app_state(state)  # as the gossip stream handler calls it: one callback
    await asyncio.sleep(0)
    await rep.idle()
    merge_s = time.perf_counter() - t0
    max_stall = max(stalls, default=0.0)
    max_cpu_stall = max(cpu_stalls, default=0.0)
    # the local node's own registrations, through the real path
    from registry.definitions import parse_service

    for i in range(args.per_node):
        svc = f"svc-{i % args.services}"
        await reg.local.register_service(parse_service(
            {"Name": svc, "ID": f"{svc}-local-{i}", "Port": 30000 + i,
             "Check": {"TTL": "1h", "Status": "passing"}}), persist=False)
        n_inst += 1
    await reg.local.flush()
    del state
    release_free_memory()  # the merge's transient buffers back to the OS, as at start-up
    rss1 = rss_mib()
    t_enc = time.perf_counter()
    full = rep.local_app_state()
    enc_s = time.perf_counter() - t_enc
    t_m, c_m = time.perf_counter(), time.thread_time()
    rep.merge_app_state(full)  # a peer's digest of the same knowledge: parse and compare
    remerge_s, remerge_cpu = time.perf_counter() - t_m, time.thread_time() - c_m
    answer_s, answer_cpu = time.perf_counter(), time.thread_time()
    rep.merge_app_state(_joiner_digest())  # a joiner's digest: the answer is everything
    joiner_answer = rep.local_app_state()
    answer_s, answer_cpu = time.perf_counter() - answer_s, time.thread_time() - answer_cpu
    out: dict[str, object] = {
        "nodes": args.nodes, "instances": n_inst, "services": len(reg.catalog.services()),
        "max_loop_stall_ms": round(max_stall * 1e3, 1),
        "max_loop_stall_cpu_ms": round(max_cpu_stall * 1e3, 1),
        "rss_growth_mib": round(rss1 - rss0, 1), "rss_total_mib": round(rss1, 1),
        "rss_per_instance_bytes": round((rss1 - rss0) * 2**20 / n_inst),
        "answer_to_joiner_bytes": len(joiner_answer),
        "answer_to_joiner_s": round(answer_s, 3),
        "answer_to_joiner_cpu_s": round(answer_cpu, 3),
        "full_state_bytes_compressed": len(full), "full_state_encode_s": round(enc_s, 3),
        "merge_s": round(merge_s, 3), "remerge_identical_s": round(remerge_s, 3),
        "remerge_identical_cpu_s": round(remerge_cpu, 3),
    }
    async with aiohttp.ClientSession() as s:
        async def get(path: str) -> tuple[float, bytes, dict[str, str]]:
            t = time.perf_counter()
            async with s.get(base + path) as r:
                body = await r.read()
                return time.perf_counter() - t, body, dict(r.headers)

        name = "svc-7"
        _, body, _ = await get(f"/v1/health/service/{name}")
        out["instances_in_query"] = len(json.loads(body))
        fresh, cached = [], []
        target_node = "n001"
        target = next(i for i in reg.catalog.entries(name) if i.node != "n000")
        target_node, target_sid = target.node, target.service_id
        seq = version
        for k in range(40):
            seq += 1
            status = "warning" if k % 2 == 0 else "passing"
            rep.notify_app_message(_check_delta(target_node, target_sid, name, status, seq))
            dt, _, _ = await get(f"/v1/health/service/{name}")
            fresh.append(dt)
            dt, _, _ = await get(f"/v1/health/service/{name}")
            cached.append(dt)
        out["health_query_fresh_ms_p50"] = round(statistics.median(fresh) * 1e3, 2)
        out["health_query_fresh_ms_p99"] = round(pct(fresh, 0.99) * 1e3, 2)
        out["health_query_cached_ms_p50"] = round(statistics.median(cached) * 1e3, 2)
        t = []
        for _ in range(10):
            seq += 1
            rep.notify_app_message(_service_delta(target_node, f"extra-{seq}", seq))
            dt, body, _ = await get("/v1/catalog/services")
            t.append(dt)
        out["catalog_services_fresh_ms_p50"] = round(statistics.median(t) * 1e3, 2)
        # blocking query wake-up: change arrives as a gossip delta -> client has the answer
        wakes = []
        for k in range(40):
            _, _, h = await get(f"/v1/health/service/{name}")
            idx = h["X-Consul-Index"]
            task = asyncio.create_task(get(f"/v1/health/service/{name}?index={idx}&wait=30s"))
            await asyncio.sleep(0.02)
            seq += 1
            t_change = time.perf_counter()
            rep.notify_app_message(_check_delta(target_node, target_sid, name,
                                                "warning" if k % 2 == 0 else "passing", seq))
            await task
            wakes.append(time.perf_counter() - t_change)
        out["blocking_wake_ms_p50"] = round(statistics.median(wakes) * 1e3, 2)
        out["blocking_wake_ms_p99"] = round(pct(wakes, 0.99) * 1e3, 2)
        # unrelated watchers are not woken: 200 watchers on other services, one change
        others = [asyncio.create_task(get(f"/v1/health/service/svc-{50 + j % 40}?index="
                                          f"{reg.catalog.key_index(f'svc:svc-{50 + j % 40}')}&wait=2s"))
                  for j in range(200)]
        await asyncio.sleep(0.2)
        before = reg.catalog.counters["wakeups"]
        seq += 1
        rep.notify_app_message(_check_delta(target_node, target_sid, name, "critical", seq))
        await asyncio.sleep(0.05)
        out["wakeups_of_unrelated_watchers"] = reg.catalog.counters["wakeups"] - before
        await asyncio.gather(*others)
    await agent._close_everything(leave=False)  # noqa: SLF001
    print(json.dumps(out, indent=1))


def _joiner_digest() -> bytes:
    return b"\x00" + msgpack.packb([3, [["joiner", 1, 0]], []])


def _check_delta(node: str, sid: str, svc: str, status: str, v: int) -> bytes:
    rec = CheckRecord(check_id=f"service:{sid}", name="http", status=status, output="x",
                      service_id=sid, service_name=svc, type="http", interval="10s", timeout="1s")
    return msgpack.packb([MSG_DELTA, node, "C", f"service:{sid}", v, v - 1, enc_check(rec)])


def _service_delta(node: str, sid: str, v: int) -> bytes:
    rec = ServiceRecord(id=sid, service=sid, port=1)
    return msgpack.packb([MSG_DELTA, node, "S", sid, v, v - 1, enc_service(rec)])


stalls: list[float] = []
"""Duration of every loop callback (task steps included) since the last clear()."""
cpu_stalls: list[float] = []
"""The same, in CPU time of the loop's thread (on a loaded machine the wall time of a
callback includes the time the process waited for a core)."""


def _time_callbacks() -> None:
    """Time each callback the stdlib loop runs (``Handle._run``): the longest one is the
    longest stall any timer, probe or HTTP answer could have waited behind. uvloop runs its
    callbacks in C with no such hook, so this bench runs on the stdlib loop."""
    run = asyncio.events.Handle._run
    clock, cpu = time.perf_counter, time.thread_time

    def timed(self: asyncio.Handle) -> None:
        t, c = clock(), cpu()
        try:
            run(self)
        finally:
            stalls.append(clock() - t)
            cpu_stalls.append(cpu() - c)

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]


if __name__ == "__main__":
    _time_callbacks()
    asyncio.run(main())

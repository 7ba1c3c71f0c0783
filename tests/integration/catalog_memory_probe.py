"""Fill a catalog with NODES x PER instances (one check each) the way a joining agent does,
through ``Replicator.merge_app_state``, and print the RSS growth per instance as JSON.

Run as a script in its own process (tests/integration/test_catalog_memory.py), so that
nothing else in the heap blurs the figure."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgpack

from registry.catalog import CheckRecord, NodeInfo, ServiceRecord
from registry.config import build
from registry.replication import enc_check, enc_info, enc_service
from registry.service import Registry, prepare_registry
from tests.unit.registry.fakebus import Bus


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def states(nodes: int, per: int) -> list[bytes]:
    version = 1_733_500_000_000_000
    out = []
    for first in range(0, nodes, 100):
        records = []
        for n in range(first, min(first + 100, nodes)):
            name = f"node-{n:05d}"
            svcs, chks = [], []
            for i in range(per):
                svc = f"svc-{(n * per + i) % 100}"
                sid = f"{svc}-{n}-{i}"
                svcs.append([version + i, enc_service(ServiceRecord(
                    id=sid, service=svc, tags=("v1", f"z{i % 3}"), port=20000 + i,
                    meta={"version": "1.0"}))])
                chks.append([version + per + i, enc_check(CheckRecord(
                    check_id=f"service:{sid}", name=f"Service '{svc}' check", status="passing",
                    # unique per check, as real outputs are
                    output=f"HTTP GET http://10.{n // 250}.{n % 250}.1:{20000 + i}/health: "
                           "200 OK Output: ok",
                    service_id=sid, service_name=svc, type="http", interval="10s",
                    timeout="1s"))])
            info = NodeInfo(name=name, node_id=f"00000000-0000-0000-0000-{n:012d}",
                            address=f"10.{n // 250}.{n % 250}.1", meta={"rack": f"r{n % 8}"})
            records.append([name, version + 2 * per, [version, enc_info(info)], svcs, chks, []])
        out.append(b"\x01" + zlib.compress(msgpack.packb([2, records]), 6))
    return out


async def main(nodes: int, per: int) -> None:
    bus = Bus(seed=1)
    cfg = build({"dev": True, "node_name": "me", "bind_addr": "127.0.0.1"})
    reg = Registry(cfg, None, bus.add("me"), prepare_registry(cfg))
    await reg.start()
    rep = reg.replicator
    assert rep is not None
    for n in range(nodes):
        reg._member_status[f"node-{n:05d}"] = "alive"
    pending = states(nodes, per)
    gc.collect()
    before = rss()
    while pending:
        rep.merge_app_state(pending.pop(0))
        await rep.idle()
    gc.collect()
    after = rss()
    n = nodes * per
    stats = reg.catalog.stats()
    assert stats["instances"] == n and stats["checks"] == n, stats
    # the catalog still answers: every instance of one service, with its check
    web = reg.catalog.instances("svc-7")
    print(json.dumps({"instances": n, "rss_growth_bytes": after - before,
                      "bytes_per_instance": round((after - before) / n),
                      "svc7_instances": len(web),
                      "svc7_checks": sum(len(i.checks) for i in web)}))
    await reg.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))

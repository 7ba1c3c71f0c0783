#!/usr/bin/env python3
"""Push >= 100,000 random and mutated DNS packets through the answer path and a live socket.

Asserts: no exception out of the resolver (no ``internal_error`` drop), every response is
well formed and echoes the ID, the server still answers a good query afterwards, and memory
stays bounded (RSS growth under ``--max-rss-growth-mib``; the caches are capped). Prints counts.

    python bench/dns_fuzz.py                       # 100k through Resolver.handle + 100k over UDP
    python bench/dns_fuzz.py --packets 20000       # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dns.asyncquery
import dns.message

from dnsserver import DNSConfig, DNSServer, Forward, MemoryView, Resolver

NAMES = ["web.service.rumor.", "_web._tcp.rumor.", "n1.node.dc1.rumor.", "big.service.rumor.",
         "0a000001.addr.rumor.", "rumor.", "1.0.0.10.in-addr.arpa.", "v1.web.service.rumor.",
         "x.example."]
TYPES = ["A", "AAAA", "SRV", "TXT", "ANY", "PTR", "SOA", "NS", "AXFR", "MX", "HTTPS"]


def view() -> MemoryView:
    v = MemoryView()
    for i in range(30):
        v.add_node(f"n{i}", f"10.0.0.{i + 1}", meta={"rack": f"r{i % 3}"})
        v.register(f"n{i}", "web", port=8000 + i, tags=["v1"] if i % 2 else ["v2"])
        v.register(f"n{i}", "big", port=9000 + i)
    return v


def packets(rng: random.Random, count: int) -> list[bytes]:
    base = []
    for name in NAMES:
        for t in TYPES:
            for edns in (False, 0):
                q = dns.message.make_query(name, t, use_edns=edns, payload=rng.choice(
                    [512, 1232, 4096, 100, 65535]), want_dnssec=rng.random() < 0.3)
                base.append(q.to_wire())
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(0, 600)))
            continue
        p = bytearray(rng.choice(base))
        if kind == 1:                               # random case (0x20) and a new ID
            p[0:2] = rng.randbytes(2)
            for j in range(12, len(p)):
                if 97 <= p[j] <= 122 and rng.random() < 0.5:
                    p[j] -= 32
        else:
            for _ in range(rng.randrange(1, 8)):
                op = rng.randrange(5)
                if op == 0 and p:
                    p[rng.randrange(len(p))] = rng.randrange(256)
                elif op == 1:
                    del p[rng.randrange(len(p) + 1):]
                elif op == 2:
                    at = rng.randrange(len(p) + 1)
                    p[at:at] = rng.randbytes(rng.randrange(1, 30))
                elif op == 3 and len(p) > 14:
                    at = rng.randrange(12, len(p) - 1)
                    p[at:at + 2] = bytes([0xC0 | rng.randrange(64), rng.randrange(256)])
                else:
                    p[4:12] = rng.randbytes(8)      # counts
        out.append(bytes(p))
    return out


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_resolver(pkts: list[bytes]) -> dict[str, int]:
    res = Resolver(DNSConfig(recursors=("127.0.0.1:9",), cache_max_entries=2000), view())
    counts = {"answered": 0, "dropped": 0, "forward": 0}
    for p in pkts:
        for tcp in (False, True):
            out = res.handle(p, tcp)
            if out is None:
                counts["dropped"] += 1
            elif isinstance(out, Forward):
                counts["forward"] += 1
            else:
                assert out[:2] == p[:2] and out[2] & 0x80, p
                if not tcp:
                    assert len(out) <= 4096
                dns.message.from_wire(out)
                counts["answered"] += 1
    snap = res.counters.snapshot()
    assert "internal_error" not in snap["drops"], snap["drops"]
    counts["cache_entries"] = len(res._cache)
    counts["drop_reasons"] = len(snap["drops"])
    return counts


async def run_socket(pkts: list[bytes]) -> dict[str, int]:
    server = DNSServer(DNSConfig(port=0, cache_max_entries=2000), view())
    await server.start()
    got = 0
    loop = asyncio.get_running_loop()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            nonlocal got
            got += 1

    tr, _ = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1",
                                                                    server.udp_port))
    try:
        for i, p in enumerate(pkts):
            tr.sendto(p)
            if i % 200 == 199:
                await asyncio.sleep(0.002)         # let the server keep up (no kernel drops)
        good = dns.message.make_query("web.service.rumor.", "A", use_edns=0, payload=4096)
        r = await dns.asyncquery.udp(good, "127.0.0.1", port=server.udp_port, timeout=5)
        assert len(r.answer[0]) == 30
        snap = server.counters.snapshot()
        assert "internal_error" not in snap["drops"], snap["drops"]
        return {"sent": len(pkts), "responses": got, "reached_server": snap["queries"]
                + sum(snap["drops"].values()), "queries": snap["queries"],
                "drops": sum(snap["drops"].values())}
    finally:
        tr.close()
        await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "1")))
    ap.add_argument("--max-rss-growth-mib", type=float, default=64)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pkts = packets(rng, a.packets)
    rss0 = rss_mib()
    t0 = time.monotonic()
    c1 = run_resolver(pkts)
    t1 = time.monotonic()
    print(f"resolver: {len(pkts)} packets x (udp, tcp) in {t1 - t0:.1f}s: {c1}", flush=True)
    try:
        import uvloop
        c2 = uvloop.run(run_socket(pkts))
    except ImportError:
        c2 = asyncio.run(run_socket(pkts))
    print(f"socket:   {c2} in {time.monotonic() - t1:.1f}s", flush=True)
    growth = rss_mib() - rss0
    print(f"rss growth {growth:.1f} MiB (limit {a.max_rss_growth_mib:g})")
    assert growth < a.max_rss_growth_mib, "memory not bounded"
    print("OK: no crash, responses well formed, memory bounded")


if __name__ == "__main__":
    main()

"""CPU of a join storm per node, on the simulator: N whole nodes (memberlist + Serf + the
registry) where every node but the first joins the first at once, as bench/gossip_vs_serf.py's
join does with real agents.

    python -m bench.join_storm_sim --nodes 50 [--services 5] [--profile FILE]

Prints the virtual seconds until every node lists every other alive (and holds every node's
services, with ``--services``) and the process's CPU
over the storm (all nodes run in this one process, so CPU / N is one node's share; what a real
agent adds, sockets, the HTTP API being polled, logging, is not in it). ``--services K``
registers K services on every node before the storm (as bench/gossip_vs_serf.py's
``--converge`` does), so their records spread with it. ``--profile`` keeps a
cProfile of the storm (``python -m pstats FILE``); the profiler roughly doubles the CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossip import MemberlistConfig, SerfConfig
from gossip.sim import Simulator
from registry.config import build
from registry.definitions import parse_service
from registry.service import Registry, prepare_registry


async def storm(n: int, services: int, profile: str | None) -> None:
    sim = Simulator(seed=1, record_events=False)
    names = [f"r{i}" for i in range(n)]
    regs: list[Registry] = []
    for name in names:
        sim.add_gossip_node(name, SerfConfig.local(name), MemberlistConfig.lan(name=name))
        cfg = build({"dev": True, "node_name": name, "bind_addr": "127.0.0.1"})
        reg = Registry(cfg, None, sim.facade(name), prepare_registry(cfg))
        await reg.start()
        for k in range(services):
            await reg.local.register_service(parse_service(
                {"Name": f"svc-{k}", "ID": f"{name}-svc-{k}", "Port": 1000 + k}))
        regs.append(reg)
    sim.run_for(1.0)

    def converged() -> bool:
        """Every node lists every other alive and holds every node's services."""
        return (all(sim.nodes[x].core.serf.alive_count() == n for x in names)
                and all(r.catalog.stats()["instances"] == n * services for r in regs))

    prof = cProfile.Profile() if profile else None
    cpu0, v0 = time.process_time(), sim.now
    if prof is not None:
        prof.enable()
    for name in names[1:]:
        sim.join(name, [names[0]])
    while not converged() and sim.now - v0 < 60:
        sim.run_for(0.05)
        for _ in range(3):
            await asyncio.sleep(0)   # the registries' merge workers
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile)
    cpu = time.process_time() - cpu0
    print(f"N={n}: {'converged' if converged() else 'NOT converged'} in "
          f"{sim.now - v0:.2f} virtual s; CPU {cpu:.2f} s, {cpu / n * 1e3:.1f} ms per node"
          + (" (profiled)" if prof is not None else ""))
    for reg in regs:
        await reg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--services", type=int, default=0, help="services per node (default 0)")
    ap.add_argument("--profile", help="write a cProfile of the storm here")
    args = ap.parse_args()
    asyncio.run(storm(args.nodes, args.services, args.profile))


if __name__ == "__main__":
    main()

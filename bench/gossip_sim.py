"""Simulate memberlist clusters of growing size in one process and show how they scale.

    python -m bench.gossip_sim                 # N = 100, 300, 1000 (about a minute)
    python -m bench.gossip_sim --sizes 50 3000 --detect --seed 2

For each N the simulator (gossip/sim.py: virtual clock, fake network with 0.5-1 ms latency)
builds a LAN-configured cluster with pre-seeded membership and reports:

* dissemination: simulated seconds from one node's meta update (a new alive) until every node
  has it. SWIM's epidemic spread should grow like log N.
* idle packets/node/s: UDP packets each node sends while nothing changes (one probe + one ack
  per probe interval on average: should stay flat in N).
* busy packets/node/s: the same during the dissemination window.
* detection (with --detect): seconds from stopping a node until every other node has it dead:
  probe interval + Lifeguard suspicion timeout (min = 4 s x log10 N, shortened by confirmations).

Compression and periodic push/pull are switched off: neither changes UDP dissemination, and a
1000-entry push/pull per node would dominate the run time. Real Serf's figures for comparison
are in shared/reference/measuring.md (N = 10/30/50 on loopback).
"""

from __future__ import annotations

import argparse
import math
import sys

from gossip.sim import measure_dissemination


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--detect", action="store_true", help="also measure failure detection")
    ap.add_argument("--no-eager", action="store_true",
                    help="memberlist's timing: news waits for the next regular gossip round")
    args = ap.parse_args(argv)
    config = None
    if args.no_eager:
        from gossip.config import MemberlistConfig
        config = MemberlistConfig.lan(name="x", enable_compression=False, push_pull_interval=0.0,
                                       eager_gossip=False)
    print(f"{'N':>6} {'dissem s':>9} {'/log10N':>8} {'idle pkt/node/s':>16} "
          f"{'busy pkt/node/s':>16} {'idle B/node/s':>14} {'detect s':>9} {'wall s':>7}")
    for n in args.sizes:
        r = measure_dissemination(n, seed=args.seed, detect=args.detect, config=config)
        det = f"{r.detection_time:9.2f}" if r.detection_time is not None else f"{'-':>9}"
        print(f"{n:>6} {r.dissemination_time:9.3f} {r.dissemination_time / math.log10(n):8.3f} "
              f"{r.idle_packets_per_node_s:16.2f} {r.busy_packets_per_node_s:16.2f} "
              f"{r.bytes_per_node_s:14.1f} {det} {r.wall_seconds:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

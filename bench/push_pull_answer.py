"""The seed's CPU per push/pull answer in a join storm (issue 13).

    python -m bench.push_pull_answer 200 1000

A seed (memberlist + Serf, as the agent runs them) knowing N members answers 15 push/pulls
from an already-known member (a ``-retry-join`` retry: nothing in the seed's view changes, so
its encoded answer can be reused) and 15 from new joiners (each adds a member: the answer is
built afresh). Each answer (merge, then build, compress) is timed in ``time.thread_time``
(CPU of this thread), median of the last 14, in ms. No application (registry) state.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from gossip import MemberlistConfig, codec
from gossip.core import GossipCore
from gossip.messages import Alive
from gossip.serf_config import SerfConfig


def _core(name: str, port: int, now: float) -> GossipCore:
    cfg = MemberlistConfig.lan(name=name, bind_addr="127.0.0.1", bind_port=port)
    return GossipCore(cfg, SerfConfig(node_name=name), now=now, rng=random.Random(port))


def measure(n: int, r: int = 15) -> dict[str, float]:
    now = 1000.0
    seed = _core("seed", 1, now)
    ml = seed.memberlist
    for i in range(n):
        ml._alive_node(Alive(incarnation=1, node=f"n{i}", addr=f"10.0.{i // 250}.{i % 250 + 1}",
                             port=7946, meta=ml.local_node.meta, vsn=ml.config.vsn), now)
    ml.broadcasts.reset()
    while seed.next_event() is not None:
        pass
    seed.packets_to_send()
    out: dict[str, float] = {"members": n}
    for label, fresh in (("retry_ms", False), ("new_joiner_ms", True)):
        ts = []
        for j in range(r):
            port = 100 + j if fresh else 99
            p = _core(f"joiner{j}" if fresh else "retrier", port, now)
            p.push_pull_with(("127.0.0.1", 1), now)
            while not (reqs := p.streams_to_open()):
                p.handle_timer(now)
            msg = codec.decode_stream(reqs[-1].data, None, lazy=True)
            t = time.thread_time()
            seed.handle_stream(msg, ("127.0.0.1", port), now)
            while seed.memberlist.working:
                seed.handle_timer(now)
            ts.append(time.thread_time() - t)
            seed.answers_ready()
            seed.packets_to_send()
            while seed.next_event() is not None:
                pass
        out[label] = round(statistics.median(ts[1:]) * 1000, 2)
    out["reused"] = seed.memberlist.counters.snapshot().get("push_pull_reused", 0)
    return out


def main() -> None:
    for n in map(int, sys.argv[1:] or ["200", "1000"]):
        print(measure(n))


if __name__ == "__main__":
    main()

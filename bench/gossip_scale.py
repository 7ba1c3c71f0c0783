"""The gossip side of a push/pull at thousands of members, callback by callback.

    python -m bench.gossip_scale --members 1000 2000 5000 [--rounds 7]

Two whole gossip cores (memberlist + Serf, as the agent runs them), each knowing the same N
members, do push/pulls with each other as the asyncio transport drives them; every callback
the transport would run is timed in CPU seconds of this thread (``time.thread_time``, so
waiting for a loaded machine's cores does not count):

* ``start``: the initiator builds and compresses its push/pull (``push_pull_with``, then the
  slices of that work from the core's timer);
* ``decode_request``: the answering side's lazy ``StreamReader`` reads it (inflates it and
  finds where each node state starts; the states are decoded by the core, in slices);
* ``answer``: ``handle_stream`` and the slices after it decode and merge it (memberlist,
  Serf), then build the answer;
* ``decode_answer`` and ``result``: the same on the initiator's side.

The core does a push/pull in slices of ``push_pull_slice`` node states, one slice per
callback (gossip/memberlist.py, "Push/pulls in slices"); every slice is timed as its own
callback, as the transport runs it. Per phase: ``_ms`` the longest callback (median over the
warm rounds), ``_max_ms`` the longest of all warm rounds, ``_cold_ms`` the first round's,
``_callbacks`` how many callbacks the phase took, ``_total_ms`` their sum.

The first round is *cold* (nothing cached: every member state is new to the decode cache and
unencoded in the encode cache, as on the first push/pull after a join); the others are
*warm*, the steady state of a pool (medians and maxima reported). One JSON line per N, with
``longest_callback_ms`` = the longest warm callback. No application (registry) state rides
along: bench/registry_scale.py measures the catalog's share.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from gossip import MemberlistConfig, codec
from gossip.core import GossipCore
from gossip.memberlist import PendingAnswer
from gossip.messages import Alive
from gossip.serf_config import SerfConfig


def _core(name: str, port: int, now: float) -> GossipCore:
    cfg = MemberlistConfig.lan(name=name, bind_addr="127.0.0.1", bind_port=port)
    return GossipCore(cfg, SerfConfig(node_name=name), now=now, rng=random.Random(port))


def measure(n: int, rounds: int = 7) -> dict[str, Any]:
    now = 1000.0
    a, b = _core("a", 1, now), _core("b", 2, now)
    meta = a.memberlist.local_node.meta
    vsn = a.memberlist.config.vsn
    for core in (a, b):
        for i in range(n):
            core.memberlist._alive_node(Alive(
                incarnation=1, node=f"n{i}", addr=f"10.{i // 62500}.{(i // 250) % 250}.{i % 250 + 1}",
                port=7946, meta=meta, vsn=vsn), now)
        core.memberlist.broadcasts.reset()
        while core.next_event() is not None:
            pass
        core.packets_to_send()
    gc.collect()
    gc.freeze()  # as the agent does after big merges: a full collection is not what we time
    phases = ("start", "decode_request", "answer", "decode_answer", "result")
    times: dict[str, list[list[float]]] = {p: [] for p in phases}
    size = 0

    def timed(phase: str, fn: Callable[[], Any], core: GossipCore | None = None) -> Any:
        """Time ``fn`` and then, as the driver's timer would, every further slice of
        ``core``'s push/pull work, each as its own callback."""
        ts: list[float] = []
        t = time.thread_time()
        out = fn()
        ts.append(time.thread_time() - t)
        while core is not None and core.memberlist.working:
            t = time.thread_time()
            core.handle_timer(now)
            ts.append(time.thread_time() - t)
        times[phase].append(ts)
        return out

    limits = a.memberlist.limits
    for _ in range(rounds):
        timed("start", lambda: b.push_pull_with(("127.0.0.1", 1), now), b)
        req = b.streams_to_open()[-1]
        size = len(req.data)
        data, sid = req.data, req.id
        msg = timed("decode_request",
                    lambda d=data: codec.decode_stream(d, None, limits=limits, lazy=True))
        ans = timed("answer", lambda m=msg: a.handle_stream(m, ("127.0.0.1", 2), now), a)
        if isinstance(ans, PendingAnswer):
            ans = dict(a.answers_ready())[ans.id]
        assert isinstance(ans, bytes)
        reply = timed("decode_answer",
                      lambda x=ans: codec.decode_stream(x, None, limits=limits, lazy=True))
        timed("result", lambda r=reply, i=sid: b.stream_result(i, r, None, now), b)
    gc.unfreeze()
    out: dict[str, Any] = {"members": n, "push_pull_bytes": size,
                           "slice_states": a.memberlist.config.push_pull_slice}
    for p in phases:
        v = times[p]
        longest = [max(ts) for ts in v]
        out[f"{p}_cold_ms"] = round(longest[0] * 1000, 1)
        out[f"{p}_ms"] = round(statistics.median(longest[1:]) * 1000, 1)
        out[f"{p}_max_ms"] = round(max(longest[1:]) * 1000, 1)
        out[f"{p}_callbacks"] = len(v[-1])
        out[f"{p}_total_cold_ms"] = round(sum(v[0]) * 1000, 1)
        out[f"{p}_total_ms"] = round(statistics.median(sum(ts) for ts in v[1:]) * 1000, 1)
    out["longest_callback_ms"] = max(out[f"{p}_max_ms"] for p in phases)
    out["longest_cold_callback_ms"] = max(out[f"{p}_cold_ms"] for p in phases)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, nargs="+", default=[1000, 2000, 5000])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    for n in args.members:
        print(json.dumps(measure(n, args.rounds)), flush=True)


if __name__ == "__main__":
    main()

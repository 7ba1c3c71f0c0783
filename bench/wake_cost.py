"""What one wake-up of an idle event loop costs in CPU on this machine.

An agent that does nothing still wakes: gossip rounds, probes, the loop-lag sampler, packets
from peers. Each wake-up is paid in CPU whatever the callback does (the kernel's switch into
the process, the loop's iteration, caches refilled after the sleep), and on a virtual machine
that price can exceed the callback's own work many times over. This measures it: a child
process pinned to ``--core`` arms a timer every ``--interval`` seconds with an empty callback,
``--wakes`` times, and reports its own CPU (``time.process_time``) per wake-up. Kinds:

- ``uvloop``: ``loop.call_later`` on uvloop (what the agent runs on);
- ``asyncio``: the same on the standard library's loop;
- ``sleep``: ``time.sleep`` in a plain loop (no event loop: the floor for a Python process).

Kinds alternate within each round, the first kind turning between rounds. It prints each
kind's median over ``--rounds`` (min-max) in microseconds per wake-up; raw rounds are kept
(``bench/runinfo.py``).

    python bench/wake_cost.py                    # 5 rounds of 200 wake-ups every 50 ms
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.interp import rumor_python
from bench.runinfo import Run

KINDS = ("uvloop", "asyncio", "sleep")

CHILD = r"""
import asyncio, json, sys, time
kind, interval, wakes = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if kind == "sleep":
    t0 = time.process_time()
    for _ in range(wakes):
        time.sleep(interval)
    spent = time.process_time() - t0
else:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left = [wakes]
        def tick() -> None:
            left[0] -= 1
            if left[0]:
                loop.call_later(interval, tick)
            else:
                done.set_result(None)
        await asyncio.sleep(0.2)
        t0 = time.process_time()
        loop.call_later(interval, tick)
        await done
        return time.process_time() - t0
    if kind == "uvloop":
        import uvloop
        spent = uvloop.run(main())
    else:
        spent = asyncio.run(main())
print(json.dumps({"us_per_wake": spent / wakes * 1e6}))
"""


def one(kind: str, core: str, interval: float, wakes: int) -> float:
    argv = [rumor_python(), "-c", CHILD, kind, str(interval), str(wakes)]
    if core:
        argv = ["taskset", "-c", core, *argv]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["us_per_wake"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--wakes", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--core", default="0", help="core to pin the child to ('' = unpinned)")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 40 wake-ups (not kept)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.wakes = 2, 40
    run = Run("wake_cost", tools=["taskset"], quick=args.quick,
              params={"rounds": args.rounds, "wakes": args.wakes, "interval": args.interval,
                      "core": args.core})
    results: dict[str, list[float]] = {k: [] for k in KINDS}
    ok = False
    try:
        for rnd in range(args.rounds):
            order = KINDS[rnd % len(KINDS):] + KINDS[:rnd % len(KINDS)]
            for kind in order:
                us = one(kind, args.core, args.interval, args.wakes)
                results[kind].append(us)
                run.round(rnd, kind, "wake", {"us_per_wake": round(us, 1)})
                print(f"round {rnd} {kind:8} {us:7.1f} us of CPU per wake-up", flush=True)
        print()
        for kind, xs in results.items():
            print(f"{kind:8} median {statistics.median(xs):7.1f} us per wake-up "
                  f"({min(xs):.1f}-{max(xs):.1f}), {len(xs)} rounds of {args.wakes}")
        run.note("medians_us", {k: round(statistics.median(v), 1) for k, v in results.items()})
        ok = True
    finally:
        run.close(ok)
    return 0


if __name__ == "__main__":
    sys.exit(main())

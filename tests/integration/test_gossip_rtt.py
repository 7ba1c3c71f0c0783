"""Probe RTTs on a real loop are measured finer than a millisecond (issue 18): uvloop's
``loop.time()`` counts whole milliseconds, once per loop iteration, so a probe answered within
a millisecond (loopback, most LANs) read as 0 and the network coordinates learnt nothing from
it. Two real Gossip services on loopback, on uvloop, as the agent runs them."""

from __future__ import annotations

import asyncio
import time

import uvloop

from gossip import Gossip, MemberlistConfig, SerfConfig


def _node(name: str) -> Gossip:
    ml = MemberlistConfig.local(name=name, bind_addr="127.0.0.1", bind_port=0)
    return Gossip(ml, SerfConfig.local(name))


async def _pair_probes() -> tuple[list[float], dict[str, int]]:
    a, b = _node("a"), _node("b")
    await a.start()
    await b.start()
    try:
        await b.join([f"127.0.0.1:{a.bound_port}"])
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            if a.counters.get("serf.coordinate.updates", 0) >= 4:
                break
            await asyncio.sleep(0.1)
        return list(a.serf.vivaldi._samples.get("b", [])), a.counters
    finally:
        await b.shutdown()
        await a.shutdown()


def test_loopback_probe_rtts_are_below_a_millisecond_and_not_zero() -> None:
    samples, counters = uvloop.run(_pair_probes())
    assert len(samples) >= 3, samples   # the latency filter keeps the last three
    # loopback within one process: tens to hundreds of microseconds, never a clock tick of 0
    assert all(0.0 < s < 0.005 for s in samples), samples
    assert any(s % 0.001 > 1e-9 for s in samples), samples   # not whole milliseconds
    assert counters.get("serf.coordinate.zero-rtt", 0) == 0
    assert counters.get("serf.coordinate.rejected", 0) == 0
    assert counters["serf.coordinate.updates"] >= 4

"""Network coordinates in a mixed pool: a real ``serf agent`` and a Rumor agent compute RTTs to
each other (``serf rtt`` and ``rumor rtt``), and ``?near=`` sorts by them.

Coordinates ride in the acks of direct probes (Serf's ping delegate): each side learns the
other's coordinate within a few probe intervals (``-profile local``: one probe a second)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.registry_fixtures import eventually, start_agent, stop_agent
from tests.integration.test_serf_interop import SerfAgent

pytestmark = [pytest.mark.serf,
              pytest.mark.skipif(shutil.which("serf") is None, reason="serf is not installed")]


def _rtt_ms(text: str) -> float | None:
    m = re.search(r"rtt: ([0-9.]+) ms", text)
    return float(m.group(1)) if m else None


async def test_serf_and_rumor_agree_on_coordinates(tmp_path: Path) -> None:
    agent = await start_agent(tmp_path, "r1", gossip={"profile": "local"})
    serf = SerfAgent("s1", tmp_path, profile="local")
    try:
        await asyncio.to_thread(serf.cli, "join", f"127.0.0.1:{agent.gossip_port}")
        base = f"http://127.0.0.1:{agent.http_port}"
        async with aiohttp.ClientSession() as s:
            async def get(path: str) -> Any:
                async with s.get(base + path) as r:
                    assert r.status == 200, await r.text()
                    return json.loads(await r.text())

            async def coords() -> dict[str, Any]:
                return {e["Node"]: e["Coord"] for e in await get("/v1/coordinate/nodes")}

            # Rumor has the serf agent's coordinate (from the acks of its probes of s1)
            await eventually(lambda: _has(coords(), "s1"), timeout=30, interval=0.5,
                             what="Rumor to learn s1's coordinate")
            c = (await coords())["s1"]
            assert len(c["Vec"]) == 8 and all(math.isfinite(x) for x in c["Vec"])

            # serf computes a finite RTT to the Rumor node (it got r1's coordinate in acks)
            def serf_rtt() -> float | None:
                out = serf.cli("rtt", "s1", "r1", check=False)
                return _rtt_ms(out.stdout) if out.returncode == 0 else None

            ms = await eventually(lambda: asyncio.to_thread(serf_rtt), timeout=30,
                                  interval=0.5, what="serf rtt s1 r1")
            assert 0 < ms < 1000 and math.isfinite(ms)

            # and rumor rtt the other way
            def rumor_rtt(*nodes: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "registry.cli", "rtt", *nodes,
                                       "-http-addr", f"127.0.0.1:{agent.http_port}"],
                                      check=False, capture_output=True, text=True, timeout=20)

            out = await asyncio.to_thread(rumor_rtt, "s1")
            assert out.returncode == 0, out.stdout + out.stderr
            got = _rtt_ms(out.stdout)
            assert got is not None and 0 < got < 1000, out.stdout
            assert "r1 <-> s1" in out.stdout
            out = await asyncio.to_thread(rumor_rtt, "nobody")
            assert out.returncode == 1 and "no coordinate for nobody" in out.stdout

            one = await get("/v1/coordinate/node/r1")
            assert one[0]["Node"] == "r1" and len(one[0]["Coord"]["Vec"]) == 8
            async with s.get(base + "/v1/coordinate/node/nobody") as r:
                assert r.status == 404

            # ?near= with Rumor nodes on both sides: tests/integration/test_federation.py
            counters = agent.gossip.counters if agent.gossip is not None else {}
            assert counters.get("serf.coordinate.updates", 0) > 0
    finally:
        await asyncio.to_thread(serf.stop)
        await stop_agent(agent)


async def _has(aw: Any, key: str) -> bool:
    return key in await aw

"""In-process agents for the registry's HTTP tests (a real aiohttp server on a free port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from registry.agent import Agent
from registry.config import build


async def start_agent(tmp: Path, name: str = "n1", **settings: Any) -> Agent:
    s: dict[str, Any] = {
        "node_name": name, "data_dir": str(tmp / name), "bind_addr": "127.0.0.1",
        "http_port": 0, "dns_port": -1, "serf_lan_port": 0, "enable_lb": False,
        "enable_dns": False, "log_level": "warn",
    }
    s.update(settings)
    agent = Agent(build(s))
    await agent.start()
    return agent


async def stop_agent(agent: Agent) -> None:
    await agent._close_everything(leave=False)


async def eventually(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02,
                     what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def agent_fixture(tmp: Path, **kw: Any) -> AsyncIterator[Agent]:
    a = await start_agent(tmp, **kw)
    try:
        yield a
    finally:
        await stop_agent(a)

"""The agent's background jobs (retry_join, SIGHUP reloads) live in run()'s TaskGroup."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from registry.agent import Agent
from registry.config import build

from .registry_fixtures import eventually


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _jobs() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("agent-")]


async def test_run_owns_retry_join_and_cancels_it_at_shutdown(tmp_path: Path) -> None:
    agent = Agent(build({
        "node_name": "bg", "data_dir": str(tmp_path / "bg"), "bind_addr": "127.0.0.1",
        "http_port": 0, "dns_port": -1, "serf_lan_port": 0, "enable_lb": False,
        "enable_dns": False, "log_level": "warn",
        "retry_join": [f"127.0.0.1:{_closed_port()}"], "retry_interval": "50ms",
    }))
    run = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: [t.get_name() for t in _jobs()] == ["agent-retry_join"],
                         timeout=20, what="retry_join running in the background")
    finally:
        agent.request_stop()
        async with asyncio.timeout(15):
            assert await run == 0
    assert _jobs() == []          # nothing left behind by the agent


async def test_a_failing_background_job_is_logged_and_the_agent_keeps_running(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent = Agent(build({
        "node_name": "bg2", "data_dir": str(tmp_path / "bg2"), "bind_addr": "127.0.0.1",
        "http_port": 0, "dns_port": -1, "serf_lan_port": 0, "enable_lb": False,
        "enable_dns": False, "log_level": "warn",
    }))

    async def broken_reload() -> None:
        raise RuntimeError("reload went wrong")

    agent.reload = broken_reload  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="registry.agent"):
        agent._on_sighup()  # noqa: SLF001 - a SIGHUP before the agent serves is kept for later
        run = asyncio.create_task(agent.run())
        try:
            await eventually(lambda: caplog.text.count("background job failed job=reload") == 1,
                             timeout=20, what="the early reload run, and its failure logged")
            agent._on_sighup()  # noqa: SLF001 - what the SIGHUP handler calls
            await eventually(lambda: caplog.text.count("background job failed job=reload") == 2,
                             timeout=5, what="the second failure logged")
            assert not run.done()
            assert agent.http_port > 0
        finally:
            agent.request_stop()
            async with asyncio.timeout(15):
                assert await run == 0


async def test_retry_join_stops_once_another_agent_made_us_a_member(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13: an agent whose -retry-join target does not answer, but that others reach (they
    join it, or gossip does), stops retrying, as a successful join would have."""
    base = {"bind_addr": "127.0.0.1", "http_port": 0, "dns_port": -1, "serf_lan_port": 0,
            "enable_lb": False, "enable_dns": False, "log_level": "warn"}
    lonely = Agent(build({**base, "node_name": "lonely", "data_dir": str(tmp_path / "lonely"),
                          "retry_join": [f"127.0.0.1:{_closed_port()}"],
                          "retry_interval": "50ms"}))
    other: Agent | None = None
    runs = [asyncio.create_task(lonely.run())]
    try:
        with caplog.at_level(logging.INFO, logger="registry.agent"):
            await eventually(lambda: [t.get_name() for t in _jobs()] == ["agent-retry_join"],
                             timeout=20, what="lonely's retry_join running")
            await eventually(lambda: caplog.text.count("join failed") >= 3,
                             timeout=20, what="a few failed attempts")
            assert "retry_join stopped" not in caplog.text
            other = Agent(build({**base, "node_name": "other",
                                 "data_dir": str(tmp_path / "other"),
                                 "retry_join": [f"127.0.0.1:{lonely.gossip_port}"],
                                 "retry_interval": "50ms"}))
            runs.append(asyncio.create_task(other.run()))
            await eventually(lambda: "retry_join stopped: already a member" in caplog.text,
                             timeout=20, what="lonely's retry_join stopping")
            await eventually(lambda: [t.get_name() for t in _jobs()] == [],
                             timeout=20, what="both retry_join jobs over")
            assert "alive_peer=other" in caplog.text
            assert not any(r.done() for r in runs)
    finally:
        lonely.request_stop()
        if other is not None:
            other.request_stop()
        async with asyncio.timeout(15):
            assert [await r for r in runs] == [0] * len(runs)

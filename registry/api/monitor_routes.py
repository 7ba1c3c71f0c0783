"""``GET /v1/agent/monitor``: stream the agent's log lines, as Consul does."""

from __future__ import annotations

import asyncio

from .. import logs, web
from ..errors import RequestError

routes = web.RouteTableDef()

MAX_BACKLOG = 1024
"""Lines queued for a slow reader before the oldest are dropped (a monitor never blocks logging)."""


@routes.get("/v1/agent/monitor")
async def monitor(request: web.Request) -> web.StreamResponse:
    level_name = request.query.get("loglevel", "info")
    try:
        level = logs.level_of(level_name)
    except KeyError:
        raise RequestError(f"Unknown log level: {level_name}") from None
    queue: asyncio.Queue[str] = asyncio.Queue(MAX_BACKLOG)
    dropped = 0

    def feed(levelno: int, line: str) -> None:
        nonlocal dropped
        if levelno < level:
            return
        try:
            queue.put_nowait(line)
        except asyncio.QueueFull:
            dropped += 1

    resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await resp.prepare(request)
    for levelno, line in logs.MONITOR.backlog():
        feed(levelno, line)
    logs.MONITOR.subscribers.add(feed)
    try:
        while True:
            line = await queue.get()
            if dropped:
                await resp.write(f"[monitor dropped {dropped} lines: reader too slow]\n".encode())
                dropped = 0
            await resp.write(line.encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        logs.MONITOR.subscribers.discard(feed)
    return resp

"""Serve one of the agent's HTTP applications (registry/web) on a free loopback port, for tests
that mount a few route tables without a whole agent, and talk to it with a real aiohttp client."""

from __future__ import annotations

from typing import Any

import aiohttp

from registry import web


class AppClient:
    """``get``/``put``/... with paths relative to the served app (aiohttp's ``ClientSession``)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        self.session: aiohttp.ClientSession | None = None
        self.port = 0

    async def start(self) -> AppClient:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = int(self.runner.addresses[0][1])
        self.session = aiohttp.ClientSession(f"http://127.0.0.1:{self.port}",
                                             cookie_jar=aiohttp.CookieJar(unsafe=True))
        return self

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.session is not None, "start() first"
        return self.session.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        await self.runner.cleanup()

"""``/v1/kv/*``: Rumor has no KV store; every key is absent (404 with ``X-Consul-Index``).

A blocking read (``?index=N``) waits its whole ``wait`` before answering, so a watcher of a
missing key (consul-template, Traefik's KV provider) polls slowly instead of spinning.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from .blocking import blocking_params

routes = web.RouteTableDef()
_TEXT = "404 no KV store in Rumor: keys are never present\n"


def _not_found() -> web.Response:
    return web.Response(status=404, text=_TEXT, content_type="text/plain",
                        headers={"X-Consul-Index": "1", "X-Consul-KnownLeader": "true",
                                 "X-Consul-LastContact": "0"})


@routes.route("*", "/v1/kv/{key:.*}")
async def kv(request: web.Request) -> web.Response:
    if request.method == "GET":
        params = blocking_params(request)
        if params is not None:
            await asyncio.sleep(params[1])
    return _not_found()

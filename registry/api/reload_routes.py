"""``PUT /v1/agent/reload``: re-read the config files, as SIGHUP does (Consul's endpoint).

Service and check definitions, TLS certificates and the ACL section are re-read; a part that is
wrong is refused (the running one stays) and the answer is a 500 naming it, as Consul answers a
failed reload.
"""

from __future__ import annotations

from .. import web
from ..errors import RequestError
from .keys import RELOAD

routes = web.RouteTableDef()


@routes.put("/v1/agent/reload")
async def reload(request: web.Request) -> web.Response:
    do = request.app.get(RELOAD)
    if do is None:
        raise RequestError("reload is not available on this agent", 500)
    problems = await do()
    if problems:
        raise RequestError("Failed reloading: " + "; ".join(problems), 500)
    return web.Response(status=200)

"""ACL enforcement for the whole HTTP API (a middleware) and ``/v1/acl/token/self``.

GET/HEAD need read rights, other methods write; ``/v1/status/*`` and the UI's static files are
open (Consul answers them without a token too). See ``registry/acl.py`` for the configuration.
"""

from __future__ import annotations

from aiohttp import web

from ..acl import READ, WRITE, token_of
from ..errors import RequestError
from .base import Handler, json_response
from .keys import REGISTRY

routes = web.RouteTableDef()

_OPEN_PREFIXES = ("/v1/status/", "/ui")


@web.middleware
async def acl_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    reg = request.app[REGISTRY]
    if reg.acl.cfg.enabled and request.path != "/" \
            and not request.path.startswith(_OPEN_PREFIXES) \
            and request.path != "/v1/acl/token/self":
        need = READ if request.method in ("GET", "HEAD") else WRITE
        reg.acl.require(token_of(request.headers, request.query), need)
    return await handler(request)


def setup(app: web.Application) -> None:
    app.middlewares.append(acl_middleware)


@routes.get("/v1/acl/token/self")
async def token_self(request: web.Request) -> web.Response:
    reg = request.app[REGISTRY]
    if not reg.acl.cfg.enabled:
        raise RequestError("ACL support disabled", 401)
    tok = token_of(request.headers, request.query)
    rights = reg.acl.rights(tok)
    if not tok or rights is None:
        raise RequestError("ACL not found", 403)
    import hashlib

    return json_response({
        "AccessorID": hashlib.sha256(tok.encode()).hexdigest()[:32],
        "SecretID": tok, "Description": f"{rights} token from the agent config",
        "Policies": [{"ID": rights, "Name": f"rumor-{rights}"}], "Local": True,
    })

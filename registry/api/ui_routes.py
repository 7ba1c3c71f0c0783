"""The web UI at ``/ui/``: server-rendered pages, kept live by ``rumor.js``; ``/`` redirects here.

Pages are rendered from the agent's in-process state (:mod:`registry.ui.model`), so the first
paint is complete without any script; the static files (CSS, the script, an icon) ship in the
package under ``registry/ui/static`` and are served from memory. No build step, no CDN.
``enable_ui = false`` turns every route here into a 404.

ACLs: the pages show what the request's token may read, as the JSON API does (services the token
cannot read, nodes it cannot read and the instances on them, LB listeners without
``operator:read`` are left out); an unknown token gets the token form. A browser cannot add ``X-Consul-Token`` to a page load, so besides that header and
``?token=`` the pages accept the ``rumor_token`` cookie, which the token form (``POST
/ui/token``) sets. The cookie is ``SameSite=Strict`` and is only ever read for *read* rights: no
write goes through the UI, so a cross-site request cannot use it to change anything. ``rumor.js``
copies it into ``X-Consul-Token`` for its blocking queries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from gossip import Gossip
from gossip.dclass import dataclass
from lb import LoadBalancer

from .. import web
from ..acl import READ, Identity
from ..acl_view import ACLView
from ..config import AgentConfig
from ..errors import RequestError
from ..federation import Federation
from ..kv import cut_keys
from ..service import Registry
from .base import text_error
from .keys import CONFIG, FEDERATION, GOSSIP, LB, PORTS, REGISTRY

if TYPE_CHECKING:
    from ..ui import model, render

# registry.ui (its model and renderer) and the static files are loaded by the first page asked
# for, not at start-up: an agent nobody browses never needs them (issue 13: start-up cost)

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

#: Only same-origin scripts, styles and fetches; nothing may frame the UI.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


@functools.cache
def static_files() -> dict[str, tuple[bytes, str, str]]:
    """name -> (body, content type, etag) for every file shipped in registry/ui/static (read
    once, on first use)."""
    import hashlib
    import mimetypes
    from importlib import resources

    out: dict[str, tuple[bytes, str, str]] = {}
    try:
        folder = resources.files("registry.ui").joinpath("static")
        for entry in folder.iterdir():
            if not entry.is_file() or entry.name.startswith("."):
                continue
            body = entry.read_bytes()
            suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
            ctype = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            out[entry.name] = (body, ctype, etag)
    except (FileNotFoundError, NotADirectoryError) as e:  # a broken install: pages still work
        log.error("ui static files missing error=%s", e)
    return out


@dataclass(frozen=True)
class _Sources:
    """The read surface :func:`registry.ui.model.collect` documents, from the app's keys."""

    config: AgentConfig
    registry: Registry
    gossip: Gossip | None
    lb: LoadBalancer | None
    gossip_address: str
    gossip_port: int
    wan: Gossip | None = None


def _sources(app: web.Application) -> _Sources:
    reg = app[REGISTRY]
    fed = app.get(FEDERATION)   # absent from an app made without the agent (tests)
    return _Sources(config=app[CONFIG], registry=reg, gossip=app[GOSSIP], lb=app[LB],
                    gossip_address=reg.info.address, gossip_port=app[PORTS].gossip_port,
                    wan=fed.wan if fed is not None else None)


def _enabled(request: web.Request) -> bool:
    return bool(request.app[CONFIG].enable_ui)


def _not_found() -> web.Response:
    return text_error(404, "404 page not found")


COOKIE = "rumor_token"


def _token(request: web.Request) -> str:
    from ..acl import token_of

    tok = token_of(request.headers, request.query)
    return tok or unquote(request.cookies.get(COOKIE, "")).strip()


def _refusal(request: web.Request) -> tuple[str | None, Identity | None]:
    """(None, identity) when the request's token is known, else (why not, None)."""
    acl = request.app[REGISTRY].acl
    token = _token(request)
    try:
        who = acl.resolve(token)
    except RequestError as e:
        return e.message, None
    if not token and who.token is not None and not who.token.policies \
            and acl.cfg.default_policy == "deny":
        # no token, and the anonymous one may read nothing: ask for one instead of an empty UI
        return "No token given, and requests without one may read nothing", None
    return None, who


@dataclass(frozen=True)
class _SeenRegistry:
    catalog: ACLView


class _SeenGossip:
    """Members the token may read (node:read)."""

    def __init__(self, gossip: Gossip, who: Identity) -> None:
        self.gossip, self.who = gossip, who

    def members(self) -> list[Any]:
        return [m for m in self.gossip.members() if self.who.allowed("node", m.name, READ)]


class _NoListeners:
    def listeners(self) -> list[Any]:
        return []


def _seen_by(sources: _Sources, who: Identity) -> Any:
    """What the pages may show to ``who``: the same read surface, filtered."""
    if who.token is None:           # ACLs off
        return sources
    reg = sources.registry
    view = ACLView(reg.catalog, reg.acl, who=lambda: who)
    return _Sources(
        config=sources.config, registry=_SeenRegistry(view),  # type: ignore[arg-type]
        gossip=_SeenGossip(sources.gossip, who) if sources.gossip is not None else None,  # type: ignore[arg-type]
        lb=(sources.lb if who.allowed("operator", "", READ) or sources.lb is None
            else _NoListeners()),  # type: ignore[arg-type]
        gossip_address=sources.gossip_address, gossip_port=sources.gossip_port,
        wan=sources.wan if who.allowed("operator", "", READ) else None)


def _html(state: model.UIState, page: render.Page, path: str = "/ui/") -> web.Response:
    from ..ui import render

    return web.Response(
        status=page.status, text=render.document(state, page, path), content_type="text/html",
        charset="utf-8", headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


async def _datacenters(fed: Federation | None, token: str) -> tuple[str, ...]:
    """``/v1/catalog/datacenters`` as this agent answers it (a LAN-only agent asks one of its
    WAN members); just ours when it cannot tell."""
    if fed is None:
        return ()
    if fed.is_wan_member or not fed.local_wan_members():
        return tuple(fed.datacenters())
    try:
        reply = await fed.forward(fed.datacenter, "GET", "/v1/catalog/datacenters",
                                  _token_headers(token), b"", forwarded=False, wait=None)
        got = json.loads(reply.body) if reply.status == 200 else None
    except (RequestError, ValueError) as e:
        log.debug("ui: datacenters not read error=%s", e)
        got = None
    if not isinstance(got, list):
        return (fed.datacenter,)
    return tuple(str(dc) for dc in got if isinstance(dc, str))


def _token_headers(token: str) -> dict[str, str]:
    return {"X-Consul-Token": token} if token else {}


REMOTE_TIMEOUT = 10.0
"""Seconds a page of another datacenter waits for its documents across the WAN hop."""


REMOTE_PARALLEL = 8
"""Requests a page of another datacenter has in flight across the hop at once."""


async def _remote(fed: Federation, dc: str, token: str) -> model.RemoteCatalog:
    """Datacenter ``dc``'s catalog, read with ``?dc=`` through the federation with the
    request's token (so that datacenter's ACLs apply as for any forwarded read): its nodes,
    its checks, and the health entries of each of its services."""
    from ..ui import model

    gate = asyncio.Semaphore(REMOTE_PARALLEL)

    async def get(path: str) -> tuple[Any, int]:
        async with gate:
            reply = await fed.forward(dc, "GET", f"{path}?dc={quote(dc, safe='')}",
                                      _token_headers(token), b"", forwarded=False, wait=None)
        if reply.status != 200:
            raise RequestError(f"datacenter {dc} answered {reply.status}: "
                               f"{reply.body[:200].decode(errors='replace').strip()}",
                               reply.status if 400 <= reply.status < 500 else 502)
        try:
            return json.loads(reply.body), int(reply.headers.get("X-Consul-Index", "0") or 0)
        except ValueError as e:
            raise RequestError(f"datacenter {dc} sent a bad document: {e}", 502) from e

    async def read() -> model.RemoteCatalog:
        (services, index), (nodes, _), (checks, _) = await asyncio.gather(
            get("/v1/catalog/services"), get("/v1/catalog/nodes"),
            get("/v1/health/state/any"))
        names = [str(n) for n in services] if isinstance(services, dict) else []
        found = await asyncio.gather(*(get(f"/v1/health/service/{quote(n, safe='')}")
                                       for n in names))
        return model.RemoteCatalog(dc, nodes, checks,
                                   {n: doc for n, (doc, _) in zip(names, found, strict=True)},
                                   index)

    return await asyncio.wait_for(read(), REMOTE_TIMEOUT)


async def _page(request: web.Request, build: Any, *args: Any) -> web.Response:
    from ..ui import model, render

    if not _enabled(request):
        return _not_found()
    sources = _sources(request.app)
    why, who = _refusal(request)
    if why is not None or who is None:
        return _html(model.empty_state(sources), render.token_page(why or "", request.path_qs))
    state = model.collect(_seen_by(sources, who))
    fed = request.app.get(FEDERATION)
    token = _token(request)
    dcs = await _datacenters(fed, token)
    if dcs:
        state = replace(state, datacenters=dcs)
    dc = request.query.get("dc", "")
    if dc and dc != state.agent_datacenter and build is not render.lb_page:
        if fed is None:
            return text_error(400, f"Unknown datacenter {dc!r}: this agent knows no other")
        try:
            state = model.remote_state(state, await _remote(fed, dc, token))
        except RequestError as e:
            return text_error(e.status, f"Datacenter {dc}: {e.message}")
        except TimeoutError:
            return text_error(504, f"Datacenter {dc}: no answer in {REMOTE_TIMEOUT:g} s")
    return _html(state, build(state, *args), request.path)


def _safe_next(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/ui/"):
        return "/ui/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


@routes.post("/ui/token")
async def ui_token(request: web.Request) -> web.StreamResponse:
    """Remember (or, when empty, forget) the ACL token this browser uses for the UI."""
    if not _enabled(request):
        return _not_found()
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        return text_error(403, "cross-site token form refused")
    try:
        form = await request.post()
    except ValueError as e:  # a malformed multipart or urlencoded body
        return text_error(400, f"Bad form body: {e}")
    token = str(form.get("token", "")).strip()
    resp = web.HTTPSeeOther(_safe_next(str(form.get("next", "/ui/"))))
    if token:
        resp.set_cookie(COOKIE, quote(token, safe=""), path="/", samesite="Strict")
    else:
        resp.del_cookie(COOKIE, path="/")
    raise resp


def _redirect(target: str, status: type[web.HTTPMove] = web.HTTPFound) -> Any:
    """A handler sending the browser to ``target`` (a 404 while the UI is off)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        if not _enabled(request):
            return _not_found()
        raise status(target)
    return handler


routes.get("/")(_redirect("/ui/"))


routes.get("/ui")(_redirect("/ui/", web.HTTPMovedPermanently))


@routes.get("/ui/")
async def ui_services(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.services_page)


@routes.get("/ui/services")
async def ui_services_alias(request: web.Request) -> web.StreamResponse:
    if not _enabled(request):
        return _not_found()
    raise web.HTTPFound("/ui/")


@routes.get("/ui/services/{name}")
async def ui_service(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.service_page, request.match_info["name"])


@routes.get("/ui/nodes")
async def ui_nodes(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.nodes_page)


@routes.get("/ui/nodes/{name}")
async def ui_node(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.node_page, request.match_info["name"])


@routes.get("/ui/checks")
async def ui_checks(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.checks_page, request.query.get("state", "any"))


@routes.get("/ui/lb")
async def ui_lb(request: web.Request) -> web.Response:
    from ..ui import render

    return await _page(request, render.lb_page)


routes.get("/ui/kv")(_redirect("/ui/kv/"))


@routes.get("/ui/kv/{path:.*}")
async def ui_kv(request: web.Request) -> web.Response:
    """The KV store a folder (or a key) at a time, showing only the keys the token may read."""
    from ..ui import render

    path = request.match_info["path"]
    store = request.app[REGISTRY].kv.store
    _, who = _refusal(request)   # no identity: _page answers with the token form

    def readable(key: str) -> bool:
        return who is not None and who.allowed("key", key, READ)

    entry = store.get(path) if path and not path.endswith("/") else None
    if entry is not None and readable(entry.key):
        view = render.KVView(path=path, value=entry.value or b"", flags=entry.flags,
                             create_index=entry.create_index, modify_index=entry.modify_index)
    else:
        listed = cut_keys([e.key for e in store.under(path) if readable(e.key)], path, "/")
        folders = tuple(k for k in listed if k.endswith("/") and k != path)
        keys = tuple(k for k in listed if not k.endswith("/"))
        view = render.KVView(path=path, folders=folders, keys=keys,
                             found=bool(listed) or not path)
    return await _page(request, render.kv_page, view)


@routes.get("/ui/static/{file}")
async def ui_static(request: web.Request) -> web.Response:
    if not _enabled(request):
        return _not_found()
    item = static_files().get(request.match_info["file"])
    if item is None:
        return _not_found()
    body, ctype, etag = item
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=ctype, headers=headers)

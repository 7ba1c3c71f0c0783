"""Prepared queries (``/v1/query``) in Consul's shapes; see :mod:`registry.prepared`.

    POST   /v1/query                  create; answers {"ID": ...}
    GET    /v1/query                  every prepared query
    GET    /v1/query/{id}             [the query]
    PUT    /v1/query/{id}             replace it
    DELETE /v1/query/{id}             delete it
    GET    /v1/query/{id|name}/execute   the healthy instances, with failover
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from .. import web
from ..errors import RequestError
from ..prepared import PreparedQueries, decode_entries, execute
from .base import json_response, read_json
from .keys import CATALOG, FEDERATION, REGISTRY
from .shapes import health_entry_json

routes = web.RouteTableDef()

QUERIES: web.AppKey[PreparedQueries] = web.AppKey("prepared_queries", PreparedQueries)


def setup(app: web.Application) -> None:
    app[QUERIES] = PreparedQueries(app[REGISTRY].datadir)


def _critical(entry: dict[str, Any]) -> bool:
    return any(c.get("Status") == "critical" for c in entry.get("Checks") or ())


async def run_query(app: web.Application, id_or_name: str) -> dict[str, Any]:
    """Execute a prepared query with this agent's catalog and federation (HTTP and DNS)."""
    q = app[QUERIES].get(id_or_name)
    cat = app[CATALOG]
    fed = app[FEDERATION]

    async def fetch(dc: str, service: str, passing: bool) -> list[dict[str, Any]]:
        if dc == cat.datacenter:
            out = [health_entry_json(i) for i in cat.entries(service)]
        else:
            if fed is None:
                raise RequestError("No path to datacenter", 500)
            path = f"/v1/health/service/{quote(service, safe='')}?dc={quote(dc)}"
            reply = await fed.forward(dc, "GET", path, {}, b"", forwarded=False, wait=None)
            if reply.status != 200:
                raise RequestError(reply.body.decode(errors="replace"), reply.status)
            out = decode_entries(reply.body)
        out = [e for e in out if not _critical(e)]
        if passing:
            out = [e for e in out
                   if all(c.get("Status") == "passing" for c in e.get("Checks") or ())]
        return out

    nearest = [dc for dc in (await fed.all_datacenters() if fed is not None else [])
               if dc != cat.datacenter]
    return await execute(q, local_dc=cat.datacenter, nearest=nearest, fetch=fetch)


@routes.post("/v1/query")
async def create(request: web.Request) -> web.Response:
    q = request.app[QUERIES].put(await read_json(request))
    return json_response({"ID": q.id})


@routes.get("/v1/query")
async def list_queries(request: web.Request) -> web.Response:
    return json_response([q.to_json() for q in request.app[QUERIES].list()])


@routes.get("/v1/query/{id}")
async def read(request: web.Request) -> web.Response:
    return json_response([request.app[QUERIES].get(request.match_info["id"]).to_json()])


@routes.put("/v1/query/{id}")
async def update(request: web.Request) -> web.Response:
    request.app[QUERIES].put(await read_json(request), id=request.match_info["id"])
    return json_response(None)


@routes.delete("/v1/query/{id}")
async def delete(request: web.Request) -> web.Response:
    request.app[QUERIES].delete(request.match_info["id"])
    return json_response(None)


@routes.get("/v1/query/{id}/execute")
async def run(request: web.Request) -> web.Response:
    result = await run_query(request.app, request.match_info["id"])
    if "limit" in request.query:
        try:
            limit = int(request.query["limit"])
        except ValueError:
            raise RequestError("limit must be a whole number") from None
        result["Nodes"] = result["Nodes"][:max(0, limit)]
    return json_response(result)

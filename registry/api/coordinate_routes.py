"""Network coordinates (Serf's Vivaldi, fed by every direct probe) in Consul's shapes.

* ``GET /v1/coordinate/nodes``: ``[{"Node", "Segment", "Coord": {"Vec", "Error",
  "Adjustment", "Height"}}]`` for this datacenter's nodes that have a coordinate (this agent's
  own, and the last one each peer sent in an ack of this agent's probes).
* ``GET /v1/coordinate/node/{node}``: ``[that entry]``, 404 when the node has none.
* ``GET /v1/coordinate/datacenters``: the WAN pool's coordinates per datacenter,
  ``[{"Datacenter", "AreaID": "wan", "Coordinates": [{"Node": "node.dc", "Coord"}]}]``; a
  LAN-only agent asks one of its WAN members.
* ``?near=_agent`` / ``?near=NODE`` on catalog and health reads of lists sorts the answer by
  estimated RTT from that node, nearest first (nodes without a coordinate last, as Consul).
  Sorting is done here, on the encoded answer of the read, so the read handlers are untouched.
"""

from __future__ import annotations

import json
import math
from typing import Any

from gossip import Coordinate, distance

from .. import web
from ..errors import NotFound
from .base import Handler, json_response
from .keys import CONFIG, FEDERATION, GOSSIP

routes = web.RouteTableDef()


def coord_json(c: Coordinate) -> dict[str, Any]:
    return {"Vec": list(c.vec), "Error": c.error, "Adjustment": c.adjustment,
            "Height": c.height}


def coord_from_json(d: Any) -> Coordinate | None:
    """A Coordinate from Consul's ``Coord`` object (None when it is not one)."""
    try:
        return Coordinate(vec=tuple(float(x) for x in d["Vec"]), error=float(d["Error"]),
                          adjustment=float(d["Adjustment"]), height=float(d["Height"]))
    except (KeyError, TypeError, ValueError):
        return None


def _lan_coordinates(request: web.Request) -> dict[str, Coordinate]:
    g = request.app[GOSSIP]
    if g is None:
        return {}
    return g.coordinates()


@routes.get("/v1/coordinate/nodes")
async def nodes(request: web.Request) -> web.Response:
    coords = _lan_coordinates(request)
    return json_response([{"Node": n, "Segment": "", "Coord": coord_json(c)}
                          for n, c in sorted(coords.items())])


@routes.get("/v1/coordinate/node/{node}")
async def node(request: web.Request) -> web.Response:
    name = request.match_info["node"]
    c = _lan_coordinates(request).get(name)
    if c is None:
        raise NotFound(f"no coordinate for node {name!r}")
    return json_response([{"Node": name, "Segment": "", "Coord": coord_json(c)}])


@routes.get("/v1/coordinate/datacenters")
async def datacenters(request: web.Request) -> web.Response:
    fed = request.app[FEDERATION]
    if fed is None:
        return json_response([])
    if fed.wan is None:
        if fed.local_wan_members() and "X-Rumor-Forwarded" not in request.headers:
            reply = await fed.forward(fed.datacenter, "GET", request.path_qs, request.headers,
                                      b"", forwarded=False, wait=None)
            return web.Response(status=reply.status, body=reply.body,
                                headers=dict(reply.headers))
        return json_response([])
    coords = fed.wan.coordinates()
    by_dc: dict[str, list[dict[str, Any]]] = {}
    for m in fed.wan.members():
        dc = m.tags.get("dc")
        c = coords.get(m.name)
        if dc and c is not None and m.status != "left":
            by_dc.setdefault(dc, []).append({"Node": m.name, "Coord": coord_json(c)})
    return json_response([{"Datacenter": dc, "AreaID": "wan", "Coordinates": items}
                          for dc, items in sorted(by_dc.items())])


# -- ?near= ------------------------------------------------------------------------------------

_NEAR_PREFIXES = ("/v1/catalog/nodes", "/v1/catalog/service/", "/v1/health/service/",
                  "/v1/health/state/", "/v1/health/checks/")


def setup(app: web.Application) -> None:
    app.middlewares.append(near_middleware)


def _node_of(item: Any) -> str:
    if isinstance(item, dict):
        n = item.get("Node")
        if isinstance(n, dict):
            return str(n.get("Node", ""))
        return str(n or "")
    return ""


@web.middleware
async def near_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    near = request.query.get("near")
    resp = await handler(request)
    if not near or request.method != "GET" or not request.path.startswith(_NEAR_PREFIXES):
        return resp
    if request.query.get("dc") not in (None, "", request.app[CONFIG].datacenter):
        return resp     # the other datacenter sorted it (the parameter went along)
    if not isinstance(resp, web.Response) or resp.status != 200 or resp.body is None:
        return resp
    coords = _lan_coordinates(request)
    origin = coords.get(request.app[CONFIG].node_name if near == "_agent" else near)
    if origin is None:
        return resp     # Consul: an unknown origin leaves the order as it is
    try:
        items = json.loads(bytes(resp.body))
    except (TypeError, ValueError):
        return resp
    if not isinstance(items, list):
        return resp

    def key(item: Any) -> float:
        c = coords.get(_node_of(item))
        return distance(origin, c) if c is not None else math.inf

    items.sort(key=key)   # stable: equal distances keep the handler's order
    out = json_response(items)
    for h in ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact",
              "X-Consul-Effective-Consistency"):
        if h in resp.headers:
            out.headers[h] = resp.headers[h]
    return out



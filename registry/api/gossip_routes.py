"""Gossip endpoints in Consul's shapes: members, join, leave, force-leave, user events, keyring.

* ``GET /v1/agent/members`` — every Serf member: Name, Addr, Port, Tags (map), Status
  (1 alive, 2 leaving, 3 left, 4 failed), ProtocolMin/Max/Cur, DelegateMin/Max/Cur.
* ``PUT /v1/agent/join/{addr}`` (``?replay`` also delivers older user events, as ``serf join
  -replay``), ``PUT /v1/agent/leave``, ``PUT /v1/agent/force-leave/{node}`` (``?prune``).
* ``PUT /v1/event/fire/{name}`` (body = payload) and ``GET /v1/event/list`` (``?name=``, newest
  last, blocking with ``?index=&wait=``). Rumor fires plain Serf user events (the event name is the Serf event name and the body
  its payload), so a ``serf agent`` handler sees them and ``serf event`` shows up in the list.
  The ``ID`` of an event is derived from (LTime, name, payload), so every agent lists the same ID.
  ``?coalesce=false`` sends the event with Serf's coalescing flag off (``serf event
  -coalesce=false``).
* ``GET/POST/PUT/DELETE /v1/operator/keyring`` — list, install, use, remove a gossip key
  cluster-wide (Consul's shape: a list of per-pool responses).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from gossip import Gossip

from .. import web
from ..acl import READ
from ..config import split_hostport
from ..errors import ConfigError, RequestError
from .acl_routes import keep
from .base import compact_list, json_response, read_json
from .bexpr import filter_items
from .blocking import blocking_params
from .keys import GOSSIP, REQUEST_STOP

routes = web.RouteTableDef()

EVENT_VERSION = 1


def member_json(m: Any) -> dict[str, Any]:
    """Consul's /v1/agent/members entry for a ``gossip.Member``."""
    return {
        "Name": m.name,
        "Addr": m.addr,
        "Port": m.port,
        "Tags": dict(m.tags),
        "Status": m.status_code,
        "ProtocolMin": m.protocol_min,
        "ProtocolMax": m.protocol_max,
        "ProtocolCur": m.protocol_cur,
        "DelegateMin": m.delegate_min,
        "DelegateMax": m.delegate_max,
        "DelegateCur": m.delegate_cur,
    }


def event_id(ltime: int, name: str, payload: bytes) -> str:
    """A UUID every agent derives the same way for the same Serf user event."""
    import hashlib
    import uuid

    h = hashlib.sha256(ltime.to_bytes(8, "big") + name.encode() + b"\0" + payload).digest()
    return str(uuid.UUID(bytes=h[:16], version=4))


def event_json(ev: Any) -> dict[str, Any]:
    """Consul's user event shape for a ``gossip.UserEventReceived``."""
    return {
        "ID": event_id(ev.ltime, ev.name, ev.payload),
        "Name": ev.name,
        "Payload": base64.b64encode(ev.payload).decode() if ev.payload else None,
        "NodeFilter": "",
        "ServiceFilter": "",
        "TagFilter": "",
        "Version": EVENT_VERSION,
        "LTime": ev.ltime,
    }


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    if name not in request.query:
        return default
    return request.query.get(name, "").lower() not in ("false", "0", "no")


def _gossip(request: web.Request) -> Gossip:
    g = request.app[GOSSIP]
    if g is None:
        raise RequestError("gossip is not running on this agent", 500)
    return g


class MemberEntries:
    """Encoded ``/v1/agent/members`` entries, by member name. Serf hands out the same frozen
    ``Member`` for a member whose state has not changed, so an entry is encoded again only when
    its member changed: a pool polled while members join re-encodes the joiners alone."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[Any, bool, str]] = {}

    def body(self, members: list[Any]) -> str:
        """The JSON text ``json_response`` would send for ``[member_json(m) for m in members]``."""
        compact = compact_list(members)
        seps = (",", ":") if compact else (", ", ": ")
        done, kept = self._done, {}
        parts = []
        for m in members:
            hit = done.get(m.name)
            if hit is None or hit[0] is not m or hit[1] != compact:
                hit = (m, compact, json.dumps(member_json(m), separators=seps))
            kept[m.name] = hit
            parts.append(hit[2])
        self._done = kept      # members gone (or hidden from this token) are let go
        return "[" + seps[0].join(parts) + "]"


_ENTRIES = MemberEntries()
"""One per process: an entry is reused only for the very ``Member`` object it was made from, so
agents sharing a process (tests) never see each other's entries."""


@routes.get("/v1/agent/members")
async def members(request: web.Request) -> web.Response:
    if _flag(request, "wan"):
        return json_response([])  # no WAN pool: this agent federates with no other datacenter
    seen = keep(request, _gossip(request).members(),
                lambda who, m: who.allowed("node", m.name, READ))
    expr = request.query.get("filter")
    if expr:
        return json_response(filter_items(expr, [member_json(m) for m in seen]))
    return web.Response(text=_ENTRIES.body(seen), content_type="application/json")


@routes.put("/v1/agent/join/{addr}")
async def join(request: web.Request) -> web.Response:
    addr = request.match_info["addr"]
    if not _is_join_address(addr):
        raise RequestError(f"Bad address {addr!r}: use host, host:port or [ipv6]:port")
    replay = _flag(request, "replay")
    try:
        n = await _gossip(request).join([addr], replay=replay)
    except Exception as e:  # noqa: BLE001 -- reported to the client as a 500
        raise RequestError(f"Failed to join {addr}: {e}", 500) from None
    if n == 0:
        raise RequestError(f"Failed to join {addr}: no agent answered", 500)
    return json_response(None)


_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-.]{0,251}[A-Za-z0-9])?")


def _is_join_address(addr: str) -> bool:
    """host, host:port or [v6]:port with a plausible host: a typo is the client's fault (400),
    while a well-formed address that nobody answers on stays Consul's 500."""
    try:
        host, port = split_hostport(addr, 7946)
    except ConfigError:
        return False
    if not 0 < port < 65536:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _HOSTNAME.fullmatch(host) is not None


@routes.put("/v1/agent/leave")
async def leave(request: web.Request) -> web.Response:
    await _gossip(request).leave(5.0)
    request.app[REQUEST_STOP]()
    return json_response(None)


@routes.put("/v1/agent/force-leave/{node}")
async def force_leave(request: web.Request) -> web.Response:
    node = request.match_info["node"]
    prune = _flag(request, "prune")
    ok = await _gossip(request).force_leave(node, prune=prune)
    if not ok:
        raise RequestError(f"agent: No node found with name '{node}'", 404)
    return json_response(None)


@routes.put("/v1/event/fire/{name}")
async def fire(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not name:
        raise RequestError("Missing name")
    for unsupported in ("node", "service", "tag"):
        if request.query.get(unsupported):
            raise RequestError(f"?{unsupported}= filters are not supported by Rumor's user events")
    payload = await request.read()
    try:
        ev = await _gossip(request).user_event(name, payload,
                                               coalesce=_flag(request, "coalesce", True))
    except ValueError as e:
        raise RequestError(str(e), 400) from None
    return json_response(event_json(ev))


@routes.get("/v1/event/list")
async def list_events(request: web.Request) -> web.Response:
    """Recent user events, oldest first; ``?name=`` filters; ``?index=&wait=`` blocks until a
    newer event arrives (X-Consul-Index counts the events this agent has seen)."""
    g = _gossip(request)
    name = request.query.get("name", "")
    params = blocking_params(request)
    if params is not None:
        index, wait = params
        if index <= g.events_index:
            await g.wait_events(index, wait)
    evs = keep(request, [e for e in g.recent_events() if not name or e.name == name],
               lambda who, e: who.allowed("event", e.name, READ))
    return json_response([event_json(e) for e in evs], index=g.events_index)


# -- keyring ---------------------------------------------------------------------------------


def _keyring_json(resp: Any) -> list[dict[str, Any]]:
    return [resp.to_json()]


async def _key_from_body(request: web.Request) -> str:
    body = await read_json(request)
    if not isinstance(body, Mapping) or not isinstance(body.get("Key"), str) or not body["Key"]:
        raise RequestError('Request body must be {"Key": "<base64 key>"}')
    key = str(body["Key"])
    try:
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        raise RequestError("Key is not valid base64") from None
    if len(raw) not in (16, 24, 32):
        raise RequestError(f"Key is {len(raw)} bytes; it must be 16, 24 or 32")
    return key


def _key_result(resp: Any) -> web.Response:
    if not resp.ok:
        detail = "; ".join(f"{n}: {m}" for n, m in sorted(resp.messages.items()))
        # Every node answered and refused (no encryption, a key not installed, the primary key
        # removed): the request is at fault, 400. Nodes that did not answer stay a 500.
        status = 400 if resp.num_resp >= resp.num_nodes else 500
        raise RequestError(f"{resp.error_text()}" + (f" ({detail})" if detail else ""), status)
    return json_response(None)


@routes.get("/v1/operator/keyring")
async def keyring_list(request: web.Request) -> web.Response:
    resp = await _gossip(request).list_keys()
    return json_response(_keyring_json(resp))


@routes.post("/v1/operator/keyring")
async def keyring_install(request: web.Request) -> web.Response:
    key = await _key_from_body(request)
    return _key_result(await _gossip(request).install_key(key))


@routes.put("/v1/operator/keyring")
async def keyring_use(request: web.Request) -> web.Response:
    key = await _key_from_body(request)
    return _key_result(await _gossip(request).use_key(key))


@routes.delete("/v1/operator/keyring")
async def keyring_remove(request: web.Request) -> web.Response:
    key = await _key_from_body(request)
    return _key_result(await _gossip(request).remove_key(key))

"""``/v1/kv/*``: Consul's KV API over Rumor's gossip-replicated store (``registry/kv.py``).

Reads are answered from this agent's copy of the keyspace (``X-Consul-Effective-Consistency:
stale``, always: there is no leader to ask). Writes are applied here, on disk before the answer,
and spread by gossip; between concurrent writes to one key the newest (hybrid logical clock,
then node ID) wins on every agent.

Everything that needs consensus is refused with 400 and a reason, never served weaker: ``?cas``,
``?acquire``, ``?release``, and the session and transaction endpoints.
"""

from __future__ import annotations

import base64
from typing import Any

from .. import web
from ..acl import READ, WRITE
from ..errors import RequestError
from ..kv import Entry, KVError, cut_keys
from ..kv_service import KVService
from .acl_routes import authorize, keep
from .base import bool_param
from .blocking import blocking_params, check_dc, encode
from .shapes import registry_of

routes = web.RouteTableDef()

NO_CONSENSUS = (
    "{what} needs consensus, which Rumor does not provide: every agent holds the whole KV "
    "store and concurrent writes to a key resolve by last writer wins (see docs/comparison.md). "
    "Use plain reads and writes, give each writer its own keys, or use a system with consensus "
    "(Consul servers, etcd, ZooKeeper) for locks, leader election and compare-and-set."
)


def no_consensus(what: str) -> RequestError:
    return RequestError(NO_CONSENSUS.format(what=what), 400)


def kv_of(request: web.Request) -> KVService:
    kv: KVService = registry_of(request).kv
    return kv


def entry_json(e: Entry) -> dict[str, Any]:
    return {
        "LockIndex": 0, "Key": e.key, "Flags": e.flags,
        "Value": base64.b64encode(e.value).decode() if e.value else None,
        "CreateIndex": e.create_index, "ModifyIndex": e.modify_index,
    }


def _headers(index: int) -> dict[str, str]:
    return {"X-Consul-Index": str(max(1, index)), "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0", "X-Consul-Effective-Consistency": "stale"}


def _key(request: web.Request) -> str:
    return request.match_info["key"]


@routes.get("/v1/kv/{key:.*}")
async def kv_get(request: web.Request) -> web.Response:
    kv = kv_of(request)
    check_dc(request, registry_of(request).catalog)
    key = _key(request)
    keys_mode = "keys" in request.query
    prefix = keys_mode or bool_param(request, "recurse")
    params = blocking_params(request)
    if params is None or params[0] > kv.store.index:
        # (an index above ours comes from another agent or before a restart: answer at once,
        # so that the client resets, as for the catalog)
        index = kv.store.query_index(key, prefix)
    else:
        index = await kv.wait(key, prefix, params[0], params[1])
    headers = _headers(index)
    if prefix:
        # ACLs: the entries the token may read (Consul filters a listing the same way)
        seen = keep(request, kv.store.under(key),
                    lambda who, e: who.allowed("key", e.key, READ))
    if keys_mode:
        found: Any = cut_keys([e.key for e in seen], key, request.query.get("separator", ""))
    elif prefix:
        found = [entry_json(e) for e in seen]
    else:
        authorize(request, "key", key, READ)
        e = kv.store.get(key)
        if e is not None and "raw" in request.query:
            return web.Response(body=e.value or b"", headers=headers,
                                content_type="application/octet-stream")
        found = [entry_json(e)] if e is not None else []
    if not found:
        # Consul's body is empty; clients look at the status only, and a reason helps people
        what = f"no keys under {key!r}" if prefix else f"key not found: {key!r}"
        return web.Response(status=404, text=what + "\n", content_type="text/plain",
                            headers=headers)
    return web.Response(body=encode(found), headers=headers, content_type="application/json")


def _flags(request: web.Request) -> int:
    raw = request.query.get("flags")
    if raw is None or raw == "":
        return 0
    try:
        v = int(raw)
        if not 0 <= v < 2 ** 64:
            raise ValueError
    except ValueError:
        raise RequestError(f"Invalid flags: {raw!r} is not an unsigned 64-bit number") from None
    return v


def _refuse_consensus(request: web.Request) -> None:
    for p in ("cas", "acquire", "release"):
        if p in request.query:
            raise no_consensus(f"?{p}")


@routes.put("/v1/kv/{key:.*}")
async def kv_put(request: web.Request) -> web.Response:
    check_dc(request, registry_of(request).catalog)
    _refuse_consensus(request)
    flags = _flags(request)
    kv = kv_of(request)
    authorize(request, "key", _key(request), WRITE)
    value = await request.read()
    try:
        await kv.put(_key(request), value, flags)
    except KVError as e:
        raise RequestError(e.message, e.status) from None
    return web.json_response(True)


@routes.delete("/v1/kv/{key:.*}")
async def kv_delete(request: web.Request) -> web.Response:
    check_dc(request, registry_of(request).catalog)
    _refuse_consensus(request)
    key = _key(request)
    recurse = bool_param(request, "recurse")
    if not key and not recurse:
        raise RequestError("Missing key name")
    kv = kv_of(request)
    authorize(request, "key", key, WRITE)
    if recurse:
        for e in kv.store.under(key):  # every key it would delete, before deleting any
            authorize(request, "key", e.key, WRITE)
    await kv.delete(key, recurse)
    return web.json_response(True)


@routes.route("*", "/v1/session/{key:.*}")
async def session(request: web.Request) -> web.Response:
    raise no_consensus("Sessions (/v1/session)")


@routes.route("*", "/v1/txn")
async def txn(request: web.Request) -> web.Response:
    raise no_consensus("Transactions (/v1/txn)")

"""Blocking queries and encoded-response caching for the catalog, health and agent reads.

``?index=N&wait=D`` (Consul's blocking query): the request waits until the resource it reads
changes past ``N`` (per-resource indexes, see ``registry/catalog.py``) or ``D`` passes (default
5 min, capped at 10 min, plus up to D/16 of random jitter, like Consul), then answers with the
current data and ``X-Consul-Index``. An index above the current one (the agent restarted and its
indexes with it) answers at once so that the client resets.

Reads are answered from a cache of encoded JSON keyed by (path, significant query, resource
index): a hot read costs a dict lookup, not a re-encode.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from .. import web
from ..catalog import Catalog
from ..durations import parse_duration
from ..errors import RequestError
from .base import ACL_FILTERED, ACL_IDENTITY

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
CACHE_MAX = 2048
_IGNORED_PARAMS = frozenset({"index", "wait", "token", "stale", "consistent", "cached", "near",
                             "dc", "pretty", "ns", "partition", "hash"})


def blocking_params(request: web.Request) -> tuple[int, float] | None:
    """(index, wait seconds with jitter) or None when the request does not block."""
    raw = request.query.get("index")
    if raw is None or raw == "":
        return None
    try:
        index = int(raw)
    except ValueError:
        raise RequestError(f"Invalid index: {raw!r} is not a number") from None
    if index < 0:
        raise RequestError("Invalid index: must be >= 0")
    if index == 0:
        return None
    wait_raw = request.query.get("wait")
    if wait_raw:
        try:
            wait = parse_duration(wait_raw, what="wait")
        except ValueError as e:
            raise RequestError(f"Invalid wait time: {e}") from None
    else:
        wait = DEFAULT_WAIT
    wait = min(wait, MAX_WAIT)
    wait += random.random() * wait / 16
    return index, wait


def check_dc(request: web.Request, catalog: Catalog) -> None:
    dc = request.query.get("dc")
    if dc and dc != catalog.datacenter:
        raise RequestError(f"No path to datacenter {dc!r}; this agent serves "
                           f"{catalog.datacenter!r} only", 400)


async def wait_for(request: web.Request, catalog: Catalog, keys: Sequence[str]) -> int:
    """Block if asked to; return the index to answer with (>= 1)."""
    check_dc(request, catalog)
    params = blocking_params(request)
    if params is None:
        return max(1, max(catalog.key_index(k) for k in keys))
    index, wait = params
    current = max(catalog.key_index(k) for k in keys)
    if index > current:  # our indexes went backwards (restart): let the client reset
        return max(1, current)
    return max(1, await catalog.wait_keys(keys, index, wait))


class ResponseCache:
    """Encoded JSON bodies keyed by request, resource index and, with ACLs on, the token (a
    body filtered for one token is never served to another; whether it was filtered is kept
    with it, for ``X-Consul-Results-Filtered-By-ACLs``)."""

    def __init__(self) -> None:
        self._store: dict[tuple[str, tuple[tuple[str, str], ...], str],
                          tuple[int, bytes, bool]] = {}
        self.hits = 0
        self.misses = 0

    def get(self, request: web.Request, index: int, build: Callable[[], Any]) -> bytes:
        q = tuple(sorted((k, v) for k, v in request.query.items() if k not in _IGNORED_PARAMS))
        ident = request.get(ACL_IDENTITY)
        key = (request.path, q, getattr(ident, "cache_key", ""))
        hit = self._store.get(key)
        if hit is not None and hit[0] == index:
            self.hits += 1
            if hit[2]:
                request[ACL_FILTERED] = True
            return hit[1]
        self.misses += 1
        body = encode(build())
        if len(self._store) >= CACHE_MAX:
            self._store.clear()
        self._store[key] = (index, body, bool(request.get(ACL_FILTERED)))
        return body


def encode(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def respond(body: bytes, index: int, *, status: int = 200,
            extra: dict[str, str] | None = None) -> web.Response:
    headers = {
        "X-Consul-Index": str(max(1, index)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
        "X-Consul-Effective-Consistency": "leader",
    }
    if extra:
        headers.update(extra)
    return web.Response(status=status, body=body, headers=headers,
                        content_type="application/json")

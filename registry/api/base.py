"""Shared pieces of the HTTP API: Consul-style errors and request decoding."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .. import web
from ..errors import RequestError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _request_key(name: str) -> Any:
    """A typed request key where aiohttp has them (3.14+), else the plain string."""
    maker = getattr(web, "RequestKey", None)
    return maker(name, object) if maker is not None else name


ACL_IDENTITY = _request_key("rumor_acl_identity")
"""The request's ACL identity, set by the ACL middleware (``registry.api.acl_routes``)."""
ACL_FILTERED = _request_key("rumor_acl_filtered")
"""Set when a read dropped something the token may not see."""


def text_error(status: int, message: str) -> web.Response:
    """Consul answers errors as plain text with the reason, ending in a newline."""
    return web.Response(status=status, text=message.rstrip("\n") + "\n",
                        content_type="text/plain")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as e:
        return text_error(e.status, e.message)
    except web.HTTPRequestEntityTooLarge as e:
        limit = getattr(e, "max_size", None) or request.app._client_max_size
        return text_error(413, f"Request body too large: the limit is {limit} bytes")
    except web.HTTPMethodNotAllowed as e:
        return text_error(405, f"method {e.method} not allowed")
    except web.HTTPNotFound:
        return text_error(404, "404 page not found")
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "text/plain":
            return text_error(e.status, e.text or e.reason)
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unhandled error path=%s method=%s", request.path, request.method)
        return text_error(500, "internal error; see the agent log")


def json_response(
    data: Any, *, status: int = 200, index: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    h = dict(headers or {})
    if index is not None:
        h["X-Consul-Index"] = str(max(1, index))
        h["X-Consul-KnownLeader"] = "true"
        h["X-Consul-LastContact"] = "0"
    body = json.dumps(data, separators=(",", ":") if compact_list(data) else None)
    return web.Response(status=status, text=body, content_type="application/json", headers=h)


def compact_list(data: Any) -> bool:
    """Whether ``json_response`` sends ``data`` without spaces (lists of more than 50 items)."""
    return isinstance(data, list) and len(data) > 50


MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays and objects a request body may have. Consul's bodies need well
under ten levels; the cap keeps every later walk of the value (validation, persistence, the UI)
far from Python's recursion limit."""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _no_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which JSON (and Consul's Go decoder) does not.
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(value: Any, limit: int) -> bool:
    """Iterative (a recursive walk would itself hit the recursion limit)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            kids: Any = v.values()
        elif isinstance(v, list):
            kids = v
        else:
            continue
        if depth > limit:
            return True
        stack.extend((k, depth + 1) for k in kids)
    return False


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """Read the request body as JSON; a 400 with Consul's wording when it is not JSON, including
    NaN, out-of-range numbers and nesting deeper than ``MAX_JSON_DEPTH``."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise RequestError("Request decode failed: empty body")
        return None
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise RequestError(f"Request decode failed: JSON nested deeper than {MAX_JSON_DEPTH} "
                           "levels") from None
    except ValueError as e:  # UnicodeDecodeError included
        raise RequestError(f"Request decode failed: {e}") from None
    if _too_deep(value, MAX_JSON_DEPTH):
        raise RequestError(f"Request decode failed: JSON nested deeper than {MAX_JSON_DEPTH} "
                           "levels")
    return value


def bool_param(request: web.Request, name: str) -> bool:
    """Consul treats ``?passing``, ``?passing=true`` and ``?passing=1`` as set."""
    if name not in request.query:
        return False
    value = request.query.get(name, "").lower()
    return value not in ("false", "0", "no")

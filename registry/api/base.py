"""Shared pieces of the HTTP API: Consul-style errors and request decoding."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from ..errors import RequestError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    body = json.dumps(data, separators=(",", ":") if _compact(data) else None)
    return web.Response(status=status, text=body, content_type="application/json", headers=h)


def _compact(data: Any) -> bool:
    return isinstance(data, list) and len(data) > 50


async def read_json(request: web.Request, *, required: bool = True) -> Any:
    """Read the request body as JSON; a 400 with Consul's wording when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise RequestError("Request decode failed: empty body")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"Request decode failed: {e}") from None


def bool_param(request: web.Request, name: str) -> bool:
    """Consul treats ``?passing``, ``?passing=true`` and ``?passing=1`` as set."""
    if name not in request.query:
        return False
    value = request.query.get(name, "").lower()
    return value not in ("false", "0", "no")

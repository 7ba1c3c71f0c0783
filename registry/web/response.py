"""Responses: a whole one (:class:`Response`), a streamed one (:class:`StreamResponse`), and the
HTTP errors and redirects a handler raises (:class:`HTTPException` and its kinds).

The names and arguments are aiohttp's (``aiohttp.web``), the subset the agent's API uses, so a
handler reads the same either way.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .multidict import Headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .request import Request

__all__ = [
    "HTTPException", "HTTPFound", "HTTPMethodNotAllowed", "HTTPMove", "HTTPMovedPermanently",
    "HTTPNotFound", "HTTPRequestEntityTooLarge", "HTTPSeeOther", "Response", "StreamResponse",
    "json_response", "reason_of",
]

_REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    203: "Non-Authoritative Information", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type", 417: "Expectation Failed",
    422: "Unprocessable Entity", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout",
}
"""Reason phrases (http.HTTPStatus's, without importing that enum at every start)."""


def reason_of(status: int) -> str:
    """The standard reason phrase of ``status`` (empty for a code not listed)."""
    return _REASONS.get(status, "")


class StreamResponse:
    """A response whose body is written piece by piece after :meth:`prepare` (chunked on
    HTTP/1.1), e.g. ``/v1/agent/monitor``'s log lines."""

    def __init__(self, *, status: int = 200, reason: str | None = None,
                 headers: Mapping[str, str] | Headers | None = None) -> None:
        if not 100 <= int(status) <= 999:
            raise ValueError(f"status {status} is not an HTTP status code")
        self.status = int(status)
        self.reason = reason if reason is not None else reason_of(self.status)
        self.headers = Headers(headers) if headers is not None else Headers()
        self._stream: Any = None           # the connection's writer once prepared

    # -- headers --------------------------------------------------------------------------

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type") or "application/octet-stream"
        return value.split(";", 1)[0].strip()

    def set_cookie(self, name: str, value: str, *, path: str = "/", domain: str | None = None,
                   max_age: int | None = None, expires: str | None = None,
                   secure: bool = False, httponly: bool = False,
                   samesite: str | None = None) -> None:
        parts = [f"{name}={_cookie_value(value)}"]
        if domain:
            parts.append(f"Domain={domain}")
        if expires:
            parts.append(f"expires={expires}")
        if max_age is not None:
            parts.append(f"Max-Age={int(max_age)}")
        if path:
            parts.append(f"Path={path}")
        if samesite:
            parts.append(f"SameSite={samesite}")
        if secure:
            parts.append("Secure")
        if httponly:
            parts.append("HttpOnly")
        self.headers.add("Set-Cookie", "; ".join(parts))

    def del_cookie(self, name: str, *, path: str = "/", domain: str | None = None) -> None:
        self.set_cookie(name, "", path=path, domain=domain, max_age=0,
                        expires="Thu, 01 Jan 1970 00:00:00 GMT")

    # -- streaming ------------------------------------------------------------------------

    async def prepare(self, request: Request) -> None:
        """Send the status line and headers; the body follows with :meth:`write`."""
        if self._stream is None:
            self._stream = request._conn.start_stream(self, request)
            await self._stream.drain()

    async def write(self, data: bytes) -> None:
        if self._stream is None:
            raise RuntimeError("write() before prepare()")
        await self._stream.write(data)



def _cookie_value(value: str) -> str:
    """A cookie value as sent: quoted when it holds characters a bare value may not."""
    if value and any(c in value for c in ' ",;\\') or any(ord(c) < 0x21 for c in value):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return value


class Response(StreamResponse):
    """A whole response: ``text`` (a ``str``, sent as UTF-8) or ``body`` (bytes)."""

    def __init__(self, *, body: bytes | bytearray | str | None = None, status: int = 200,
                 reason: str | None = None, text: str | None = None,
                 headers: Mapping[str, str] | Headers | None = None,
                 content_type: str | None = None, charset: str | None = None) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if body is not None and text is not None:
            raise ValueError("body and text are not allowed together")
        has_type = "Content-Type" in self.headers
        if text is not None:
            if not isinstance(text, str):
                raise TypeError(f"text argument must be str ({type(text).__name__!r})")
            charset = charset or "utf-8"
            self._body: bytes = text.encode(charset)
            if not has_type or content_type is not None:
                self.headers["Content-Type"] = (
                    f"{content_type or 'text/plain'}; charset={charset}")
        else:
            if isinstance(body, str):
                charset = charset or "utf-8"
                body = body.encode(charset)
            self._body = bytes(body) if body is not None else b""
            if content_type is not None:
                self.headers["Content-Type"] = (
                    f"{content_type}; charset={charset}" if charset else content_type)
            elif body is not None and not has_type:
                self.headers["Content-Type"] = "application/octet-stream"

    @property
    def body(self) -> bytes:
        return self._body

    @property
    def text(self) -> str:
        return self._body.decode(self.charset or "utf-8", "replace")

    @property
    def charset(self) -> str | None:
        value = self.headers.get("Content-Type") or ""
        for param in value.split(";")[1:]:
            k, _, v = param.strip().partition("=")
            if k.lower() == "charset":
                return v.strip('"') or None
        return None



def json_response(data: Any = None, *, text: str | None = None, body: bytes | None = None,
                  status: int = 200, reason: str | None = None,
                  headers: Mapping[str, str] | Headers | None = None,
                  content_type: str = "application/json",
                  dumps: Any = json.dumps) -> Response:
    if data is not None and (text is not None or body is not None):
        raise ValueError("only one of data, text or body")
    if text is None and body is None:
        text = dumps(data)
    return Response(text=text, body=body, status=status, reason=reason, headers=headers,
                    content_type=content_type)


# -- errors and redirects ---------------------------------------------------------------------

class HTTPException(Response, Exception):
    """Raised by a handler (or the router) to answer with this status. Only the kinds the API
    raises or catches are defined; add one the same way (a ``status_code``)."""

    status_code = -1

    def __init__(self, *, headers: Mapping[str, str] | Headers | None = None,
                 reason: str | None = None, text: str | None = None,
                 content_type: str | None = None, body: bytes | None = None) -> None:
        if body is None and text is None:
            text = f"{self.status_code}: {reason or reason_of(self.status_code)}"
            content_type = content_type or "text/plain"
        Response.__init__(self, status=self.status_code, headers=headers, reason=reason,
                          text=text, body=body, content_type=content_type)
        Exception.__init__(self, self.reason)

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.reason}>"

    __hash__ = object.__hash__


class HTTPMove(HTTPException):
    """A redirect (3xx) to ``location``."""

    def __init__(self, location: str, *, headers: Mapping[str, str] | Headers | None = None,
                 reason: str | None = None, text: str | None = None,
                 content_type: str | None = None) -> None:
        if not location:
            raise ValueError("a redirect needs a location")
        super().__init__(headers=headers, reason=reason, text=text, content_type=content_type)
        self.headers["Location"] = str(location)
        self.location = str(location)


class HTTPMovedPermanently(HTTPMove):
    status_code = 301


class HTTPFound(HTTPMove):
    status_code = 302


class HTTPSeeOther(HTTPMove):
    status_code = 303


class HTTPNotFound(HTTPException):
    status_code = 404


class HTTPMethodNotAllowed(HTTPException):
    status_code = 405

    def __init__(self, method: str, allowed_methods: Any, *,
                 headers: Mapping[str, str] | Headers | None = None,
                 reason: str | None = None, text: str | None = None,
                 content_type: str | None = None) -> None:
        super().__init__(headers=headers, reason=reason, text=text, content_type=content_type)
        self.headers["Allow"] = ",".join(sorted(allowed_methods))
        self.allowed_methods = set(allowed_methods)
        self.method = method.upper()


class HTTPRequestEntityTooLarge(HTTPException):
    status_code = 413

    def __init__(self, max_size: int, actual_size: int, **kwargs: Any) -> None:
        kwargs.setdefault("text", f"Maximum request body size {max_size} exceeded, "
                                  f"actual body size {actual_size}")
        super().__init__(**kwargs)
        self.max_size = max_size
        self.actual_size = actual_size

"""One HTTP request as a handler sees it (aiohttp's ``web.Request`` names, the subset the agent's
API uses). The server hands it over with its whole body read (bounded by the application's
``client_max_size``), so :meth:`Request.read` never waits on the network."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .multidict import Headers, MultiDict
from .response import HTTPRequestEntityTooLarge

if TYPE_CHECKING:
    import asyncio

    from .app import Application, MatchInfo

_EMPTY_MATCH: Any = {}

__all__ = ["Request"]


class Request(MutableMapping[Any, Any]):
    """``request["key"]`` is storage for middlewares and handlers, as in aiohttp."""

    __slots__ = (
        "_body",
        "_body_size",
        "_conn",
        "_cookies",
        "_query",
        "_state",
        "app",
        "headers",
        "keep_alive",
        "match_info",
        "method",
        "path",
        "query_string",
        "raw_path",
        "transport",
        "version",
    )

    def __init__(self, *, method: str, raw_path: str, path: str, query_string: str,
                 headers: Headers, version: tuple[int, int], keep_alive: bool, app: Application,
                 transport: asyncio.BaseTransport | None, conn: Any, body: bytes | None,
                 body_size: int) -> None:
        self.method = method
        self.raw_path = raw_path            # as sent, still %-encoded, with the query
        self.path = path                    # %-decoded, without the query
        self.query_string = query_string
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.match_info: MatchInfo = _EMPTY_MATCH
        self.app = app
        self.transport = transport
        self._conn = conn
        self._body = body                   # None: larger than the application allows
        self._body_size = body_size
        self._query: MultiDict | None = None
        self._state: dict[Any, Any] | None = None
        self._cookies: dict[str, str] | None = None

    # -- the request line and headers --------------------------------------------------------

    @property
    def query(self) -> MultiDict:
        q = self._query
        if q is None:
            q = self._query = MultiDict(
                parse_qsl(self.query_string, keep_blank_values=True)
                if self.query_string else None)
        return q

    @property
    def path_qs(self) -> str:
        return self.raw_path

    @property
    def host(self) -> str:
        return self.headers.get("Host") or ""

    @property
    def remote(self) -> str | None:
        if self.transport is None:
            return None
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, (list, tuple)) and peer:
            return str(peer[0])
        return None if peer is None else str(peer)

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type") or "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for header in self.headers.getall("Cookie", []):
                for part in header.split(";"):
                    name, eq, value = part.strip().partition("=")
                    if eq and name:
                        value = value.strip()
                        if len(value) >= 2 and value[0] == value[-1] == '"':
                            value = value[1:-1]
                        jar.setdefault(name, value)
            self._cookies = jar
        return self._cookies

    # -- the body -----------------------------------------------------------------------------

    @property
    def can_read_body(self) -> bool:
        return self._body_size > 0

    async def read(self) -> bytes:
        if self._body is None:
            raise HTTPRequestEntityTooLarge(max_size=self.app.client_max_size,
                                            actual_size=self._body_size)
        return self._body

    async def post(self) -> MultiDict:
        """A form body (``application/x-www-form-urlencoded``, what a browser's form sends);
        ``ValueError`` for any other kind or a body that is not UTF-8."""
        if self.method not in ("POST", "PUT", "PATCH"):
            return MultiDict()
        kind = self.content_type
        if kind not in ("application/x-www-form-urlencoded", "application/octet-stream"):
            raise ValueError(f"{kind} is not accepted; send application/x-www-form-urlencoded")
        raw = await self.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the form body is not UTF-8") from None
        return MultiDict(parse_qsl(text, keep_blank_values=True))

    # -- storage ------------------------------------------------------------------------------

    def _store(self) -> dict[Any, Any]:
        if self._state is None:
            self._state = {}
        return self._state

    def __getitem__(self, key: Any) -> Any:
        return self._store()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._store()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._store())

    def __len__(self) -> int:
        return len(self._state) if self._state else 0

    def get(self, key: Any, default: Any = None) -> Any:
        state = self._state
        return default if state is None else state.get(key, default)

    def __contains__(self, key: object) -> bool:
        return self._state is not None and key in self._state

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


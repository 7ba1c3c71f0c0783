"""The application: its state (keyed by :class:`AppKey`), its middlewares and its router.

Routes are declared as in aiohttp (a :class:`RouteTableDef` per module, ``{name}`` for one path
segment, ``{name:regex}`` for a pattern). A path is looked up as aiohttp 3.10+ does: exact
paths and the literal prefixes of patterned ones are indexed, and the longest prefix of the
request's path is tried first, so ``/v1/agent/service/register`` wins over
``/v1/agent/service/{id}`` whatever their order. A path that matches with another method is a
405 with ``Allow``; no match at all is a 404. Both go through the middlewares, as handlers do.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar, overload

from .request import Request
from .response import HTTPMethodNotAllowed, HTTPNotFound, StreamResponse

__all__ = ["AppKey", "Application", "ResourceRoute", "RouteDef", "RouteTableDef", "Router",
           "middleware"]

_T = TypeVar("_T")
Handler = Callable[[Request], Awaitable[StreamResponse]]
Middleware = Callable[[Request, Handler], Awaitable[StreamResponse]]


class AppKey(Generic[_T]):
    """A typed key of the application's state."""

    __slots__ = ("_name", "_type")

    def __init__(self, name: str, t: type[_T] | None = None) -> None:
        self._name = name
        self._type = t

    def __repr__(self) -> str:
        return f"<AppKey({self._name})>"


def middleware(f: _T) -> _T:
    """Marks a middleware (``async def mw(request, handler)``), as aiohttp's decorator does."""
    return f


# -- declaring routes -------------------------------------------------------------------------

class RouteDef:
    __slots__ = ("handler", "kwargs", "method", "path")

    def __init__(self, method: str, path: str, handler: Handler, kwargs: dict[str, Any]
                 ) -> None:
        self.method = method
        self.path = path
        self.handler = handler
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"<RouteDef {self.method} {self.path} -> {self.handler.__name__!r}>"


class RouteTableDef:
    """A module's routes, declared with decorators (``@routes.get("/v1/x")``)."""

    def __init__(self) -> None:
        self._items: list[RouteDef] = []

    def __iter__(self) -> Iterator[RouteDef]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def route(self, method: str, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        def register(handler: _T) -> _T:
            self._items.append(RouteDef(method.upper(), path, handler, kwargs))  # type: ignore[arg-type]
            return handler
        return register

    def get(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("GET", path, **kwargs)

    def head(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("HEAD", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[_T], _T]:
        return self.route("DELETE", path, **kwargs)


# -- resolving --------------------------------------------------------------------------------

_VAR = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<re>(?:[^{}]|\{[^{}]*\})+))?\}")


class Resource:
    """One path (exact or patterned) and its handler per method."""

    __slots__ = ("canonical", "index_key", "pattern", "routes")

    def __init__(self, path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route path {path!r} must start with /")
        self.canonical = path
        self.routes: dict[str, ResourceRoute] = {}
        """Method -> its route."""
        first = path.find("{")
        if first < 0:
            self.pattern: re.Pattern[str] | None = None
            self.index_key = path
            return
        parts: list[str] = []
        pos = 0
        for m in _VAR.finditer(path):
            parts.append(re.escape(path[pos:m.start()]))
            parts.append(f"(?P<{m.group('name')}>{m.group('re') or '[^{}/]+'})")
            pos = m.end()
        tail = path[pos:]
        if "{" in tail or "}" in tail:
            raise ValueError(f"route path {path!r}: unbalanced braces")
        parts.append(re.escape(tail))
        self.pattern = re.compile("".join(parts))
        self.index_key = path[:first].rpartition("/")[0] or "/"

    def match(self, path_safe: str) -> dict[str, str] | None:
        if self.pattern is None:
            return {} if path_safe == self.canonical else None
        m = self.pattern.fullmatch(path_safe)
        if m is None:
            return None
        return {k: _unquote_safe(v) for k, v in m.groupdict().items()}


class MatchInfo(dict[str, str]):
    """The values a path's pattern matched (``match_info["id"]``) and the route it chose:
    ``match_info.route.resource`` is None when nothing matched (a 404 or 405)."""

    __slots__ = ("route",)

    def __init__(self, route: ResourceRoute | _NoRoute, values: dict[str, str] | None = None
                 ) -> None:
        super().__init__(values or ())
        self.route = route


class _NoRoute:
    __slots__ = ()
    resource = None


_NO_ROUTE = _NoRoute()


class ResourceRoute:
    """What :meth:`Router.routes` lists: one method of one resource."""

    __slots__ = ("handler", "method", "resource")

    def __init__(self, method: str, handler: Handler, resource: Resource) -> None:
        self.method = method
        self.handler = handler
        self.resource = resource


def _unquote_safe(value: str) -> str:
    """A matched value still has ``%2F`` and ``%25`` encoded (they are not path structure;
    server.split_target keeps them, upper-cased)."""
    if "%" not in value:
        return value
    return value.replace("%2F", "/").replace("%25", "%")


class Router:
    def __init__(self) -> None:
        self._resources: list[Resource] = []
        self._by_path: dict[str, Resource] = {}
        self._index: dict[str, list[Resource]] = {}
        self._frozen = False

    def add_route(self, method: str, path: str, handler: Handler) -> ResourceRoute:
        if self._frozen:
            raise RuntimeError("cannot add a route once the application serves")
        method = method.upper()
        res = self._by_path.get(path)
        if res is None:
            res = Resource(path)
            self._by_path[path] = res
            self._resources.append(res)
            self._index.setdefault(res.index_key, []).append(res)
        if method in res.routes:
            raise RuntimeError(f"route {method} {path} is already registered")
        route = res.routes[method] = ResourceRoute(method, handler, res)
        return route

    def add_get(self, path: str, handler: Handler, *, allow_head: bool = True
                ) -> ResourceRoute:
        if allow_head:
            self.add_route("HEAD", path, handler)
        return self.add_route("GET", path, handler)

    def add_routes(self, routes: Iterable[RouteDef]) -> None:
        for r in routes:
            if r.method == "GET":
                self.add_get(r.path, r.handler, allow_head=r.kwargs.get("allow_head", True))
            else:
                self.add_route(r.method, r.path, r.handler)

    def routes(self) -> list[ResourceRoute]:
        return [route for res in self._resources for route in res.routes.values()]

    def resolve(self, method: str, path_safe: str) -> tuple[Handler, MatchInfo]:
        """The handler and the match; a handler raising 404 or 405 when there is none."""
        allowed: set[str] = set()
        index = self._index
        part = path_safe
        while part:
            for res in index.get(part, ()):
                found = res.match(path_safe)
                if found is None:
                    continue
                route = res.routes.get(method) or res.routes.get("*")
                if route is not None:
                    return route.handler, MatchInfo(route, found)
                allowed.update(res.routes)
            if part == "/":
                break
            part = part.rpartition("/")[0] or "/"
        if allowed:
            return _Refuse(HTTPMethodNotAllowed, method, allowed), MatchInfo(_NO_ROUTE)
        return _Refuse(HTTPNotFound), MatchInfo(_NO_ROUTE)


class _Refuse:
    """A handler that raises the router's 404 or 405, inside the middlewares."""

    __slots__ = ("args", "kind")

    def __init__(self, kind: Any, *args: Any) -> None:
        self.kind = kind
        self.args = args

    async def __call__(self, request: Request) -> StreamResponse:
        raise self.kind(*self.args)


# -- the application --------------------------------------------------------------------------

class Application(MutableMapping[Any, Any]):
    def __init__(self, *, middlewares: Iterable[Middleware] = (),
                 client_max_size: int = 1024 ** 2,
                 handler_args: dict[str, Any] | None = None) -> None:
        self._state: dict[Any, Any] = {}
        self.router = Router()
        self.middlewares: list[Middleware] = list(middlewares)
        self._client_max_size = client_max_size
        self.handler_args = dict(handler_args or {})
        self._chains: dict[Any, Handler] = {}

    @property
    def client_max_size(self) -> int:
        return self._client_max_size

    # state
    @overload
    def __getitem__(self, key: AppKey[_T]) -> _T: ...
    @overload
    def __getitem__(self, key: str) -> Any: ...
    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._state[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._state

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    # serving
    def _chain(self, handler: Handler) -> Handler:
        """``handler`` behind the middlewares (the first listed is the outermost)."""
        chain = self._chains.get(handler)
        if chain is None:
            chain = handler
            for mw in reversed(self.middlewares):
                chain = _wrap(mw, chain)
            if not isinstance(handler, _Refuse):      # made per request; not kept
                self._chains[handler] = chain
        return chain

    async def _handle(self, request: Request, path_safe: str) -> StreamResponse:
        handler, match = self.router.resolve(request.method, path_safe)
        request.match_info = match
        return await self._chain(handler)(request)


def _wrap(mw: Middleware, inner: Handler) -> Handler:
    async def call(request: Request) -> StreamResponse:
        return await mw(request, inner)
    return call

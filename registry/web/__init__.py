"""The agent's HTTP server: aiohttp's ``web`` names (the subset the API uses) over httptools.

The API's handlers, middlewares and route tables read as aiohttp's (``web.Request``,
``web.Response``, ``web.RouteTableDef``, ``web.AppRunner``...), but the server under them is
this package's: an HTTP/1.1 protocol on httptools' llhttp parser (server.py), a router that
resolves paths as aiohttp 3.10+ does (app.py), and the request and response objects
(request.py, response.py). Importing ``aiohttp.web`` cost an agent ~12 MiB of RSS and ~0.07
CPU-s at every start (bench/startup.py's floors); this costs a fraction of that. aiohttp stays
the agent's HTTP *client* (checks, federation, the container engine), imported when first used.
"""

from __future__ import annotations

from .app import AppKey, Application, ResourceRoute, RouteDef, Router, RouteTableDef, middleware
from .multidict import Headers, MultiDict
from .request import Request
from .response import (
    HTTPException,
    HTTPFound,
    HTTPMethodNotAllowed,
    HTTPMove,
    HTTPMovedPermanently,
    HTTPNotFound,
    HTTPRequestEntityTooLarge,
    HTTPSeeOther,
    Response,
    StreamResponse,
    json_response,
)
from .server import AppRunner, SockSite, TCPSite

__all__ = [
    "AppKey", "AppRunner", "Application", "HTTPException", "HTTPFound", "HTTPMethodNotAllowed",
    "HTTPMove", "HTTPMovedPermanently", "HTTPNotFound", "HTTPRequestEntityTooLarge",
    "HTTPSeeOther", "Headers", "MultiDict", "Request", "ResourceRoute", "Response", "RouteDef",
    "RouteTableDef", "Router", "SockSite", "StreamResponse", "TCPSite", "json_response",
    "middleware",
]

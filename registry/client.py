"""A small synchronous client for the agent's HTTP API, used by the CLI commands."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"


class AgentUnreachable(Exception):
    """The agent did not answer at all (not running, wrong address)."""


class APIError(Exception):
    """The agent answered with an error status; ``text`` is its plain-text reason."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text.strip()}")
        self.status = status
        self.text = text.strip()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Client:
    def __init__(self, addr: str | None = None, token: str | None = None,
                 timeout: float = 10.0) -> None:
        addr = addr or os.environ.get("RUMOR_HTTP_ADDR") or os.environ.get("CONSUL_HTTP_ADDR") \
            or DEFAULT_HTTP_ADDR
        if "://" not in addr:
            addr = "http://" + addr
        self.base = addr.rstrip("/")
        self.token = token or os.environ.get("RUMOR_HTTP_TOKEN") or os.environ.get(
            "CONSUL_HTTP_TOKEN")
        self.timeout = timeout

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, raw: bytes | None = None,
                timeout: float | None = None) -> Response:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(
                [(k, v) for k, v in params.items() if v is not None], doseq=True)
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        if self.token:
            req.add_header("X-Consul-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as e:
            raise APIError(e.code, e.read().decode(errors="replace")) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AgentUnreachable(
                f"cannot reach the agent at {self.base} ({reason}); is `rumor agent` running? "
                "Set -http-addr or RUMOR_HTTP_ADDR to point at it"
            ) from None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body=body, **kw).json()

"""A small synchronous client for the agent's HTTP API, used by the CLI commands."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from gossip.dclass import dataclass

if TYPE_CHECKING:
    import ssl

# http.client and urllib.request (with email.parser behind them) are imported by the request
# that needs them: ``rumor agent`` imports this module through the CLI and sends none, and
# they were ~35 ms of its start-up (issue 13: start-up CPU)

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
    url: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            kind = self.headers.get("Content-Type", "") or "no content type"
            raise AgentUnreachable(
                f"{self.url} answered {self.status} with something that is not JSON ({kind}); "
                "is that the agent's HTTP API? Set -http-addr or RUMOR_HTTP_ADDR to point at it"
            ) from None


def _env(name: str) -> str:
    """``RUMOR_<name>``, else Consul's ``CONSUL_<name>`` (so existing shells carry over)."""
    return os.environ.get(f"RUMOR_{name}") or os.environ.get(f"CONSUL_{name}") or ""


class Client:
    """``addr`` may be ``host:port`` or ``http(s)://host:port``; for HTTPS, ``ca_file``,
    ``client_cert`` and ``client_key`` (default ``$RUMOR_CACERT``, ``$RUMOR_CLIENT_CERT``,
    ``$RUMOR_CLIENT_KEY``), and ``$RUMOR_HTTP_SSL_VERIFY=false`` to skip verification;
    ``$RUMOR_HTTP_SSL=true`` makes a bare ``host:port`` HTTPS. Consul's ``CONSUL_*`` names work
    as well."""

    def __init__(self, addr: str | None = None, token: str | None = None,
                 timeout: float = 10.0, *, ca_file: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None) -> None:
        addr = addr or _env("HTTP_ADDR") or DEFAULT_HTTP_ADDR
        if "://" not in addr:
            scheme = "https" if _env("HTTP_SSL").lower() in ("1", "true", "yes") else "http"
            addr = f"{scheme}://{addr}"
        self.base = addr.rstrip("/")
        self.ssl: ssl.SSLContext | None = None
        if self.base.startswith("https://"):
            from .tls import client_context

            verify = _env("HTTP_SSL_VERIFY").lower() not in ("0", "false", "no")
            try:
                self.ssl = client_context(ca_file=ca_file or _env("CACERT"),
                                          client_cert=client_cert or _env("CLIENT_CERT"),
                                          client_key=client_key or _env("CLIENT_KEY"),
                                          verify=verify)
            except OSError as e:  # ssl.SSLError is an OSError
                raise AgentUnreachable(f"cannot set up TLS to {self.base}: {e}; check "
                                       "-ca-file, -client-cert and -client-key") from None
        self.token = token or os.environ.get("RUMOR_HTTP_TOKEN") or os.environ.get(
            "CONSUL_HTTP_TOKEN")
        self.timeout = timeout

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, raw: bytes | None = None,
                timeout: float | None = None) -> Response:
        import http.client
        import urllib.error
        import urllib.parse
        import urllib.request

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
            with urllib.request.urlopen(req, timeout=timeout or self.timeout,
                                        context=self.ssl) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read(), url)
        except urllib.error.HTTPError as e:
            kind = e.headers.get("Content-Type", "") if e.headers else ""
            if kind.startswith("text/html"):  # the agent's errors are text/plain (Consul's)
                raise AgentUnreachable(
                    f"{url} answered {e.code} with an HTML page; is that the agent's HTTP API? "
                    "Set -http-addr or RUMOR_HTTP_ADDR to point at it"
                ) from None
            raise APIError(e.code, e.read().decode(errors="replace")) from None
        except http.client.HTTPException as e:  # BadStatusLine, LineTooLong...: not HTTP at all
            did = ("closed the connection without an answer"
                   if isinstance(e, http.client.RemoteDisconnected)
                   else f"answered, but not in HTTP ({type(e).__name__})")
            raise AgentUnreachable(
                f"{self.base} {did}; is that the agent's HTTP API port (default 8500)? "
                "Set -http-addr or RUMOR_HTTP_ADDR to point at it"
            ) from None
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

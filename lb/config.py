"""Configuration: :class:`LBConfig` (defaults for every listener) and :class:`ListenerSpec`.

Both are frozen dataclasses built with ``from_dict``, which takes JSON / Consul-style keys
case-insensitively (``Name``, ``name``, ``connect_timeout``, ``ConnectTimeout`` are all the same
key), and validated by ``validate()`` that raises :class:`lb.ConfigError` naming the field and
the fix. Durations are float seconds, or strings such as ``"250ms"``, ``"5s"``, ``"1m"``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import ConfigError

__all__ = ["STRATEGIES", "BackendTLSSpec", "CertificateSpec", "LBConfig", "ListenerSpec",
           "RedirectSpec", "Route", "TLSSpec", "parse_bind", "parse_duration"]

STRATEGIES = ("round_robin", "least_conn", "random", "weighted_round_robin")
_STRATEGY_ALIASES = {
    "roundrobin": "round_robin", "rr": "round_robin", "leastconn": "least_conn",
    "leastconnections": "least_conn", "least_connections": "least_conn",
    "weightedroundrobin": "weighted_round_robin", "wrr": "weighted_round_robin",
    "weighted": "weighted_round_robin",
}
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def parse_duration(value: object, what: str) -> float:
    """Float seconds from a number or a Go-style duration string ("5s", "1m30s", "250ms")."""
    if isinstance(value, bool):
        raise ConfigError(f'{what}: {value!r} is not a duration; write it like "5s" or 5')
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f"{what}: {value!r} is negative; use a duration >= 0")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "0"):
            return 0.0
        pos, total = 0, 0.0
        for m in _DUR.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text) and pos > 0:
            return total
        try:
            return parse_duration(float(text), what)
        except ValueError:
            pass
    raise ConfigError(f'{what}: {value!r} is not a duration; write it like "5s" or 5')


def parse_bind(bind: str, what: str = "bind") -> tuple[str, int]:
    """``"ip:port"`` or ``"[v6]:port"`` -> (ip, port); port 0 asks the OS for a free port."""
    if not isinstance(bind, str) or not bind:
        raise ConfigError(f'{what}: {bind!r} is not an address; write it like "127.0.0.1:9000"')
    host, sep, port_s = bind.rpartition(":")
    if not sep or not port_s.isdigit():
        raise ConfigError(f'{what}: {bind!r} has no port; write it like "127.0.0.1:9000"')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("", "*"):
        host = "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what}: {host!r} is not an IP address; listeners bind to an IP"
                          ) from None
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{what}: {port} is not a port; use 0-65535")
    return host, port


def _to_int(value: object, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{what}: {value!r} is not an integer")
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not an integer") from None
    if n < minimum:
        raise ConfigError(f"{what}: {n} is too small; use an integer >= {minimum}")
    return n


def _to_bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no",
                                                      "0", "off"):
        return value.lower() in ("true", "yes", "1", "on")
    raise ConfigError(f"{what}: {value!r} is not a boolean; use true or false")


@dataclass(frozen=True, kw_only=True, slots=True)
class LBConfig:
    """Defaults and limits shared by every listener of one load balancer."""

    connect_timeout: float = 2.0
    """Seconds to wait for a backend to accept a TCP connection before trying the next one."""
    connect_attempts: int = 3
    """Backends tried for one client connection / request before answering 503 (TCP: closing)."""
    idle_timeout: float = 300.0
    """TCP mode: seconds without a byte in either direction before both sides are closed."""
    client_keepalive_timeout: float = 60.0
    """HTTP mode: seconds an idle keep-alive client connection is kept open."""
    header_timeout: float = 10.0
    """HTTP mode: seconds a client has to send a complete request head (slowloris guard); 408."""
    response_timeout: float = 60.0
    """HTTP mode: seconds from the request being sent until the backend's response head; 504."""
    drain_timeout: float = 30.0
    """Seconds open connections of a removed backend or listener may live on before being cut."""
    max_connections: int = 4096
    """Client connections open at once per listener; more are accepted and closed at once.
    A TCP-mode connection on the splice path holds 6 file descriptors (2 sockets, 2 pipes)."""
    eject_after: int = 3
    """Consecutive connect failures (or HTTP 502-class failures) that eject a backend (passive
    health)."""
    eject_backoff: float = 5.0
    """Seconds an ejected backend sits out the first time; doubled on each ejection in a row."""
    eject_backoff_max: float = 60.0
    """Ceiling of the doubled ejection back-off, seconds."""
    max_request_line: int = 8192
    """Bytes allowed in the request target (URL); longer gets 414."""
    max_header_bytes: int = 65536
    """Bytes allowed in a request or response head; more gets 431 (request) or 502 (response)."""
    max_headers: int = 100
    """Header fields allowed in one request or response head; more gets 431 / 502."""
    max_body: int = 1 << 30
    """Request body bytes allowed (Content-Length or chunked total); more gets 413. 0 = no cap."""
    pool_size: int = 64
    """Idle keep-alive connections kept per backend for reuse by later HTTP requests."""
    pool_idle_timeout: float = 30.0
    """Seconds an idle pooled backend connection is kept before being closed."""
    pipeline_buffer: int = 262144
    """HTTP mode: request bytes buffered from a client while its previous request is still in
    flight (pipelining) or its backend connection is being opened; reading pauses beyond it."""
    splice: bool = True
    """TCP mode: use the zero-copy ``os.splice`` pump on Linux (else asyncio protocols)."""
    pipe_size: int = 262144
    """Bytes of kernel pipe per direction on the splice path (F_SETPIPE_SZ); 0 keeps 64 KiB."""
    sweep_interval: float = 1.0
    """Seconds between sweeps that enforce idle, header and response timeouts."""
    watch_timeout: float = 30.0
    """Seconds one blocking wait on the catalog view lasts before it is renewed."""
    tls_handshake_timeout: float = 10.0
    """TLS listeners: seconds a client has to complete its handshake; counted as ``timeout``
    in the handshake failures when it does not."""

    def validate(self) -> LBConfig:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                continue
            if isinstance(v, (int, float)) and v < 0:
                raise ConfigError(f"lb.{f.name}: {v} is negative; use a value >= 0")
        for name in ("connect_timeout", "sweep_interval", "watch_timeout",
                     "tls_handshake_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"lb.{name}: must be > 0 seconds")
        for name in ("connect_attempts", "max_connections", "eject_after", "max_request_line",
                     "max_header_bytes", "max_headers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"lb.{name}: must be >= 1")
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> LBConfig:
        """Build from a mapping (the agent's ``lb`` section). ``listeners`` is ignored here."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"lb: expected a mapping, got {type(data).__name__}")
        known = {_norm(f.name): f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            nk = _norm(str(key))
            if nk == "listeners":
                continue
            f = known.get(nk)
            if f is None:
                raise ConfigError(f"lb.{key}: unknown setting; known: "
                                  + ", ".join(sorted(x.name for x in fields(cls))))
            what = f"lb.{f.name}"
            default = getattr(cls(), f.name)
            if isinstance(default, bool):
                kwargs[f.name] = _to_bool(value, what)
            elif isinstance(default, int):
                kwargs[f.name] = _to_int(value, what)
            else:
                kwargs[f.name] = parse_duration(value, what)
        return cls(**kwargs).validate()


@dataclass(frozen=True, slots=True)
class Route:
    """HTTP routing rule: requests for ``host`` (any when empty) whose path starts with
    ``path_prefix`` go to instances of ``service`` (with ``tag`` when set)."""

    service: str
    host: str = ""
    path_prefix: str = "/"
    tag: str | None = None

    @classmethod
    def from_value(cls, value: object, what: str) -> Route:
        if isinstance(value, Route):
            return value
        if isinstance(value, str):
            # "host/path=service" or "/path=service" (also "host/path -> service")
            text = value.replace("->", "=")
            left, sep, svc = text.partition("=")
            if not sep or not svc.strip():
                raise ConfigError(f'{what}: {value!r} has no service; write "host/path=service"')
            host, prefix = split_urlprefix(left.strip())
            return cls(service=svc.strip(), host=host, path_prefix=prefix).validate(what)
        if isinstance(value, Mapping):
            d = {_norm(str(k)): v for k, v in value.items()}
            svc_v = d.get("service")
            if not isinstance(svc_v, str) or not svc_v:
                raise ConfigError(f"{what}.Service: required, the service to send requests to")
            svc = svc_v
            host = d.get("host", "") or ""
            prefix = d.get("pathprefix", d.get("path", d.get("prefix", "/"))) or "/"
            tag = d.get("tag")
            if not isinstance(host, str) or not isinstance(prefix, str) or (
                    tag is not None and not isinstance(tag, str)):
                raise ConfigError(f"{what}: Host, PathPrefix and Tag must be strings")
            return cls(service=svc, host=host.lower(), path_prefix=prefix,
                       tag=tag or None).validate(what)
        raise ConfigError(f"{what}: {value!r} is not a route; use an object "
                          '{"Host": ..., "PathPrefix": ..., "Service": ...} or "host/path=service"')

    def validate(self, what: str) -> Route:
        if not self.path_prefix.startswith("/"):
            raise ConfigError(f"{what}: path prefix {self.path_prefix!r} must start with '/'")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"Host": self.host, "PathPrefix": self.path_prefix, "Service": self.service,
                "Tag": self.tag}


def split_urlprefix(text: str) -> tuple[str, str]:
    """fabio's ``host/path`` (or ``/path``) -> (lower-case host without port, path prefix)."""
    slash = text.find("/")
    if slash < 0:
        return text.lower(), "/"
    return text[:slash].lower(), text[slash:]


TLS_VERSIONS = {"tlsv1.2": "TLSv1.2", "tlsv1_2": "TLSv1.2", "tls12": "TLSv1.2", "1.2": "TLSv1.2",
                "tlsv1.3": "TLSv1.3", "tlsv1_3": "TLSv1.3", "tls13": "TLSv1.3", "1.3": "TLSv1.3"}
_TOO_OLD_TLS = {"tlsv1", "tlsv1.0", "tlsv1_0", "tls10", "1.0", "tlsv1.1", "tlsv1_1", "tls11", "1.1",
                "sslv3"}


def _mapping(value: object, what: str, example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: must be an object like {example}")
    return {_norm(str(k)): v for k, v in value.items()}


def _check_keys(d: Mapping[str, Any], known: dict[str, str], what: str) -> None:
    for k in d:
        if k not in known:
            raise ConfigError(f"{what}: unknown key {k!r}; known keys are "
                              + ", ".join(known.values()))


def _opt_file(d: Mapping[str, Any], key: str, what: str) -> str:
    v = d.get(key) or ""
    if not isinstance(v, str):
        raise ConfigError(f"{what}: {v!r} must be a file path (a string)")
    return v


@dataclass(frozen=True, slots=True)
class CertificateSpec:
    """One certificate of a TLS listener: PEM certificate (chain) and its PEM private key."""

    cert_file: str
    key_file: str

    def to_dict(self) -> dict[str, Any]:
        return {"CertFile": self.cert_file, "KeyFile": self.key_file}


@dataclass(frozen=True, slots=True)
class TLSSpec:
    """``TLS``: the listener terminates TLS. The certificate is chosen by the client's SNI
    name (exact names first, then ``*.example.com`` wildcards, which cover one label); the
    first certificate is the default (no SNI, or no certificate for the name)."""

    certificates: tuple[CertificateSpec, ...]
    """``Certificates``: ``[{"CertFile": ..., "KeyFile": ...}, ...]``, at least one."""
    min_version: str = "TLSv1.2"
    """``MinVersion``: ``TLSv1.2`` (default) or ``TLSv1.3``; older versions are refused."""

    @classmethod
    def from_value(cls, value: object, what: str) -> TLSSpec:
        example = '{"Certificates": [{"CertFile": "web.pem", "KeyFile": "web-key.pem"}]}'
        d = _mapping(value, what, example)
        _check_keys(d, {"certificates": "Certificates", "minversion": "MinVersion",
                        "reloads": "Reloads"}, what)
        raw = d.get("certificates")
        if isinstance(raw, Mapping):
            raw = [raw]
        if not isinstance(raw, (list, tuple)) or not raw:
            raise ConfigError(f"{what}.Certificates: required, a list like "
                              '[{"CertFile": "web.pem", "KeyFile": "web-key.pem"}]')
        certs = []
        for i, item in enumerate(raw):
            w = f"{what}.Certificates[{i}]"
            c = _mapping(item, w, '{"CertFile": "web.pem", "KeyFile": "web-key.pem"}')
            _check_keys(c, {"certfile": "CertFile", "keyfile": "KeyFile", "names": "Names"}, w)
            cert = _opt_file(c, "certfile", f"{w}.CertFile")
            key = _opt_file(c, "keyfile", f"{w}.KeyFile")
            if not cert or not key:
                raise ConfigError(f"{w}: CertFile and KeyFile are both required")
            certs.append(CertificateSpec(cert, key))
        mv = d.get("minversion") or "TLSv1.2"
        if not isinstance(mv, str):
            raise ConfigError(f"{what}.MinVersion: {mv!r} must be a string like \"TLSv1.2\"")
        if mv.lower() in _TOO_OLD_TLS:
            raise ConfigError(f"{what}.MinVersion: {mv!r} is too old; use TLSv1.2 or TLSv1.3")
        if mv.lower() not in TLS_VERSIONS:
            raise ConfigError(f"{what}.MinVersion: {mv!r} is not a TLS version; use TLSv1.2 or "
                              "TLSv1.3")
        return cls(certificates=tuple(certs), min_version=TLS_VERSIONS[mv.lower()])

    def to_dict(self) -> dict[str, Any]:
        return {"Certificates": [c.to_dict() for c in self.certificates],
                "MinVersion": self.min_version}


@dataclass(frozen=True, slots=True)
class BackendTLSSpec:
    """``BackendTLS``: the listener speaks TLS to its backends (every backend, or with
    ``TaggedOnly`` only instances registered with the ``tls`` tag)."""

    ca_file: str = ""
    """``CAFile``: PEM CA(s) that sign the backends' certificates. Default: the system's."""
    server_name: str = ""
    """``ServerName``: the name sent as SNI and checked in the backend's certificate.
    Default: the instance's address."""
    skip_verify: bool = False
    """``SkipVerify``: do not verify the backend's certificate (encryption without
    authentication; for testing)."""
    tagged_only: bool = False
    """``TaggedOnly``: TLS only to instances carrying the ``tls`` tag, plain TCP to others."""

    @classmethod
    def from_value(cls, value: object, what: str) -> BackendTLSSpec | None:
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        d = _mapping(value, what, '{"CAFile": "ca.pem", "ServerName": "api.internal"}')
        _check_keys(d, {"cafile": "CAFile", "servername": "ServerName",
                        "skipverify": "SkipVerify", "taggedonly": "TaggedOnly"}, what)
        name = d.get("servername") or ""
        if not isinstance(name, str):
            raise ConfigError(f"{what}.ServerName: {name!r} must be a string")
        return cls(ca_file=_opt_file(d, "cafile", f"{what}.CAFile"), server_name=name,
                   skip_verify=_to_bool(d.get("skipverify", False), f"{what}.SkipVerify"),
                   tagged_only=_to_bool(d.get("taggedonly", False), f"{what}.TaggedOnly"))

    def to_dict(self) -> dict[str, Any]:
        return {"CAFile": self.ca_file, "ServerName": self.server_name,
                "SkipVerify": self.skip_verify, "TaggedOnly": self.tagged_only}


REDIRECT_CODES = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class RedirectSpec:
    """``RedirectHTTPS`` (a plain http listener): every request is answered with a redirect
    to ``https://<Host without port>[:Port]<path>?<query>`` and is not proxied, as HAProxy's
    ``http-request redirect scheme https code 308`` does."""

    port: int = 443
    """``Port``: the HTTPS port to send clients to; 443 is left out of the URL."""
    code: int = 308
    """``Code``: 308 (default; permanent, method kept), 301, 302, 303 or 307."""

    @classmethod
    def from_value(cls, value: object, what: str) -> RedirectSpec | None:
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, int) and not isinstance(value, bool):
            value = {"Port": value}
        d = _mapping(value, what, '{"Port": 443, "Code": 308}')
        _check_keys(d, {"port": "Port", "code": "Code"}, what)
        port = _to_int(d.get("port", 443), f"{what}.Port", 1)
        if port > 65535:
            raise ConfigError(f"{what}.Port: {port} is not a port; use 1-65535")
        code = _to_int(d.get("code", 308), f"{what}.Code")
        if code not in REDIRECT_CODES:
            raise ConfigError(f"{what}.Code: {code} is not a redirect; use 308 (default), 301, "
                              "302, 303 or 307")
        return cls(port=port, code=code)

    def to_dict(self) -> dict[str, Any]:
        return {"Port": self.port, "Code": self.code}


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """One listener: where it binds, how it proxies, and which catalog service it serves."""

    name: str
    """``Name``: unique per agent; PUT with the same name replaces the listener."""
    bind: str
    """``Bind``: ``ip:port`` to listen on (``[v6]:port`` for IPv6)."""
    mode: str = "tcp"
    """``Mode``: ``tcp`` (per-connection balancing, byte pumping) or ``http`` (per-request
    balancing, HTTP/1.1 proxy). Default ``tcp``."""
    service: str = ""
    """``Service``: the catalog service whose healthy instances are the backends."""
    tag: str | None = None
    """``Tag``: only instances carrying this tag. Default: any."""
    strategy: str = "round_robin"
    """``Strategy``: ``round_robin`` (default), ``least_conn``, ``random`` or
    ``weighted_round_robin`` (weights from the instances' ``Weights``)."""
    proxy_protocol: str | None = None
    """``ProxyProtocol``: send a PROXY protocol ``v1`` or ``v2`` header to backends. Default off."""
    routes: tuple[Route, ...] = ()
    """``Routes`` (http mode): ``{Host, PathPrefix, Service, Tag}`` objects or
    ``"host/path=service"`` strings; the longest matching prefix wins."""
    urlprefix: bool = False
    """``URLPrefix`` (http mode): also route by fabio-style ``urlprefix-host/path`` service tags."""
    passing_only: bool = False
    """``PassingOnly``: leave out instances whose worst check is ``warning``."""
    connect_timeout: float | None = None
    """``ConnectTimeout``: seconds to connect to a backend before trying the next. Default: the
    LB config's ``connect_timeout``."""
    idle_timeout: float | None = None
    """``IdleTimeout``: seconds a connection may stay idle. Default: the LB config's."""
    max_connections: int | None = None
    """``MaxConnections``: client connections open at once; more wait in the accept queue.
    Default: the LB config's."""
    tls: TLSSpec | None = None
    """``TLS``: terminate TLS on this listener (:class:`TLSSpec`). Default: plain."""
    backend_tls: BackendTLSSpec | None = None
    """``BackendTLS``: speak TLS to backends (:class:`BackendTLSSpec`). Default: plain, except
    to instances registered with the ``tls`` tag (verified against the system's CAs)."""
    redirect_https: RedirectSpec | None = None
    """``RedirectHTTPS`` (http mode, no TLS): answer every request with a redirect to HTTPS
    (:class:`RedirectSpec`) instead of proxying it."""
    failover: tuple[str, ...] = ()
    """``Failover: {"Datacenters": ["dc2", "dc3"]}``: when no instance of the service is
    healthy here, the backends are those of the nearest listed datacenter that has one (read
    through the view's ``failover_instances``, :class:`lb.view.FailoverView`); traffic comes
    back when local instances recover. Those instances also stand by for passive health: when
    every local one is ejected, or a request failed to connect to each, it goes to them at
    once, before any check notices. Default: none."""

    def validate(self) -> ListenerSpec:
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ConfigError(f"listener Name: {self.name!r} must be non-empty letters, digits,"
                              " '.', '_' or '-'")
        parse_bind(self.bind, f"listener {self.name}: Bind")
        if self.mode not in ("tcp", "http"):
            raise ConfigError(f"listener {self.name}: Mode {self.mode!r} is unknown; use tcp or "
                              "http")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"listener {self.name}: Strategy {self.strategy!r} is unknown; use"
                              f" one of {', '.join(STRATEGIES)}")
        if self.proxy_protocol not in (None, "v1", "v2"):
            raise ConfigError(f"listener {self.name}: ProxyProtocol {self.proxy_protocol!r} is "
                              "unknown; use v1, v2 or leave it empty")
        if self.mode == "tcp" and (self.routes or self.urlprefix):
            raise ConfigError(f"listener {self.name}: Routes and URLPrefix need Mode http")
        if self.redirect_https is not None:
            if self.mode != "http" or self.tls is not None:
                raise ConfigError(f"listener {self.name}: RedirectHTTPS needs Mode http and no "
                                  "TLS (it is the plain listener that sends clients to HTTPS)")
            if self.service or self.routes or self.urlprefix:
                raise ConfigError(f"listener {self.name}: RedirectHTTPS answers every request "
                                  "itself; leave Service, Routes and URLPrefix empty")
        elif not self.service and not self.routes and not self.urlprefix:
            raise ConfigError(f"listener {self.name}: Service is required (or, in http mode, "
                              "Routes or URLPrefix)")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigError(f"listener {self.name}: MaxConnections must be >= 1")
        return self

    @property
    def address(self) -> tuple[str, int]:
        return parse_bind(self.bind)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ListenerSpec:
        """Build from JSON / Consul-style keys, case-insensitively; raises ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"listener: expected an object, got {type(data).__name__}")
        d: dict[str, Any] = {}
        for key, value in data.items():
            d[_norm(str(key))] = value
        known = {"name", "bind", "mode", "service", "tag", "strategy", "proxyprotocol", "routes",
                 "urlprefix", "passingonly", "connecttimeout", "idletimeout", "maxconnections",
                 "counters", "backends", "tls", "backendtls", "redirecthttps",
                 "failover"}
        unknown = [k for k in data if _norm(str(k)) not in known]
        if unknown:
            raise ConfigError(f"listener: unknown key {unknown[0]!r}; known keys are Name, Bind, "
                              "Mode, Service, Tag, Strategy, ProxyProtocol, Routes, URLPrefix, "
                              "PassingOnly, ConnectTimeout, IdleTimeout, MaxConnections, TLS, "
                              "BackendTLS, RedirectHTTPS, Failover")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError("listener Name: required, a unique name for the listener")
        bind = d.get("bind")
        if not isinstance(bind, str) or not bind:
            raise ConfigError(f'listener {name}: Bind is required, like "127.0.0.1:9000"')

        def opt_str(key: str, label: str) -> str | None:
            v = d.get(key)
            if v is None or v == "":
                return None
            if not isinstance(v, str):
                raise ConfigError(f"listener {name}: {label} must be a string, got {v!r}")
            return v

        mode = (opt_str("mode", "Mode") or "tcp").lower()
        strategy = (opt_str("strategy", "Strategy") or "round_robin").lower().replace("-", "_")
        strategy = _STRATEGY_ALIASES.get(strategy.replace("_", ""), strategy)
        pp = opt_str("proxyprotocol", "ProxyProtocol")
        if pp is not None:
            pp = pp.lower()
            pp = {"1": "v1", "2": "v2"}.get(pp, pp)
        routes_raw = d.get("routes") or ()
        if isinstance(routes_raw, (str, Mapping)) or not hasattr(routes_raw, "__iter__"):
            raise ConfigError(f"listener {name}: Routes must be a list")
        routes = tuple(Route.from_value(r, f"listener {name}: Routes[{i}]")
                       for i, r in enumerate(routes_raw))
        spec = cls(
            name=name, bind=bind, mode=mode, service=opt_str("service", "Service") or "",
            tag=opt_str("tag", "Tag"), strategy=strategy, proxy_protocol=pp, routes=routes,
            urlprefix=_to_bool(d.get("urlprefix", False), f"listener {name}: URLPrefix"),
            passing_only=_to_bool(d.get("passingonly", False), f"listener {name}: PassingOnly"),
            connect_timeout=(None if d.get("connecttimeout") is None else parse_duration(
                d["connecttimeout"], f"listener {name}: ConnectTimeout")),
            idle_timeout=(None if d.get("idletimeout") is None else parse_duration(
                d["idletimeout"], f"listener {name}: IdleTimeout")),
            max_connections=(None if d.get("maxconnections") is None else _to_int(
                d["maxconnections"], f"listener {name}: MaxConnections", 1)),
            tls=(None if d.get("tls") is None else TLSSpec.from_value(
                d["tls"], f"listener {name}: TLS")),
            backend_tls=BackendTLSSpec.from_value(d.get("backendtls"),
                                                  f"listener {name}: BackendTLS"),
            redirect_https=RedirectSpec.from_value(d.get("redirecthttps"),
                                                   f"listener {name}: RedirectHTTPS"),
            failover=_failover(d.get("failover"), name),
        )
        return spec.validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "Name": self.name, "Bind": self.bind, "Mode": self.mode, "Service": self.service,
            "Tag": self.tag, "Strategy": self.strategy, "ProxyProtocol": self.proxy_protocol,
            "Routes": [r.to_dict() for r in self.routes], "URLPrefix": self.urlprefix,
            "PassingOnly": self.passing_only, "ConnectTimeout": self.connect_timeout,
            "IdleTimeout": self.idle_timeout, "MaxConnections": self.max_connections,
            "TLS": self.tls.to_dict() if self.tls else None,
            "BackendTLS": self.backend_tls.to_dict() if self.backend_tls else None,
            "RedirectHTTPS": self.redirect_https.to_dict() if self.redirect_https else None,
            "Failover": {"Datacenters": list(self.failover)} if self.failover else None,
        }

    def with_bind(self, bind: str) -> ListenerSpec:
        return replace(self, bind=bind)




def _failover(value: Any, name: str) -> tuple[str, ...]:
    """``{"Datacenters": ["dc2", ...]}`` -> ("dc2", ...)."""
    if value is None:
        return ()
    where = f'listener {name}: Failover must be like {{"Datacenters": ["dc2"]}}'
    if not isinstance(value, Mapping):
        raise ConfigError(where)
    extra = [k for k in value if _norm(str(k)) != "datacenters"]
    if extra:
        raise ConfigError(f"{where}; unknown key {extra[0]!r}")
    dcs: Any = next((v for k, v in value.items() if _norm(str(k)) == "datacenters"), [])
    if isinstance(dcs, (str, bytes)) or not isinstance(dcs, (list, tuple)) or not all(
            isinstance(x, str) and x and re.fullmatch(r"[A-Za-z0-9_\-]+", x) for x in dcs):
        raise ConfigError(f"{where}: Datacenters is a list of datacenter names")
    return tuple(x.lower() for x in dcs)

"""DNS server configuration: one frozen dataclass, Consul's ``dns_config`` keys accepted."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from .errors import ConfigError
from .rrl import RateLimitConfig

__all__ = ["DNSConfig", "SOAConfig", "parse_duration", "parse_recursor"]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(value: object, *, what: str) -> float:
    """Parse a Go duration ("10s", "1m30s", "250ms") or a number of seconds into float seconds."""
    bad = f'{what}: {value!r} is not a duration; write it like "10s"'
    if isinstance(value, bool):
        raise ConfigError(bad)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ConfigError(f'{what}: {value!r} is negative; use a duration >= 0 like "10s"')
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(bad)
    text = value.strip()
    if text in ("", "0"):
        return 0.0
    if text.startswith("-"):
        raise ConfigError(f'{what}: {value!r} is negative; use a duration >= 0 like "10s"')
    pos = 0
    total = 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ConfigError(bad)
    return total


def parse_recursor(text: str, *, what: str = "recursors") -> tuple[str, int]:
    """Parse "ip", "ip:port", "[v6]:port" or "v6" into (ip, port); port defaults to 53."""
    t = text.strip()
    host, port = t, 53
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ConfigError(f"{what}: {text!r} is not an address; write it like 10.0.0.1:53")
        host, rest = t[1:end], t[end + 1:]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ConfigError(f"{what}: {text!r} has a bad port; write it like [::1]:53")
            port = int(rest[1:])
    elif t.count(":") == 1:
        host, _, p = t.partition(":")
        if not p.isdigit():
            raise ConfigError(f"{what}: {text!r} has a bad port; write it like 10.0.0.1:53")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"{what}: {text!r} is not an IP address; write it like 10.0.0.1 or 10.0.0.1:5353"
        ) from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: {text!r}: port {port} is not a port; use 1-65535")
    return host, port


def _norm_domain(d: str) -> str:
    d = d.strip().lower()
    if d and not d.endswith("."):
        d += "."
    return d


@dataclass(frozen=True, kw_only=True, slots=True)
class SOAConfig:
    """The SOA record served for the domain (Consul's ``dns_config.soa``); seconds."""

    refresh: int = 3600
    """SOA refresh, seconds. Default 3600 (Consul's)."""
    retry: int = 600
    """SOA retry, seconds. Default 600."""
    expire: int = 86400
    """SOA expire, seconds. Default 86400."""
    min_ttl: int = 0
    """SOA minimum: the TTL of the SOA record and of negative answers (RFC 2308), seconds.
    Default 0 (Consul's), so a name that appears is found at once."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DNSConfig:
    """Everything the DNS server needs; build with ``DNSConfig(...)`` or ``from_dict``."""

    domain: str = "rumor."
    """The domain answered authoritatively. Default ``rumor.``; ``consul.`` for drop-in use.
    Stored lower case with a trailing dot."""
    alt_domain: str = ""
    """A second domain answered the same way; answers echo the domain that was asked.
    Default empty (none)."""
    bind_addr: str = "127.0.0.1"
    """Address the UDP and TCP listeners bind to. Default ``127.0.0.1``."""
    port: int = 8600
    """Port for UDP and TCP; 0 picks a free port (read it back from ``udp_port``). Default 8600."""
    recursors: tuple[str, ...] = ()
    """Upstream servers ("ip", "ip:port", "[v6]:port") for names outside the domain, tried in
    order (or randomly, see ``recursor_strategy``). Empty: such names get REFUSED. Default ()."""
    recursor_strategy: str = "sequential"
    """"sequential" tries recursors in the listed order; "random" shuffles them per query."""
    recursor_timeout: float = 2.0
    """Seconds to wait for one recursor before trying the next. Default 2.0 (Consul's 2s)."""
    node_ttl: float = 0.0
    """TTL of node (and ``.addr``) answers, seconds (whole seconds on the wire). Default 0."""
    service_ttl: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    """TTL of service answers by service name, seconds. Keys are exact names, prefix
    wildcards ("web*", longest wins) or "*" for the rest. Unmatched: 0. Default {}."""
    soa: SOAConfig = field(default_factory=SOAConfig)
    """The SOA record's timers (see SOAConfig)."""
    enable_additional_node_meta_txt: bool = True
    """Add a node's meta as TXT records to the additional section of its A/AAAA answers
    (Consul's option of the same name). Default True."""
    only_passing: bool = False
    """Leave out instances whose worst check is 'warning' (instances(passing_only=True)).
    Default False, as in Consul."""
    a_record_limit: int = 0
    """Most A/AAAA records in any answer, after rotation; 0 means no limit. Default 0."""
    udp_answer_limit: int = 0
    """Most answer records in a UDP response, after rotation, without setting TC (Consul's
    deliberate trim); 0 means "as many as fit". Default 0 (Consul's is 3: we prefer TC and a
    TCP retry that returns every instance)."""
    enable_truncate: bool = True
    """Set TC when the answer section did not fit a UDP response, so clients retry over TCP.
    False trims silently. Default True (Consul's is False)."""
    max_udp_size: int = 4096
    """EDNS payload size we advertise, and the cap on a UDP response whatever the client
    advertises; bytes, 512-65535. Default 4096."""
    max_query_size: int = 4096
    """Largest query accepted over UDP, bytes; larger ones are dropped and counted.
    Default 4096 (a query is a header, one question and an OPT record)."""
    max_tcp_frame: int = 4096
    """Largest query frame accepted over TCP, bytes (the 2-byte length prefix says how much is
    coming); a larger one closes the connection and is counted. Default 4096."""
    tcp_idle_timeout: float = 10.0
    """Seconds a TCP connection may stay idle before we close it (RFC 7766). Default 10."""
    max_tcp_connections: int = 512
    """Concurrent TCP connections; beyond it new ones are closed at once and counted."""
    max_tcp_pipelined: int = 64
    """Queries of one TCP connection being forwarded upstream at once; beyond it, reading from
    that connection pauses. Default 64."""
    max_forward_inflight: int = 1024
    """Queries being forwarded upstream at once over UDP; beyond it they are dropped and
    counted (the client retries). Default 1024."""
    cache_max_entries: int = 10000
    """Encoded answers kept per catalog index; the oldest go first. Default 10000."""
    cache_max_bytes: int = 32 << 20
    """Bytes of encoded answers the cache may hold (roughly); the oldest entries go first and
    extra rotations are assembled per query instead of kept. Default 32 MiB."""
    cache_max_rotations: int = 64
    """Rotations of one answer kept pre-encoded (a 40-instance answer has 40); rotations
    beyond this are assembled per query. Default 64."""
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    """Response-rate limiting of UDP answers per client network (``dns_config.rate_limit``
    with BIND's keys: responses_per_second, slip, window, ipv4_prefix_length,
    ipv6_prefix_length, max_clients). Off by default; see :mod:`dnsserver.rrl`."""
    ns_address: str = ""
    """Address given for ``ns.<domain>`` (the NS glue). Default: ``bind_addr`` unless it is a
    wildcard, then 127.0.0.1."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", _norm_domain(self.domain))
        object.__setattr__(self, "alt_domain", _norm_domain(self.alt_domain))
        if not isinstance(self.service_ttl, MappingProxyType):
            object.__setattr__(self, "service_ttl",
                               MappingProxyType({k.lower(): v for k, v in self.service_ttl.items()}))
        object.__setattr__(self, "recursors", tuple(self.recursors))

    def validate(self) -> DNSConfig:
        """Raise ConfigError naming the setting and the fix; return self when all is well."""
        for name in ("domain", "alt_domain"):
            d: str = getattr(self, name)
            if name == "alt_domain" and not d:
                continue
            labels = d[:-1].split(".") if d != "." else []
            if not labels or any(not 0 < len(x) <= 63 for x in labels) or len(d) > 253:
                raise ConfigError(f"dns.{name}: {d!r} is not a DNS domain; use something like rumor.")
        if self.alt_domain and self.alt_domain == self.domain:
            raise ConfigError("dns.alt_domain: same as domain; leave it empty or pick another")
        try:
            ipaddress.ip_address(self.bind_addr)
        except ValueError:
            raise ConfigError(f"dns.bind_addr: {self.bind_addr!r} is not an IP address") from None
        if self.ns_address:
            try:
                ipaddress.ip_address(self.ns_address)
            except ValueError:
                raise ConfigError(f"dns.ns_address: {self.ns_address!r} is not an IP address") from None
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"dns.port: {self.port} is not a port; use 1-65535 (0 = any free port)")
        for r in self.recursors:
            parse_recursor(r, what="dns.recursors")
        if self.recursor_strategy not in ("sequential", "random"):
            raise ConfigError(f"dns_config.recursor_strategy: {self.recursor_strategy!r}; "
                              "use \"sequential\" or \"random\"")
        for name in ("recursor_timeout", "tcp_idle_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"dns_config.{name}: must be > 0, like \"2s\"")
        if self.node_ttl < 0:
            raise ConfigError("dns_config.node_ttl: negative; use a duration >= 0 like \"10s\"")
        for k, v in self.service_ttl.items():
            if v < 0:
                raise ConfigError(f"dns_config.service_ttl.{k}: negative; use a duration >= 0")
            if "*" in k[:-1]:
                raise ConfigError(f"dns_config.service_ttl: key {k!r}: '*' may only end a key")
        for name in ("refresh", "retry", "expire", "min_ttl"):
            v = getattr(self.soa, name)
            if not 0 <= v <= 0x7FFFFFFF:
                raise ConfigError(f"dns_config.soa.{name}: {v} out of range; use 0-2147483647")
        for name in ("a_record_limit", "udp_answer_limit"):
            if getattr(self, name) < 0:
                raise ConfigError(f"dns_config.{name}: must be >= 0 (0 = no limit)")
        if not 512 <= self.max_udp_size <= 65535:
            raise ConfigError(f"dns.max_udp_size: {self.max_udp_size}; use 512-65535")
        if not 512 <= self.max_query_size <= 65535:
            raise ConfigError(f"dns.max_query_size: {self.max_query_size}; use 512-65535")
        if not 512 <= self.max_tcp_frame <= 65535:
            raise ConfigError(f"dns.max_tcp_frame: {self.max_tcp_frame}; use 512-65535")
        for name in ("max_tcp_connections", "max_tcp_pipelined", "max_forward_inflight",
                     "cache_max_entries", "cache_max_rotations", "cache_max_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"dns.{name}: must be >= 1")
        _validate_rate_limit(self.rate_limit)
        return self

    def ttl_for_service(self, service: str) -> int:
        """The TTL (whole seconds) of answers about ``service``: exact, longest prefix, '*'."""
        table = self.service_ttl
        s = service.lower()
        if s in table:
            return int(table[s])
        best = -1
        val = table.get("*", 0.0)
        for k, v in table.items():
            if k.endswith("*") and len(k) > 1 and s.startswith(k[:-1]) and len(k) > best:
                best, val = len(k), v
        return int(val)

    @property
    def glue_address(self) -> str:
        """The address served for ``ns.<domain>``."""
        if self.ns_address:
            return self.ns_address
        if self.bind_addr in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return self.bind_addr

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any] | None, /, **overrides: Any) -> DNSConfig:
        """Build from Consul's ``dns_config`` keys (and ours), then apply ``overrides``.

        Durations may be Go strings ("10s") or numbers of seconds. Keys Consul has but that
        mean nothing here (allow_stale, max_stale, use_cache, cache_max_age,
        disable_compression, prefer_namespace) are accepted and ignored. Unknown keys raise
        ConfigError.
        """
        kw: dict[str, Any] = {}
        own = {f.name for f in fields(cls)}
        for key, value in (mapping or {}).items():
            what = f"dns_config.{key}"
            if key in _IGNORED:
                continue
            if key in ("node_ttl", "recursor_timeout", "tcp_idle_timeout"):
                kw[key] = parse_duration(value, what=what)
            elif key == "service_ttl":
                if not isinstance(value, Mapping):
                    raise ConfigError(f'{what}: {value!r} is not a map; write it like {{"*": "5s"}}')
                kw[key] = {str(k): parse_duration(v, what=f"{what}.{k}") for k, v in value.items()}
            elif key == "soa":
                kw[key] = _soa_from(value, what)
            elif key == "rate_limit":
                kw[key] = _rate_limit_from(value, what)
            elif key in ("only_passing", "enable_truncate", "enable_additional_node_meta_txt"):
                if not isinstance(value, bool):
                    raise ConfigError(f"{what}: {value!r} is not a boolean; write true or false")
                kw[key] = value
            elif key in ("a_record_limit", "udp_answer_limit", "port", "max_udp_size",
                         "max_query_size", "max_tcp_frame", "max_tcp_connections",
                         "max_tcp_pipelined",
                         "max_forward_inflight", "cache_max_entries", "cache_max_rotations",
                         "cache_max_bytes"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{what}: {value!r} is not a whole number")
                kw[key] = value
            elif key == "recursors":
                if isinstance(value, str):
                    value = [value]
                kw[key] = tuple(str(v) for v in value)
            elif key in own:
                if not isinstance(value, str):
                    raise ConfigError(f"{what}: {value!r} is not a string")
                kw[key] = value
            else:
                raise ConfigError(f"{what}: unknown key; known keys are "
                                  + ", ".join(sorted(own)))
        for key in overrides:
            if key not in own:
                raise ConfigError(f"dns: unknown setting {key!r}")
        kw.update(overrides)
        if "recursors" in kw:
            kw["recursors"] = tuple(kw["recursors"])
        return cls(**kw).validate()

    def replace(self, **changes: Any) -> DNSConfig:
        """A copy with ``changes`` applied, validated."""
        return replace(self, **changes).validate()


_IGNORED = frozenset({
    "allow_stale", "max_stale", "use_cache", "cache_max_age", "disable_compression",
    "prefer_namespace",
})


def _soa_from(value: object, what: str) -> SOAConfig:
    if not isinstance(value, Mapping):
        raise ConfigError(f'{what}: {value!r} is not a map; write it like {{"min_ttl": 0}}')
    kw: dict[str, int] = {}
    for k, v in value.items():
        if k not in ("refresh", "retry", "expire", "min_ttl"):
            raise ConfigError(f"{what}.{k}: unknown key; use refresh, retry, expire or min_ttl")
        if isinstance(v, bool):
            raise ConfigError(f"{what}.{k}: {v!r} is not a number of seconds")
        if isinstance(v, int):
            kw[k] = v
        else:
            kw[k] = int(parse_duration(v, what=f"{what}.{k}"))
    return SOAConfig(**kw)


_RRL_KEYS = ("responses_per_second", "slip", "window", "ipv4_prefix_length",
             "ipv6_prefix_length", "max_clients")


def _rate_limit_from(value: object, what: str) -> RateLimitConfig:
    if not isinstance(value, Mapping):
        raise ConfigError(f'{what}: {value!r} is not a map; write it like '
                          '{"responses_per_second": 20, "slip": 2}')
    kw: dict[str, Any] = {}
    for k, v in value.items():
        if k not in _RRL_KEYS:
            raise ConfigError(f"{what}.{k}: unknown key; use " + ", ".join(_RRL_KEYS))
        if k == "window":
            kw[k] = parse_duration(v, what=f"{what}.{k}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or (
                k != "responses_per_second" and not isinstance(v, int)):
            raise ConfigError(f"{what}.{k}: {v!r} is not a number")
        else:
            kw[k] = v
    return RateLimitConfig(**kw)


def _validate_rate_limit(r: RateLimitConfig) -> None:
    what = "dns_config.rate_limit"
    if r.responses_per_second < 0:
        raise ConfigError(f"{what}.responses_per_second: {r.responses_per_second} is negative; "
                          "use a rate > 0, or 0 to turn rate limiting off")
    if r.slip < 0:
        raise ConfigError(f"{what}.slip: {r.slip} is negative; use 0 (drop all), 1 (truncate "
                          "all) or N (truncate every Nth limited answer)")
    if r.window <= 0:
        raise ConfigError(f'{what}.window: must be > 0, like "15s"')
    if not 1 <= r.ipv4_prefix_length <= 32:
        raise ConfigError(f"{what}.ipv4_prefix_length: {r.ipv4_prefix_length}; use 1-32")
    if not 1 <= r.ipv6_prefix_length <= 128:
        raise ConfigError(f"{what}.ipv6_prefix_length: {r.ipv6_prefix_length}; use 1-128")
    if r.max_clients < 1:
        raise ConfigError(f"{what}.max_clients: must be >= 1")

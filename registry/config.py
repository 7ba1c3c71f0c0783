"""Agent configuration: files (JSON or TOML), then command-line flags, then validation.

Keys follow Consul's agent configuration (``node_name``, ``bind_addr``, ``ports.http`` …) so that
habits and existing files carry over; flags follow Consul's names (``-node``, ``-http-port`` …) and
are accepted with one dash or two. Later files override earlier ones, flags override files.
Every mistake is reported as a :class:`ConfigError` whose text names the setting and says what to
fix; the agent prints it and exits 1 before it binds anything.

Sections that belong to a subsystem (``dns_config``, ``gossip``, ``lb``) are kept here as plain
mappings and turned into that subsystem's own frozen config by the agent, which also validates them
before anything starts.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import field, fields, replace
from pathlib import Path
from typing import Any

from gossip.dclass import dataclass

from .errors import ConfigError
from .tls import LEGACY_TLS_KEYS

DEFAULT_HTTP_PORT = 8500
DEFAULT_DNS_PORT = 8600
DEFAULT_SERF_LAN_PORT = 7946
DEFAULT_SERF_WAN_PORT = 8302
DEFAULT_HTTPS_PORT = 8501
"""Consul's conventional HTTPS port; HTTPS is off unless ``ports.https`` is set."""


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    """Everything the agent needs to start. Durations are float seconds."""

    node_name: str = ""
    """Node name, unique in the cluster. Default: the host name."""
    datacenter: str = "dc1"
    """Datacenter name, shown in the API and in DNS names. Default ``dc1``."""
    data_dir: str = ""
    """Where local registrations, the node ID and the gossip snapshot live. Required unless -dev."""
    bind_addr: str = "0.0.0.0"
    """Address the gossip UDP and TCP sockets bind to. Default ``0.0.0.0``; -dev: 127.0.0.1."""
    advertise_addr: str = ""
    """Address other agents use to reach this one. Default: ``bind_addr`` when it is specific,
    else the first non-loopback address of the host."""
    client_addr: str = "127.0.0.1"
    """Address the HTTP API, DNS server bind to. Default ``127.0.0.1``."""
    http_port: int = DEFAULT_HTTP_PORT
    """HTTP API port (``ports.http``); 0 picks a free port; -1 disables. Default 8500."""
    https_port: int = -1
    """HTTPS API port (``ports.https``, Consul's is usually 8501); -1 (default) is off. Needs
    ``tls.defaults.cert_file`` and ``key_file``. With ``ports.http = -1`` the API is HTTPS only."""
    dns_port: int = DEFAULT_DNS_PORT
    """DNS port, UDP and TCP (``ports.dns``); 0 picks a free port; -1 disables. Default 8600."""
    serf_lan_port: int = DEFAULT_SERF_LAN_PORT
    """Gossip port, UDP and TCP (``ports.serf_lan``); 0 picks a free port. Default 7946."""
    start_join: tuple[str, ...] = ()
    """Addresses (host[:port]) to join at start; start-up fails if none answers. A host name
    joins every A/AAAA record it has (aiodns, through ``recursors`` when set)."""
    retry_join: tuple[str, ...] = ()
    """Addresses to join at start, retried every ``retry_interval`` until one answers (host
    names as for ``start_join``, resolved again on every attempt)."""
    start_join_wan: tuple[str, ...] = ()
    """WAN pool addresses (host[:port], port 8302) to join at start (``-join-wan``); makes this
    agent a WAN member. Start-up fails if none answers."""
    retry_join_wan: tuple[str, ...] = ()
    """WAN pool addresses to join, retried every ``retry_interval`` (``-retry-join-wan``)."""
    serf_wan_port: int = -1
    """WAN gossip port (``ports.serf_wan``, ``-serf-wan-port``). -1 (default): this agent is a
    WAN member only if it joins the WAN pool (then on 8302); 0 or a port: it is a WAN member,
    on that port (0 = any free port)."""
    retry_interval: float = 30.0
    """Seconds between retry_join attempts. Default 30 s."""
    retry_max: int = 0
    """Attempts before giving up on retry_join; 0 = forever."""
    encrypt: str = ""
    """Base64 gossip encryption key of 16, 24 or 32 bytes (``rumor keygen``). Empty: no encryption."""
    domain: str = "rumor."
    """DNS domain answered by the agent. Default ``rumor.``; ``consul.`` for drop-in use."""
    alt_domain: str = ""
    """A second DNS domain answered the same way."""
    recursors: tuple[str, ...] = ()
    """Upstream DNS servers (ip or ip:port) for names outside the domain."""
    log_level: str = "INFO"
    """One of TRACE, DEBUG, INFO, WARN, ERR. Default INFO."""
    log_json: bool = False
    """Log JSON lines instead of key=value text."""
    dev: bool = False
    """Development mode: one node on 127.0.0.1, temporary data dir removed at exit."""
    node_meta: Mapping[str, str] = field(default_factory=dict)
    """Node metadata, shown in the catalog and DNS TXT records."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Gossip (Serf) tags of this node."""
    services: tuple[Mapping[str, Any], ...] = ()
    """Service definitions loaded at start and on SIGHUP (Consul's ``services``)."""
    checks: tuple[Mapping[str, Any], ...] = ()
    """Node-level check definitions (Consul's ``checks``)."""
    event_handlers: tuple[str, ...] = ()
    """Serf-style event handler scripts: ``[filter=]command``."""
    enable_dns: bool = True
    """Serve DNS on ``client_addr``:``ports.dns``. Default true (``ports.dns = -1`` also turns
    it off)."""
    enable_lb: bool = True
    """Run the load balancer (its listeners come from ``lb.listeners`` and the HTTP API).
    Default true."""
    enable_ui: bool = True
    """Serve the web UI at ``/ui/`` on the HTTP port. Default true."""
    dns_config: Mapping[str, Any] = field(default_factory=dict)
    """Options for the DNS server (see the DNS reference): ttls, only_passing, limits…"""
    gossip: Mapping[str, Any] = field(default_factory=dict)
    """Gossip tuning: ``profile`` (lan, wan, local) and memberlist timings."""
    lb: Mapping[str, Any] = field(default_factory=dict)
    """Load balancer: ``listeners`` and defaults."""
    acl: Mapping[str, Any] = field(default_factory=dict)
    """ACLs: ``enabled``, ``default_policy`` (allow|deny), ``tokens``."""
    tls: Mapping[str, Any] = field(default_factory=dict)
    """TLS of the HTTPS API, Consul's ``tls { defaults { ca_file, cert_file, key_file,
    verify_incoming, tls_min_version } }`` (``tls.https`` overrides ``defaults``; the older
    top-level ``ca_file``/``cert_file``/``key_file``/``verify_incoming`` are read too).
    Certificates are checked at start-up and reloaded on SIGHUP."""
    limits: Mapping[str, Any] = field(default_factory=dict)
    """HTTP limits: ``http_max_body`` bytes (default 4 MiB)."""
    enable_script_checks: bool = False
    """Accept script and Docker checks (they run commands) from any API caller, config files
    included. Default false, as in Consul: anyone who can reach the API could run commands."""
    enable_local_script_checks: bool = False
    """Accept script and Docker checks from config files and from API callers on this host
    (loopback) only. Default false."""
    docker: Mapping[str, Any] = field(default_factory=dict)
    """Containers publish themselves: ``socket`` (the Docker or Podman API's unix socket;
    ``-docker`` alone uses ``DOCKER_HOST`` or /var/run/docker.sock) and ``address``
    (``host``: the published host port on this node's address, the default; ``container``:
    the container's own IP and port). Empty: off (the default)."""
    config_files: tuple[str, ...] = ()
    """The files this config was read from, for SIGHUP reloads."""
    config_dirs: tuple[str, ...] = ()
    """The ``-config-dir`` directories, listed again on reload (a file added there counts)."""

    @property
    def gossip_address(self) -> str:
        return self.advertise_addr or self.bind_addr

    @property
    def wan_member(self) -> bool:
        """Whether this agent is also a member of the WAN pool (joins it, or has a WAN port)."""
        return bool(self.serf_wan_port >= 0 or self.start_join_wan or self.retry_join_wan)

    @property
    def wan_port(self) -> int:
        """The WAN gossip port to bind (8302 unless set)."""
        return self.serf_wan_port if self.serf_wan_port >= 0 else DEFAULT_SERF_WAN_PORT

    @property
    def http_max_body(self) -> int:
        return int(self.limits.get("http_max_body", 4 * 1024 * 1024))


# --- reading files -------------------------------------------------------------------------

_PORT_KEYS = {"http": "http_port", "https": "https_port", "dns": "dns_port",
              "serf_lan": "serf_lan_port", "serf_wan": "serf_wan_port"}
_TUPLE_KEYS = {"start_join", "retry_join", "start_join_wan", "retry_join_wan", "recursors", "event_handlers", "services", "checks"}
_FIELD_NAMES = {f.name for f in fields(AgentConfig)}
_ALIASES = {
    "node": "node_name",
    "bind": "bind_addr",
    "advertise": "advertise_addr",
    "client": "client_addr",
    "join": "start_join",
    "join_wan": "start_join_wan",
    "event_handler": "event_handlers",
    "recursor": "recursors",
}
_IGNORED = {"server", "bootstrap", "bootstrap_expect", "ui_config", "disable_update_check",
            "ui", "telemetry", "leave_on_terminate", "skip_leave_on_interrupt", "log_file"}


def read_file(path: Path) -> dict[str, Any]:
    """Read one JSON or TOML config file into a dict of AgentConfig field names."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"-config-file {path}: cannot read it ({e.strerror})") from e
    try:
        if path.suffix == ".toml":
            import tomllib  # only for TOML files (~5 ms of start-up otherwise, issue 13)

            data: Any = tomllib.loads(raw.decode())
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"{path}: not valid {kind}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object of settings")
    return normalize(data, source=str(path))


def normalize(data: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    """Map Consul-style keys onto AgentConfig fields, refusing unknown keys."""
    out: dict[str, Any] = {}
    legacy_tls: dict[str, Any] = {}
    for key, value in data.items():
        k = _ALIASES.get(key, key)
        if k in _IGNORED:
            continue
        if k in LEGACY_TLS_KEYS:
            legacy_tls[k] = value
            continue
        if k == "ports":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: ports must be an object like {{\"http\": 8500}}")
            for pk, pv in value.items():
                if pk not in _PORT_KEYS:
                    raise ConfigError(
                        f"{source}: ports.{pk} is not a known port; use one of "
                        + ", ".join(sorted(_PORT_KEYS))
                    )
                out[_PORT_KEYS[pk]] = pv
            continue
        if k == "service":
            out.setdefault("services", [])
            out["services"] = list(out["services"]) + [value]
            continue
        if k == "check":
            out["checks"] = list(out.get("checks", [])) + [value]
            continue
        if k not in _FIELD_NAMES or k in ("config_files", "config_dirs"):
            raise ConfigError(f"{source}: unknown setting {key!r}; see docs/configuration.md")
        out[k] = value
    if legacy_tls:
        tls = out.get("tls")
        if tls is not None and not isinstance(tls, dict):
            raise ConfigError(f"{source}: tls must be an object like "
                              "{\"defaults\": {\"cert_file\": ...}}")
        tls = dict(tls or {})
        given = tls.get("defaults")
        defaults: dict[str, Any] = given if isinstance(given, dict) else {}
        tls["defaults"] = {**{("verify_incoming" if k == "verify_incoming_https" else k): v
                              for k, v in legacy_tls.items()}, **defaults}
        out["tls"] = tls
    return out


def files_in_dir(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError(f"-config-dir {directory}: not a directory")
    return sorted(p for p in directory.iterdir() if p.suffix in (".json", ".toml") and p.is_file())


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Later values win; lists of services/checks accumulate, nested maps merge one level."""
    out = dict(base)
    for k, v in extra.items():
        if k in ("services", "checks") and k in out:
            out[k] = list(out[k]) + list(v)
        elif k == "acl" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge_acl(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _merge_acl(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``acl`` from several files: ``policies`` and ``token_list`` accumulate (so a
    ``-config-dir`` may hold an ``acl.json`` written by ``rumor acl`` beside the main file),
    ``tokens`` merge by name, the rest is overridden."""
    out = dict(base)
    for k, v in extra.items():
        if k in ("policies", "token_list") and isinstance(v, list) \
                and isinstance(out.get(k), list):
            out[k] = list(out[k]) + list(v)
        elif k == "tokens" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


# --- flags -----------------------------------------------------------------------------------

def _flag(parser: argparse.ArgumentParser, name: str, **kw: Any) -> None:
    parser.add_argument(f"-{name}", f"--{name}", **kw)


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    """Consul-named flags; each accepted as -name and --name."""
    _flag(p, "dev", action="store_true", default=None, help="development mode: one node on 127.0.0.1, temporary data dir")
    _flag(p, "config-file", action="append", default=[], metavar="FILE", help="JSON or TOML config file (repeatable)")
    _flag(p, "config-dir", action="append", default=[], metavar="DIR", help="directory of .json/.toml config files (repeatable)")
    _flag(p, "node", metavar="NAME", help="node name (default: host name)")
    _flag(p, "datacenter", metavar="DC", help="datacenter (default dc1)")
    _flag(p, "bind", metavar="ADDR", help="gossip bind address (default 0.0.0.0)")
    _flag(p, "advertise", metavar="ADDR", help="gossip address advertised to other agents")
    _flag(p, "client", metavar="ADDR", help="address for the HTTP API and DNS (default 127.0.0.1)")
    _flag(p, "http-port", type=str, metavar="PORT", help="HTTP API port (default 8500)")
    _flag(p, "https-port", type=str, metavar="PORT", help="HTTPS API port (default off; Consul uses 8501; needs tls cert_file/key_file)")
    _flag(p, "dns-port", type=str, metavar="PORT", help="DNS port (default 8600)")
    _flag(p, "serf-lan-port", type=str, metavar="PORT", help="gossip port (default 7946)")
    _flag(p, "serf-wan-port", type=str, metavar="PORT", help="WAN gossip port (default 8302 on a WAN member; setting it makes this agent one)")
    _flag(p, "join-wan", action="append", default=[], metavar="ADDR", help="join this WAN member at start (repeatable; makes this agent a WAN member)")
    _flag(p, "retry-join-wan", action="append", default=[], metavar="ADDR", help="join this WAN member, retrying (repeatable)")
    _flag(p, "data-dir", metavar="DIR", help="data directory")
    _flag(p, "join", action="append", default=[], metavar="ADDR", help="join this agent at start (repeatable)")
    _flag(p, "retry-join", action="append", default=[], metavar="ADDR", help="join this agent, retrying (repeatable)")
    _flag(p, "retry-interval", metavar="DURATION", help="time between retry-join attempts (default 30s)")
    _flag(p, "encrypt", metavar="KEY", help="base64 gossip encryption key (rumor keygen)")
    _flag(p, "domain", metavar="DOMAIN", help="DNS domain (default rumor.)")
    _flag(p, "alt-domain", metavar="DOMAIN", help="alternative DNS domain")
    _flag(p, "recursor", action="append", default=[], metavar="ADDR", help="upstream DNS server (repeatable)")
    _flag(p, "log-level", metavar="LEVEL", help="trace, debug, info, warn, err (default info)")
    _flag(p, "log-json", action="store_true", default=None, help="log JSON lines")
    _flag(p, "node-meta", action="append", default=[], metavar="KEY:VALUE", help="node metadata (repeatable)")
    _flag(p, "tag", action="append", default=[], metavar="KEY=VALUE", help="gossip tag (repeatable)")
    _flag(p, "event-handler", action="append", default=[], metavar="[FILTER=]SCRIPT", help="event handler script (repeatable)")
    _flag(p, "profile", metavar="lan|wan|local", help="gossip timing profile (default lan)")
    _flag(p, "enable-script-checks", action="store_true", default=None, help="accept script and Docker checks from any API caller")
    _flag(p, "enable-local-script-checks", action="store_true", default=None, help="accept script and Docker checks from config files and local API callers")
    _flag(p, "docker", nargs="?", const="", default=None, metavar="SOCKET", help="register running containers (Docker or Podman API socket; default DOCKER_HOST or /var/run/docker.sock)")


def _port(value: str, flag: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"-{flag}: {value!r} is not a port number; use 1-65535") from None


def flags_to_settings(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    simple = {
        "dev": "dev", "node": "node_name", "datacenter": "datacenter", "bind": "bind_addr",
        "advertise": "advertise_addr", "client": "client_addr", "data_dir": "data_dir",
        "encrypt": "encrypt", "domain": "domain", "alt_domain": "alt_domain",
        "log_level": "log_level", "log_json": "log_json", "retry_interval": "retry_interval",
        "enable_script_checks": "enable_script_checks",
        "enable_local_script_checks": "enable_local_script_checks",
    }
    for attr, key in simple.items():
        v = getattr(ns, attr, None)
        if v is not None:
            out[key] = v
    for attr, key in (("http_port", "http_port"), ("https_port", "https_port"),
                      ("dns_port", "dns_port"),
                      ("serf_lan_port", "serf_lan_port"), ("serf_wan_port", "serf_wan_port")):
        v = getattr(ns, attr, None)
        if v is not None:
            out[key] = _port(v, attr.replace("_", "-"))
    for attr, key in (("join", "start_join"), ("retry_join", "retry_join"),
                      ("join_wan", "start_join_wan"), ("retry_join_wan", "retry_join_wan"),
                      ("recursor", "recursors"), ("event_handler", "event_handlers")):
        v = getattr(ns, attr, None)
        if v:
            out[key] = list(v)
    if getattr(ns, "node_meta", None):
        meta: dict[str, str] = {}
        for item in ns.node_meta:
            k, sep, v = item.partition(":")
            if not sep or not k:
                raise ConfigError(f"-node-meta: {item!r} is not KEY:VALUE")
            meta[k] = v
        out["node_meta"] = meta
    if getattr(ns, "tag", None):
        tags: dict[str, str] = {}
        for item in ns.tag:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise ConfigError(f"-tag: {item!r} is not KEY=VALUE")
            tags[k] = v
        out["tags"] = tags
    if getattr(ns, "profile", None):
        out["gossip"] = {"profile": ns.profile}
    if getattr(ns, "docker", None) is not None:
        out["docker"] = {"socket": ns.docker or "default"}
    return out


# --- assembling and validating ------------------------------------------------------------------

def load(ns: argparse.Namespace) -> AgentConfig:
    """Build the agent's config from parsed flags (files named there, then the flags)."""
    settings: dict[str, Any] = {}
    paths: list[Path] = []
    for d in ns.config_dir or []:
        paths.extend(files_in_dir(Path(d)))
    paths.extend(Path(f) for f in ns.config_file or [])
    for path in paths:
        settings = merge(settings, read_file(path))
    settings = merge(settings, flags_to_settings(ns))
    settings["config_files"] = [str(p) for p in paths]
    settings["config_dirs"] = [str(d) for d in ns.config_dir or []]
    return build(settings)


def build(settings: Mapping[str, Any]) -> AgentConfig:
    """Type-check raw settings, apply -dev defaults, and validate."""
    s = dict(settings)
    dev = bool(s.get("dev", False))
    if dev:
        s.setdefault("bind_addr", "127.0.0.1")
        s.setdefault("client_addr", "127.0.0.1")
    kwargs: dict[str, Any] = {}
    for f in fields(AgentConfig):
        if f.name not in s:
            continue
        kwargs[f.name] = _coerce(f.name, s[f.name])
    cfg = AgentConfig(**kwargs)
    if not cfg.node_name:
        cfg = replace(cfg, node_name=socket.gethostname())
    if cfg.domain and not cfg.domain.endswith("."):
        cfg = replace(cfg, domain=cfg.domain + ".")
    if cfg.alt_domain and not cfg.alt_domain.endswith("."):
        cfg = replace(cfg, alt_domain=cfg.alt_domain + ".")
    validate(cfg)
    return cfg


def _coerce(name: str, value: Any) -> Any:
    """Turn one raw value into the field's type, or raise a ConfigError naming the setting."""
    if name in _TUPLE_KEYS or name in ("config_files", "config_dirs"):
        if isinstance(value, (str, dict)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: must be a list")
        if name in ("services", "checks"):
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ConfigError(f"{name}[{i}]: must be an object")
        elif not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: must be a list of strings")
        return tuple(value)
    if name in ("http_port", "https_port", "dns_port", "serf_lan_port", "serf_wan_port",
                "retry_max"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.lstrip("-").isdigit():
                return int(value)
            raise ConfigError(f"{_port_setting(name)}: {value!r} is not a whole number")
        return value
    if name == "retry_interval":
        from .durations import parse_duration

        try:
            return parse_duration(value, what=name)
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if name in ("dev", "log_json", "enable_dns", "enable_lb", "enable_ui",
                "enable_script_checks", "enable_local_script_checks"):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} must be true or false")
        return value
    if name in ("node_meta", "tags"):
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{name}: must be an object of string keys and string values")
        return dict(value)
    if name == "docker" and isinstance(value, str):
        return {"socket": value}
    if name in ("dns_config", "gossip", "lb", "acl", "limits", "tls", "docker"):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: must be an object")
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name}: {value!r} must be a string")
    return value


def _port_setting(name: str) -> str:
    return {"http_port": "ports.http", "https_port": "ports.https", "dns_port": "ports.dns",
            "serf_lan_port": "ports.serf_lan", "serf_wan_port": "ports.serf_wan"}.get(name, name)


_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERR", "ERROR"}


def validate(cfg: AgentConfig) -> None:
    if not cfg.dev and not cfg.data_dir:
        raise ConfigError("data_dir: not set; pass -data-dir DIR (or -dev for a temporary one)")
    _check_node_name(cfg.node_name)
    if not cfg.datacenter or not all(c.isalnum() or c in "-_" for c in cfg.datacenter):
        raise ConfigError(f"datacenter: {cfg.datacenter!r} may only hold letters, digits, - and _")
    for name in ("http_port", "https_port", "dns_port"):
        port = getattr(cfg, name)
        if not -1 <= port <= 65535:
            raise ConfigError(f"{_port_setting(name)}: {port} is not a port; use 1-65535 (0 = any free port, -1 = off)")
    if not 0 <= cfg.serf_lan_port <= 65535:
        raise ConfigError(f"ports.serf_lan: {cfg.serf_lan_port} is not a port; use 1-65535 (0 = any free port)")
    for name in ("bind_addr", "client_addr"):
        _check_ip(name, getattr(cfg, name))
    if cfg.advertise_addr:
        _check_ip("advertise_addr", cfg.advertise_addr)
    if not -1 <= cfg.serf_wan_port <= 65535:
        raise ConfigError(f"ports.serf_wan: {cfg.serf_wan_port} is not a port; use 1-65535 (0 = any free port, -1 = not a WAN member)")
    for addr in cfg.start_join + cfg.retry_join:
        _check_hostport("join", addr)
    for addr in cfg.start_join_wan + cfg.retry_join_wan:
        _check_hostport("join_wan", addr)
    for addr in cfg.recursors:
        _check_hostport("recursors", addr, need_ip=True)
    if cfg.encrypt:
        decode_key(cfg.encrypt)
    if cfg.log_level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"log_level: {cfg.log_level!r} is not a level; use trace, debug, info, warn or err")
    for d in (cfg.domain, cfg.alt_domain):
        if d and (" " in d or ".." in d or d.startswith(".")):
            raise ConfigError(f"domain: {d!r} is not a DNS domain; use something like rumor. or consul.")
    if cfg.retry_interval <= 0:
        raise ConfigError("retry_interval: must be more than 0s")
    policy = cfg.acl.get("default_policy", "allow")
    if policy not in ("allow", "deny"):
        raise ConfigError(f"acl.default_policy: {policy!r}; use allow or deny")
    _check_docker(cfg.docker)
    body = cfg.limits.get("http_max_body", 4 * 1024 * 1024)
    if isinstance(body, bool) or not isinstance(body, int) or body < 1024:
        raise ConfigError("limits.http_max_body: must be a number of bytes >= 1024")


_DOCKER_KEYS = {"socket", "address"}


def _check_docker(d: Mapping[str, Any]) -> None:
    for k in d:
        if k not in _DOCKER_KEYS:
            raise ConfigError(f"docker.{k}: unknown setting; use socket or address")
    sock = d.get("socket", "default")
    if not isinstance(sock, str) or not sock:
        raise ConfigError("docker.socket: must be the path of the engine's unix socket, "
                          "e.g. /var/run/docker.sock or /run/podman/podman.sock")
    if sock.startswith(("tcp://", "http://", "https://")):
        raise ConfigError(f"docker.socket: {sock!r}: only unix sockets are supported; give a "
                          "path (or unix:///path)")
    addr = d.get("address", "host")
    if addr not in ("host", "container"):
        raise ConfigError(f"docker.address: {addr!r}; use host (published ports) or container "
                          "(the container's IP)")


def _check_node_name(name: str) -> None:
    if not name or len(name) > 128 or any(c.isspace() for c in name):
        raise ConfigError(f"node_name: {name!r} must be 1-128 characters with no spaces")


def _check_ip(setting: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{setting}: {value!r} is not an IP address; use e.g. 127.0.0.1") from None


def _check_hostport(setting: str, value: str, need_ip: bool = False) -> None:
    host, port = split_hostport(value, 0)
    if not host:
        raise ConfigError(f"{setting}: {value!r} has no host; use ip or ip:port")
    if need_ip:
        _check_ip(setting, host)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{setting}: {value!r} has a bad port; use 1-65535")


def split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    v = value.strip()
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif v.count(":") == 1:
        host, _, port = v.partition(":")
    else:
        host, port = v, ""
    if not port:
        return host, default_port
    try:
        return host, int(port)
    except ValueError:
        raise ConfigError(f"{value!r}: port {port!r} is not a number") from None


def decode_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("encrypt: not valid base64; generate a key with `rumor keygen`") from None
    if len(key) not in (16, 24, 32):
        raise ConfigError(
            f"encrypt: the key is {len(key)} bytes; it must be 16, 24 or 32 (use `rumor keygen`)"
        )
    return key


def parse_args_settings(argv: Sequence[str]) -> AgentConfig:
    """Convenience for tests: parse agent flags and build the config."""
    p = argparse.ArgumentParser(allow_abbrev=False)
    add_agent_flags(p)
    return load(p.parse_args(list(argv)))

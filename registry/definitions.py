"""Service and check definitions: parsing Consul's JSON (any key casing) into frozen records.

The same parser serves the HTTP API (``/v1/agent/service/register``, ``/v1/agent/check/register``),
the ``services``/``checks`` sections of the agent config and the state file in the data dir, so a
definition that loads from one loads from all. Every refusal is a :class:`DefinitionError` (an
HTTP 400 :class:`RequestError`) whose text names the field and says what is accepted; nothing
is half-applied because parsing finishes before anything changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any

from gossip.dclass import dataclass

from .catalog import CRITICAL, STATUSES, CheckRecord, ServiceRecord
from .durations import format_duration, parse_duration
from .errors import RequestError

MIN_INTERVAL = 0.1
"""Seconds; shorter check intervals are raised to this (Consul raises to 1 s)."""
DEFAULT_TIMEOUT = 10.0
"""Seconds; Consul's default timeout of HTTP, TCP, gRPC, H2PING and UDP checks."""
SCRIPT_TIMEOUT = 30.0
"""Seconds; Consul's default timeout of script and Docker checks."""
OUTPUT_MAX = 4096
"""Bytes of check output kept (Consul's ``check_output_max_size`` default)."""
MAX_META_PAIRS = 64
MAX_META_KEY = 128
MAX_META_VALUE = 512
_META_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

OUTPUT_MAX_LIMIT = 1024 * 1024
"""Bytes; the largest ``OutputMaxSize`` a check may ask for (outputs replicate by gossip)."""
CHECK_KINDS = ("http", "tcp", "ttl", "script", "grpc", "h2ping", "udp", "alias", "docker")
"""The kinds a definition may have (plus the internal ``maintenance`` and ``container``)."""
PROBE_KINDS = frozenset({"http", "tcp", "script", "grpc", "h2ping", "udp", "docker"})
"""Kinds that run every ``Interval`` and whose results pass Consul's
``SuccessBeforePassing``/``FailuresBeforeWarning``/``FailuresBeforeCritical`` counters."""
EXEC_KINDS = frozenset({"script", "docker"})
"""Kinds that run commands: refused unless the agent enables script checks."""


class DefinitionError(RequestError):
    """A service or check definition that cannot be accepted (HTTP 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


def _known(*names: str) -> dict[str, str]:
    return {n.replace("_", "").lower(): n for n in names}


_SERVICE_KEYS = _known(
    "ID", "Name", "Tags", "Address", "Port", "Meta", "Weights", "EnableTagOverride",
    "TaggedAddresses", "Kind", "Check", "Checks", "Token", "Connect", "Proxy", "SocketPath",
    "Locality", "Namespace", "Partition", "ServiceID", "Service", "ServiceName",
)
_CHECK_KEYS = _known(
    "ID", "CheckID", "Name", "Notes", "ServiceID", "Status", "HTTP", "Method", "Header", "Body",
    "TLSSkipVerify", "TLSServerName", "TCP", "TTL", "Interval", "Timeout",
    "SuccessBeforePassing", "FailuresBeforeCritical", "FailuresBeforeWarning",
    "DeregisterCriticalServiceAfter", "Output", "Token", "Namespace", "Partition",
    "Args", "ScriptArgs", "Script", "GRPC", "GRPCUseTLS", "DockerContainerID", "Shell",
    "AliasService", "AliasNode", "H2PING", "H2PingUseTLS", "UDP", "OSService", "Type",
    "DisableRedirects", "OutputMaxSize",
)


class _Keys(dict[str, Any]):
    """A definition's fields by canonical name, remembering how the sender spelled each key
    so that an error names the key as written (``services[0].port``, ``Port`` in the API)."""

    orig: dict[str, str]


def canonical_key(key: str, known: Mapping[str, str]) -> str | None:
    """Map any casing or snake_case of a field name to its PascalCase form in ``known``.

    ``known`` maps lowercase-without-underscores to the canonical name, e.g.
    ``{"deregistercriticalserviceafter": "DeregisterCriticalServiceAfter"}``.
    """
    return known.get(key.replace("_", "").replace("-", "").lower())


def normalize_keys(obj: Any, known: Mapping[str, str], where: str) -> dict[str, Any]:
    """Map every key of a JSON object to its canonical PascalCase name; unknown keys dropped."""
    if not isinstance(obj, dict):
        raise DefinitionError(f"{where or 'body'}: must be a JSON object")
    out = _Keys()
    out.orig = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            continue
        c = canonical_key(k, known)
        if c is not None:
            out[c] = v
            out.orig[c] = k
    return out


def _n(d: Mapping[str, Any], key: str) -> str:
    """The key as the sender wrote it."""
    return d.orig.get(key, key) if isinstance(d, _Keys) else key


def _str(d: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, str):
        raise DefinitionError(f"{where}{_n(d, key)}: must be a string, got {_tname(v)}")
    return v


def _tname(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _int(d: Mapping[str, Any], key: str, where: str, default: int = 0) -> int:
    v = d.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        raise DefinitionError(f"{where}{_n(d, key)}: must be a whole number, got {_tname(v)}")
    return int(v)


def _bool(d: Mapping[str, Any], key: str, where: str) -> bool:
    v = d.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise DefinitionError(f"{where}{_n(d, key)}: must be true or false")
    return v


def _duration(d: Mapping[str, Any], key: str, where: str) -> float:
    v = d.get(key)
    if v is None or v == "":
        return 0.0
    if isinstance(v, int) and not isinstance(v, bool) and v > 1_000_000:
        return v / 1e9  # Go encodes time.Duration as integer nanoseconds
    try:
        return parse_duration(v, what=f"{where}{_n(d, key)}")
    except ValueError as e:
        raise DefinitionError(str(e)) from None


def _meta(d: Mapping[str, Any], where: str) -> dict[str, str]:
    v = d.get("Meta")
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise DefinitionError(f"{where}{_n(d, 'Meta')}: must be an object of string values")
    if len(v) > MAX_META_PAIRS:
        raise DefinitionError(f"{where}{_n(d, 'Meta')}: {len(v)} pairs; at most {MAX_META_PAIRS} allowed")
    out: dict[str, str] = {}
    for k, val in v.items():
        if not _META_KEY.match(k):
            raise DefinitionError(f"{where}{_n(d, 'Meta')}: key {k!r} may only hold letters, digits, - and _")
        if len(k) > MAX_META_KEY:
            raise DefinitionError(f"{where}{_n(d, 'Meta')}: key {k[:20]!r}... is longer than {MAX_META_KEY}")
        if k.startswith(("consul-", "rumor-")):
            raise DefinitionError(f"{where}{_n(d, 'Meta')}: key {k!r} uses a reserved prefix")
        if not isinstance(val, str):
            raise DefinitionError(f"{where}{_n(d, 'Meta')}.{k}: must be a string, got {_tname(val)}")
        if len(val) > MAX_META_VALUE:
            raise DefinitionError(f"{where}{_n(d, 'Meta')}.{k}: value longer than {MAX_META_VALUE}")
        out[k] = val
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckDef:
    """A check as defined by its registrant (what runs locally and persists)."""

    check_id: str
    name: str
    kind: str  # one of CHECK_KINDS, or 'maintenance' | 'container' (made by the agent)
    service_id: str = ""
    notes: str = ""
    initial_status: str = CRITICAL
    http: str = ""
    method: str = "GET"
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    body: str = ""
    disable_redirects: bool = False
    tls_skip_verify: bool = False
    tls_server_name: str = ""
    tcp: str = ""
    ttl: float = 0.0
    args: tuple[str, ...] = ()
    """Script and Docker checks: the command and its arguments (no shell)."""
    shell: str = ""
    """Docker checks: run ``Args`` joined into one line by ``<shell> -c``."""
    docker_container_id: str = ""
    grpc: str = ""
    """``host:port`` or ``host:port/service``."""
    grpc_use_tls: bool = False
    h2ping: str = ""
    h2ping_use_tls: bool = False
    udp: str = ""
    alias_service: str = ""
    alias_node: str = ""
    interval: float = 0.0
    timeout: float = DEFAULT_TIMEOUT
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    output_max_size: int = OUTPUT_MAX
    deregister_critical_after: float = 0.0

    @property
    def runs_commands(self) -> bool:
        return self.kind in EXEC_KINDS

    def to_json(self) -> dict[str, Any]:
        """Consul's field names; parse_check(to_json()) gives this definition back."""
        out: dict[str, Any] = {"CheckID": self.check_id, "Name": self.name,
                               "Status": self.initial_status}
        if self.service_id:
            out["ServiceID"] = self.service_id
        if self.notes:
            out["Notes"] = self.notes
        k = self.kind
        if k == "http":
            out.update(HTTP=self.http, Method=self.method, Body=self.body,
                       Header={k: list(v) for k, v in self.header.items()},
                       DisableRedirects=self.disable_redirects)
        elif k == "tcp":
            out["TCP"] = self.tcp
        elif k == "ttl":
            out["TTL"] = format_duration(self.ttl)
        elif k == "script":
            out["Args"] = list(self.args)
        elif k == "docker":
            out.update(DockerContainerID=self.docker_container_id, Args=list(self.args))
            if self.shell:
                out["Shell"] = self.shell
        elif k == "grpc":
            out.update(GRPC=self.grpc, GRPCUseTLS=self.grpc_use_tls)
        elif k == "h2ping":
            out.update(H2PING=self.h2ping, H2PingUseTLS=self.h2ping_use_tls)
        elif k == "udp":
            out["UDP"] = self.udp
        elif k == "alias":
            out["AliasService"] = self.alias_service
            if self.alias_node:
                out["AliasNode"] = self.alias_node
        if k in ("http", "grpc", "h2ping"):
            out["TLSSkipVerify"] = self.tls_skip_verify
            if self.tls_server_name:
                out["TLSServerName"] = self.tls_server_name
        if k in PROBE_KINDS:
            out["Interval"] = format_duration(self.interval)
            out["Timeout"] = format_duration(self.timeout)
        if self.success_before_passing:
            out["SuccessBeforePassing"] = self.success_before_passing
        if self.failures_before_warning:
            out["FailuresBeforeWarning"] = self.failures_before_warning
        if self.failures_before_critical:
            out["FailuresBeforeCritical"] = self.failures_before_critical
        if self.output_max_size != OUTPUT_MAX:
            out["OutputMaxSize"] = self.output_max_size
        if self.deregister_critical_after:
            out["DeregisterCriticalServiceAfter"] = format_duration(self.deregister_critical_after)
        if k in ("maintenance", "container"):
            out["Type"] = k
        return out

    def record(self, *, status: str, output: str, service_name: str = "",
               service_tags: tuple[str, ...] = ()) -> CheckRecord:
        return CheckRecord(
            check_id=self.check_id, name=self.name, status=status, output=output,
            notes=self.notes, service_id=self.service_id, service_name=service_name,
            service_tags=service_tags, type="" if self.kind == "maintenance" else self.kind,
            interval=format_duration(self.interval) if self.interval else "",
            timeout=format_duration(self.timeout) if self.kind in PROBE_KINDS else "",
        )


def _hostport(d: Mapping[str, Any], key: str, where: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DefinitionError(
            f"{where}{_n(d, key)}: {value!r} is not host:port with a port 1-65535")


def _args(d: Mapping[str, Any], where: str) -> tuple[str, ...]:
    key = "Args" if d.get("Args") not in (None, []) else "ScriptArgs"
    v = d.get(key)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise DefinitionError(f"{where}{_n(d, key)}: must be a list of strings "
                              '(the command and its arguments, e.g. ["/bin/check", "-q"])')
    return tuple(v)


def parse_check(obj: Any, *, where: str = "", service_id: str = "",
                default_id: str = "", default_name: str = "") -> CheckDef:
    """Parse one check definition; ``service_id`` is set for checks embedded in a service."""
    d = normalize_keys(obj, _CHECK_KEYS, where)
    if d.get("Script") not in (None, ""):
        raise DefinitionError(f"{where}{_n(d, 'Script')}: a shell command line is not accepted "
                              '(Consul dropped it too); give the command as Args: ["cmd", "arg"]')
    if d.get("OSService") not in (None, ""):
        raise DefinitionError(f"{where}{_n(d, 'OSService')}: os_service checks watch Windows "
                              "services, which Rumor does not run on; use a script check")
    check_id = _str(d, "CheckID", where) or _str(d, "ID", where) or default_id
    name = _str(d, "Name", where) or default_name
    sid = _str(d, "ServiceID", where) or service_id
    if d.get("Type") in ("maintenance", "container"):
        return CheckDef(check_id=check_id, name=name, kind=d["Type"], service_id=sid,
                        notes=_str(d, "Notes", where),
                        initial_status=_str(d, "Status", where) or CRITICAL)
    if not name:
        raise DefinitionError(f"{where}{_n(d, 'Name')}: missing check name")
    if not check_id:
        check_id = name
    status = _str(d, "Status", where) or CRITICAL
    if status not in STATUSES:
        raise DefinitionError(
            f"{where}{_n(d, 'Status')}: {status!r} is not a check status; use passing, warning or critical")
    http, tcp = _str(d, "HTTP", where), _str(d, "TCP", where)
    ttl = _duration(d, "TTL", where)
    args = _args(d, where)
    docker = _str(d, "DockerContainerID", where)
    grpc, h2ping, udp = _str(d, "GRPC", where), _str(d, "H2PING", where), _str(d, "UDP", where)
    alias_service, alias_node = _str(d, "AliasService", where), _str(d, "AliasNode", where)
    present = (("http", http), ("tcp", tcp), ("ttl", ttl), ("docker", docker),
               ("script", args and not docker), ("grpc", grpc), ("h2ping", h2ping),
               ("udp", udp), ("alias", alias_service or alias_node))
    kinds = [k for k, v in present if v]
    if not kinds:
        raise DefinitionError(
            f"{where}: Must provide TTL or Args/DockerContainerID/HTTP/TCP/GRPC/H2PING/UDP/"
            "AliasService/AliasNode (the check kinds)")
    if len(kinds) > 1:
        raise DefinitionError(f"{where}: a check has one kind; got {' and '.join(kinds)}")
    kind = kinds[0]
    interval = _duration(d, "Interval", where)
    if kind in PROBE_KINDS:
        if interval <= 0:
            raise DefinitionError(f"{where}{_n(d, 'Interval')}: must be > 0 for {kind} checks")
        interval = max(interval, MIN_INTERVAL)
    else:
        interval = 0.0
    default_timeout = SCRIPT_TIMEOUT if kind in EXEC_KINDS else DEFAULT_TIMEOUT
    timeout = _duration(d, "Timeout", where) or default_timeout
    if timeout < 0:
        raise DefinitionError(f"{where}{_n(d, 'Timeout')}: must be positive")
    if kind == "http" and not http.startswith(("http://", "https://")):
        raise DefinitionError(f"{where}{_n(d, 'HTTP')}: {http!r} is not an http:// or https:// URL")
    if kind == "tcp":
        _hostport(d, "TCP", where, tcp)
    if kind == "udp":
        _hostport(d, "UDP", where, udp)
    if kind == "h2ping":
        _hostport(d, "H2PING", where, h2ping)
    if kind == "grpc":
        _hostport(d, "GRPC", where, grpc.partition("/")[0])
    if kind == "docker" and not args:
        raise DefinitionError(f"{where}{_n(d, 'Args')}: a Docker check needs Args, the command "
                              "to run inside the container")
    if kind == "docker" and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", docker):
        raise DefinitionError(f"{where}{_n(d, 'DockerContainerID')}: {docker!r} is not a "
                              "container ID or name")
    header: dict[str, tuple[str, ...]] = {}
    raw_h = d.get("Header")
    if raw_h is not None:
        if not isinstance(raw_h, dict):
            raise DefinitionError(f"{where}{_n(d, 'Header')}: must be an object of header -> [values]")
        for hk, hv in raw_h.items():
            if isinstance(hv, str):
                hv = [hv]
            if not isinstance(hv, list) or not all(isinstance(x, str) for x in hv):
                raise DefinitionError(f"{where}{_n(d, 'Header')}.{hk}: must be a list of strings")
            header[hk] = tuple(hv)
    method = (_str(d, "Method", where) or "GET").upper()
    if not re.match(r"^[A-Z]+$", method):
        raise DefinitionError(f"{where}{_n(d, 'Method')}: {method!r} is not an HTTP method")
    sbp = _int(d, "SuccessBeforePassing", where)
    fbw = _int(d, "FailuresBeforeWarning", where)
    fbc = _int(d, "FailuresBeforeCritical", where)
    if sbp < 0 or fbw < 0 or fbc < 0:
        raise DefinitionError(f"{where}: SuccessBeforePassing, FailuresBeforeWarning and "
                              "FailuresBeforeCritical must be >= 0")
    out_max = _int(d, "OutputMaxSize", where) or OUTPUT_MAX
    if not 0 < out_max <= OUTPUT_MAX_LIMIT:
        raise DefinitionError(f"{where}{_n(d, 'OutputMaxSize')}: {out_max} bytes; use "
                              f"1-{OUTPUT_MAX_LIMIT}")
    return CheckDef(
        check_id=check_id, name=name, kind=kind, service_id=sid,
        notes=_str(d, "Notes", where), initial_status=status, http=http, method=method,
        header=header, body=_str(d, "Body", where),
        disable_redirects=_bool(d, "DisableRedirects", where),
        tls_skip_verify=_bool(d, "TLSSkipVerify", where),
        tls_server_name=_str(d, "TLSServerName", where), tcp=tcp, ttl=ttl, args=args,
        shell=_str(d, "Shell", where) if kind == "docker" else "",
        docker_container_id=docker, grpc=grpc, grpc_use_tls=_bool(d, "GRPCUseTLS", where),
        h2ping=h2ping, h2ping_use_tls=_bool(d, "H2PingUseTLS", where), udp=udp,
        alias_service=alias_service, alias_node=alias_node,
        interval=interval, timeout=timeout, success_before_passing=sbp,
        failures_before_warning=fbw or fbc, failures_before_critical=fbc,
        output_max_size=out_max,
        deregister_critical_after=_duration(d, "DeregisterCriticalServiceAfter", where),
    )


@dataclass(frozen=True, slots=True)
class ServiceDef:
    record: ServiceRecord
    checks: tuple[CheckDef, ...]


def parse_service(obj: Any, *, where: str = "") -> ServiceDef:
    """Parse a service definition with its embedded ``Check``/``Checks``."""
    d = normalize_keys(obj, _SERVICE_KEYS, where)
    name = _str(d, "Name", where) or _str(d, "Service", where) or _str(d, "ServiceName", where)
    if not name:
        raise DefinitionError(f"{where}{_n(d, 'Name')}: Missing service name")
    if "/" in name or any(c.isspace() for c in name):
        raise DefinitionError(f"{where}{_n(d, 'Name')}: {name!r} may not hold '/' or spaces")
    sid = _str(d, "ID", where) or _str(d, "ServiceID", where) or name
    if "/" in sid:
        raise DefinitionError(f"{where}{_n(d, 'ID')}: {sid!r} may not hold '/'")
    port = _int(d, "Port", where)
    if not 0 <= port <= 65535:
        raise DefinitionError(f"{where}{_n(d, 'Port')}: {port} is not a port; use 1-65535")
    tags = d.get("Tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DefinitionError(f"{where}{_n(d, 'Tags')}: must be a list of strings")
    weights = d.get("Weights")
    wp, ww = 1, 1
    if weights is not None:
        w = normalize_keys(weights, _known("Passing", "Warning"), f"{where}Weights")
        wp = _int(w, "Passing", f"{where}Weights.", 1)
        ww = _int(w, "Warning", f"{where}Weights.", 1)
        if wp < 1 or ww < 0:
            raise DefinitionError(f"{where}{_n(d, 'Weights')}: Passing must be >= 1 and Warning >= 0")
    raw_tagged = d.get("TaggedAddresses") or {}
    if not isinstance(raw_tagged, dict):
        raise DefinitionError(f"{where}{_n(d, 'TaggedAddresses')}: must be an object")
    tagged: dict[str, dict[str, Any]] = {}
    for tk, tv in raw_tagged.items():
        tw = f"{where}TaggedAddresses.{tk}"
        ta = normalize_keys(tv, _known("Address", "Port"), tw)
        tport = _int(ta, "Port", f"{tw}.")
        if not 0 <= tport <= 65535:
            raise DefinitionError(f"{tw}.Port: {tport} is not a port; use 1-65535")
        tagged[tk] = {"Address": _str(ta, "Address", f"{tw}."), "Port": tport}
    kind = _str(d, "Kind", where)
    rec = ServiceRecord(
        id=sid, service=name, tags=tuple(tags), address=_str(d, "Address", where), port=port,
        meta=_meta(d, where), weight_passing=wp, weight_warning=ww,
        tagged_addresses=tagged, enable_tag_override=_bool(d, "EnableTagOverride", where),
        kind=kind,
    )
    raw_checks: list[Any] = []
    if d.get("Check") is not None:
        raw_checks.append(d["Check"])
    if d.get("Checks") is not None:
        if not isinstance(d["Checks"], list):
            raise DefinitionError(f"{where}{_n(d, 'Checks')}: must be a list of check objects")
        raw_checks.extend(d["Checks"])
    checks: list[CheckDef] = []
    many = len(raw_checks) > 1
    for n, c in enumerate(raw_checks, start=1):
        default_id = f"service:{sid}:{n}" if many else f"service:{sid}"
        cd = parse_check(c, where=f"{where}Checks[{n - 1}].", service_id=sid,
                         default_id=default_id, default_name=f"Service '{name}' check")
        if cd.service_id != sid:
            cd = replace(cd, service_id=sid)
        checks.append(cd)
    ids = [c.check_id for c in checks]
    if len(set(ids)) != len(ids):
        raise DefinitionError(f"{where}{_n(d, 'Checks')}: duplicate CheckID")
    return ServiceDef(rec, tuple(checks))


def service_to_json(rec: ServiceRecord) -> dict[str, Any]:
    """A service in the registration format (also what the state file stores)."""
    out: dict[str, Any] = {
        "ID": rec.id, "Name": rec.service, "Tags": list(rec.tags), "Address": rec.address,
        "Port": rec.port, "Meta": dict(rec.meta),
        "Weights": {"Passing": rec.weight_passing, "Warning": rec.weight_warning},
        "EnableTagOverride": rec.enable_tag_override,
    }
    if rec.tagged_addresses:
        out["TaggedAddresses"] = dict(rec.tagged_addresses)
    if rec.kind:
        out["Kind"] = rec.kind
    return out

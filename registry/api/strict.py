"""Strict, Consul-compatible decoding of request bodies.

Consul decodes request bodies with Go's ``DisallowUnknownFields`` (``lib.DecodeJSON``), so a
misspelled key (``{"Name": "web", "Prot": 8087}``) is refused with 400 ``Request decode failed:
json: unknown field "Prot"`` instead of registering port 0. Rumor does the same, with Consul's
field lists: a field Consul knows is never refused as unknown, whether Rumor stores it or ignores
it (docs/http-api.md says which). Names match in any casing and with or without ``_``/``-``, as
Consul's decoder and its snake_case aliases do.

Fields that Consul knows and Rumor cannot honour are refused with a 400 that says so, instead of
being dropped silently: ``Connect`` and ``Proxy`` (no service mesh), a ``Namespace`` or
``Partition`` other than ``default``, and ``PeerName``; likewise the query parameters ``?ns``,
``?partition`` (other than ``default``) and ``?peer`` on every ``/v1/`` path (see
:func:`scope_middleware`).

Everything here only reads the decoded JSON; the body is checked before anything is parsed or
applied, so a refusal registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from typing import Any

from gossip.dclass import dataclass

from .. import web
from ..errors import RequestError
from .base import Handler


@dataclass(frozen=True)
class Obj:
    """A JSON object with known fields; ``fields`` maps a name to its value's shape (None: any)."""

    fields: Mapping[str, Any]
    index: dict[str, str] = field(init=False, default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in self.fields:
            self.index[_norm(name)] = name


@dataclass(frozen=True)
class ListOf:
    item: Any


@dataclass(frozen=True)
class MapOf:
    """An object with free keys (``Meta``, ``TaggedAddresses``) whose values have a shape."""

    value: Any


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def _leaves(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names)


WEIGHTS = Obj(_leaves("Passing", "Warning"))
SERVICE_ADDRESS = Obj(_leaves("Address", "Port"))
LOCALITY = Obj(_leaves("Region", "Zone"))
ENTERPRISE = ("Namespace", "Partition")

_CHECK_COMMON = (
    "Name", "Status", "Notes", "ScriptArgs", "Args", "HTTP", "H2PING", "H2PingUseTLS", "Method",
    "Body", "DisableRedirects", "TCP", "TCPUseTLS", "UDP", "Interval", "AliasNode", "AliasService",
    "DockerContainerID", "Shell", "GRPC", "GRPCUseTLS", "OSService", "TLSServerName",
    "TLSSkipVerify", "Timeout", "TTL", "SuccessBeforePassing", "FailuresBeforeWarning",
    "FailuresBeforeCritical", "DeregisterCriticalServiceAfter", "OutputMaxSize", *ENTERPRISE,
)
CHECK = Obj({
    **_leaves(*_CHECK_COMMON, "CheckID", "ID", "ServiceID", "Token", "ProxyHTTP", "ProxyGRPC",
              # accepted by Rumor's own parser and state file before strict decoding existed
              "Script", "Output", "Type"),
    "Header": MapOf(None),
})
"""Consul's ``CheckType`` and ``CheckDefinition`` (agent check register, a service's checks)."""

SERVICE = Obj({
    **_leaves("Kind", "ID", "Name", "Tags", "Address", "Meta", "Port", "Ports", "SocketPath",
              "Token", "EnableTagOverride", "Proxy", "Connect", *ENTERPRISE,
              # older spellings Rumor's parser has always taken (NodeService's field names)
              "Service", "ServiceID", "ServiceName"),
    "Meta": MapOf(None),
    "TaggedAddresses": MapOf(SERVICE_ADDRESS),
    "Check": CHECK, "Checks": ListOf(CHECK),
    "Weights": WEIGHTS, "Locality": LOCALITY,
})
"""Consul's ``ServiceDefinition`` (``PUT /v1/agent/service/register``)."""

HEALTH_CHECK_DEFINITION = Obj({
    **_leaves("HTTP", "TLSServerName", "TLSSkipVerify", "Method", "Body", "DisableRedirects",
              "TCP", "TCPUseTLS", "UDP", "H2PING", "H2PingUseTLS", "OSService", "Interval",
              "OutputMaxSize", "Timeout", "DeregisterCriticalServiceAfter", "ScriptArgs",
              "DockerContainerID", "Shell", "GRPC", "GRPCUseTLS", "AliasNode", "AliasService",
              "TTL", "IntervalDuration", "TimeoutDuration",
              "DeregisterCriticalServiceAfterDuration"),
    "Header": MapOf(None),
})
HEALTH_CHECK = Obj({
    **_leaves("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "PeerName",
              "CreateIndex", "ModifyIndex", *ENTERPRISE),
    "Definition": HEALTH_CHECK_DEFINITION,
})
"""Consul's ``HealthCheck`` (a check in ``PUT /v1/catalog/register``)."""

NODE_SERVICE = Obj({
    **_leaves("Kind", "ID", "Service", "Name", "Tags", "Address", "Port", "Ports", "SocketPath",
              "EnableTagOverride", "Proxy", "Connect", "PeerName", "LocallyRegisteredAsSidecar",
              "CreateIndex", "ModifyIndex", *ENTERPRISE),
    "Meta": MapOf(None),
    "TaggedAddresses": MapOf(SERVICE_ADDRESS),
    "Weights": WEIGHTS, "Locality": LOCALITY,
})
"""Consul's ``NodeService`` (the ``Service`` of ``PUT /v1/catalog/register``)."""

CATALOG_REGISTER = Obj({
    **_leaves("Datacenter", "ID", "Node", "Address", "SkipNodeUpdate", "Token", "PeerName",
              "WriteRequest", *ENTERPRISE),
    "TaggedAddresses": MapOf(None), "NodeMeta": MapOf(None),
    "Service": NODE_SERVICE, "Check": HEALTH_CHECK, "Checks": ListOf(HEALTH_CHECK),
    "Locality": LOCALITY,
})
"""Consul's ``RegisterRequest``."""

CATALOG_DEREGISTER = Obj(_leaves("Datacenter", "Node", "ServiceID", "CheckID", "PeerName", "Token",
                                 "Address", "WriteRequest", *ENTERPRISE))
"""Consul's ``DeregisterRequest`` (``Address`` is obsolete and explicitly allowed).
``WriteRequest`` (``{"Token": ...}``) is what py-consul sends for the embedded struct."""

CHECK_UPDATE = Obj(_leaves("Status", "Output"))
"""``PUT /v1/agent/check/update/:id``."""

_UNSUPPORTED = {
    "connect": "Connect: service mesh (Connect) is not supported by Rumor; register the service "
               "without it",
    "proxy": "Proxy: Connect proxies are not supported by Rumor; register the service without it",
    "peername": "PeerName: cluster peering is not supported by Rumor",
}


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == {} or v == []


def check_body(body: Any, shape: Obj) -> None:
    """Refuse unknown fields (Consul's wording) and fields Rumor cannot honour."""
    _walk(body, shape)


def _walk(value: Any, shape: Any) -> None:
    if shape is None or value is None:
        return
    if isinstance(shape, ListOf):
        if isinstance(value, list):
            for v in value:
                _walk(v, shape.item)
        return
    if isinstance(shape, MapOf):
        if isinstance(value, dict):
            for v in value.values():
                _walk(v, shape.value)
        return
    if not isinstance(value, dict):
        return  # a wrong type is the parser's to name
    for key, v in value.items():
        name = shape.index.get(_norm(key)) if isinstance(key, str) else None
        if name is None:
            raise RequestError(f'Request decode failed: json: unknown field "{key}"')
        n = _norm(name)
        if n in _UNSUPPORTED and not _empty(v):
            raise RequestError(_UNSUPPORTED[n])
        if name in ENTERPRISE and not _empty(v) and v != "default":
            raise RequestError(f"{key}: {v!r}: namespaces and admin partitions are not "
                               "supported by Rumor; only the default one exists")
        _walk(v, shape.fields[name])


@web.middleware
async def scope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``?ns``/``?partition`` other than ``default``, and ``?peer``: 400, never ignored."""
    if request.path.startswith("/v1/"):
        q = request.query
        for p in ("ns", "partition"):
            v = q.get(p)
            if v and v != "default":
                raise RequestError(f"?{p}={v}: namespaces and admin partitions are not "
                                   "supported by Rumor; only the default one exists")
        if q.get("peer"):
            raise RequestError("?peer: cluster peering is not supported by Rumor")
    return await handler(request)

"""Consul's JSON shapes for nodes, services and checks (PascalCase, every field present)."""

from __future__ import annotations

from typing import Any

from .. import web
from ..catalog import Catalog, Check, Instance, Node, ServiceRecord
from ..errors import RequestError
from ..service import Registry
from .blocking import ResponseCache
from .keys import CATALOG, REGISTRY, RESPONSE_CACHE


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def catalog_of(request: web.Request) -> Catalog:
    return request.app[CATALOG]


def response_cache_of(request: web.Request) -> ResponseCache:
    return request.app[RESPONSE_CACHE]


def node_json(n: Node) -> dict[str, Any]:
    return {
        "ID": n.node_id, "Node": n.name, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses), "Meta": dict(n.meta),
        "CreateIndex": n.create_index, "ModifyIndex": n.modify_index,
    }


def _weights(r: ServiceRecord) -> dict[str, int]:
    return {"Passing": r.weight_passing, "Warning": r.weight_warning}


def service_json(r: ServiceRecord, create: int, modify: int) -> dict[str, Any]:
    """A service as in ``/v1/health/service`` and ``/v1/catalog/node``."""
    out: dict[str, Any] = {
        "ID": r.id, "Service": r.service, "Tags": list(r.tags), "Address": r.address,
        "TaggedAddresses": dict(r.tagged_addresses), "Meta": dict(r.meta), "Port": r.port,
        "Weights": _weights(r), "EnableTagOverride": r.enable_tag_override,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "Connect": {}, "PeerName": "",
        "CreateIndex": create, "ModifyIndex": modify,
    }
    if r.kind:
        out["Kind"] = r.kind
    return out


def check_json(c: Check) -> dict[str, Any]:
    r = c.record
    return {
        "Node": c.node, "CheckID": r.check_id, "Name": r.name, "Status": r.status,
        "Notes": r.notes, "Output": r.output, "ServiceID": r.service_id,
        "ServiceName": r.service_name, "ServiceTags": list(r.service_tags), "Type": r.type,
        "Interval": r.interval, "Timeout": r.timeout, "ExposedPort": 0, "Definition": {},
        "CreateIndex": c.create_index, "ModifyIndex": c.modify_index,
    }


def health_entry_json(i: Instance) -> dict[str, Any]:
    return {
        "Node": node_json(i.node_obj),
        "Service": service_json(i.record, i.create_index, i.modify_index),
        "Checks": [check_json(c) for c in i.checks],
    }


def catalog_service_json(i: Instance) -> dict[str, Any]:
    n, r = i.node_obj, i.record
    return {
        "ID": n.node_id, "Node": n.name, "Address": n.address, "Datacenter": n.datacenter,
        "TaggedAddresses": dict(n.tagged_addresses), "NodeMeta": dict(n.meta),
        "ServiceKind": r.kind, "ServiceID": r.id, "ServiceName": r.service,
        "ServiceTags": list(r.tags), "ServiceAddress": r.address,
        "ServiceTaggedAddresses": dict(r.tagged_addresses), "ServiceWeights": _weights(r),
        "ServiceMeta": dict(r.meta), "ServicePort": r.port,
        "ServiceEnableTagOverride": r.enable_tag_override,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}}, "ServiceConnect": {},
        "ServicePeerName": "", "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
    }


def agent_service_json(r: ServiceRecord, datacenter: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ID": r.id, "Service": r.service, "Tags": list(r.tags), "Meta": dict(r.meta),
        "Port": r.port, "Address": r.address, "TaggedAddresses": dict(r.tagged_addresses),
        "Weights": _weights(r), "EnableTagOverride": r.enable_tag_override,
        "Datacenter": datacenter,
    }
    if r.kind:
        out["Kind"] = r.kind
    return out


def node_meta_filter(request: web.Request) -> list[tuple[str, str]]:
    """``?node-meta=key:value`` (repeatable): nodes must carry every pair."""
    out = []
    for item in request.query.getall("node-meta", []):
        k, sep, v = item.partition(":")
        if not sep:
            raise RequestError(f"Invalid node-meta {item!r}: use key:value")
        out.append((k, v))
    return out


def meta_matches(meta: Any, pairs: list[tuple[str, str]]) -> bool:
    return all(meta.get(k) == v for k, v in pairs)

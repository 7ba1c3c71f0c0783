"""Every HTTP endpoint has a decided ACL rule (a new endpoint is a decision, not an accident)."""

from __future__ import annotations

import importlib

from registry import web

from registry.api import ROUTE_MODULES
from registry.api.acl_routes import IN_HANDLER, OPEN, RULES, Rule, rule_for


def _routes() -> list[tuple[str, str]]:
    out = []
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(f"registry.api.{name}")
        except ModuleNotFoundError:
            continue
        for r in module.routes:
            if isinstance(r, web.RouteDef):
                out.append((r.method, r.path.replace("{key:.*}", "{key}")))
    return out


def test_every_route_has_a_rule() -> None:
    missing = []
    for method, path in _routes():
        if path == "/" or path.startswith("/ui"):
            continue          # the UI resolves its token itself and filters what it shows
        methods = ("GET", "PUT", "DELETE") if method == "*" else (method,)
        for m in methods:
            if (m, path) not in RULES:
                missing.append(f"{m} {path}")
    assert not missing, ("no ACL rule for these endpoints; add them to RULES in "
                         "registry/api/acl_routes.py: " + ", ".join(missing))


def test_rule_lookup() -> None:
    assert rule_for("HEAD", "/v1/agent/self") == Rule("agent", "<this node>", "read")
    assert rule_for("GET", "/v1/status/leader") == OPEN
    assert rule_for("PUT", "/v1/agent/service/register") == IN_HANDLER
    assert rule_for("POST", "/v1/kv/{key}") == IN_HANDLER  # the handler checks key:write
    # an endpoint nobody decided on: operator rights, never open
    assert rule_for("GET", "/v1/new/thing") == Rule("operator", "", "read")
    assert rule_for("PUT", "/v1/new/thing") == Rule("operator", "", "write")

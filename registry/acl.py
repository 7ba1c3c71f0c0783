"""ACLs: tokens with read or write rights, from the agent config.

Configuration (``acl`` section)::

    "acl": {
      "enabled": true,
      "default_policy": "deny",                 # what a request without a token may do
      "tokens": {"s3cr3t-ops": "write", "s3cr3t-prom": "read",
                 "initial_management": "s3cr3t-root",   # Consul's names: write rights
                 "default": "s3cr3t-prom"}              # used when a request brings none
    }

``tokens`` may also be a list of ``{"token": "...", "policy": "read"|"write"}`` objects.
A request's token comes from ``X-Consul-Token``, ``Authorization: Bearer <token>`` or
``?token=``; an ``Authorization: Basic`` header (sent by some clients for proxies) is ignored.
GET/HEAD need read rights; every other method needs write. A token that is not configured is
refused with 403 ``ACL not found``; no token gets ``default`` or the default policy
(``allow`` = write, ``deny`` = nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, PermissionDenied

READ = "read"
WRITE = "write"
_RANK = {None: 0, READ: 1, WRITE: 2}
_WRITE_NAMES = ("initial_management", "master", "agent", "agent_master", "agent_recovery",
                "replication")


@dataclass(frozen=True, kw_only=True)
class ACLConfig:
    """ACL settings of the agent."""

    enabled: bool = False
    """Enforce tokens at all. Default false: every request may read and write."""
    default_policy: str = "allow"
    """``allow`` or ``deny``: the rights of a request with no token (allow = write)."""
    tokens: Mapping[str, str] = field(default_factory=dict)
    """Secret -> ``read`` | ``write``."""
    default_token: str = ""
    """Token assumed for requests that bring none (Consul's ``tokens.default``)."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ACLConfig:
        allowed = {"enabled", "default_policy", "tokens", "down_policy", "enable_token_persistence"}
        for k in raw:
            if k not in allowed:
                raise ConfigError(f"acl.{k}: unknown setting; use enabled, default_policy, tokens")
        enabled = raw.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError("acl.enabled: must be true or false")
        policy = raw.get("default_policy", "allow")
        if policy not in ("allow", "deny"):
            raise ConfigError(f"acl.default_policy: {policy!r}; use allow or deny")
        tokens: dict[str, str] = {}
        default = ""
        t = raw.get("tokens") or {}
        if isinstance(t, dict):
            for k, v in t.items():
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"acl.tokens.{k}: must be a non-empty string")
                if v in (READ, WRITE):
                    tokens[k] = v
                elif k in _WRITE_NAMES:
                    tokens[v] = WRITE
                elif k == "default":
                    default = v
                else:
                    raise ConfigError(
                        f"acl.tokens.{k}: {v!r}; map a token to \"read\" or \"write\"")
        elif isinstance(t, list):
            for i, item in enumerate(t):
                if not isinstance(item, dict):
                    raise ConfigError(f"acl.tokens[{i}]: must be an object with token and policy")
                secret = item.get("token") or item.get("secret_id") or item.get("SecretID")
                rights = item.get("policy") or item.get("rights") or READ
                if not isinstance(secret, str) or not secret:
                    raise ConfigError(f"acl.tokens[{i}].token: missing")
                if rights not in (READ, WRITE):
                    raise ConfigError(f"acl.tokens[{i}].policy: {rights!r}; use read or write")
                tokens[secret] = rights
        else:
            raise ConfigError("acl.tokens: must be an object or a list")
        if default and default not in tokens:
            raise ConfigError("acl.tokens.default: that token is not one of the configured tokens")
        cfg = cls(enabled=enabled, default_policy=policy, tokens=tokens, default_token=default)
        return cfg


def token_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    tok = headers.get("X-Consul-Token", "")
    if tok:
        return tok.strip()
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query.get("token", "").strip()


class Authorizer:
    def __init__(self, cfg: ACLConfig) -> None:
        self.cfg = cfg
        self.denied = 0

    def rights(self, token: str) -> str | None:
        if not self.cfg.enabled:
            return WRITE
        if token:
            if token not in self.cfg.tokens:
                self.denied += 1
                raise PermissionDenied("ACL not found")
            return self.cfg.tokens[token]
        if self.cfg.default_token:
            return self.cfg.tokens[self.cfg.default_token]
        return WRITE if self.cfg.default_policy == "allow" else None

    def require(self, token: str, need: str) -> None:
        if _RANK[self.rights(token)] < _RANK[need]:
            self.denied += 1
            raise PermissionDenied("Permission denied: token lacks " + need + " rights")

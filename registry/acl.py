"""ACLs: tokens that carry policies, from the agent's config files (Consul's model, file-based).

Configuration (``acl`` section; the keys are Consul's where Consul has them)::

    "acl": {
      "enabled": true,
      "default_policy": "deny",                  # what no matching rule means: allow | deny
      "tokens": {"initial_management": "s3cr3t-root",   # may do everything
                 "default": "s3cr3t-anon",              # used by requests that bring no token
                 "dns": "s3cr3t-dns"},                  # what DNS answers honour
      "policies": [{"name": "web", "description": "web team",
                    "rules": "service_prefix \\"web\\" { policy = \\"write\\" }"}],
      "token_list": [{"secret_id": "s3cr3t-web", "accessor_id": "5e1...", "description": "ci",
                      "policies": ["web"]},
                     {"accessor_id": "00000000-0000-0000-0000-000000000002",
                      "policies": ["public"]}]             # the anonymous token
    }

Consul creates policies and tokens through its API and keeps them in its servers' Raft log; a
Rumor agent has no servers, so they live in the config files (``rumor acl policy create`` and
``rumor acl token create`` write them into an ``acl.json`` of a ``-config-dir`` and ask the agent
to reload). The rules are Consul's policy language (:mod:`registry.acl_policy`).

A request's token comes from ``X-Consul-Token``, ``Authorization: Bearer <token>`` or
``?token=``; an ``Authorization: Basic`` header (sent by some clients for proxies) is ignored. A
token that is not configured is refused with 403 ``ACL not found``. A request without a token
uses ``tokens.default`` if set, else the anonymous token (accessor
``00000000-0000-0000-0000-000000000002``, secret ``anonymous``), whose policies are the ones its
``token_list`` entry gives it (none by default: then ``default_policy`` decides everything).

The older two-level form keeps working: ``"tokens": {"<secret>": "read" | "write"}`` (or a list
of ``{"token": ..., "policy": "read"|"write"}``) makes tokens with the built-in policies
``global-read`` (read on everything, like Consul's ``builtin/global-read-only``) or
``global-write`` (write on everything).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import field
from types import MappingProxyType
from typing import Any

from gossip.dclass import dataclass

from .acl_policy import ALLOW_ALL, KINDS, Authorizer, Policy, PolicyError
from .errors import ConfigError, PermissionDenied

READ = "read"
WRITE = "write"

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
"""Consul's fixed AccessorID of the anonymous token."""
ANONYMOUS_SECRET = "anonymous"
MANAGEMENT_POLICY = "global-management"
MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
"""Consul's built-in management policy and its fixed ID."""
READ_POLICY, WRITE_POLICY = "global-read", "global-write"

_MANAGEMENT_NAMES = ("initial_management", "master", "agent", "agent_recovery", "agent_master",
                     "replication")
"""``tokens.<name>`` secrets that, when not in ``token_list``, get management rights (as the
older configuration gave them write rights on everything)."""
_TOKEN_NAMES = (*_MANAGEMENT_NAMES, "default", "dns", "config_file_service_registration")


def _everything(level: str) -> str:
    lines = [f'{k}_prefix "" {{ policy = "{level}" }}' for k in KINDS]
    lines += [f'{k} = "{level}"' for k in ("operator", "acl", "keyring")]
    return "\n".join(lines) + "\n"


@functools.cache
def _builtin_policies() -> Mapping[str, Policy]:
    """The built-in policies, parsed once per process (they were parsed twice per start and
    again for every configured policy's name check)."""
    return MappingProxyType({
        MANAGEMENT_POLICY: Policy.parse(MANAGEMENT_POLICY, _everything(WRITE), id=MANAGEMENT_POLICY_ID,
                                        description="Builtin Policy that grants unlimited access"),
        READ_POLICY: Policy.parse(READ_POLICY, _everything(READ), id=_policy_id(READ_POLICY),
                                  description="Builtin Policy: read on every resource"),
        WRITE_POLICY: Policy.parse(WRITE_POLICY, _everything(WRITE), id=_policy_id(WRITE_POLICY),
                                   description="Builtin Policy: write on every resource"),
    })


_BUILTIN_IDS = {READ_POLICY: "700b0384-bfab-5763-99b0-c3fd43553409",
                WRITE_POLICY: "e894205e-466a-57e6-b978-4517473cf6ab"}
""":func:`_policy_id` of the built-in policies, worked out beforehand: every agent makes them
at start, without importing the uuid module (tests/unit/registry/test_acl_policy.py checks
them)."""


def _policy_id(name: str) -> str:
    """A stable UUID for a policy configured without an ``id`` (the same on every agent)."""
    known = _BUILTIN_IDS.get(name)
    if known is not None:
        return known
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, "rumor-acl-policy:" + name))


def _accessor_of(secret: str) -> str:
    """A stable AccessorID for a token configured without one. Set ``accessor_id`` for short
    secrets: this is a hash of the secret, and AccessorIDs are shown to ``acl:read`` holders."""
    import hashlib
    import uuid

    return str(uuid.UUID(hashlib.sha256(b"rumor-acl-token:" + secret.encode()).hexdigest()[:32]))


@dataclass(frozen=True, kw_only=True)
class ACLTokens:
    """Special tokens (Consul's ``acl.tokens``): each is a secret."""

    initial_management: str = ""
    """A token that may do everything (Consul's ``initial_management``, formerly ``master``)."""
    default: str = ""
    """The token of requests that bring none. Default: the anonymous token."""
    agent: str = ""
    """Consul's agent token; a secret not in ``token_list`` gets management rights."""
    agent_recovery: str = ""
    """Consul's ``agent_recovery`` (formerly ``agent_master``); management rights."""
    dns: str = ""
    """The token DNS answers honour (Consul's ``tokens.dns``). Default: ``default``, else the
    anonymous token."""


@dataclass(frozen=True, kw_only=True)
class TokenEntry:
    """One entry of ``acl.token_list``: a token and the names of its policies."""

    secret_id: str = ""
    """The secret a client sends (``X-Consul-Token``). Required, except for the anonymous
    token."""
    accessor_id: str = ""
    """The public ID, shown by the token endpoints and in refusals. Default: derived from the
    secret (set it for short secrets)."""
    description: str = ""
    """Free text."""
    policies: tuple[str, ...] = ()
    """Names (or IDs) of policies from ``acl.policies``, or ``global-management``,
    ``global-read``, ``global-write``."""
    management: bool = False
    """Set for the ``initial_management`` token (not a config key)."""

    @property
    def anonymous(self) -> bool:
        return self.accessor_id == ANONYMOUS_ACCESSOR


@dataclass(frozen=True, kw_only=True)
class PolicyEntry:
    """One entry of ``acl.policies``."""

    name: str = ""
    """The policy's name, referenced by tokens. Required, unique."""
    description: str = ""
    """Free text."""
    rules: str = ""
    """Consul's rules, HCL (``service_prefix "web" { policy = "write" }``) or JSON (a string or
    an object). A rule that does not parse stops start-up with the policy's name and the line."""
    id: str = ""
    """The policy's ID. Default: a UUID derived from the name."""


@dataclass(frozen=True, kw_only=True)
class ACLConfig:
    """ACL settings of the agent (the ``acl`` section). Every key is re-read on SIGHUP and
    ``PUT /v1/agent/reload``."""

    enabled: bool = False
    """Enforce tokens at all. Default false: every request may read and write."""
    default_policy: str = "allow"
    """``allow`` or ``deny``: what a request may do where no rule of its token's policies
    matches. Default ``allow`` (Consul's)."""
    down_policy: str = "extend-cache"
    """Accepted for Consul compatibility; no effect (there are no ACL servers to be down)."""
    enable_token_persistence: bool = False
    """Accepted for Consul compatibility; no effect (tokens come from the config files)."""
    tokens: ACLTokens = field(default_factory=ACLTokens)
    """Special tokens: ``initial_management``, ``default``, ``agent``, ``agent_recovery``,
    ``dns`` (Consul's names). The older form ``{"<secret>": "read"|"write"}`` is read too."""
    policies: tuple[Policy, ...] = ()
    """``[{name, description, rules, id}]``: the policies tokens refer to."""
    token_list: tuple[TokenEntry, ...] = ()
    """``[{secret_id, accessor_id, description, policies: [names]}]``: the tokens. Consul's
    JSON names (``SecretID``, ``AccessorID``, ``Policies: [{"Name": ...}]``) are accepted."""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ACLConfig:
        allowed = {"enabled", "default_policy", "down_policy", "enable_token_persistence",
                   "tokens", "policies", "token_list", "enable_key_list_policy"}
        for k in raw:
            if k not in allowed:
                raise ConfigError(f"acl.{k}: unknown setting; use one of "
                                  + ", ".join(sorted(allowed)))
        enabled = raw.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError("acl.enabled: must be true or false")
        policy = raw.get("default_policy", "allow")
        if policy not in ("allow", "deny"):
            raise ConfigError(f"acl.default_policy: {policy!r}; use allow or deny")
        persist = raw.get("enable_token_persistence", False)
        if not isinstance(persist, bool):
            raise ConfigError("acl.enable_token_persistence: must be true or false")
        down = raw.get("down_policy", "extend-cache")
        if not isinstance(down, str):
            raise ConfigError("acl.down_policy: must be a string")
        policies = _parse_policies(raw.get("policies") or [])
        named: dict[str, str] = {}
        entries = _parse_token_list(raw.get("token_list") or [])
        legacy: list[TokenEntry] = []
        t = raw.get("tokens") or {}
        if isinstance(t, dict):
            for k, v in t.items():
                if not isinstance(v, str) or not v:
                    raise ConfigError(f"acl.tokens.{k}: must be a non-empty string")
                if v in (READ, WRITE):
                    legacy.append(_legacy(k, v))
                elif k in _TOKEN_NAMES:
                    renamed = {"master": "initial_management", "agent_master": "agent_recovery"}
                    named[renamed.get(str(k), str(k))] = v
                else:
                    raise ConfigError(
                        f"acl.tokens.{k}: {v!r}; the special tokens are "
                        + ", ".join(_TOKEN_NAMES) + " (or map a secret to \"read\" or "
                        "\"write\"); other tokens go in acl.token_list")
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
                legacy.append(_legacy(secret, rights))
        else:
            raise ConfigError("acl.tokens: must be an object or a list")
        listed = {e.secret_id for e in entries if e.secret_id}
        for name, secret in named.items():
            if name in ("default", "dns", "config_file_service_registration"):
                continue
            if secret not in listed and secret not in {e.secret_id for e in legacy}:
                legacy.append(TokenEntry(secret_id=secret, accessor_id=_accessor_of(secret),
                                         description=f"acl.tokens.{name}",
                                         policies=(MANAGEMENT_POLICY,), management=True))
        all_entries = [*entries, *legacy]
        _check_tokens(all_entries, policies)
        secrets = {e.secret_id for e in all_entries} | {ANONYMOUS_SECRET}
        for name in ("default", "dns"):
            if named.get(name) and named[name] not in secrets:
                raise ConfigError(f"acl.tokens.{name}: that token is not one of the configured "
                                  "tokens; add it to acl.token_list")
        tokens = ACLTokens(initial_management=named.get("initial_management", ""),
                           default=named.get("default", ""), agent=named.get("agent", ""),
                           agent_recovery=named.get("agent_recovery", ""),
                           dns=named.get("dns", ""))
        return cls(enabled=enabled, default_policy=policy, down_policy=down,
                   enable_token_persistence=persist, tokens=tokens,
                   policies=tuple(policies), token_list=tuple(all_entries))


def _legacy(secret: str, rights: str) -> TokenEntry:
    return TokenEntry(secret_id=secret, accessor_id=_accessor_of(secret),
                      description=f"{rights} token from the agent config",
                      policies=(READ_POLICY if rights == READ else WRITE_POLICY,))


def _get(item: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if n in item:
            return item[n]
    return None


def _parse_policies(raw: Any) -> list[Policy]:
    if not isinstance(raw, list):
        raise ConfigError('acl.policies: must be a list of {"name": ..., "rules": ...}')
    out: list[Policy] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"acl.policies[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object with name and rules")
        for k in item:
            if k.lower() not in ("name", "description", "rules", "id", "datacenters"):
                raise ConfigError(f"{where}.{k}: unknown key; use name, description, rules, id")
        name = _get(item, "name", "Name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: missing; every policy needs a name")
        if name in seen or name in _builtin_policies():
            raise ConfigError(f"{where}.name: {name!r} is already a policy; names are unique")
        seen.add(name)
        rules = _get(item, "rules", "Rules")
        if rules is None:
            rules = ""
        if not isinstance(rules, (str, dict)):
            raise ConfigError(f"{where}.rules: must be HCL or JSON text, or an object")
        desc = _get(item, "description", "Description") or ""
        pid = _get(item, "id", "ID") or _policy_id(name)
        if not isinstance(desc, str) or not isinstance(pid, str):
            raise ConfigError(f"{where}: description and id must be strings")
        try:
            out.append(Policy.parse(name, rules, description=desc, id=pid))
        except PolicyError as e:
            raise PolicyError(f"acl.policies[{i}]: {e}") from None
    return out


def _parse_token_list(raw: Any) -> list[TokenEntry]:
    if not isinstance(raw, list):
        raise ConfigError('acl.token_list: must be a list of {"secret_id": ..., '
                          '"policies": [...]}')
    out: list[TokenEntry] = []
    for i, item in enumerate(raw):
        where = f"acl.token_list[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object with secret_id and policies")
        for k in item:
            if k.lower().replace("_", "") not in ("secretid", "accessorid", "description",
                                                  "policies", "local", "createtime", "hash",
                                                  "createindex", "modifyindex"):
                raise ConfigError(f"{where}.{k}: unknown key; use secret_id, accessor_id, "
                                  "description, policies")
        secret = _get(item, "secret_id", "SecretID") or ""
        accessor = _get(item, "accessor_id", "AccessorID") or ""
        desc = _get(item, "description", "Description") or ""
        if not all(isinstance(v, str) for v in (secret, accessor, desc)):
            raise ConfigError(f"{where}: secret_id, accessor_id and description are strings")
        if accessor == ANONYMOUS_ACCESSOR or secret == ANONYMOUS_SECRET:
            accessor, secret = ANONYMOUS_ACCESSOR, ANONYMOUS_SECRET
        elif not secret:
            raise ConfigError(f"{where}.secret_id: missing (only the anonymous token, accessor "
                              f"{ANONYMOUS_ACCESSOR}, has none)")
        pols = _get(item, "policies", "Policies") or []
        if not isinstance(pols, list):
            raise ConfigError(f"{where}.policies: must be a list of policy names")
        names: list[str] = []
        for p in pols:
            if isinstance(p, dict):
                p = p.get("Name") or p.get("name") or p.get("ID") or p.get("id")
            if not isinstance(p, str) or not p:
                raise ConfigError(f"{where}.policies: {p!r} is not a policy name")
            names.append(p)
        out.append(TokenEntry(secret_id=secret, accessor_id=accessor or _accessor_of(secret),
                              description=desc, policies=tuple(names),
                              management=MANAGEMENT_POLICY in names))
    return out


def _check_tokens(entries: Iterable[TokenEntry], policies: Iterable[Policy]) -> None:
    known = {p.name for p in policies} | {p.id for p in policies} | set(_builtin_policies()) \
        | {MANAGEMENT_POLICY_ID}
    secrets: set[str] = set()
    accessors: set[str] = set()
    for i, e in enumerate(entries):
        for p in e.policies:
            if p not in known:
                raise ConfigError(f"acl.token_list[{i}].policies: no policy named {p!r}; "
                                  "define it in acl.policies")
        if e.secret_id in secrets:
            raise ConfigError(f"acl.token_list[{i}].secret_id: the same secret is given twice")
        if e.accessor_id in accessors:
            raise ConfigError(f"acl.token_list[{i}].accessor_id: {e.accessor_id!r} is used "
                              "twice")
        secrets.add(e.secret_id)
        accessors.add(e.accessor_id)


def token_of(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    tok = headers.get("X-Consul-Token", "")
    if tok:
        return tok.strip()
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return query.get("token", "").strip()


# --- deciding ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """A resolved token: what one request (or the DNS server) may do."""

    token: TokenEntry | None
    """None when ACLs are off."""
    authz: Authorizer
    acl: ACL | None = None

    @property
    def accessor_id(self) -> str:
        return self.token.accessor_id if self.token is not None else ""

    @property
    def cache_key(self) -> str:
        """Distinguishes responses filtered for different tokens (and ACL generations)."""
        if self.acl is None or self.token is None:
            return ""
        return f"{self.acl.generation}:{self.token.accessor_id}"

    def allowed(self, kind: str, name: str, need: str) -> bool:
        return self.authz.allowed(kind, name, need)

    def require(self, kind: str, name: str, need: str) -> None:
        """Raise 403 in Consul's words when the token lacks ``kind:need`` on ``name``."""
        missing = self.authz.missing(kind, name, need)
        if missing is None:
            return
        if self.acl is not None:
            self.acl.denied += 1
        raise PermissionDenied(f"Permission denied: token with AccessorID "
                               f"'{self.accessor_id}' lacks permission {missing}")


OPEN = Identity(None, ALLOW_ALL)
"""The identity of every request when ACLs are off."""


class ACL:
    """The agent's ACL state: tokens and policies from the config, reloadable."""

    def __init__(self, cfg: ACLConfig) -> None:
        self.denied = 0
        self.generation = 0
        self._listeners: list[Callable[[], object]] = []
        self._apply(cfg)

    def subscribe(self, fn: Callable[[], object]) -> Callable[[], None]:
        """Call ``fn()`` synchronously on every generation step (a reload); returns the
        function that undoes it."""
        self._listeners.append(fn)

        def unsubscribe() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)
        return unsubscribe

    def _apply(self, cfg: ACLConfig) -> None:
        self.cfg = cfg
        self.generation += 1
        self.policies: dict[str, Policy] = {**_builtin_policies(), **{p.name: p for p in
                                                                       cfg.policies}}
        by_id = {p.id: p for p in self.policies.values()}
        self._by_secret: dict[str, Identity] = {}
        self._by_accessor: dict[str, TokenEntry] = {}
        entries = list(cfg.token_list)
        if not any(e.anonymous for e in entries):
            entries.append(TokenEntry(secret_id=ANONYMOUS_SECRET, accessor_id=ANONYMOUS_ACCESSOR,
                                      description="Anonymous Token"))
        for e in entries:
            pols = [self.policies.get(n) or by_id[n] for n in e.policies]
            mgmt = e.management or any(p.name == MANAGEMENT_POLICY for p in pols)
            authz = Authorizer(pols, default=cfg.default_policy, management=mgmt)
            self._by_secret[e.secret_id] = Identity(e, authz, self)
            self._by_accessor[e.accessor_id] = e
        for fn in self._listeners:
            fn()

    def reload(self, cfg: ACLConfig) -> None:
        self._apply(cfg)

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    def resolve(self, secret: str) -> Identity:
        """The identity of a request that brings ``secret`` ("" = none)."""
        if not self.cfg.enabled:
            return OPEN
        if not secret:
            secret = self.cfg.tokens.default or ANONYMOUS_SECRET
        ident = self._by_secret.get(secret)
        if ident is None:
            self.denied += 1
            raise PermissionDenied("ACL not found")
        return ident

    def dns_identity(self) -> Identity:
        """What DNS answers honour: ``tokens.dns``, else ``tokens.default``, else anonymous."""
        return self.resolve(self.cfg.tokens.dns or "")

    def tokens(self) -> list[TokenEntry]:
        return sorted(self._by_accessor.values(), key=lambda t: (not t.anonymous, t.description,
                                                                 t.accessor_id))

    def token(self, accessor_id: str) -> TokenEntry | None:
        return self._by_accessor.get(accessor_id)

    def policy(self, id_or_name: str, *, by_name: bool = False) -> Policy | None:
        if by_name:
            return self.policies.get(id_or_name)
        return next((p for p in self.policies.values() if p.id == id_or_name), None)

    def policy_of(self, ref: str) -> Policy | None:
        """A token's policy reference (a name or an ID)."""
        return self.policies.get(ref) or self.policy(ref)


def policy_json(p: Policy, *, rules: bool = True) -> dict[str, Any]:
    import hashlib
    """Consul's ACLPolicy shape (``/v1/acl/policy/:id``; without Rules in lists)."""
    out: dict[str, Any] = {"ID": p.id, "Name": p.name, "Description": p.description}
    if rules:
        out["Rules"] = p.rules_text
    out.update({"Datacenters": None,
                "Hash": hashlib.sha256(p.rules_text.encode()).hexdigest()[:44],
                "CreateIndex": 1, "ModifyIndex": 1})
    return out


def token_json(acl: ACL, t: TokenEntry, *, show_secret: bool) -> dict[str, Any]:
    import hashlib
    """Consul's ACLToken shape; ``SecretID`` is ``<hidden>`` unless ``show_secret``."""
    pols = [p for p in (acl.policy_of(n) for n in t.policies) if p is not None]
    digest = json.dumps([t.accessor_id, t.description, list(t.policies)]).encode()
    return {
        "AccessorID": t.accessor_id,
        "SecretID": t.secret_id if show_secret else "<hidden>",
        "Description": t.description,
        "Policies": [{"ID": p.id, "Name": p.name} for p in pols] or None,
        "Local": True,
        "CreateTime": "1970-01-01T00:00:00Z",
        "Hash": hashlib.sha256(digest).hexdigest()[:44],
        "CreateIndex": 1,
        "ModifyIndex": 1,
    }


__all__ = ["ACL", "ANONYMOUS_ACCESSOR", "ANONYMOUS_SECRET", "OPEN", "READ", "WRITE",
           "ACLConfig", "ACLTokens", "Identity", "PolicyEntry", "TokenEntry", "policy_json",
           "token_json", "token_of"]

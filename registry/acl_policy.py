"""ACL policies: a subset of Consul's policy language, parsed and evaluated; pure.

A policy is a set of rules, written in HCL as Consul's are, or the same structure in JSON::

    service_prefix "" { policy = "read" }          # every service: read
    service "web"     { policy = "write" }         # exact names beat prefixes
    node_prefix ""    { policy = "read" }
    key_prefix "app/" { policy = "write" }
    agent_prefix ""   { policy = "read" }
    event_prefix ""   { policy = "write" }
    query_prefix ""   { policy = "read" }
    operator = "read"
    acl      = "read"
    keyring  = "read"

Each rule grants ``read``, ``write`` (which includes read) or ``deny`` (KV's ``list`` counts
as read). How a token's rights on a resource (``service`` ``"web-1"``) are decided, as Consul
decides them:

1. a rule for exactly that name, else the matching prefix rule with the longest prefix;
2. when a token has several policies with a rule for the same name or prefix, ``deny`` wins over
   ``write``, and ``write`` over ``read``;
3. no rule matches: the agent's ``default_policy`` (``allow`` = write, ``deny`` = deny).

Management tokens (``initial_management``) may do everything. :class:`Authorizer` answers
``allowed(kind, name, need)`` and says which rule was missing when it is not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from gossip.dclass import dataclass

from .errors import ConfigError

__all__ = ["ALLOW_ALL", "DENY", "KINDS", "READ", "SCALARS", "WRITE", "Authorizer", "Policy",
           "PolicyError",
           "parse_rules"]

DENY, READ, WRITE = "deny", "read", "write"
_LEVELS = {DENY: 0, READ: 1, WRITE: 2}
_PRECEDENCE = {READ: 1, WRITE: 2, DENY: 3}     # merging policies: deny > write > read

KINDS = ("service", "node", "key", "agent", "event", "query")
"""Resource kinds with named and prefix rules (``service "web"``, ``service_prefix "we"``)."""
SCALARS = ("operator", "acl", "keyring", "mesh", "peering")
"""Resource kinds with one rule each (``operator = "read"``)."""


class PolicyError(ConfigError):
    """A policy's rules do not parse; the message says where and what is expected."""


@dataclass(frozen=True)
class Policy:
    """A named set of rules (Consul's ACL policy)."""

    name: str
    rules_text: str = ""
    description: str = ""
    id: str = ""
    exact: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """kind -> {name: level}"""
    prefix: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """kind -> {prefix: level}"""
    scalar: Mapping[str, str] = field(default_factory=dict)
    """operator/acl/keyring -> level"""

    @classmethod
    def parse(cls, name: str, rules: str | Mapping[str, Any], *, description: str = "",
              id: str = "") -> Policy:
        text = rules if isinstance(rules, str) else json.dumps(rules)
        exact, prefix, scalar = parse_rules(rules, where=f"policy {name!r}")
        return cls(name=name, rules_text=text, description=description, id=id or name,
                   exact=exact, prefix=prefix, scalar=scalar)


def _level(value: Any, where: str) -> str:
    v = value.lower() if isinstance(value, str) else value
    if v == "list":
        return READ
    if v not in _LEVELS:
        raise PolicyError(f"{where}: policy {value!r} is not one of read, write, deny")
    return str(v)


# --- the HCL subset ------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<punct>[={},\[\]:])
""", re.VERBOSE | re.DOTALL)


def _tokens(text: str, where: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise PolicyError(f"{where}: line {line}: unexpected {text[pos:pos + 10]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            val = m.group()
            if kind == "str":
                val = json.loads(val)
            out.append((kind, val, text.count("\n", 0, pos) + 1))
        pos = m.end()
    return out


def _hcl(text: str, where: str) -> dict[str, Any]:
    """``kind "name" { key = "value" ... }`` blocks and ``key = "value"`` lines into a dict
    shaped like the JSON form."""
    toks = _tokens(text, where)
    out: dict[str, Any] = {}
    i = 0

    def expect(kind: str, what: str) -> str:
        nonlocal i
        if i >= len(toks) or (toks[i][0] != kind if kind != "punct" else toks[i][1] != what):
            got = repr(toks[i][1]) if i < len(toks) else "the end"
            line = toks[i][2] if i < len(toks) else (toks[-1][2] if toks else 1)
            raise PolicyError(f"{where}: line {line}: expected {what}, got {got}")
        i += 1
        return toks[i - 1][1]

    while i < len(toks):
        key = expect("ident", "a rule such as service_prefix or operator")
        if i < len(toks) and toks[i][1] == "=":
            i += 1
            out[key] = expect("str", 'a quoted value like "read"')
            continue
        name = expect("str", f'a quoted name after {key}, like {key} "web"')
        expect("punct", "{")
        body: dict[str, str] = {}
        while i < len(toks) and toks[i][1] != "}":
            k = expect("ident", "policy = ...")
            expect("punct", "=")
            body[k] = expect("str", 'a quoted value like "read"')
            if i < len(toks) and toks[i][1] == ",":
                i += 1
        expect("punct", "}")
        out.setdefault(key, {})[name] = body
    return out


def parse_rules(rules: str | Mapping[str, Any], *, where: str = "rules") -> tuple[
        dict[str, dict[str, str]], dict[str, dict[str, str]], dict[str, str]]:
    """Rules (HCL text, JSON text or a mapping) -> (exact, prefix, scalar) tables."""
    if isinstance(rules, str):
        stripped = rules.strip()
        data: Any = _json(stripped, where) if stripped.startswith("{") else _hcl(rules, where)
    else:
        data = rules
    if not isinstance(data, Mapping):
        raise PolicyError(f"{where}: rules must be an object of rules")
    exact: dict[str, dict[str, str]] = {}
    prefix: dict[str, dict[str, str]] = {}
    scalar: dict[str, str] = {}
    for key, value in data.items():
        w = f"{where}: {key}"
        if key in SCALARS:
            level = value.get("policy") if isinstance(value, Mapping) else value
            scalar[key] = _level(level, w)
            continue
        kind, is_prefix = (key[:-7], True) if key.endswith("_prefix") else (key, False)
        if kind not in KINDS:
            raise PolicyError(f"{w}: unknown rule; use one of "
                              + ", ".join([*KINDS, *(k + "_prefix" for k in KINDS), *SCALARS]))
        if not isinstance(value, Mapping):
            raise PolicyError(f'{w}: write it like {key} "name" {{ policy = "read" }}')
        table = (prefix if is_prefix else exact).setdefault(kind, {})
        for name, body in value.items():
            if not isinstance(body, Mapping) or "policy" not in body:
                raise PolicyError(f'{w} "{name}": needs policy = "read", "write" or "deny"')
            table[str(name)] = _level(body["policy"], f'{w} "{name}"')
    return exact, prefix, scalar


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise PolicyError(f"{where}: not valid JSON rules: {e}") from None


# --- deciding ------------------------------------------------------------------------------------

def _merge(tables: Iterable[Mapping[str, Mapping[str, str]]]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for t in tables:
        for kind, rules in t.items():
            dest = out.setdefault(kind, {})
            for name, level in rules.items():
                if name not in dest or _PRECEDENCE[level] > _PRECEDENCE[dest[name]]:
                    dest[name] = level
    return out


class Authorizer:
    """The merged rules of one token's policies; ``allowed(kind, name, need)``."""

    def __init__(self, policies: Iterable[Policy], *, default: str,
                 management: bool = False) -> None:
        pols = list(policies)
        self.management = management
        self.default = WRITE if default in ("allow", WRITE) else DENY
        self._exact = _merge(p.exact for p in pols)
        prefix = _merge(p.prefix for p in pols)
        # Longest prefix first, so the first match is the one that counts.
        self._prefix = {k: sorted(v.items(), key=lambda kv: -len(kv[0]))
                        for k, v in prefix.items()}
        scal: dict[str, str] = {}
        for p in pols:
            for k, level in p.scalar.items():
                if k not in scal or _PRECEDENCE[level] > _PRECEDENCE[scal[k]]:
                    scal[k] = level
        self._scalar = scal

    def level(self, kind: str, name: str = "") -> str:
        """The token's level on ``kind`` ``name``: ``deny``, ``read`` or ``write``."""
        if self.management:
            return WRITE
        if kind in SCALARS:
            return self._scalar.get(kind, self.default)
        exact = self._exact.get(kind)
        if exact is not None and name in exact:
            return exact[name]
        for pfx, level in self._prefix.get(kind, ()):
            if name.startswith(pfx):
                return level
        return self.default

    def allowed(self, kind: str, name: str, need: str) -> bool:
        return _LEVELS[self.level(kind, name)] >= _LEVELS[need]

    def missing(self, kind: str, name: str, need: str) -> str | None:
        """None when allowed, else Consul's wording of the missing permission, e.g.
        ``'service:write' on "db"``."""
        if self.allowed(kind, name, need):
            return None
        if kind in SCALARS:
            return f"'{kind}:{need}'"
        return f"'{kind}:{need}' on {json.dumps(name)}"


ALLOW_ALL = Authorizer((), default="allow")
"""What a request may do when ACLs are off."""

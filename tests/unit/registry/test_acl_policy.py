"""ACL policy language: parsing (HCL and JSON), precedence, defaults, error messages."""

from __future__ import annotations

import pytest

from registry.acl_policy import Authorizer, Policy, PolicyError

WEB = '''
# a web team's token
service_prefix "web" { policy = "write" }
service_prefix ""    { policy = "read" }
service "web-admin"  { policy = "deny" }
node_prefix "" { policy = "read" }
key_prefix "app/" { policy = "list" }
operator = "read"
'''


def authz(*rules: str, default: str = "deny") -> Authorizer:
    return Authorizer([Policy.parse(f"p{i}", r) for i, r in enumerate(rules)], default=default)


@pytest.mark.parametrize(("kind", "name", "need", "ok"), [
    ("service", "web-1", "write", True),          # longest prefix "web"
    ("service", "web", "write", True),
    ("service", "db", "read", True),              # prefix ""
    ("service", "db", "write", False),
    ("service", "web-admin", "read", False),      # exact beats any prefix
    ("node", "n1", "read", True),
    ("node", "n1", "write", False),
    ("key", "app/config", "read", True),          # list counts as read
    ("key", "app/config", "write", False),
    ("key", "other", "read", False),              # no rule: default deny
    ("operator", "", "read", True),
    ("operator", "", "write", False),
    ("acl", "", "read", False),
    ("event", "deploy", "read", False),
])
def test_rules_decide(kind: str, name: str, need: str, ok: bool) -> None:
    assert authz(WEB).allowed(kind, name, need) is ok


def test_json_form_is_the_same() -> None:
    j = ('{"service_prefix": {"web": {"policy": "write"}, "": {"policy": "read"}},'
         ' "service": {"web-admin": {"policy": "deny"}}, "operator": "read"}')
    a, b = authz(j), authz(WEB)
    for name in ("web-1", "db", "web-admin"):
        for need in ("read", "write"):
            assert a.allowed("service", name, need) is b.allowed("service", name, need)


def test_policies_merge_deny_over_write_over_read() -> None:
    a = authz('service "db" { policy = "read" }', 'service "db" { policy = "write" }')
    assert a.allowed("service", "db", "write")
    a = authz('service "db" { policy = "write" }', 'service "db" { policy = "deny" }')
    assert not a.allowed("service", "db", "read")


def test_default_policy_allow_and_management() -> None:
    assert authz("", default="allow").allowed("service", "x", "write")
    assert authz('service "x" { policy = "deny" }', default="allow").level("service", "x") == "deny"
    assert Authorizer([], default="deny", management=True).allowed("acl", "", "write")


def test_missing_says_which_permission() -> None:
    a = authz(WEB)
    assert a.missing("service", "db", "write") == "'service:write' on \"db\""
    assert a.missing("operator", "", "write") == "'operator:write'"
    assert a.missing("service", "web-1", "write") is None


@pytest.mark.parametrize(("rules", "says"), [
    ('service "web" { policy = "admin" }', "not one of read, write, deny"),
    ('service "web" { }', "needs policy"),
    ('services "web" { policy = "read" }', "unknown rule"),
    ('service web { policy = "read" }', "line 1: expected a quoted name"),
    ('service "web" { policy = "read" ', "expected }"),
    ('operator = read', "expected a quoted value"),
    ('{"service": ', "not valid JSON"),
    ('service "web" { policy = "read" } $', "unexpected"),
])
def test_bad_rules_say_where(rules: str, says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        Policy.parse("bad", rules)


def test_the_built_in_policy_ids_are_their_uuid5() -> None:
    """registry/acl.py keeps them as constants (the uuid module is not imported at start)."""
    import uuid

    from registry.acl import _BUILTIN_IDS, _policy_id
    for name, pid in _BUILTIN_IDS.items():
        assert pid == str(uuid.uuid5(uuid.NAMESPACE_URL, "rumor-acl-policy:" + name))
    assert _policy_id("mine") == str(uuid.uuid5(uuid.NAMESPACE_URL, "rumor-acl-policy:mine"))

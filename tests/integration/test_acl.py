"""ACL policies against a real agent process: writes checked, reads filtered, DNS, reload, CLI.

One agent with ``default_policy = "deny"``, a management token, a ``web`` token
(``service_prefix "web" { policy = "write" }`` and node read) and an anonymous token that may read
the ``www`` service only. Clients: urllib, py-consul, the ``rumor`` CLI and ``dig``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest

from tests.harness.agents import AgentProcess, wait_for

ROOT = "root-secret-7f3a"
WEB = "web-secret-91c2"
WEB_ACCESSOR = "9d1f3b6e-0c1a-4d3e-9a55-6b0f2f6a1c01"
ANON = "00000000-0000-0000-0000-000000000002"
FILTERED = "X-Consul-Results-Filtered-By-ACLs"

CONFIG = {"acl": {
    "enabled": True, "default_policy": "deny",
    "tokens": {"initial_management": ROOT},
    "policies": [
        {"name": "web", "description": "the web team",
         "rules": 'service_prefix "web" { policy = "write" }\nnode_prefix "" { policy = "read" }\n'},
        {"name": "public",
         "rules": {"service": {"www": {"policy": "read"}}, "node_prefix": {"": {"policy": "read"}}}},
    ],
    "token_list": [
        {"secret_id": WEB, "accessor_id": WEB_ACCESSOR, "description": "web deploys",
         "policies": ["web"]},
        {"accessor_id": ANON, "policies": ["public"]},
    ],
}}


def call(a: AgentProcess, method: str, path: str, token: str | None = None,
         body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://{a.http_addr}{path}", data=data, method=method)
    if token:
        req.add_header("X-Consul-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw, status, headers = r.read(), r.status, dict(r.headers.items())
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers.items())
    try:
        return status, headers, json.loads(raw) if raw else None
    except ValueError:
        return status, headers, raw.decode()


def rumor(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *argv], check=False,
                          capture_output=True,
                          text=True, timeout=30, cwd=str(Path(__file__).resolve().parents[2]))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    tmp = tmp_path_factory.mktemp("acl")
    conf = tmp / "conf.d"
    conf.mkdir()
    (conf / "agent.json").write_text(json.dumps(CONFIG))
    a = AgentProcess("aclnode", tmp, extra_args=["-config-dir", str(conf)])
    a.conf_dir = conf  # type: ignore[attr-defined]
    a.start(wait=False)       # the harness's readiness probe brings no token
    try:
        wait_for(lambda: call(a, "GET", "/v1/agent/self", ROOT)[0] == 200, 20,
                 what="the agent to answer the management token")
        for name in ("db", "www"):
            assert call(a, "PUT", "/v1/agent/service/register", ROOT,
                        {"Name": name, "ID": name, "Port": 5000})[0] == 200
        yield a
    finally:
        a.stop()


def test_a_web_token_registers_web_services_and_not_db(agent: AgentProcess) -> None:
    status, _, _ = call(agent, "PUT", "/v1/agent/service/register", WEB,
                        {"Name": "web-1", "Port": 8080})
    assert status == 200
    status, _, text = call(agent, "PUT", "/v1/agent/service/register", WEB,
                           {"Name": "db", "ID": "db-2", "Port": 5432})
    assert status == 403
    assert text.strip() == (f"Permission denied: token with AccessorID '{WEB_ACCESSOR}' lacks "
                            "permission 'service:write' on \"db\"")
    assert "db-2" not in call(agent, "GET", "/v1/agent/services", ROOT)[2]   # nothing written
    # nor may it deregister or flip db's maintenance
    assert call(agent, "PUT", "/v1/agent/service/deregister/db", WEB)[0] == 403
    assert call(agent, "PUT", "/v1/agent/service/maintenance/db?enable=true", WEB)[0] == 403
    # py-consul sees the same refusal
    c = consul.Consul(host="127.0.0.1", port=agent.http_port, token=WEB)
    assert c.agent.service.register("web-2", port=8081) is True
    with pytest.raises(consul.ACLPermissionDenied):
        c.agent.service.register("db", service_id="db-3", port=1)
    # agent-level writes need agent:write
    status, _, text = call(agent, "PUT", "/v1/agent/reload", WEB)
    assert status == 403 and "lacks permission 'agent:write' on \"aclnode\"" in text


def test_reads_list_only_what_the_token_may_read(agent: AgentProcess) -> None:
    call(agent, "PUT", "/v1/agent/service/register", WEB, {"Name": "web-1", "Port": 8080})
    status, headers, svcs = call(agent, "GET", "/v1/catalog/services", WEB)
    assert status == 200 and "web-1" in svcs and "db" not in svcs and "www" not in svcs
    assert headers.get(FILTERED) == "true"
    status, headers, svcs = call(agent, "GET", "/v1/catalog/services", ROOT)
    assert {"db", "www", "web-1"} <= set(svcs) and FILTERED not in headers
    # a read of a service it may not read: empty, and said so
    status, headers, entries = call(agent, "GET", "/v1/health/service/db", WEB)
    assert status == 200 and entries == [] and headers.get(FILTERED) == "true"
    assert len(call(agent, "GET", "/v1/health/service/db", ROOT)[2]) == 1
    status, headers, local = call(agent, "GET", "/v1/agent/services", WEB)
    assert "web-1" in local and "db" not in local and "www" not in local
    assert headers.get(FILTERED) == "true"
    nodes = call(agent, "GET", "/v1/catalog/nodes", WEB)[2]
    assert [n["Node"] for n in nodes] == ["aclnode"]          # node_prefix "" read
    # py-consul: the same filtered list
    c = consul.Consul(host="127.0.0.1", port=agent.http_port, token=WEB)
    _, names = c.catalog.services()
    assert "db" not in names and "web-1" in names


def test_no_token_gets_the_anonymous_tokens_policy(agent: AgentProcess) -> None:
    status, headers, svcs = call(agent, "GET", "/v1/catalog/services")
    assert status == 200 and set(svcs) == {"www"} and headers.get(FILTERED) == "true"
    status, _, text = call(agent, "PUT", "/v1/agent/service/register", None, {"Name": "www"})
    assert status == 403 and f"AccessorID '{ANON}'" in text
    status, _, text = call(agent, "GET", "/v1/catalog/services", "no-such-token")
    assert status == 403 and text.strip() == "ACL not found"


def test_token_self_and_the_acl_read_endpoints(agent: AgentProcess) -> None:
    status, _, me = call(agent, "GET", "/v1/acl/token/self", WEB)
    assert status == 200 and me["AccessorID"] == WEB_ACCESSOR and me["SecretID"] == WEB
    assert [p["Name"] for p in me["Policies"]] == ["web"] and me["Policies"][0]["ID"]
    assert me["Description"] == "web deploys" and me["Local"] is True
    status, _, text = call(agent, "GET", "/v1/acl/policies", WEB)
    assert status == 403 and "'acl:read'" in text
    status, _, pols = call(agent, "GET", "/v1/acl/policies", ROOT)
    assert status == 200
    by_name = {p["Name"]: p for p in pols}
    assert {"web", "public", "global-management"} <= set(by_name)
    assert set(by_name["web"]) >= {"ID", "Name", "Description", "Hash", "CreateIndex"}
    one = call(agent, "GET", f"/v1/acl/policy/{by_name['web']['ID']}", ROOT)[2]
    assert one["Name"] == "web" and 'service_prefix "web"' in one["Rules"]
    assert call(agent, "GET", "/v1/acl/policy/name/public", ROOT)[2]["ID"] == \
        by_name["public"]["ID"]
    toks = call(agent, "GET", "/v1/acl/tokens", ROOT)[2]
    assert {t["AccessorID"] for t in toks} >= {WEB_ACCESSOR, ANON}
    web = call(agent, "GET", f"/v1/acl/token/{WEB_ACCESSOR}", ROOT)[2]
    assert web["SecretID"] == WEB
    # the CLI reads them too
    r = rumor("acl", "policy", "list", "-http-addr", agent.http_addr, "-token", ROOT)
    assert r.returncode == 0 and "web" in r.stdout and "public" in r.stdout
    r = rumor("acl", "token", "read", "-self", "-http-addr", agent.http_addr, "-token", WEB)
    assert r.returncode == 0 and WEB_ACCESSOR in r.stdout and "web" in r.stdout


def _dig(agent: AgentProcess, name: str) -> tuple[str, str]:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(agent.dns_port), "+time=2",
                          "+tries=2", name, "A"], check=False, capture_output=True, text=True,
                         timeout=15).stdout
    status = out.split("status: ", 1)[1].split(",", 1)[0] if "status: " in out else "?"
    answer = out.split(";; ANSWER SECTION:", 1)[1] if ";; ANSWER SECTION:" in out else ""
    return status, answer


def test_dns_answers_as_the_anonymous_token_reads(agent: AgentProcess) -> None:
    status, answer = _dig(agent, "www.service.rumor")
    assert status == "NOERROR" and "127.0.0.1" in answer
    assert _dig(agent, "db.service.rumor")[0] == "NXDOMAIN"      # registered, not readable
    assert _dig(agent, "web-1.service.rumor")[0] == "NXDOMAIN"


def test_rumor_acl_creates_a_policy_and_token_and_the_agent_reloads(agent: AgentProcess,
                                                                      tmp_path: Path) -> None:
    conf = agent.conf_dir  # type: ignore[attr-defined]
    rules = tmp_path / "db.hcl"
    rules.write_text('service "db" {\n  policy = "write"\n}\n')
    base = ["-http-addr", agent.http_addr, "-token", ROOT, "-config-dir", str(conf)]
    r = rumor("acl", "policy", "create", "-name", "dba", "-rules", f"@{rules}", *base)
    assert r.returncode == 0, r.stderr
    r = rumor("acl", "token", "create", "-description", "dba", "-policy-name", "dba",
              "-secret", "dba-secret-55", *base)
    assert r.returncode == 0, r.stderr
    assert "dba-secret-55" in r.stdout
    # no restart: the new token works at once
    status, _, _ = call(agent, "PUT", "/v1/agent/service/register", "dba-secret-55",
                        {"Name": "db", "ID": "db", "Port": 5433})
    assert status == 200
    assert call(agent, "GET", "/v1/acl/policy/name/dba", ROOT)[0] == 200
    # a bad policy is refused before anything is written
    r = rumor("acl", "policy", "create", "-name", "bad", "-rules", 'service "x" { policy = }',
              *base)
    assert r.returncode == 1 and "line 1" in r.stderr
    policies = json.loads((conf / "acl.json").read_text())["acl"]["policies"]
    assert "bad" not in [p["name"] for p in policies]
    # a token naming a policy that does not exist: the agent refuses, the file is put back
    before = (conf / "acl.json").read_text()
    r = rumor("acl", "token", "create", "-policy-name", "ghost", *base)
    assert r.returncode == 1 and "ghost" in r.stderr
    assert (conf / "acl.json").read_text() == before
    assert call(agent, "GET", "/v1/acl/token/self", "dba-secret-55")[0] == 200


def test_bad_rules_stop_start_up_naming_the_policy_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.json"
    conf.write_text(json.dumps({"acl": {"enabled": True, "policies": [
        {"name": "ops", "rules": 'operator = "write"\nservice_prefix "" { policy = "maybe" }'},
        ]}}))
    a = AgentProcess("badacl", tmp_path, extra_args=["-config-file", str(conf)])
    r = subprocess.run(a.argv(), check=False, capture_output=True, text=True, timeout=30,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 1
    assert "policy 'ops'" in r.stderr and "'maybe'" in r.stderr, r.stderr
    conf.write_text(json.dumps({"acl": {"enabled": True, "policies": [
        {"name": "ops", "rules": 'operator = "write"\nservice_prefix "" policy = "read" }'}]}}))
    r = subprocess.run(a.argv(), check=False, capture_output=True, text=True, timeout=30,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert r.returncode == 1 and "policy 'ops'" in r.stderr and "line 2" in r.stderr, r.stderr


async def test_default_deny_without_a_token_sees_nothing(tmp_path: Path) -> None:
    from tests.integration.registry_fixtures import agent_fixture
    from tests.integration.test_registry_api import http

    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": ROOT}}
    async for a in agent_fixture(tmp_path, acl=acl):
        assert (await http(a, "PUT", "/v1/agent/service/register", json={"Name": "web"},
                           headers={"X-Consul-Token": ROOT}))[0] == 200
        status, headers, body = await http(a, "GET", "/v1/catalog/services")
        assert status == 200 and body == {} and headers.get(FILTERED) == "true"
        status, headers, body = await http(a, "GET", "/v1/catalog/nodes")
        assert status == 200 and body == [] and headers.get(FILTERED) == "true"
        status, _, body = await http(a, "GET", "/v1/health/service/web")
        assert status == 200 and body == []
        status, _, text = await http(a, "GET", "/v1/agent/self")
        assert status == 403 and "'agent:read'" in text
        status, headers, body = await http(a, "GET", "/v1/agent/members")
        assert status == 200 and body == [] and headers.get(FILTERED) == "true"
        status, headers, body = await http(a, "GET", "/v1/catalog/services",
                                           headers={"X-Consul-Token": ROOT})
        assert body == {"web": []} and FILTERED not in headers


def test_sighup_reloads_acls_and_a_bad_reload_keeps_the_running_ones(agent: AgentProcess) -> None:
    import os
    import signal as sig

    conf = agent.conf_dir  # type: ignore[attr-defined]
    extra = conf / "extra.json"
    extra.write_text(json.dumps({"acl": {
        "policies": [{"name": "events", "rules": 'event_prefix "deploy" { policy = "write" }'}],
        "token_list": [{"secret_id": "events-secret", "policies": ["events"]}]}}))
    try:
        assert agent.proc is not None
        os.kill(agent.proc.pid, sig.SIGHUP)
        wait_for(lambda: call(agent, "GET", "/v1/acl/token/self", "events-secret")[0] == 200, 15,
                 what="the SIGHUP reload to add the token")
        status, _, ev = call(agent, "PUT", "/v1/event/fire/deploy-web", "events-secret")
        assert status == 200 and ev["Name"] == "deploy-web"
        status, _, text = call(agent, "PUT", "/v1/event/fire/other", "events-secret")
        assert status == 403 and "'event:write' on \"other\"" in text
        # a broken policy: the reload says which and where; the running ACLs stay
        extra.write_text(json.dumps({"acl": {"policies": [
            {"name": "broken", "rules": 'event_prefix "x" {\n  policy = \n}'}]}}))
        status, _, text = call(agent, "PUT", "/v1/agent/reload", ROOT)
        assert status == 500 and "policy 'broken'" in text and "line 3" in text, text
        assert call(agent, "GET", "/v1/acl/token/self", "events-secret")[0] == 200
    finally:
        extra.unlink(missing_ok=True)
        call(agent, "PUT", "/v1/agent/reload", ROOT)
    assert call(agent, "GET", "/v1/acl/token/self", "events-secret")[0] == 403


def test_checks_catalog_writes_and_members_follow_the_rules(agent: AgentProcess) -> None:
    # a check of a web service: service:write on web; a node check: node:write (web has not)
    assert call(agent, "PUT", "/v1/agent/service/register", WEB,
                {"Name": "web-3", "ID": "web-3", "Port": 1,
                 "Check": {"CheckID": "web-3-ttl", "TTL": "60s"}})[0] == 200
    assert call(agent, "PUT", "/v1/agent/check/pass/web-3-ttl", WEB)[0] == 200
    status, _, text = call(agent, "PUT", "/v1/agent/check/register", WEB,
                           {"Name": "disk", "CheckID": "disk", "TTL": "60s"})
    assert status == 403 and "'node:write' on \"aclnode\"" in text
    assert call(agent, "PUT", "/v1/agent/check/register", ROOT,
                {"Name": "db-ttl", "CheckID": "db-ttl", "TTL": "60s", "ServiceID": "db"})[0] == 200
    status, _, text = call(agent, "PUT", "/v1/agent/check/fail/db-ttl", WEB)
    assert status == 403 and "'service:write' on \"db\"" in text
    checks = call(agent, "GET", "/v1/agent/checks", WEB)
    assert "web-3-ttl" in checks[2] and "db-ttl" not in checks[2]
    assert checks[1].get(FILTERED) == "true"
    # the catalog endpoints: node:write and service:write
    status, _, text = call(agent, "PUT", "/v1/catalog/register", WEB,
                           {"Node": "aclnode", "Service": {"Service": "web-4", "Port": 2}})
    assert status == 403 and "'node:write' on \"aclnode\"" in text
    assert call(agent, "PUT", "/v1/catalog/register", ROOT,
                {"Node": "aclnode", "Service": {"Service": "web-4", "Port": 2}})[0] == 200
    status, _, text = call(agent, "PUT", "/v1/catalog/deregister", WEB,
                           {"Node": "aclnode", "ServiceID": "db"})
    assert status == 403 and "'service:write' on \"db\"" in text
    # members: node:read (the web token has it; see the default-deny test for one without)
    assert [m["Name"] for m in call(agent, "GET", "/v1/agent/members", WEB)[2]] == ["aclnode"]

"""Compatibility details real clients probe, against a real ``rumor agent`` process.

Nomad's ``${attr.consul.version} semver >= 1.7.0`` constraint and the DebugConfig fields it reads;
``/v1/agent/version``, ``/v1/agent/host`` and ``PUT /v1/agent/reload``; the effective-consistency
header following ``?stale``/``?consistent``; ``?filter`` on ``/v1/catalog/services`` and
``/v1/agent/members``; ``members?wan``; the ``build`` member tag; DNS's ``.dc.`` label (dig).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest

from registry import CONSUL_VERSION, __version__
from tests.harness.agents import AgentProcess, Cluster, wait_for


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    cfg = tmp_path / "agent.json"
    cfg.write_text(json.dumps({"services": [{"name": "web", "port": 80, "tags": ["v1"],
                                             "meta": {"env": "prod"}}]}))
    c = Cluster(tmp_path)
    try:
        yield c.add("compat", extra_args=["-profile", "local", "-config-file", str(cfg)]).start()
    finally:
        c.close()


def get(a: AgentProcess, path: str) -> tuple[dict[str, str], Any]:
    with urllib.request.urlopen(f"http://{a.http_addr}{path}", timeout=10) as r:
        return dict(r.headers), json.loads(r.read())


def semver(v: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", v)
    assert m, f"{v!r} is not a semantic version"
    return int(m[1]), int(m[2]), int(m[3])


def test_agent_self_passes_nomads_version_constraint(agent: AgentProcess) -> None:
    me = consul.Consul(host="127.0.0.1", port=agent.http_port).agent.self()
    assert semver(me["Config"]["Version"]) >= (1, 7, 0)
    assert me["Config"]["Version"] == CONSUL_VERSION
    assert __version__ in me["Config"]["Revision"]
    dbg = me["DebugConfig"]
    assert dbg["ConnectEnabled"] is False and dbg["GRPCPort"] == -1
    _, v = get(agent, "/v1/agent/version")
    assert v["HumanVersion"] == CONSUL_VERSION and v["RumorVersion"] == __version__
    _, host = get(agent, "/v1/agent/host")
    assert host["Memory"]["total"] > 0 and host["Host"]["hostname"] and host["CPU"]
    assert host["Disk"]["total"] > 0
    r = subprocess.run([sys.executable, "-m", "registry.cli", "info", "-http-addr",
                        agent.http_addr], capture_output=True, text=True, timeout=20, check=False)
    assert f"version = {__version__}" in r.stdout


def test_members_build_tag_wan_and_filter(agent: AgentProcess) -> None:
    _, members = get(agent, "/v1/agent/members")
    (me,) = members
    assert me["Tags"]["build"].split(":")[0] == CONSUL_VERSION
    _, wan = get(agent, "/v1/agent/members?wan")
    assert wan == []
    q = urllib.parse.quote('Name == "compat"')
    assert [m["Name"] for m in get(agent, f"/v1/agent/members?filter={q}")[1]] == ["compat"]
    q = urllib.parse.quote('Name == "other"')
    assert get(agent, f"/v1/agent/members?filter={q}")[1] == []


def test_consistency_header_and_catalog_services_filter(agent: AgentProcess) -> None:
    c = consul.Consul(host="127.0.0.1", port=agent.http_port)
    c.agent.service.register("db", port=5432, tags=["pg"], meta={"env": "dev"})
    h, _ = get(agent, "/v1/catalog/services")
    assert h["X-Consul-Effective-Consistency"] == "leader"
    h, _ = get(agent, "/v1/catalog/services?stale")
    assert h["X-Consul-Effective-Consistency"] == "stale"
    h, _ = get(agent, "/v1/health/service/web?consistent")
    assert h["X-Consul-Effective-Consistency"] == "consistent"
    q = urllib.parse.quote('ServiceMeta.env == "prod"')
    _, svcs = get(agent, f"/v1/catalog/services?filter={q}")
    assert svcs == {"web": ["v1"]}
    q = urllib.parse.quote('"pg" in ServiceTags')
    assert get(agent, f"/v1/catalog/services?filter={q}")[1] == {"db": ["pg"]}
    _, allsvcs = get(agent, "/v1/catalog/services")
    assert set(allsvcs) == {"web", "db"}


def test_reload_applies_changed_config(agent: AgentProcess, tmp_path: Path) -> None:
    (tmp_path / "agent.json").write_text(json.dumps({"services": [
        {"name": "web", "port": 81}, {"name": "api", "port": 9000}]}))
    req = urllib.request.Request(f"http://{agent.http_addr}/v1/agent/reload", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
    _, svcs = get(agent, "/v1/agent/services")
    assert {k: v["Port"] for k, v in svcs.items()} == {"web": 81, "api": 9000}


def test_dns_dc_label(agent: AgentProcess) -> None:
    def dig(name: str) -> str:
        return subprocess.run(["dig", "@127.0.0.1", "-p", str(agent.dns_port), "+short", name],
                              capture_output=True, text=True, timeout=10, check=False).stdout

    wait_for(lambda: dig("web.service.rumor").strip(), 10, what="web in DNS")
    assert dig("web.service.dc1.dc.rumor").split() == dig("web.service.dc1.rumor").split()
    assert dig("web.service.dc1.dc.rumor").strip() == "127.0.0.1"
    assert dig("web.service.dc9.dc.rumor").strip() == ""

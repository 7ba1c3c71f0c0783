"""The registry's CLI commands against a real agent process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agents import AgentProcess, Cluster


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    c = Cluster(tmp_path)
    try:
        yield c.add("cli", extra_args=["-profile", "local"]).start()
    finally:
        c.close()


def rumor(agent: AgentProcess, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry.cli", *argv, "-http-addr", agent.http_addr],
                          capture_output=True, text=True, timeout=timeout)


def test_services_register_list_deregister(agent: AgentProcess, tmp_path: Path) -> None:
    f = tmp_path / "web.json"
    f.write_text(json.dumps({"service": {"name": "web", "id": "web1", "port": 8080,
                                         "tags": ["v1"], "check": {"ttl": "30s"}}}))
    r = rumor(agent, "services", "register", str(f))
    assert r.returncode == 0 and "Registered service: web" in r.stdout, r.stderr
    r = rumor(agent, "services", "register", "-name", "api", "-port", "9000", "-tag", "a",
              "-meta", "env=prod", "-ttl", "10s")
    assert r.returncode == 0, r.stderr
    r = rumor(agent, "services", "list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "Service"] and len(lines) == 3
    assert "critical" in r.stdout
    r = rumor(agent, "catalog", "services", "-tags")
    assert "api  a" in r.stdout and "web  v1" in r.stdout
    r = rumor(agent, "catalog", "service", "web", "-json")
    assert json.loads(r.stdout)[0]["ServicePort"] == 8080
    r = rumor(agent, "catalog", "nodes")
    assert "cli" in r.stdout
    r = rumor(agent, "health", "service", "web")
    assert "critical" in r.stdout and "service:web1=critical" in r.stdout
    r = rumor(agent, "maint", "-enable", "-service", "web1", "-reason", "deploy")
    assert r.returncode == 0
    r = rumor(agent, "maint")
    assert "Service web1: deploy" in r.stdout
    r = rumor(agent, "services", "deregister", "web1")
    assert r.returncode == 0 and "Deregistered" in r.stdout
    r = rumor(agent, "services", "deregister", "nope")
    assert r.returncode == 1 and "404" in r.stderr
    r = rumor(agent, "services", "register", "-name", "bad", "-port", "70000")
    assert r.returncode == 1 and "not a port" in r.stderr


def test_watch_streams_changes_as_json_with_json(agent: AgentProcess) -> None:
    p = subprocess.Popen([sys.executable, "-m", "registry.cli", "watch", "service", "web", "-json",
                          "-max-updates", "2", "-wait", "10s", "-http-addr", agent.http_addr],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert json.loads(first) == []
        t = time.monotonic()
        agent.http("PUT", "/v1/agent/service/register", {"Name": "web", "ID": "w1"})
        second = p.stdout.readline()
        assert [e["Service"]["ID"] for e in json.loads(second)] == ["w1"]
        assert time.monotonic() - t < 5
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _read_block(stream: Any) -> list[str]:
    """One printed change: lines up to the blank line that ends it."""
    lines = []
    while (line := stream.readline()) not in ("", "\n"):
        lines.append(line.rstrip("\n"))
    return lines


def test_watch_prints_a_table_per_change_with_check_output_cut(agent: AgentProcess) -> None:
    long_output = "<html><body>" + "x" * 5000 + "</body></html>\nsecond line"
    agent.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "ID": "w1", "Port": 8080, "Check": {"TTL": "60s"}})
    agent.http("PUT", "/v1/agent/check/update/service:w1",
               {"Status": "critical", "Output": long_output})
    p = subprocess.Popen([sys.executable, "-m", "registry.cli", "watch", "service", "web",
                          "-max-updates", "2", "-wait", "10s", "-http-addr", agent.http_addr],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        block = _read_block(p.stdout)
        agent.http("PUT", "/v1/agent/service/deregister/w1")
        after = _read_block(p.stdout)
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert block[0].startswith("== ") and block[0].endswith(" web: 1 instance (1 critical)"), block
    assert block[1].split() == ["Node", "ServiceID", "Address", "Port", "Health", "Worst", "check"]
    row = block[2].split(None, 5)
    assert row[:5] == ["cli", "w1", "127.0.0.1", "8080", "critical"], block
    # the worst check's output, first line only, cut with an ellipsis; no JSON anywhere
    assert row[5].startswith("service:w1: <html><body>xxx") and row[5].endswith("…"), row
    assert len(block[2]) < 150 and "{" not in "\n".join(block), block
    assert len(block) == 3
    assert after == [after[0]] and after[0].endswith(" web: no instances"), after


def test_kv_put_get_delete_export_import(agent: AgentProcess, tmp_path: Path) -> None:
    r = rumor(agent, "kv", "put", "app/config", '{"debug": true}')
    assert r.returncode == 0 and "Success! Data written to: app/config" in r.stdout, r.stderr
    (tmp_path / "cert.pem").write_bytes(b"-----CERT-----\n")
    assert rumor(agent, "kv", "put", "-flags", "7", "app/cert", f"@{tmp_path / 'cert.pem'}").returncode == 0
    r = rumor(agent, "kv", "get", "app/config")
    assert r.stdout == '{"debug": true}\n'
    r = rumor(agent, "kv", "get", "-detailed", "app/cert")
    assert "Flags         7" in r.stdout and "Value         -----CERT-----" in r.stdout
    r = rumor(agent, "kv", "get", "-recurse", "app/")
    assert r.stdout.splitlines() == ["app/cert:-----CERT-----", "", 'app/config:{"debug": true}']
    r = rumor(agent, "kv", "get", "-keys", "")
    assert r.stdout.splitlines() == ["app/"]
    r = rumor(agent, "kv", "get", "nope")
    assert r.returncode == 1 and "No key exists at: nope" in r.stderr
    r = rumor(agent, "kv", "put", "app/lock", "x", "-flags", "1")
    assert r.returncode == 0
    exported = rumor(agent, "kv", "export", "app/")
    items = json.loads(exported.stdout)
    assert [(i["key"], i["flags"]) for i in items] == [("app/cert", 7), ("app/config", 0),
                                                       ("app/lock", 1)]
    r = rumor(agent, "kv", "delete", "-recurse", "app/")
    assert r.returncode == 0
    assert rumor(agent, "kv", "get", "-recurse", "app/").stdout == ""
    r = subprocess.run([sys.executable, "-m", "registry.cli", "kv", "import", "-prefix", "copy/",
                        "-http-addr", agent.http_addr], input=exported.stdout,
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert rumor(agent, "kv", "get", "copy/app/cert").stdout == "-----CERT-----\n"
    assert json.loads(rumor(agent, "kv", "export", "copy/").stdout)[0]["flags"] == 7
    r = rumor(agent, "kv", "import", "[not json")
    assert r.returncode == 1 and "cannot read the import data" in r.stderr

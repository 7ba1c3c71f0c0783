"""``rumor dns NAME`` against a running DNS server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from dnsserver import DNSConfig, DNSServer

from .dns_runner import demo_view

ROOT = Path(__file__).resolve().parents[2]


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "registry.cli", "dns", *args, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


async def test_rumor_dns_table_and_json() -> None:
    server = DNSServer(DNSConfig(port=0), demo_view())
    await server.start()
    try:
        addr = f"127.0.0.1:{server.udp_port}"
        rc, out = await _cli("web", "-dns-addr", addr)
        assert rc == 0, out
        lines = out.splitlines()
        assert lines[0].split() == ["Target", "Address", "Port", "Weight", "Priority", "TTL"]
        assert sorted(line.split()[:3] for line in lines[1:]) == [
            ["0a010102.addr.dc1.rumor.", "10.1.1.2", "8081"],
            ["n1.node.dc1.rumor.", "10.0.0.1", "8080"], ["n3.node.dc1.rumor.", "10.0.0.3", "8082"]]
        rc, out = await _cli("big", "-type", "A", "-json", "-dns-addr", addr)
        data = json.loads(out)
        assert rc == 0 and len(data["Answers"]) == 40 and not data["Truncated"]
        rc, out = await _cli("nope", "-dns-addr", addr)
        assert rc == 1 and "NXDOMAIN" in out
        rc, out = await _cli("n1", "-node", "-dns-addr", addr)
        assert rc == 0 and "10.0.0.1" in out
    finally:
        await server.stop()


def test_nxdomain_says_never_registered_or_every_instance_failing(tmp_path: Path) -> None:
    from tests.harness.agents import AgentProcess

    a = AgentProcess("dnshint", tmp_path).start()
    try:
        def dns(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "registry.cli", "dns", *args,
                                   "-dns-addr", f"127.0.0.1:{a.dns_port}"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=30,
                                  env={**os.environ, "RUMOR_HTTP_ADDR": a.http_addr})
        # a TTL check starts critical: registered, but no instance is healthy
        a.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1"],
                "Check": {"TTL": "60s"}})
        p = dns("web")
        assert p.returncode == 1
        assert p.stdout.splitlines() == [
            "web.service.rumor. SRV: NXDOMAIN",
            "web is registered (1 instance), but every instance is failing a check, and DNS "
            "answers only healthy ones; see `rumor health service web`."], p.stdout
        p = dns("v2.web")
        assert "web is registered, but no instance has the tag v2" in p.stdout, p.stdout
        p = dns("nope", "-json")
        assert json.loads(p.stdout)["Hint"].startswith("No service named nope is registered")
        # once the check passes, DNS answers and there is nothing to explain
        a.http("PUT", "/v1/agent/check/pass/service:web1")
        p = dns("web")
        assert p.returncode == 0 and "8080" in p.stdout, p.stdout
        # an HTTP address of an agent that does not serve this DNS port is not trusted
        p = subprocess.run([sys.executable, "-m", "registry.cli", "dns", "nope", "-dns-addr",
                            f"127.0.0.1:{a.dns_port}", "-http-addr", "127.0.0.1:1"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30)
        assert p.stdout.splitlines()[1].startswith(
            "No healthy instance of nope: either no such service is registered or every "
            "instance is failing; `rumor health service nope` tells which."), p.stdout
    finally:
        a.stop()

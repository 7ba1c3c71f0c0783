"""``rumor dns NAME`` against a running DNS server."""

from __future__ import annotations

import asyncio
import json
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

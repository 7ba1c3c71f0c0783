"""What ``rumor agent -dev`` prints once it is up: where everything is, and what to try next."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _hostport(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cli_hint() -> tuple[str, str]:
    """(how to call the CLI from this shell, a line that puts it on the PATH or "")."""
    mine = Path(sys.prefix) / "bin" / "rumor"
    import shutil

    found = shutil.which("rumor")
    if found and Path(found).resolve() == mine.resolve():
        return "rumor", ""
    if mine.exists():
        script = os.path.relpath(mine.parent / "activate")
        if script.startswith(".."):
            script = str(mine.parent / "activate")
        return "rumor", f"source {script}    # puts `rumor` on this shell's PATH"
    return f"{Path(sys.executable).name} -m registry.cli", ""


def dev_banner(*, node: str, datacenter: str, client_addr: str, http_port: int, dns_port: int,
               gossip_addr: str, gossip_port: int, domain: str, ui: bool,
               https_port: int = 0) -> str:
    """The lines printed after a -dev agent started, with the ports it really bound."""
    http = _hostport(client_addr, http_port) if http_port > 0 else ""
    dns_host = "127.0.0.1" if client_addr in ("0.0.0.0", "::") else client_addr
    zone = domain.rstrip(".")
    cli, activate = cli_hint()
    lines = [(f"==> Rumor agent running in -dev mode: node {node}, datacenter {datacenter}; "
              "its data is deleted when it stops (Ctrl-C)")]
    if http and ui:
        lines.append(f"      Web UI: http://{http}/ui/")
    if http:
        lines.append(f"    HTTP API: http://{http}/v1/")
    if https_port > 0:
        lines.append(f"   HTTPS API: https://{_hostport(client_addr, https_port)}/v1/")
    if dns_port > 0:
        lines.append(f"         DNS: {_hostport(dns_host, dns_port)} (UDP and TCP), domain {zone}")
    lines.append(f"      Gossip: {_hostport(gossip_addr, gossip_port)}")
    lines.append("==> Next, in another shell: publish a service, then find it")
    if http:
        lines.append(f"    curl -X PUT http://{http}/v1/agent/service/register "
                     """-d '{"Name":"web","Port":8080}'""")
    if dns_port > 0:
        lines.append(f"    dig @{dns_host} -p {dns_port} web.service.{zone} SRV")
    if activate:
        lines.append(f"    {activate}")
    flag = f" -http-addr {http}" if http and http != "127.0.0.1:8500" else ""
    lines.append(f"    {cli} catalog services{flag}")
    if http and ui:
        lines.append(f"==> Then see it at http://{http}/ui/; the README's Quickstart goes on to "
                     "health checks and the load balancer")
    return "\n".join(lines)

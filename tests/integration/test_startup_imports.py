"""What a starting agent imports: the subsystems that are off, or not used yet, stay unloaded.

Issue 13 (start-up <= 0.2 CPU-s) and issue 18 (RSS) are met partly by importing lazily: the
other CLI commands, the web UI's model and renderer (until a page is asked for), the load
balancer's proxies and TLS (until a listener is added), the Docker client (until -docker), the
DNS forwarder (until a recursor is set), the TOML parser (until a TOML file is read), the
in-memory test views. Any eager import anywhere brings them back silently; this test starts a
real ``rumor agent`` through the real CLI in a process of its own and reads ``sys.modules`` at
the moment the agent is up (a wrapper around ``Agent._start`` prints it and stops the agent).
The HTTP API's server is registry/web, so aiohttp (the agent's HTTP client) is not loaded either.

The same probe with those subsystems switched on shows they are loaded then, so the check can
fail; whether they work when switched on is the business of their own tests (test_lb_*,
test_ui_*, test_dns_forward, test_containers, test_config).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys
import registry.cli as cli
from registry.lazyaiohttp import defer_aiohttp_init
defer_aiohttp_init()            # as `rumor agent` does before it imports the agent
import registry.agent as agent_mod

started = agent_mod.Agent._start

async def _start(self):
    await started(self)
    print("MODULES " + json.dumps(sorted(sys.modules)), flush=True)
    self.request_stop()

agent_mod.Agent._start = _start
sys.exit(cli.main(sys.argv[1:]))
"""

LAZY = (
    # CLI: only the agent command's module
    "registry.commands.acl", "registry.commands.kv", "registry.commands.watch",
    "registry.commands.services", "registry.client", "difflib",
    # web UI: loaded by the first page
    "registry.ui", "registry.ui.model", "registry.ui.render",
    # load balancer with no listener
    "lb.http", "lb.tcp", "lb.listener", "lb.tls", "lb.proxyproto", "lb.httphead", "lb.pool",
    "lb.memview",
    # Docker off, no recursor, no TOML file, no encryption, no metrics scrape
    "registry.containers", "registry.docker_api", "dnsserver.forward", "dnsserver.memview",
    "tomllib", "cryptography", "prometheus_client",
    # aiohttp is the HTTP client only (checks, federation, the container engine); the API is
    # served by registry/web
    "aiohttp.web", "aiohttp.web_app", "aiohttp.helpers", "aiohttp.client", "yarl", "multidict",
    # standard modules that cost ~1-3 ms each and are needed only later (ACL tokens, KV
    # digests, HTTP checks' reason phrases, event IDs) or never (random UUIDs: registry/datadir)
    "uuid", "platform", "hashlib", "http",
)


def modules_at_start(tmp_path: Path, *args: str) -> set[str]:
    argv = [sys.executable, "-c", PROBE, "agent", "-serf-lan-port", "0", "-http-port", "0",
            "-dns-port", "0", "-log-level", "warn", *args]
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("MODULES ")]
    assert lines, f"the agent did not start (exit {p.returncode}):\n{p.stdout}\n{p.stderr}"
    return set(json.loads(lines[0].removeprefix("MODULES ")))


@pytest.mark.parametrize("dev", [False, True], ids=["default", "dev"])
def test_a_default_agent_does_not_import_what_is_off(tmp_path: Path, dev: bool) -> None:
    args = (["-dev"] if dev else
            ["-node", "n1", "-bind", "127.0.0.1", "-data-dir", str(tmp_path / "data")])
    mods = modules_at_start(tmp_path, *args)
    assert "registry.agent" in mods and "registry.web.server" in mods   # a real start
    loaded = sorted(m for m in LAZY if m in mods)
    assert not loaded, f"imported at start although off or unused: {loaded}"
    commands = sorted(m for m in mods if m.startswith("registry.commands."))
    assert commands == ["registry.commands.agent_cmd"]


def test_switched_on_they_are_loaded(tmp_path: Path) -> None:
    """A TOML config with an HTTP LB listener and a recursor: the parts it needs are loaded at
    start (the lazy imports happen where the subsystem starts, not later on a hot path)."""
    cfg = tmp_path / "agent.toml"
    cfg.write_text('recursors = ["127.0.0.1:1"]\n\n[lb]\n[[lb.listeners]]\nName = "web"\n'
                   'Bind = "127.0.0.1:0"\nMode = "http"\nService = "web"\n')
    mods = modules_at_start(tmp_path, "-node", "n1", "-bind", "127.0.0.1", "-data-dir",
                            str(tmp_path / "data"), "-config-file", str(cfg))
    for m in ("tomllib", "lb.http", "lb.listener", "lb.tls", "dnsserver.forward"):
        assert m in mods, f"{m} not loaded although the config uses it"

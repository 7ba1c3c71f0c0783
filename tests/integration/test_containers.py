"""Containers publish themselves, with a real engine: Podman's Docker-compatible API.

The engine is a private ``podman system service`` (tests/harness/podman.py) with its own
storage and a busybox image built for the run; if Podman cannot run containers here, the
test fails (no skip: CI must notice). Published host ports are picked free at test time.
Podman and its containers run in a network namespace of their own; the agent reads the
engine's socket and answers DNS from the machine's own network.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agents import AgentProcess, free_port, wait_for
from tests.harness.podman import Podman


@pytest.fixture
def podman() -> Iterator[Podman]:
    p = Podman()
    try:
        p.build_image()
        p.start_service()
        yield p
    finally:
        p.close()


def dig(agent: AgentProcess, name: str, qtype: str = "A") -> list[str]:
    out = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "-p", str(agent.dns_port),
                          "@127.0.0.1", name, qtype], capture_output=True, text=True, check=False,
                         timeout=10).stdout
    return sorted(line for line in out.splitlines() if line and not line.startswith(";"))


def services(agent: AgentProcess) -> dict[str, Any]:
    return dict(agent.http("GET", "/v1/agent/services"))


def checks(agent: AgentProcess) -> dict[str, Any]:
    return dict(agent.http("GET", "/v1/agent/checks"))


def run_web(podman: Podman, name: str, port: int, *extra: str) -> None:
    podman.run("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:80", *extra, podman.image)


@pytest.mark.netns  # Podman runs in a namespace of its own; root is needed (CI runs as root)
def test_containers_register_follow_health_and_reconcile(podman: Podman, tmp_path: Path) -> None:
    web, api, quiet, later = (podman.name(n) for n in ("web", "api", "quiet", "later"))
    svc = f"{podman.prefix}-shop"
    web_port, api_port, later_port = free_port(), free_port(), free_port()
    run_web(podman, web, web_port,
            "--label", f"rumor.service.name={svc}", "--label", "rumor.service.tags=v1,blue",
            "--label", "rumor.service.meta.team=payments",
            "--health-cmd", "test -f /www/index.html", "--health-retries", "1",
            "--health-interval", "1h")
    run_web(podman, api, api_port, "-e", f"SERVICE_NAME={podman.prefix}-api")
    podman.run("run", "-d", "--name", quiet, podman.image)  # no ports, no labels: not published

    agent = AgentProcess("dock", tmp_path, extra_args=[
        "-docker", str(podman.socket), "-enable-local-script-checks"]).start()
    try:
        wid, aid = f"docker:{web}:80", f"docker:{api}:80"
        wait_for(lambda: {wid, aid} <= set(services(agent)), 20, what="containers registered")
        s = services(agent)[wid]
        assert (s["Service"], s["Port"], s["Address"]) == (svc, web_port, "127.0.0.1")
        assert s["Tags"] == ["v1", "blue"]
        assert s["Meta"]["source"] == "docker" and s["Meta"]["team"] == "payments"
        assert s["Meta"]["container"] == web
        assert services(agent)[aid]["Service"] == f"{podman.prefix}-api"
        assert not any(x["Meta"].get("container") == quiet for x in services(agent).values())
        # shown as containers in the CLI and the UI
        cli = subprocess.run([sys.executable, "-m", "registry.cli", "services", "list",
                              "-http-addr", agent.http_addr], capture_output=True, text=True,
                             check=False,
                             timeout=20).stdout
        row = next(line for line in cli.splitlines() if line.startswith(wid))
        assert row.split()[-1] == "docker" and cli.splitlines()[0].split()[-1] == "Source"
        with urllib.request.urlopen(f"http://{agent.http_addr}/ui/services/{svc}",
                                    timeout=5) as r:
            page = r.read().decode()
        assert 'data-source="docker"' in page and web in page
        # the HEALTHCHECK has not run yet ("starting"): critical, so not in DNS
        assert checks(agent)[f"{wid}:health"]["Status"] == "critical"
        assert dig(agent, f"{svc}.service.rumor") == []
        podman.run("healthcheck", "run", web)
        wait_for(lambda: checks(agent)[f"{wid}:health"]["Status"] == "passing", 15,
                 what="healthy container passing")
        wait_for(lambda: dig(agent, f"{svc}.service.rumor") == ["127.0.0.1"], 10,
                 what="A record")
        srv = dig(agent, f"{svc}.service.rumor", "SRV")
        assert len(srv) == 1 and srv[0].split()[2] == str(web_port)
        # the published port answers (Podman and its ports live in their own namespace)
        assert "hello from a container" in podman.ns_cmd(
            "curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{web_port}/")

        # a Docker check runs inside the container through the engine's API
        agent.http("PUT", "/v1/agent/check/register", {
            "Name": "index present", "CheckID": "api-index", "DockerContainerID": api,
            "Args": ["sh", "-c", "test -f /www/index.html || exit 2"], "Interval": "300ms"})
        agent.http("PUT", "/v1/agent/check/register", {
            "Name": "through a shell", "CheckID": "api-shell", "DockerContainerID": api,
            "Shell": "/bin/sh", "Args": ["echo", "$((40+2))", ";", "exit", "1"],
            "Interval": "300ms"})
        wait_for(lambda: checks(agent)["api-index"]["Status"] == "passing", 15,
                 what="docker check passing")
        wait_for(lambda: checks(agent)["api-shell"]["Status"] == "warning", 15,
                 what="docker check through a shell: exit 1 is warning")
        assert checks(agent)["api-shell"]["Output"].strip() == "42"
        agent.http("PUT", "/v1/agent/check/deregister/api-shell")

        # the container's healthcheck fails: critical, and DNS stops answering
        podman.run("exec", web, "rm", "/www/index.html")
        podman.run("healthcheck", "run", web, check=False)
        wait_for(lambda: checks(agent)[f"{wid}:health"]["Status"] == "critical", 15,
                 what="unhealthy container critical")
        wait_for(lambda: dig(agent, f"{svc}.service.rumor") == [], 10, what="no A record")
        podman.run("exec", api, "rm", "/www/index.html")
        wait_for(lambda: checks(agent)["api-index"]["Status"] == "critical", 15,
                 what="docker check critical")

        # stop -> deregistered
        podman.run("stop", "-t", "0", api)
        wait_for(lambda: aid not in services(agent), 15, what="stopped container deregistered")
        agent.http("PUT", "/v1/agent/check/deregister/api-index")

        # restart the agent while containers run, one is removed and one starts meanwhile
        agent.stop()
        podman.run("rm", "-f", "-t", "0", web)
        podman.run("start", api)
        run_web(podman, later, later_port, "--label", f"rumor.service.name={svc}")
        agent.start()
        lid = f"docker:{later}:80"
        wait_for(lambda: lid in services(agent) and aid in services(agent), 20,
                 what="reconciled after restart")
        mine = [k for k, v in services(agent).items() if v["Meta"].get("source") == "docker"]
        assert sorted(mine) == sorted([aid, lid])   # nothing stale, nothing doubled
        wait_for(lambda: dig(agent, f"{svc}.service.rumor", "SRV") != [], 10, what="SRV")
        assert [x.split()[2] for x in dig(agent, f"{svc}.service.rumor", "SRV")] == \
            [str(later_port)]

        # the engine goes away: its stream is lost; changes made meanwhile are reconciled
        podman.stop_service()
        podman.run("rm", "-f", "-t", "0", api)
        podman.run("run", "-d", "--name", web, "-p", f"127.0.0.1:{web_port}:80",
                   "--label", f"rumor.service.name={svc}", podman.image)
        podman.start_service()
        wait_for(lambda: aid not in services(agent) and wid in services(agent), 60,
                 what="reconciled after the stream came back")
        mine = [k for k, v in services(agent).items() if v["Meta"].get("source") == "docker"]
        assert sorted(mine) == sorted([wid, lid])
        stats = agent.http("GET", "/v1/agent/self")
        assert stats is not None
    finally:
        agent.stop()

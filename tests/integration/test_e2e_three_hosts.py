"""Publish → find → bind across three hosts (network namespaces), with a host cut off and healed.

Three namespaces are three hosts, each running a Rumor agent joined into one mesh. Hosts 0 and 1
run a small HTTP service that registers itself with its local agent, with an HTTP check. From
host 2, ``dig web.service.rumor SRV`` lists both, and ``curl`` through host 2's local proxy
alternates between them. Cutting host 1 off makes DNS drop it and the proxy stop sending to it,
with no failed request; healing brings it back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.conftest import need
from tests.harness import netns
from tests.harness.agents import AgentProcess, Cluster, wait_for

WEB_PORT = 8080
LB_PORT = 9000

SERVER = """
import http.server, socket, sys
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), H).serve_forever()
"""


def dig_srv(host: netns.Host, agent: AgentProcess) -> set[str]:
    out = host.run("dig", f"@{host.ip}", "-p", str(agent.dns_port), "+short", "+time=2",
                   "+tries=1", "web.service.rumor", "SRV", check=False).stdout
    # "1 1 8080 node0.node.dc1.rumor."
    return {line.split()[3].split(".")[0] for line in out.splitlines() if len(line.split()) == 4}


def curl(host: netns.Host, url: str, timeout: float = 10) -> str | None:
    p = host.run("curl", "-sS", "--fail-with-body", "--max-time", str(timeout), url,
                 check=False, timeout=timeout + 5)
    if p.returncode != 0:
        print(f"curl {url} failed: exit {p.returncode} {p.stderr.strip()} {p.stdout[:200]!r}")
        return None
    return p.stdout


@pytest.mark.netns
def test_publish_find_bind_across_three_hosts(cluster: Cluster,
                                              netns_lab: Callable[[int], netns.Lab]) -> None:
    need("dig")
    need("curl")
    lab = netns_lab(3)
    agents = cluster.start_in_hosts(lab.hosts, extra_args=["-profile", "local"])
    h0, h1, h2 = lab.hosts
    a0, a1, a2 = agents

    servers = []
    try:
        for host, agent in ((h0, a0), (h1, a1)):
            servers.append(host.popen(["python3", "-c", SERVER, agent.name, host.ip,
                                       str(WEB_PORT)]))
            agent.http("PUT", "/v1/agent/service/register", {
                "Name": "web", "Port": WEB_PORT,
                "Check": {"HTTP": f"http://{host.ip}:{WEB_PORT}/", "Interval": "1s",
                          "Timeout": "1s"},
            })
        a2.http("PUT", "/v1/lb/listener", {"Name": "web", "Bind": f"{h2.ip}:{LB_PORT}",
                                           "Mode": "http", "Service": "web"})

        # find: both instances in DNS, seen from the third host
        wait_for(lambda: dig_srv(h2, a2) == {"node0", "node1"}, 30,
                 what="SRV answer with both instances on host 2")

        # bind: requests through host 2's proxy alternate between the two
        url = f"http://{h2.ip}:{LB_PORT}/"
        answers = [curl(h2, url) for _ in range(10)]
        assert None not in answers
        assert Counter(answers) == {"node0": 5, "node1": 5}, answers

        # cut host 1 off: DNS drops it and the proxy stops sending to it, no request fails
        lab.partition(h1)
        t0 = time.monotonic()
        failures = 0
        seen_after: list[str] = []
        dns_dropped_at = None
        while time.monotonic() - t0 < 60:
            body = curl(h2, url)
            if body is None:
                failures += 1
            if dns_dropped_at is None and dig_srv(h2, a2) == {"node0"}:
                dns_dropped_at = time.monotonic() - t0
                seen_after = []
            elif dns_dropped_at is not None:
                seen_after.append(body or "")
                if len(seen_after) >= 10:
                    break
        assert dns_dropped_at is not None, "DNS never dropped the cut-off host"
        assert failures == 0, f"{failures} requests failed while host 1 was cut off"
        assert set(seen_after) == {"node0"}, seen_after
        print(f"cut-off host left DNS after {dns_dropped_at:.1f}s")

        # heal: it comes back, in DNS and in the proxy
        lab.heal(h1)
        wait_for(lambda: dig_srv(h2, a2) == {"node0", "node1"}, 60,
                 what="healed host back in DNS")
        wait_for(lambda: {curl(h2, url) for _ in range(6)} == {"node0", "node1"}, 20,
                 what="healed host back in the proxy")
    finally:
        for s in servers:
            s.kill()
            s.wait()


"""/v1/agent/metrics?format=prometheus parses and carries live values from every subsystem."""

from __future__ import annotations

import http.server
import subprocess
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import need
from tests.harness.agents import PYTHON, Cluster, free_port, wait_for


def scrape(addr: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://{addr}/v1/agent/metrics?format=prometheus",
                                timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, *a: object) -> None:
        pass


def total(samples: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    return sum(v for k, v in samples.items() if all((lk, lv) in k for lk, lv in labels.items()))


def test_every_family_has_live_values(cluster: Cluster, tmp_path: Path) -> None:
    need("dig")
    a, b = cluster.start_loopback(2)
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    lb_port = free_port()
    try:
        a.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "Port": backend.server_port, "Check": {"TTL": "30s"}})
        a.http("PUT", "/v1/agent/check/pass/service:web")
        a.http("PUT", "/v1/lb/listener", {"Name": "web", "Bind": f"127.0.0.1:{lb_port}",
                                          "Mode": "http", "Service": "web"})
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{lb_port}/", timeout=5).read()
        subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "web.service.rumor", "SRV",
                        "+short"], check=True, capture_output=True, timeout=10)
        subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "nope.service.rumor",
                        "+short"], check=True, capture_output=True, timeout=10)
        # UDP latency is timed on one query in eight (and weighted by eight): send enough
        # that at least one is timed, in one dig process.
        subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "+short"]
                       + [f"q{i}.service.rumor" for i in range(16)],
                       check=True, capture_output=True, timeout=20)

        # Two members, and probes under way both ways (bytes count UDP packets; the join was
        # TCP, and the first probe of each agent waits up to one probe interval).
        m = wait_for(lambda: (s := scrape(a.http_addr)) and
                     total(s["rumor_gossip_members"], status="alive") == 2 and
                     total(s["rumor_gossip_messages_total"], direction="in") > 0 and
                     total(s["rumor_gossip_bytes_total"], direction="out") > 0 and
                     total(s["rumor_gossip_bytes_total"], direction="in") > 0 and
                     s["rumor_gossip_probes_total"][()] >= 1 and
                     total(s["rumor_gossip_coordinate_samples_total"], result="used") >= 1
                     and s, 20,
                     what="gossip metrics to show two members, traffic and coordinates")
        # loopback answers within a millisecond: measured to the microsecond, not as 0 (a
        # millisecond clock made every such sample 0, or refused)
        assert total(m["rumor_gossip_coordinate_samples_total"], result="rejected") == 0
        assert total(m["rumor_gossip_coordinate_samples_total"], result="zero_rtt") == 0

        assert total(m["rumor_registry_instances"]) == 1
        assert total(m["rumor_registry_checks"], status="passing") >= 1
        assert "rumor_registry_blocking_queries_waiting" in m
        assert total(m["rumor_dns_queries_total"], qtype="SRV") >= 1
        assert total(m["rumor_dns_responses_total"], rcode="NXDOMAIN") >= 1
        assert m["rumor_dns_query_duration_seconds_count"][()] >= 8
        assert 0 < m["rumor_dns_query_duration_seconds_sum"][()] < 1
        assert total(m["rumor_lb_requests_total"], listener="web") == 3
        assert total(m["rumor_lb_bytes_total"], direction="out") > 0
        assert m["process_cpu_seconds_total"][()] > 0
        assert m["process_resident_memory_bytes"][()] > 1e6
        # the loop's lag: a timer every 50 ms, so samples keep coming (the agent may be up for
        # less than a second here; a loaded CI machine once had 9 at the first scrape), each
        # in the +Inf bucket and in the cumulative buckets below it
        m = wait_for(lambda: (s := scrape(a.http_addr))
                     and s["rumor_runtime_loop_lag_seconds_count"][()] >= 10 and s, 10,
                     what="10 loop-lag samples")
        lag = m["rumor_runtime_loop_lag_seconds_bucket"]
        assert lag[(("le", "+Inf"),)] == m["rumor_runtime_loop_lag_seconds_count"][()] >= 10
        assert lag[(("le", "0.001"),)] <= lag[(("le", "0.02"),)] <= lag[(("le", "+Inf"),)]
        assert 0 <= m["rumor_runtime_loop_lag_max_seconds"][()] < 5

        js = a.http("GET", "/v1/agent/metrics")
        assert {"Timestamp", "Gauges", "Counters", "Points", "Samples"} <= js.keys()
        assert any(g["Name"] == "rumor.registry.instances" and g["Value"] == 1
                   for g in js["Gauges"])
        assert any(c["Name"] == "rumor.runtime.loop.lag.seconds.count" and c["Count"] >= 10
                   for c in js["Counters"])
        info = subprocess.run([PYTHON, "-m", "registry.cli", "info", "-http-addr", a.http_addr],
                              check=True, capture_output=True, text=True, timeout=20).stdout
        assert "runtime:" in info and "loop_lag_max_ms = " in info and "slow_callbacks" in info
        # off during the start (registry/cli.py), back on once the agent is up: an agent left
        # without its collector would never free a reference cycle
        assert "gc_enabled = true" in info
    finally:
        backend.shutdown()


def test_dns_rate_limiting_is_counted(cluster: Cluster, tmp_path: Path) -> None:
    need("dig")
    conf = tmp_path / "rrl.json"
    conf.write_text('{"dns_config": {"rate_limit": {"responses_per_second": 2, "slip": 2}}}')
    (a,) = cluster.start_loopback(1, extra_args=["-config-file", str(conf)])
    for _ in range(12):        # one /24, 2 a second: most are limited (dig retries TC over TCP)
        subprocess.run(["dig", "@127.0.0.1", "-p", str(a.dns_port), "node0.node.rumor", "A",
                        "+tries=1", "+time=1"], check=False, capture_output=True, timeout=10)
    rl = scrape(a.http_addr)["rumor_dns_rate_limited_total"]
    assert total(rl, action="dropped") >= 1 and total(rl, action="slipped") >= 1, rl

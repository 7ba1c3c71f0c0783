"""The real agent's DNS with cache hits answered by the C thread (dnsserver/_udpc.c, Server):
after every change made over the HTTP API (register, a check failing and passing, deregister)
the very next dig gets the new truth, and so does every one after it, while the repeats
between changes are answered by the thread (rumor_dns_native_hits rises). Without the extension,
or with RUMOR_PURE_PYTHON or RUMOR_DNS_NO_THREAD set, the same answers are checked on the path
in use (test_udp_batch.py fails in CI when the extension is missing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from dnsserver import server as server_mod
from tests.harness.agents import AgentProcess

pytestmark = pytest.mark.skipif(not shutil.which("dig"), reason="needs dig")


def _dig(agent: AgentProcess, name: str) -> set[str]:
    # +nocookie: the same bytes after the ID every time (an EDNS cookie differs per query)
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(agent.dns_port), "+nocookie",
                          "+time=3", "+tries=1", "+short", name, "A"],
                         check=True, capture_output=True, text=True, timeout=20).stdout
    return set(out.split())


def _native_hits(agent: AgentProcess) -> float:
    url = f"http://{agent.http_addr}/v1/agent/metrics?format=prometheus"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^rumor_dns_native_hits_total (\S+)$", text, re.MULTILINE)
    assert m, "no rumor_dns_native_hits in the metrics"
    return float(m.group(1))


def test_each_change_is_answered_by_the_next_query_with_the_c_thread_on(tmp_path: Path) -> None:
    thread = server_mod._udpc is not None and not os.environ.get("RUMOR_DNS_NO_THREAD")
    a = AgentProcess("n1", tmp_path).start()
    try:
        def register(i: int) -> None:
            a.http("PUT", "/v1/agent/service/register", {
                "Name": "web", "ID": f"web-{i}", "Port": 8000 + i, "Address": f"10.0.0.{i}",
                "Check": {"TTL": "600s", "Status": "passing"}})

        hits = 0.0

        def expect(want: set[str]) -> None:
            nonlocal hits
            for _ in range(5):                  # the first ones on the loop, then the thread's
                assert _dig(a, "web.service.rumor") == want
            now = _native_hits(a)
            assert now > hits or not thread, "the C thread answered none of the repeats"
            hits = now

        register(1)
        expect({"10.0.0.1"})
        for _cycle in range(3):
            register(2)
            expect({"10.0.0.1", "10.0.0.2"})
            a.http("PUT", "/v1/agent/check/fail/service:web-2")
            expect({"10.0.0.1"})
            a.http("PUT", "/v1/agent/check/pass/service:web-2")
            expect({"10.0.0.1", "10.0.0.2"})
            a.http("PUT", "/v1/agent/service/deregister/web-2")
            expect({"10.0.0.1"})
    finally:
        a.stop()

"""The harness itself: five real agents on loopback, five in network namespaces, faults that bite."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.harness import netns
from tests.harness.agents import Cluster, wait_for


def all_see_all(agents, n: int) -> bool:
    for a in agents:
        seen = a.members()
        if len([s for s in seen.values() if s == "alive"]) != n:
            return False
    return True


def test_five_agents_on_loopback(cluster: Cluster) -> None:
    agents = cluster.start_loopback(5)
    assert len({a.http_port for a in agents}) == 5
    for a in agents:
        assert a.http("GET", "/v1/agent/self")["Config"]["NodeName"] == a.name
    wait_for(lambda: all_see_all(agents, 5), 20, what="5 loopback agents to see each other")


def test_five_agents_in_namespaces(cluster: Cluster, netns_lab: Callable[[int], netns.Lab]) -> None:
    lab = netns_lab(5)
    agents = cluster.start_in_hosts(lab.hosts)
    for a in agents:
        assert a.http("GET", "/v1/agent/self")["Config"]["NodeName"] == a.name
    wait_for(lambda: all_see_all(agents, 5), 30, what="5 namespaced agents to see each other")


def test_lab_partition_and_heal_really_cut_traffic(netns_lab: Callable[[int], netns.Lab]) -> None:
    lab = netns_lab(3)
    a, b, c = lab.hosts

    def ping(src: netns.Host, dst: netns.Host) -> bool:
        return src.run("ping", "-c1", "-W1", dst.ip, check=False).returncode == 0

    assert ping(a, b) and ping(b, c) and ping(a, c)
    lab.partition(a)
    assert not ping(a, b) and not ping(c, a)
    assert ping(b, c)                     # the others still talk
    lab.heal(a)
    assert ping(a, b) and ping(c, a)


def test_lab_udp_loss_is_partial(netns_lab: Callable[[int], netns.Lab]) -> None:
    lab = netns_lab(2)
    a, b = lab.hosts
    lab.drop_udp(b, 0.5)
    # 200 UDP datagrams from a to b; count what arrives at a socat-free python receiver.
    recv = b.popen(["python3", "-c",
                    "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                    f"s.bind(('{b.ip}',9999));s.settimeout(2);n=0\n"
                    "try:\n while True: s.recv(100); n+=1\nexcept Exception: print(n)"],
                   stdout=subprocess.PIPE)
    wait_for(lambda: b.run("ss", "-uln", check=False).stdout.count(":9999") > 0, 5,
             what="receiver")
    a.run("python3", "-c",
          "import socket,time;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
          f"for i in range(200): s.sendto(b'x',('{b.ip}',9999)); time.sleep(0.001)")
    out, _ = recv.communicate(timeout=10)
    got = int(out)
    assert 40 < got < 160, got            # about half, never all or none


def test_lab_cleans_up_everything() -> None:
    reason = netns.available()
    if reason:
        pytest.skip(reason)
    lab = netns.Lab(2)
    with lab:
        names = [h.name for h in lab.hosts] + [lab.switch]
        assert all(n in netns.run("ip", "netns", "list").stdout for n in names)
    listed = netns.run("ip", "netns", "list").stdout
    assert not any(n in listed for n in names)
    assert lab.run_id not in netns.run("ip", "link").stdout

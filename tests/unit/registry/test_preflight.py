"""The pre-flight listen check: which addresses collide, and the one message that lists them."""

from __future__ import annotations

import errno
import socket

import pytest

from registry.config import build
from registry.preflight import (
    ListenAddress,
    Problem,
    RunningAgent,
    describe,
    find_problems,
    listen_addresses,
    report,
)

GOSSIP = ListenAddress("gossip", "-serf-lan-port", "-bind", "0.0.0.0", 7946, ("udp", "tcp"))
HTTP = ListenAddress("HTTP API", "-http-port", "-client", "127.0.0.1", 8500, ("tcp",))
DNS = ListenAddress("DNS", "-dns-port", "-client", "127.0.0.1", 8600, ("udp", "tcp"))


def test_listen_addresses_follow_the_config() -> None:
    cfg = build({"dev": True, "http_port": 0, "dns_port": -1, "serf_lan_port": 0})
    assert [(a.what, a.port) for a in listen_addresses(cfg)] == [("gossip", 0), ("HTTP API", 0)]
    cfg = build({"dev": True, "http_port": -1, "enable_dns": False})
    assert [a.what for a in listen_addresses(cfg)] == ["gossip"]
    cfg = build({"dev": True, "https_port": 8501})
    assert [(a.what, a.port_setting, a.port) for a in listen_addresses(cfg)] == [
        ("gossip", "-serf-lan-port", 7946), ("HTTP API", "-http-port", 8500),
        ("HTTPS API", "-https-port", 8501), ("DNS", "-dns-port", 8600)]


def test_a_taken_port_is_found_and_a_free_one_is_not() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        taken = ListenAddress("HTTP API", "-http-port", "-client", "127.0.0.1", port, ("tcp",))
        free = ListenAddress("DNS", "-dns-port", "-client", "127.0.0.1", 0, ("udp", "tcp"))
        problems = find_problems([free, taken])
    assert [(p.address.what, p.protos, p.errno) for p in problems] == [
        ("HTTP API", ("tcp",), errno.EADDRINUSE)]
    assert problems[0].clashes_with is None


def test_two_settings_on_one_port_clash_with_each_other() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gossip = ListenAddress("gossip", "-serf-lan-port", "-bind", "0.0.0.0", port, ("udp", "tcp"))
    http = ListenAddress("HTTP API", "-http-port", "-client", "127.0.0.1", port, ("tcp",))
    problems = find_problems([gossip, http])
    assert len(problems) == 1 and problems[0].clashes_with == gossip
    assert "is the port gossip uses too (-serf-lan-port)" in describe(problems[0])


@pytest.mark.parametrize("problem, text", [
    (Problem(HTTP, ("tcp",), errno.EADDRINUSE, "Address already in use"),
     "-http-port 8500: 127.0.0.1:8500 (HTTP API, TCP) is already in use"),
    (Problem(GOSSIP, ("udp", "tcp"), errno.EADDRNOTAVAIL, "Cannot assign requested address"),
     "-bind 0.0.0.0: 0.0.0.0 is not an address of this host"),
    (Problem(DNS, ("udp", "tcp"), errno.EACCES, "Permission denied"),
     "ports below 1024 need root or CAP_NET_BIND_SERVICE"),
    (Problem(DNS, ("udp",), errno.EINVAL, "Invalid argument"),
     "-dns-port 8600: 127.0.0.1:8600 (DNS, UDP): Invalid argument"),
])
def test_each_problem_names_its_flag(problem: Problem, text: str) -> None:
    assert text in describe(problem)


def test_the_report_says_who_holds_the_ports() -> None:
    in_use = [Problem(a, a.protos, errno.EADDRINUSE, "in use") for a in (GOSSIP, HTTP, DNS)]
    agent = RunningAgent("Rumor", "vm", "4242", "127.0.0.1:8500")
    text = report(in_use, agent)
    assert text.splitlines()[0] == "cannot start: 3 listen addresses are not usable"
    assert "A Rumor agent is already running on these ports (node vm, pid 4242" in text
    assert "`rumor leave -http-addr 127.0.0.1:8500`" in text
    assert "-serf-lan-port 0 -http-port 0 -dns-port 0" in text
    # nobody answered on the HTTP port, but gossip and HTTP are both taken: probably an agent
    assert "Another agent is probably already running" in report(in_use, None)
    # one stray port is not "another agent"
    assert "Another agent" not in report(in_use[2:], None)


def test_a_taken_lb_listener_is_named_by_its_config_key() -> None:
    lb = ListenAddress("LB listener web", "lb.listeners[0].bind", "lb.listeners[0].bind",
                       "127.0.0.1", 9000, ("tcp",), v6only=True)
    text = report([Problem(lb, ("tcp",), errno.EADDRINUSE, "in use")], None)
    assert "lb.listeners[0].bind 9000: 127.0.0.1:9000 (LB listener web, TCP) is already in use" \
        in text
    assert text.endswith("Stop what holds those ports, or change the addresses named above")

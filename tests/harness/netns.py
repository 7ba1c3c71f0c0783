"""Hosts in network namespaces, joined by veth pairs to a bridge, with partition and loss helpers.

Layout: one *switch* namespace holds a Linux bridge; every host is a namespace with one veth
whose peer is plugged into that bridge. Nothing is created in the root namespace except the
namespaces themselves (and veth ends only transiently, while they are moved), so no rule or
interface can leak into the machine's own network. Every name carries a run ID, and
:meth:`Lab.close` deletes the namespaces, which takes their veths and iptables rules with them.

Faults are iptables rules inside the host's own namespace, in a chain of our own
(``RUMOR-FAULT``) so that healing is a flush:
- :meth:`Lab.partition` drops all traffic between a host and every other host;
- :meth:`Lab.drop_udp` drops a random fraction of incoming UDP (``-m statistic``);
- :meth:`Lab.heal` removes every fault of a host.
tc netem is not available on these kernels, which is why loss is done with iptables.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

CHAIN = "RUMOR-FAULT"


def available() -> str | None:
    """None when namespace tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespace tests need root (CI runs the suite as root; a skip fails it)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install iproute2 iptables)"
    return None


def run(*cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Host:
    name: str          # namespace name
    index: int
    ip: str
    mac: str
    veth: str          # interface name inside the host namespace

    def cmd(self, *argv: str) -> list[str]:
        """argv prefixed to run inside this host's namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return run(*self.cmd(*argv), check=check, timeout=timeout)

    def popen(self, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.cmd(*argv), **kw)  # type: ignore[call-overload,no-any-return]


@dataclass
class Lab:
    """N hosts on one L2 segment. Use as a context manager; always cleans up."""

    size: int
    run_id: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet_octet: int = field(default_factory=lambda: 100 + secrets.randbelow(100))
    hosts: list[Host] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"rmr{self.run_id}-sw"

    @property
    def prefix(self) -> str:
        return f"10.{self.subnet_octet}.0"

    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        run("ip", "netns", "add", self.switch)
        self._created.append(self.switch)
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i in range(self.size):
            ns = f"rmr{self.run_id}-h{i}"
            run("ip", "netns", "add", ns)
            self._created.append(ns)
            outer, inner = f"r{self.run_id}{i}a", f"r{self.run_id}{i}b"
            run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
            run("ip", "link", "set", inner, "netns", ns)
            run("ip", "link", "set", outer, "netns", self.switch)
            run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
            run("ip", "-n", self.switch, "link", "set", outer, "up")
            ip = f"{self.prefix}.{i + 2}"
            mac = "02:%02x:%02x:%02x:00:%02x" % (
                int(self.run_id[:2], 16), int(self.run_id[2:4], 16), int(self.run_id[4:6], 16),
                i + 2)
            run("ip", "-n", ns, "link", "set", inner, "address", mac)
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
            run("ip", "-n", ns, "link", "set", inner, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "netns", "exec", ns, "iptables", "-N", CHAIN)
            run("ip", "netns", "exec", ns, "iptables", "-I", "INPUT", "-j", CHAIN)
            run("ip", "netns", "exec", ns, "iptables", "-I", "OUTPUT", "-j", CHAIN)
            self.hosts.append(Host(ns, i, ip, mac, inner))
        # Permanent neighbour entries: no ARP traffic, no ARP-table overflow with many hosts
        # (see shared/reference/measuring.md), so loss tests drop only what they mean to drop.
        for h in self.hosts:
            for other in self.hosts:
                if other is not h:
                    run("ip", "-n", h.name, "neigh", "replace", other.ip, "lladdr", other.mac,
                        "nud", "permanent", "dev", h.veth)

    def close(self) -> None:
        for ns in reversed(self._created):
            run("ip", "netns", "del", ns, check=False)
        self._created.clear()

    # --- faults -------------------------------------------------------------------------------

    def partition(self, host: Host, others: Sequence[Host] | None = None) -> None:
        """Cut ``host`` off from ``others`` (default: every other host), both directions."""
        for o in others if others is not None else [h for h in self.hosts if h is not host]:
            host.run("iptables", "-A", CHAIN, "-s", o.ip, "-j", "DROP")
            host.run("iptables", "-A", CHAIN, "-d", o.ip, "-j", "DROP")

    def drop_udp(self, host: Host, probability: float) -> None:
        """Drop a random fraction of the UDP that ``host`` receives from the segment."""
        host.run("iptables", "-A", CHAIN, "-p", "udp", "-s", f"{self.prefix}.0/24",
                 "-m", "statistic", "--mode", "random", "--probability", f"{probability}",
                 "-j", "DROP")

    def drop_all(self, host: Host, probability: float) -> None:
        """Drop a random fraction of every IP packet ``host`` receives from the segment."""
        host.run("iptables", "-A", CHAIN, "-s", f"{self.prefix}.0/24",
                 "-m", "statistic", "--mode", "random", "--probability", f"{probability}",
                 "-j", "DROP")

    def heal(self, host: Host | None = None) -> None:
        for h in [host] if host is not None else self.hosts:
            h.run("iptables", "-F", CHAIN)

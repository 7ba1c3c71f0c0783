"""The address this agent tells its peers to reach it at."""

from __future__ import annotations

import contextlib
import socket

from .config import AgentConfig

_UNSPECIFIED = ("0.0.0.0", "::")


def advertise_address(cfg: AgentConfig) -> str:
    """``advertise_addr``, else ``bind_addr``; a wildcard bind becomes this host's own address."""
    addr = cfg.gossip_address
    return guess_local_ip() if addr in _UNSPECIFIED else addr


def guess_local_ip() -> str:
    """The source address of the default route (IPv4), or 127.0.0.1 when there is none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # No packet is sent: connecting a UDP socket only selects a route and source address
        # (192.0.2.1 is TEST-NET-1, RFC 5737).
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])
    return "127.0.0.1"

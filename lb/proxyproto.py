"""PROXY protocol headers (HAProxy's spec, versions 1 and 2) sent first to a backend so it
learns the real client address. Pure functions of the two socket addresses."""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["V2_SIGNATURE", "proxy_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_header(version: str, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """Header for a TCP connection from ``src`` (the client) to ``dst`` (our listener)."""
    s = ipaddress.ip_address(src[0].split("%", 1)[0])
    d = ipaddress.ip_address(dst[0].split("%", 1)[0])
    if s.version != d.version:     # v4 client on a dual-stack v6 socket
        if isinstance(s, ipaddress.IPv6Address) and s.ipv4_mapped is not None:
            s = s.ipv4_mapped
        if isinstance(d, ipaddress.IPv6Address) and d.ipv4_mapped is not None:
            d = d.ipv4_mapped
    if version == "v1":
        if s.version != d.version:
            return b"PROXY UNKNOWN\r\n"
        proto = "TCP4" if s.version == 4 else "TCP6"
        return f"PROXY {proto} {s} {d} {src[1]} {dst[1]}\r\n".encode("ascii")
    if version == "v2":
        if s.version != d.version:
            # LOCAL command, UNSPEC family: the backend uses the real connection's addresses
            return V2_SIGNATURE + b"\x20\x00\x00\x00"
        if s.version == 4:
            body = s.packed + d.packed + struct.pack("!HH", src[1], dst[1])
            fam = 0x11   # AF_INET, STREAM
        else:
            body = s.packed + d.packed + struct.pack("!HH", src[1], dst[1])
            fam = 0x21   # AF_INET6, STREAM
        return V2_SIGNATURE + bytes((0x21, fam)) + struct.pack("!H", len(body)) + body
    raise ValueError(f"unknown PROXY protocol version {version!r}")

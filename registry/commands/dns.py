"""``rumor dns NAME``: ask the agent's DNS server and print the answer as a table.

``NAME`` may be a bare service (``web`` means ``web.service.<domain>``), ``tag.web``, a node
(``-node``), or any full name (ending in a dot, or already under the domain). SRV is the default
type for services (target, address from the additional section, port, weight); ``-type A`` etc.
The query goes over UDP with EDNS and is retried over TCP when the answer is truncated.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import struct
from typing import Any

from ..cli import flag, print_json, print_table


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dns", help="query the agent's DNS interface and print the records",
        description="query the agent's DNS interface (UDP, TCP on truncation) and print a table",
        epilog="examples:\n  rumor dns web\n  rumor dns v1.web -type A\n  rumor dns -node n1\n"
               "  rumor dns _web._tcp.service.rumor. -dns-addr 127.0.0.1:8600 -json",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("name", help="service, tag.service, node (with -node) or a full DNS name")
    flag(p, "type", default=None, help="record type: SRV (default for services), A, AAAA, "
         "TXT, ANY, PTR, SOA, NS")
    flag(p, "node", action="store_true", help="NAME is a node: <name>.node.<domain>")
    flag(p, "dns-addr", default=None, metavar="IP:PORT",
         help="agent DNS address (default $RUMOR_DNS_ADDR or 127.0.0.1:8600)")
    flag(p, "domain", default="rumor.", help="DNS domain (default rumor.)")
    flag(p, "tcp", action="store_true", help="query over TCP")
    flag(p, "timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    flag(p, "json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _qname(args: argparse.Namespace) -> str:
    name = str(args.name)
    domain = str(args.domain)
    domain = domain if domain.endswith(".") else domain + "."
    if name.endswith("."):
        return name
    if name.lower().endswith("." + domain[:-1].lower()):
        return name + "."
    if name.count(".") >= 2 and (name.startswith("_") or ".in-addr" in name or ".ip6" in name):
        return name + "."
    if args.node:
        return f"{name}.node.{domain}"
    return f"{name}.service.{domain}"


def _addr(text: str | None) -> tuple[str, int]:
    text = text or os.environ.get("RUMOR_DNS_ADDR") or "127.0.0.1:8600"
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, "8600"
    return host.strip("[]"), int(port)


def _ask(packet: bytes, host: str, port: int, tcp: bool, timeout: float) -> bytes:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    if not tcp:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(packet, (host, port))
            while True:
                data, _ = s.recvfrom(65535)
                if data[:2] == packet[:2]:
                    return data
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(packet)) + packet)
        buf = b""
        while len(buf) < 2:
            chunk = s.recv(2 - len(buf))
            if not chunk:
                raise ConnectionError("the DNS server closed the connection")
            buf += chunk
        need = struct.unpack("!H", buf)[0]
        out = b""
        while len(out) < need:
            chunk = s.recv(need - len(out))
            if not chunk:
                raise ConnectionError("the DNS server closed the connection")
            out += chunk
        return out


def run(args: argparse.Namespace) -> int:
    from dnslib import EDNS0, QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped]

    qname = _qname(args)
    qtype = (args.type or ("A" if args.node else "SRV")).upper()
    if qtype not in QTYPE.reverse:
        print(f"error: unknown record type {qtype!r}; use SRV, A, AAAA, TXT, ANY...")
        return 1
    q = DNSRecord.question(qname, qtype)
    q.header.id = random.getrandbits(16)
    q.add_ar(EDNS0(udp_len=4096))
    host, port = _addr(args.dns_addr)
    try:
        raw = _ask(q.pack(), host, port, args.tcp, args.timeout)
        reply = DNSRecord.parse(raw)
        if reply.header.tc and not args.tcp:
            reply = DNSRecord.parse(_ask(q.pack(), host, port, True, args.timeout))
    except (OSError, ValueError) as e:
        print(f"Error: no answer from the DNS server at {host}:{port}: {e}")
        return 1
    rcode = RCODE.get(reply.header.rcode)
    glue: dict[str, list[str]] = {}
    for rr in reply.ar:
        if rr.rtype in (QTYPE.A, QTYPE.AAAA):
            glue.setdefault(str(rr.rname).lower(), []).append(str(rr.rdata))
    rows: list[dict[str, Any]] = []
    for rr in reply.rr:
        row: dict[str, Any] = {"Name": str(rr.rname), "Type": QTYPE.get(rr.rtype), "TTL": rr.ttl}
        if rr.rtype == QTYPE.SRV:
            target = str(rr.rdata.target)
            row.update(Target=target, Address=",".join(glue.get(target.lower(), [])),
                       Port=rr.rdata.port, Weight=rr.rdata.weight, Priority=rr.rdata.priority)
        else:
            row.update(Data=str(rr.rdata))
        rows.append(row)
    if args.json:
        print_json({"Question": qname, "Type": qtype, "Status": rcode,
                    "Truncated": bool(reply.header.tc), "Answers": rows})
        return 0 if rcode == "NOERROR" else 1
    if rcode != "NOERROR":
        print(f"{qname} {qtype}: {rcode}")
        return 1
    if not rows:
        print(f"{qname} {qtype}: no records of this type (NODATA)")
        return 0
    if qtype == "SRV":
        print_table([(r["Target"], r["Address"], r["Port"], r["Weight"], r["Priority"], r["TTL"])
                     for r in rows], ("Target", "Address", "Port", "Weight", "Priority", "TTL"))
    else:
        print_table([(r["Name"], r["Type"], r["Data"], r["TTL"]) for r in rows],
                    ("Name", "Type", "Data", "TTL"))
    return 0

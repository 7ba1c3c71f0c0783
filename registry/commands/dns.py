"""``rumor dns NAME``: ask the agent's DNS server and print the answer as a table.

``NAME`` may be a bare service (``web`` means ``web.service.<domain>``), ``tag.web``, a node
(``-node``), or any full name (ending in a dot, or already under the domain). SRV is the default
type for services (target, address from the additional section, port, weight); ``-type A`` etc.
The query goes over UDP with EDNS and is retried over TCP when the answer is truncated.

DNS answers only healthy instances, so NXDOMAIN for a service means "never registered" or
"registered, but every instance is failing". To tell which, the command asks the agent's HTTP API
(``-http-addr``), but only once that agent says it serves the DNS port that was queried.
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
    flag(p, "http-addr", metavar="ADDR", help="agent HTTP address, asked why a service has no "
         "answer (default $RUMOR_HTTP_ADDR or 127.0.0.1:8500)")
    flag(p, "token", metavar="TOKEN", help="ACL token (default $RUMOR_HTTP_TOKEN)")
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
    hint = why_no_answer(args, qname, port) if rcode == "NXDOMAIN" else ""
    if args.json:
        print_json({"Question": qname, "Type": qtype, "Status": rcode,
                    "Truncated": bool(reply.header.tc), "Answers": rows}
                   | ({"Hint": hint} if hint else {}))
        return 0 if rcode == "NOERROR" else 1
    if rcode != "NOERROR":
        print(f"{qname} {qtype}: {rcode}")
        if hint:
            print(hint)
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


def service_of(qname: str, domain: str) -> tuple[str, str] | None:
    """(service, tag) of ``[tag.]name.service[.dc].<domain>`` or ``_name._tag.service...``."""
    dom = domain.lower().rstrip(".").split(".")
    labels = qname.rstrip(".").split(".")
    if [x.lower() for x in labels[-len(dom):]] != dom:
        return None
    labels = labels[:-len(dom)]
    if len(labels) >= 2 and labels[-2].lower() == "service":
        labels = labels[:-1]  # the .<datacenter> form
    if len(labels) not in (2, 3) or labels[-1].lower() != "service":
        return None
    parts = labels[:-1]
    if parts[0].startswith("_"):  # RFC 2782: _name._tag (_tcp means any tag)
        tag = parts[1][1:] if len(parts) == 2 else ""
        return parts[0][1:], "" if tag == "tcp" else tag
    return parts[-1], parts[0] if len(parts) == 2 else ""


def why_no_answer(args: argparse.Namespace, qname: str, dns_port: int) -> str:
    """For NXDOMAIN on a service: never registered, or registered with every instance failing."""
    svc = service_of(qname, str(args.domain))
    if svc is None:
        return ""
    name, tag = svc
    what = f"{name} (tag {tag})" if tag else name
    generic = (f"No healthy instance of {what}: either no such service is registered or every "
               f"instance is failing; `rumor health service {name}` tells which.")
    from urllib.parse import quote

    from ..client import AgentUnreachable, APIError, Client

    client = Client(getattr(args, "http_addr", None), getattr(args, "token", None), timeout=2.0)
    try:
        me = client.get("/v1/agent/self") or {}
        ports = (me.get("DebugConfig") or {}).get("Ports") or {}
        if ports.get("DNS") != dns_port:
            return generic  # that HTTP API belongs to another agent than this DNS server
        entries = client.get(f"/v1/health/service/{quote(name, safe='')}") or []
    except (AgentUnreachable, APIError, AttributeError, TypeError):
        return generic
    if not entries:
        return (f"No service named {name} is registered (`rumor catalog services` lists the "
                "registered ones).")
    if tag:
        entries = [e for e in entries if tag in (e.get("Service") or {}).get("Tags", [])]
        if not entries:
            return (f"{name} is registered, but no instance has the tag {tag}; "
                    f"see `rumor catalog service {name}`.")
    failing = sum(1 for e in entries
                  if any(c.get("Status") == "critical" for c in e.get("Checks") or []))
    n = len(entries)
    if failing == n:
        return (f"{what} is registered ({n} instance{'s' if n != 1 else ''}), but every instance "
                "is failing a check, and DNS answers only healthy ones; see "
                f"`rumor health service {name}`.")
    return generic

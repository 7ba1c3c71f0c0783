"""``rumor services register|deregister|list``: manage this agent's services."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..cli import client_of, client_parser, flag, print_json, print_table

REGISTER_EPILOG = """examples:
  rumor services register web.json              # {"service": {...}} or {"services": [...]} or one service
  rumor services register -name web -id web1 -port 8080 -tag v1 -meta env=prod \\
        -http-check http://127.0.0.1:8080/health -interval 10s
  rumor services register -name job -ttl 30s
"""


def register(sub: Any) -> None:
    top = sub.add_parser("services", help="register, deregister and list this agent's services",
                         description="Manage the services registered with the local agent.",
                         epilog="examples:\n  rumor services register web.json\n"
                                "  rumor services register -name web -port 8080\n"
                                "  rumor services list\n  rumor services deregister web",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ss = top.add_subparsers(dest="services_cmd", metavar="SUBCOMMAND")
    top.set_defaults(func=lambda a: (top.print_help(), 1)[1])

    p = client_parser(ss, "register", "register services from a file or from flags",
                      REGISTER_EPILOG)
    p.add_argument("file", nargs="?", metavar="FILE", help="JSON or TOML service definition")
    flag(p, "name", help="service name")
    flag(p, "id", help="service ID (default: the name)")
    flag(p, "address", help="service address (default: the node's)")
    flag(p, "port", type=int, help="service port")
    flag(p, "tag", action="append", default=[], help="tag (repeatable)")
    flag(p, "meta", action="append", default=[], metavar="KEY=VALUE", help="meta (repeatable)")
    flag(p, "http-check", metavar="URL", help="add an HTTP check")
    flag(p, "tcp-check", metavar="HOST:PORT", help="add a TCP check")
    flag(p, "ttl", metavar="DURATION", help="add a TTL check")
    flag(p, "interval", default="10s", metavar="DURATION", help="check interval (default 10s)")
    flag(p, "timeout", metavar="DURATION", help="check timeout")
    p.set_defaults(func=run_register)

    p = client_parser(ss, "deregister", "deregister a service by ID",
                      "examples:\n  rumor services deregister web1")
    p.add_argument("id", nargs="?", metavar="ID")
    flag(p, "id", dest="id_flag", metavar="ID", help="service ID (same as the argument)")
    p.set_defaults(func=run_deregister)

    p = client_parser(ss, "list", "list this agent's services",
                      "examples:\n  rumor services list\n  rumor services list -json")
    p.set_defaults(func=run_list)


def _load_file(path: str) -> list[dict[str, Any]]:
    p = Path(path)
    try:
        raw = p.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if p.suffix == ".toml" else json.loads(raw)
    except OSError as e:
        raise SystemExit(f"Error: cannot read {path}: {e.strerror}")
    except (ValueError, UnicodeDecodeError) as e:
        raise SystemExit(f"Error: {path} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {e}")
    if isinstance(data, dict) and "service" in data:
        data = [data["service"]]
    elif isinstance(data, dict) and "services" in data:
        data = data["services"]
    elif isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise SystemExit(f"Error: {path}: expected a service object or a list of them")
    return data


def _from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.name:
        raise SystemExit("Error: give a FILE or at least -name")
    body: dict[str, Any] = {"Name": args.name}
    if args.id:
        body["ID"] = args.id
    if args.address:
        body["Address"] = args.address
    if args.port is not None:
        body["Port"] = args.port
    if args.tag:
        body["Tags"] = args.tag
    if args.meta:
        meta = {}
        for item in args.meta:
            k, sep, v = item.partition("=")
            if not sep:
                raise SystemExit(f"Error: -meta {item!r} is not KEY=VALUE")
            meta[k] = v
        body["Meta"] = meta
    checks = []
    if args.http_check:
        checks.append({"HTTP": args.http_check, "Interval": args.interval})
    if args.tcp_check:
        checks.append({"TCP": args.tcp_check, "Interval": args.interval})
    if args.ttl:
        checks.append({"TTL": args.ttl})
    for c in checks:
        if args.timeout and "TTL" not in c:
            c["Timeout"] = args.timeout
    if checks:
        body["Checks"] = checks
    return body


def run_register(args: argparse.Namespace) -> int:
    bodies = _load_file(args.file) if args.file else [_from_flags(args)]
    client = client_of(args)
    for body in bodies:
        client.request("PUT", "/v1/agent/service/register", body=body)
        name = body.get("Name") or body.get("name")
        sid = body.get("ID") or body.get("id") or name
        print(f"Registered service: {name} (id {sid})")
    return 0


def run_deregister(args: argparse.Namespace) -> int:
    sid = args.id or args.id_flag
    if not sid:
        print("Error: give the service ID to deregister", file=sys.stderr)
        return 1
    client_of(args).request("PUT", f"/v1/agent/service/deregister/{sid}")
    print(f"Deregistered service: {sid}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    client = client_of(args)
    services = client.get("/v1/agent/services")
    checks = client.get("/v1/agent/checks")
    if args.json:
        print_json(services)
        return 0
    rows = []
    for sid, s in sorted(services.items()):
        statuses = [c["Status"] for c in checks.values() if c.get("ServiceID") == sid]
        health = ("critical" if "critical" in statuses else "warning" if "warning" in statuses
                  else "passing")
        # containers registered by the agent's watcher carry meta source=docker
        source = (s.get("Meta") or {}).get("source") or "-"
        rows.append((sid, s["Service"], s.get("Address") or "-", s.get("Port") or "-",
                     ",".join(s.get("Tags") or []) or "-", health, source))
    print_table(rows, ("ID", "Service", "Address", "Port", "Tags", "Health", "Source"))
    return 0

"""``rumor catalog services|nodes|service NAME`` and ``rumor health service NAME``."""

from __future__ import annotations

import argparse
from typing import Any

from ..catalog import worst
from ..cli import client_of, client_parser, flag, print_json, print_table


def register(sub: Any) -> None:
    top = sub.add_parser("catalog", help="read the cluster-wide catalog",
                         description="Read the catalog (every agent's services).",
                         epilog="examples:\n  rumor catalog services\n  rumor catalog nodes -json\n"
                                "  rumor catalog service web -tag v2",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cs = top.add_subparsers(dest="catalog_cmd", metavar="SUBCOMMAND")
    top.set_defaults(func=lambda a: (top.print_help(), 1)[1])
    p = client_parser(cs, "services", "list service names",
                      "examples:\n  rumor catalog services\n  rumor catalog services -tags")
    _dc_flag(p)
    flag(p, "tags", action="store_true", help="show each service's tags")
    flag(p, "node", metavar="NODE", help="only services on this node")
    p.set_defaults(func=services)
    p = client_parser(cs, "nodes", "list nodes",
                      "examples:\n  rumor catalog nodes\n  rumor catalog nodes -service web")
    _dc_flag(p)
    flag(p, "service", metavar="NAME", help="only nodes that run this service")
    p.set_defaults(func=nodes)
    p = client_parser(cs, "service", "list a service's instances",
                      "examples:\n  rumor catalog service web\n  rumor catalog service web -tag v1")
    _dc_flag(p)
    p.add_argument("name")
    flag(p, "tag", action="append", default=[], help="only instances with this tag")
    p.set_defaults(func=service)

    top = sub.add_parser("health", help="read health", description="Read health information.",
                         epilog="examples:\n  rumor health service web\n"
                                "  rumor health service web -passing -json",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    hs = top.add_subparsers(dest="health_cmd", metavar="SUBCOMMAND")
    top.set_defaults(func=lambda a: (top.print_help(), 1)[1])
    p = client_parser(hs, "service", "a service's instances with their health",
                      "examples:\n  rumor health service web\n  rumor health service web -passing")
    _dc_flag(p)
    p.add_argument("name")
    flag(p, "passing", action="store_true", help="only passing instances")
    flag(p, "tag", action="append", default=[], help="only instances with this tag")
    p.set_defaults(func=health_service)


def _dc_flag(p: argparse.ArgumentParser) -> None:
    flag(p, "datacenter", metavar="DC", help="read this datacenter's catalog (default: the agent's)")


def _dc(args: argparse.Namespace) -> dict[str, str]:
    return {"dc": args.datacenter} if getattr(args, "datacenter", None) else {}


def services(args: argparse.Namespace) -> int:
    client = client_of(args)
    if args.node:
        data = client.get(f"/v1/catalog/node/{args.node}", params=_dc(args))
        if data is None:
            print(f"Error: no node named {args.node!r}")
            return 1
        svc: dict[str, list[str]] = {}
        for s in data["Services"].values():
            svc.setdefault(s["Service"], []).extend(s["Tags"])
        data = {k: sorted(set(v)) for k, v in svc.items()}
    else:
        data = client.get("/v1/catalog/services", params=_dc(args))
    if args.json:
        print_json(data)
        return 0
    for name, tags in sorted(data.items()):
        print(f"{name}  {','.join(tags)}" if args.tags else name)
    return 0


def nodes(args: argparse.Namespace) -> int:
    client = client_of(args)
    if args.service:
        entries = client.get(f"/v1/catalog/service/{args.service}", params=_dc(args))
        names = {e["Node"] for e in entries}
        data = [n for n in client.get("/v1/catalog/nodes", params=_dc(args)) if n["Node"] in names]
    else:
        data = client.get("/v1/catalog/nodes", params=_dc(args))
    if args.json:
        print_json(data)
        return 0
    print_table([(n["Node"], n["ID"][:8], n["Address"], n["Datacenter"]) for n in data],
                ("Node", "ID", "Address", "DC"))
    return 0


def service(args: argparse.Namespace) -> int:
    data = client_of(args).get(f"/v1/catalog/service/{args.name}", params={"tag": args.tag or None,
                                                                                  **_dc(args)})
    if args.json:
        print_json(data)
        return 0
    print_table([(e["Node"], e["ServiceID"], e["ServiceAddress"] or e["Address"],
                  e["ServicePort"], ",".join(e["ServiceTags"]) or "-") for e in data],
                ("Node", "ServiceID", "Address", "Port", "Tags"))
    return 0


def health_service(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"tag": args.tag or None, **_dc(args)}
    if args.passing:
        params["passing"] = "1"
    data = client_of(args).get(f"/v1/health/service/{args.name}", params=params)
    if args.json:
        print_json(data)
        return 0
    rows = []
    for e in data:
        s = e["Service"]
        bad = [c["CheckID"] + "=" + c["Status"] for c in e["Checks"] if c["Status"] != "passing"]
        rows.append((e["Node"]["Node"], s["ID"], s["Address"] or e["Node"]["Address"], s["Port"],
                     worst(c["Status"] for c in e["Checks"]), " ".join(bad) or "-"))
    print_table(rows, ("Node", "ServiceID", "Address", "Port", "Health", "Failing checks"))
    return 0

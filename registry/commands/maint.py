"""``rumor maint``: node or service maintenance mode (Consul's ``consul maint``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli import client_of, client_parser, flag, print_json

EPILOG = """examples:
  rumor maint                                   # show what is in maintenance
  rumor maint -enable -reason "kernel upgrade"  # the whole node
  rumor maint -enable -service web1 -reason deploy
  rumor maint -disable -service web1
"""


def register(sub: Any) -> None:
    p = client_parser(sub, "maint", "put the node or a service in maintenance mode", EPILOG)
    g = p.add_mutually_exclusive_group()
    g.add_argument("-enable", "--enable", action="store_true", help="enable maintenance mode")
    g.add_argument("-disable", "--disable", action="store_true", help="disable maintenance mode")
    flag(p, "service", metavar="ID", help="a service ID instead of the whole node")
    flag(p, "reason", default="", metavar="TEXT", help="why (shown in the check's Notes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = client_of(args)
    if not args.enable and not args.disable:
        checks = client.get("/v1/agent/checks")
        maint = [c for c in checks.values()
                 if c["CheckID"] == "_node_maintenance"
                 or c["CheckID"].startswith("_service_maintenance:")]
        if args.json:
            print_json(maint)
            return 0
        for c in maint:
            what = "Node" if c["CheckID"] == "_node_maintenance" else f"Service {c['ServiceID']}"
            print(f"{what}: {c['Notes']}")
        return 0
    enable = "true" if args.enable else "false"
    params = {"enable": enable, "reason": args.reason or None}
    if args.service:
        client.request("PUT", f"/v1/agent/service/maintenance/{args.service}", params=params)
        print(f"Service maintenance is now {'enabled' if args.enable else 'disabled'}: "
              f"{args.service}")
    else:
        client.request("PUT", "/v1/agent/maintenance", params=params)
        print(f"Node maintenance is now {'enabled' if args.enable else 'disabled'}")
    return 0

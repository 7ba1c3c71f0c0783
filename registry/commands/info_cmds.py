"""``rumor version`` and ``rumor info``."""

from __future__ import annotations

import argparse
from typing import Any

from .. import __version__
from ..cli import client_of, client_parser, print_json


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="print the version",
                       epilog="examples:\n  rumor version\n  rumor version -json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-json", "--json", action="store_true", help="print JSON")
    p.set_defaults(func=version)
    p = client_parser(sub, "info", "show the local agent's identity and stats",
                      "examples:\n  rumor info\n  rumor info -json -http-addr 127.0.0.1:8500")
    p.set_defaults(func=info)


def version(args: argparse.Namespace) -> int:
    if args.json:
        print_json({"Version": __version__, "ProtocolMin": 1, "ProtocolMax": 5})
    else:
        print(f"Rumor v{__version__}")
        print("Protocol: memberlist 2 (understands 1-5), Serf delegate 5")
    return 0


def info(args: argparse.Namespace) -> int:
    data = client_of(args).get("/v1/agent/self")
    if args.json:
        print_json(data)
        return 0
    cfg = data.get("Config", {})
    print("agent:")
    print(f"\tnode = {cfg.get('NodeName')}")
    print(f"\tnode_id = {cfg.get('NodeID')}")
    print(f"\tdatacenter = {cfg.get('Datacenter')}")
    print(f"\tversion = {cfg.get('RumorVersion') or cfg.get('Version')}")
    print(f"\tconsul_api_version = {cfg.get('Version')}")
    for section, values in sorted((data.get("Stats") or {}).items()):
        if section == "agent":
            for k, v in sorted(values.items()):
                print(f"\t{k} = {v}")
            continue
        print(f"{section}:")
        for k, v in sorted(values.items()):
            print(f"\t{k} = {v}")
    return 0

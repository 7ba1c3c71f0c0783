"""Gossip commands: ``join``, ``leave``, ``force-leave``, ``event``, ``keygen``, ``keyring``."""

from __future__ import annotations

import argparse
import base64
import os
import sys
from typing import Any

from ..cli import client_of, client_parser, flag, print_json


def register(sub: Any) -> None:
    p = client_parser(sub, "join", "tell the agent to join a cluster through another agent",
                      "examples:\n  rumor join 10.0.0.5\n  rumor join 10.0.0.5:7946")
    p.add_argument("address", nargs="+", help="gossip address (host or host:port) of an agent")
    flag(p, "replay", action="store_true", help="also deliver user events sent before the join")
    p.set_defaults(func=join)

    p = client_parser(sub, "leave", "make the agent leave the cluster gracefully and stop",
                      "examples:\n  rumor leave\n  rumor leave -http-addr 10.0.0.5:8500")
    p.set_defaults(func=leave)

    p = client_parser(sub, "force-leave", "mark a failed member as left (it stops being reconnected)",
                      "examples:\n  rumor force-leave node3\n  rumor force-leave -prune node3")
    flag(p, "prune", action="store_true", help="forget the member at once instead of keeping it as left")
    p.add_argument("node", help="member name")
    p.set_defaults(func=force_leave)

    p = client_parser(sub, "event", "fire a user event to the whole cluster (Serf user event)",
                      "examples:\n  rumor event deploy v1.2\n  echo data | rumor event backup -")
    flag(p, "coalesce", default="true", metavar="BOOL",
         help="let handlers coalesce this event with others of its name (default true)")
    p.add_argument("name", help="event name")
    p.add_argument("payload", nargs="?", default="", help="payload ('-' reads stdin)")
    p.set_defaults(func=event)

    p = sub.add_parser("keygen", help="print a new random 32-byte gossip encryption key (base64)",
                       epilog="examples:\n  rumor keygen\n  rumor agent -encrypt $(rumor keygen) ...",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=keygen)

    p = client_parser(sub, "keyring", "manage the gossip encryption keys of the whole cluster",
                      "examples:\n  rumor keyring -list\n  rumor keyring -install KEY\n"
                      "  rumor keyring -use KEY\n  rumor keyring -remove KEY")
    flag(p, "wan", action="store_true", help="the WAN pool's keyring (on a WAN member)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("-list", "--list", action="store_true", help="list installed keys and how many nodes have each")
    g.add_argument("-install", "--install", metavar="KEY", help="install a key on every node")
    g.add_argument("-use", "--use", metavar="KEY", help="make an installed key the primary key everywhere")
    g.add_argument("-remove", "--remove", metavar="KEY", help="remove a key from every node")
    p.set_defaults(func=keyring)


def join(args: argparse.Namespace) -> int:
    c = client_of(args)
    n = 0
    params = {"replay": "1"} if args.replay else None
    for addr in args.address:
        c.request("PUT", f"/v1/agent/join/{addr}", params=params)
        n += 1
    print(f"Successfully joined cluster by contacting {n} nodes.")
    return 0


def leave(args: argparse.Namespace) -> int:
    client_of(args).request("PUT", "/v1/agent/leave", timeout=15.0)
    print("Graceful leave complete")
    return 0


def force_leave(args: argparse.Namespace) -> int:
    params = {"prune": "1"} if args.prune else None
    client_of(args).request("PUT", f"/v1/agent/force-leave/{args.node}", params=params)
    return 0


def event(args: argparse.Namespace) -> int:
    payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
    coalesce = str(args.coalesce).lower() not in ("false", "0", "no")
    params = None if coalesce else {"coalesce": "false"}
    resp = client_of(args).request("PUT", f"/v1/event/fire/{args.name}", raw=payload,
                                   params=params).json()
    if args.json:
        print_json(resp)
    else:
        print(f"Event '{args.name}' dispatched! Coalescing enabled: {str(coalesce).lower()}")
    return 0


def keygen(args: argparse.Namespace) -> int:
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def keyring(args: argparse.Namespace) -> int:
    c = client_of(args)
    wan = {"wan": "1"} if args.wan else None
    if args.list:
        data = c.get("/v1/operator/keyring", params=wan) or []
        if args.json:
            print_json(data)
            return 0
        print("Gathering installed encryption keys...")
        for pool in data:
            n = pool.get("NumNodes", 0)
            pool_name = "WAN" if pool.get("WAN") else "LAN"
            print(f"\n{pool_name} keyring ({pool.get('NumResp', 0)}/{n} nodes answered):")
            primaries = pool.get("PrimaryKeys") or {}
            for key, count in sorted((pool.get("Keys") or {}).items()):
                mark = "  [primary]" if key in primaries else ""
                print(f"  {key}  [{count}/{n}]{mark}")
            for node, msg in sorted((pool.get("Messages") or {}).items()):
                print(f"  {node}: {msg}")
            if pool.get("NumErr"):
                print(f"error: {pool['NumErr']}/{n} nodes reported failure", file=sys.stderr)
                return 1
        return 0
    if args.install:
        print("Installing new gossip encryption key...")
        c.request("POST", "/v1/operator/keyring", params=wan, body={"Key": args.install}, timeout=30.0)
    elif args.use:
        print("Changing primary gossip encryption key...")
        c.request("PUT", "/v1/operator/keyring", params=wan, body={"Key": args.use}, timeout=30.0)
    else:
        print("Removing gossip encryption key...")
        c.request("DELETE", "/v1/operator/keyring", params=wan, body={"Key": args.remove}, timeout=30.0)
    print("Success!")
    return 0

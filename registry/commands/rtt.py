"""``rumor rtt NODE [NODE]``: the estimated round trip between two nodes, from their network
coordinates (as ``consul rtt`` / ``serf rtt``)."""

from __future__ import annotations

import argparse
from typing import Any

from gossip import distance

from ..api.coordinate_routes import coord_from_json
from ..cli import client_of, client_parser, flag


def register(sub: Any) -> None:
    p = client_parser(
        sub, "rtt", "estimated round trip time between two nodes (network coordinates)",
        "examples:\n  rumor rtt node2            (from the agent's own node)\n"
        "  rumor rtt node1 node2\n  rumor rtt -wan web1.dc1 web3.dc2")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="one node (from this agent) or two")
    flag(p, "wan", action="store_true", help="WAN pool coordinates (names node.dc)")
    p.set_defaults(func=rtt)


def rtt(args: argparse.Namespace) -> int:
    if len(args.nodes) > 2:
        print("error: give one or two node names")
        return 1
    c = client_of(args)
    coords: dict[str, Any] = {}
    if args.wan:
        for dc in c.get("/v1/coordinate/datacenters") or []:
            for item in dc.get("Coordinates") or []:
                coords[item["Node"]] = coord_from_json(item.get("Coord"))
    else:
        for item in c.get("/v1/coordinate/nodes") or []:
            coords[item["Node"]] = coord_from_json(item.get("Coord"))
    nodes = list(args.nodes)
    if len(nodes) == 1:
        me = (c.get("/v1/agent/self") or {}).get("Config", {})
        name = me.get("NodeName", "")
        nodes.insert(0, f"{name}.{me.get('Datacenter', '')}" if args.wan else name)
    missing = [n for n in nodes if coords.get(n) is None]
    if missing:
        print(f"error: no coordinate for {', '.join(missing)} (yet: coordinates come with "
              "the acks of direct probes, within a few probe intervals of a join)")
        return 1
    ms = distance(coords[nodes[0]], coords[nodes[1]]) * 1000.0
    pool = "WAN" if args.wan else "LAN"
    print(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {ms:.3f} ms (using {pool} coordinates)")
    return 0

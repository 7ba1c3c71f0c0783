"""``rumor members``: the gossip members this agent knows, like ``serf members``."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..cli import client_of, client_parser, flag, print_json, print_table

STATUS_NAMES = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def register(sub: Any) -> None:
    p = client_parser(
        sub, "members", "list the gossip members (name, address, status, tags)",
        "examples:\n  rumor members\n  rumor members -status failed\n  rumor members -json\n"
        "  rumor members -wan",
    )
    flag(p, "status", metavar="REGEXP", help="only members whose status matches (alive|leaving|left|failed)")
    flag(p, "name", metavar="REGEXP", help="only members whose name matches")
    flag(p, "tag", action="append", default=[], metavar="KEY=REGEXP", help="only members whose tag matches")
    flag(p, "detailed", action="store_true", help="also show protocol versions")
    flag(p, "wan", action="store_true", help="the WAN pool's members (named node.dc) instead")
    p.set_defaults(func=members)


def _matches(pattern: str | None, value: str) -> bool:
    if not pattern:
        return True
    return re.fullmatch(pattern, value) is not None


def members(args: argparse.Namespace) -> int:
    params = {"wan": "1"} if args.wan else None
    data = client_of(args).get("/v1/agent/members", params=params) or []
    tag_filters: list[tuple[str, str]] = []
    for t in args.tag:
        k, sep, v = t.partition("=")
        if not sep:
            print(f"error: -tag {t!r} is not KEY=REGEXP")
            return 1
        tag_filters.append((k, v))
    try:
        rows = []
        for m in data:
            status = STATUS_NAMES.get(int(m.get("Status", 0)), "none")
            tags = m.get("Tags") or {}
            if not _matches(args.status, status) or not _matches(args.name, m.get("Name", "")):
                continue
            if any(not _matches(v, tags.get(k, "")) for k, v in tag_filters):
                continue
            rows.append((m, status, tags))
    except re.error as e:
        print(f"error: bad regular expression: {e}")
        return 1
    rows.sort(key=lambda r: r[0].get("Name", ""))
    if args.json:
        print_json([{"Name": m["Name"], "Addr": m["Addr"], "Port": m["Port"], "Tags": tags,
                     "Status": status} for m, status, tags in rows])
        return 0
    def tag_text(tags: dict[str, str]) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))

    if args.detailed:
        print_table(
            [(m["Name"], f"{m['Addr']}:{m['Port']}", status, tag_text(tags),
              f"{m.get('ProtocolMin', 0)}/{m.get('ProtocolMax', 0)}/{m.get('ProtocolCur', 0)}",
              f"{m.get('DelegateMin', 0)}/{m.get('DelegateMax', 0)}/{m.get('DelegateCur', 0)}")
             for m, status, tags in rows],
            ("Node", "Address", "Status", "Tags", "Protocol", "Delegate"),
        )
        return 0
    print_table(
        [(m["Name"], f"{m['Addr']}:{m['Port']}", status, tag_text(tags))
         for m, status, tags in rows],
        ("Node", "Address", "Status", "Tags"),
    )
    return 0

"""``rumor watch services|service NAME``: print the data each time it changes.

Uses blocking queries (``?index=&wait=``), so a quiet catalog costs one request per wait
period. Each change prints a time-stamped table (a service's instances with their health and
the first line of their worst check's output, cut to fit a terminal), or with ``-json`` one JSON
document on its own line (NDJSON), ready for ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..catalog import health_rank
from ..cli import client_of, client_parser, flag, print_table
from ..client import AgentUnreachable, APIError

EPILOG = """examples:
  rumor watch services
  rumor watch service web -passing
  rumor watch service web -tag v1 -max-updates 1
  rumor watch service web -json | jq -c '[.[].Service.ID]'
"""

OUTPUT_SHOWN = 60
"""Characters of a check's output shown in the table (its first line)."""



def register(sub: Any) -> None:
    p = client_parser(sub, "watch", "print services or a service's instances on every change: "
                      "a table headed by the time, or with -json one JSON document per line",
                      EPILOG)
    p.add_argument("type", choices=("services", "service"))
    p.add_argument("name", nargs="?")
    flag(p, "passing", action="store_true", help="service: only passing instances")
    flag(p, "tag", action="append", default=[], help="service: only instances with this tag")
    flag(p, "wait", default="5m", metavar="DURATION", help="blocking wait per request (default 5m)")
    flag(p, "max-updates", type=int, default=0, metavar="N", help="exit after N prints (0 = never)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.type == "service" and not args.name:
        print("Error: watch service needs the service NAME", file=sys.stderr)
        return 1
    client = client_of(args)
    path = "/v1/catalog/services" if args.type == "services" else f"/v1/health/service/{args.name}"
    base: dict[str, Any] = {}
    if args.type == "service":
        base["tag"] = args.tag or None
        if args.passing:
            base["passing"] = "1"
    from ..durations import parse_duration

    try:
        wait_s = parse_duration(args.wait, what="-wait")
    except ValueError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    index = 0
    printed = 0
    last: Any = object()
    errors = 0
    while True:
        params = dict(base)
        if index:
            params.update(index=str(index), wait=args.wait)
        try:
            resp = client.request("GET", path, params=params, timeout=wait_s + wait_s / 16 + 10)
        except (AgentUnreachable, APIError) as e:
            errors += 1
            if errors > 3:
                raise
            print(f"watch: {e}; retrying", file=sys.stderr)
            time.sleep(min(5.0, 0.5 * 2 ** errors))
            continue
        errors = 0
        new_index = int(resp.headers.get("X-Consul-Index", "0") or 0)
        if new_index < index:
            index = 0  # the agent restarted; start over
        data = resp.json()
        if data != last:
            if args.json:
                print(json.dumps(data, separators=(",", ":")), flush=True)
            else:
                print_change(args, data)
            last = data
            printed += 1
            if args.max_updates and printed >= args.max_updates:
                return 0
        index = max(new_index, 1)


def cut(text: str, width: int = OUTPUT_SHOWN) -> str:
    """The first non-empty line of ``text`` in at most ``width`` characters; ``…`` marks a cut."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    more = " …" if len(lines) > 1 else ""
    if len(first) + len(more) > width:
        return first[: width - 1] + "…"
    return first + more


def _worst_check(checks: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(checks, key=lambda c: health_rank(c.get("Status", "")), default=None)


def print_change(args: argparse.Namespace, data: Any) -> None:
    stamp = time.strftime("%H:%M:%S")
    if args.type == "services":
        services = data or {}
        print(f"== {stamp} {len(services)} service{'s' if len(services) != 1 else ''}")
        if services:
            print_table([(name, ",".join(tags) or "-") for name, tags in sorted(services.items())],
                        ("Service", "Tags"))
        print(flush=True)
        return
    entries = data or []
    counts: dict[str, int] = {}
    rows = []
    for e in entries:
        s, node = e.get("Service", {}), e.get("Node", {})
        worst = _worst_check(e.get("Checks") or [])
        health = worst.get("Status", "passing") if worst else "passing"
        counts[health] = counts.get(health, 0) + 1
        output = f"{worst.get('CheckID', '')}: {cut(worst.get('Output', ''))}" if worst else "-"
        rows.append((node.get("Node", ""), s.get("ID", ""),
                     s.get("Address") or node.get("Address", ""), s.get("Port", ""), health,
                     output))
    summary = ", ".join(f"{counts[h]} {h}" for h in ("passing", "warning", "critical")
                        if counts.get(h))
    n = len(entries)
    print(f"== {stamp} {args.name}: " + (f"{n} instance{'s' if n != 1 else ''} ({summary})"
                                          if n else "no instances"))
    if rows:
        print_table(rows, ("Node", "ServiceID", "Address", "Port", "Health", "Worst check"))
    print(flush=True)

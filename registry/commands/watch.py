"""``rumor watch services|service NAME``: print the data each time it changes.

Uses blocking queries (``?index=&wait=``), so a quiet catalog costs one request per wait
period. Each change prints one JSON document on its own line (NDJSON), ready for ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..cli import client_of, client_parser, flag
from ..client import AgentUnreachable, APIError

EPILOG = """examples:
  rumor watch services
  rumor watch service web -passing
  rumor watch service web -tag v1 -max-updates 1
"""


def register(sub: Any) -> None:
    p = client_parser(sub, "watch", "print services or a service's instances on every change",
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
            print(json.dumps(data, separators=(",", ":")), flush=True)
            last = data
            printed += 1
            if args.max_updates and printed >= args.max_updates:
                return 0
        index = max(new_index, 1)

"""``rumor monitor``: stream the agent's log until interrupted."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

from ..cli import client_of, client_parser, flag
from ..client import AgentUnreachable, APIError


def register(sub: Any) -> None:
    p = client_parser(sub, "monitor", "stream the agent's log lines",
                      "examples:\n  rumor monitor\n  rumor monitor -log-level debug")
    flag(p, "log-level", default="info", metavar="LEVEL", help="trace, debug, info, warn, err")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = client_of(args)
    url = f"{client.base}/v1/agent/monitor?loglevel={args.log_level}"
    req = urllib.request.Request(url)
    if client.token:
        req.add_header("X-Consul-Token", client.token)
    try:
        with urllib.request.urlopen(req, timeout=None) as resp:
            for raw in resp:
                line = raw.decode(errors="replace").rstrip("\n")
                print(line, flush=True)
    except urllib.error.HTTPError as e:
        raise APIError(e.code, e.read().decode(errors="replace")) from None
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        raise AgentUnreachable(f"cannot reach the agent at {client.base} ({e})") from None
    except KeyboardInterrupt:
        print(file=sys.stderr)
    return 0

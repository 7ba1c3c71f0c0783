"""``rumor reload``: ask the agent to re-read its config files (Consul's ``consul reload``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli import client_of, client_parser


def register(sub: Any) -> None:
    p = client_parser(sub, "reload", "re-read the agent's config files (services, checks, TLS "
                      "certificates, ACLs), as SIGHUP does", "example:\n  rumor reload")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client_of(args).request("PUT", "/v1/agent/reload")
    print("Configuration reload triggered")
    return 0

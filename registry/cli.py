"""The ``rumor`` command line: ``rumor agent`` plus client commands that talk to the HTTP API.

Flags follow Consul and Serf and are accepted with one dash or two. Every client command takes
``-http-addr`` (or ``RUMOR_HTTP_ADDR``), ``-token`` and ``-json``, prints a clear message and exits
1 when the agent cannot be reached or refuses the request.

A command module under ``registry/commands/`` defines ``register(sub)``, where it adds its parser
(with :func:`client_parser` for client commands) and sets ``func`` to a handler taking the parsed
arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from .client import AgentUnreachable, APIError, Client

COMMAND_MODULES = (
    "agent_cmd",
    "info_cmds",
    "members",
    "gossip_cmds",
    "services",
    "catalog_cmds",
    "maint",
    "lb",
    "dns",
    "watch",
    "monitor",
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 1, as Consul does, with the usage
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(1)


def flag(p: argparse.ArgumentParser, name: str, **kw: Any) -> None:
    """Add ``-name`` and ``--name``."""
    p.add_argument(f"-{name}", f"--{name}", **kw)


def client_parser(sub: Any, name: str, help: str, epilog: str = "") -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    flag(p, "http-addr", metavar="ADDR", help="agent HTTP address (default $RUMOR_HTTP_ADDR or 127.0.0.1:8500)")
    flag(p, "token", metavar="TOKEN", help="ACL token (default $RUMOR_HTTP_TOKEN)")
    flag(p, "ca-file", metavar="FILE", help="CA to verify the agent's HTTPS certificate (default $RUMOR_CACERT)")
    flag(p, "client-cert", metavar="FILE", help="client certificate for HTTPS (default $RUMOR_CLIENT_CERT)")
    flag(p, "client-key", metavar="FILE", help="key of -client-cert (default $RUMOR_CLIENT_KEY)")
    flag(p, "json", action="store_true", help="print JSON")
    return p


def client_of(args: argparse.Namespace) -> Client:
    return Client(getattr(args, "http_addr", None), getattr(args, "token", None),
                  ca_file=getattr(args, "ca_file", None),
                  client_cert=getattr(args, "client_cert", None),
                  client_key=getattr(args, "client_key", None))


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    table = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rumor", description="Rumor: service registry and discovery mesh",
                    allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 1
    try:
        return int(func(args) or 0)
    except AgentUnreachable as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except APIError as e:
        print(f"Error: the agent refused the request ({e.status}): {e.text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

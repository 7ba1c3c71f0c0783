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
import gc
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client

COMMAND_MODULES = (
    "agent_cmd",
    "info_cmds",
    "members",
    "rtt",
    "gossip_cmds",
    "services",
    "catalog_cmds",
    "maint",
    "kv",
    "lb",
    "dns",
    "watch",
    "monitor",
    "acl",
    "reload_cmd",
)

COMMANDS = {
    "agent": "agent_cmd", "version": "info_cmds", "info": "info_cmds", "members": "members",
    "rtt": "rtt", "join": "gossip_cmds", "leave": "gossip_cmds", "force-leave": "gossip_cmds",
    "event": "gossip_cmds", "keygen": "gossip_cmds", "keyring": "gossip_cmds",
    "services": "services", "catalog": "catalog_cmds", "health": "catalog_cmds",
    "maint": "maint", "kv": "kv", "lb": "lb", "dns": "dns", "watch": "watch",
    "monitor": "monitor", "acl": "acl", "reload": "reload_cmd",
}
"""Which module of :data:`COMMAND_MODULES` registers each command: ``rumor agent`` imports only
``agent_cmd`` (the others were ~20 ms of the agent's start-up, issue 13); a test checks this
table against what the modules register."""


class Parser(argparse.ArgumentParser):
    """Flags are matched whole: no prefixes (``-http`` is not ``-http-port``) and no short-flag
    clusters (``-htp-port`` is not ``-h`` with ``tp-port``). An unknown flag or command is named
    with the closest real one. Errors exit 1, as Consul's do, with the usage."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def _get_option_tuples(self, option_string: str) -> list[Any]:
        # argparse still matches single-dash prefixes and "-h<value>" with allow_abbrev=False
        # (fixed in 3.12 for prefixes only); an exact match is found before this is asked.
        return []

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, extras = super().parse_known_args(args, namespace)
        if extras:  # reported by the (sub)command that got them, whose flags we know
            self.error(self.unknown_message(extras))
        return ns, extras

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        choices = action.choices
        if choices is not None and value not in choices and isinstance(value, str):
            import difflib

            close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
            if close:
                raise argparse.ArgumentError(action, f"invalid choice: {value!r}; did you mean "
                                                     f"{close[0]!r}?")
        super()._check_value(action, value)

    def unknown_message(self, extras: Sequence[str]) -> str:
        import difflib

        known = sorted(o for o in self._option_string_actions if not o.startswith("--"))
        flags = [a for a in extras if a.startswith("-") and len(a) > 1 and not a[1:].isdigit()]
        hints: list[tuple[str, str]] = []
        for arg in flags:
            name = "-" + arg.lstrip("-").split("=", 1)[0]
            hints += [(arg, m) for m in difflib.get_close_matches(name, known, n=1, cutoff=0.6)]
        text = "unrecognized arguments: " + " ".join(extras)
        if len(flags) == 1 and hints:
            return f"{text}; did you mean {hints[0][1]}?"
        if hints:
            return f"{text}; did you mean " + ", ".join(f"{m} for {a}" for a, m in hints) + "?"
        return text

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
    from .client import Client

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or (``command``, one of :data:`COMMANDS`) of that one."""
    parser = Parser(prog="rumor", description="Rumor: service registry and discovery mesh",
                    allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES if command is None else (COMMANDS[command],):
        try:
            module = importlib.import_module(f"{__package__}.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argl = list(sys.argv[1:] if argv is None else argv)
    if argl[:1] == ["agent"]:
        # No collection while the agent loads its modules and starts: the ~60 that the
        # allocations would set off walk objects that nearly all stay (modules, classes,
        # functions, the app), ~10 ms of a ~0.2 CPU-s start (issue 13). The agent collects
        # once and freezes what is left when it has started, and turns the collector back on
        # then (commands/agent_cmd.run); otherwise when the command returns.
        gc.disable()
        try:
            return _main(argl)
        finally:
            gc.enable()
    return _main(argl)


def _main(argl: list[str]) -> int:
    # a known command needs only its own module; anything else (help, a typo) gets them all
    parser = build_parser(argl[0] if argl and argl[0] in COMMANDS else None)
    args = parser.parse_args(argl)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 1
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:
        # The reader went away (`rumor members | head`): stop quietly. Python's own recipe
        # (docs: signal, "Note on SIGPIPE"): point stdout at devnull so that the flush at exit
        # does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        from .client import AgentUnreachable, APIError

        if isinstance(e, AgentUnreachable):
            print(f"Error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, APIError):
            print(f"Error: the agent refused the request ({e.status}): {e.text}",
                  file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

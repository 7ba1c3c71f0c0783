#!/usr/bin/env python3
"""Generate docs/configuration.md (and docs/cli.md) from the code.

configuration.md comes from the configuration dataclasses' field docstrings; cli.md's command
reference comes from the ``rumor`` command's own argument parsers (descriptions, flags, help
texts and examples), so neither can drift from what the program accepts.

The code is the source of truth: each setting's description is the docstring written under its
field (``AgentConfig``, gossip's ``MemberlistConfig`` and ``SerfConfig``, ``dnsserver.DNSConfig``,
``lb.LBConfig`` and ``lb.ListenerSpec``), its default is the dataclass default, and the agent's
command-line flags are found by asking the flag parser itself. A subsystem whose package is not
importable is left out with a note.

    python scripts/gen_config_docs.py            # rewrite docs/configuration.md and docs/cli.md
    python scripts/gen_config_docs.py --check    # exit 1 when either is out of date
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import json
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "configuration.md"
CLI_OUT = ROOT / "docs" / "cli.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- reading the code ---------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """name -> docstring of every field of ``cls`` (the string literal right after it)."""
    source = textwrap.dedent(inspect.getsource(cls))
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    out: dict[str, str] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return out


def default_of(f: dataclasses.Field[Any], instance: Any = None) -> Any:
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def show(value: Any) -> str:
    """A default as a reader would write it in a JSON config file."""
    if value is dataclasses.MISSING:
        return "required"
    if value is None:
        return "`null`"
    if dataclasses.is_dataclass(value):
        return "see below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        text = f"{value:g}" if value != int(value) or abs(value) < 1e15 else repr(value)
        return f"`{text}`"
    if isinstance(value, (int, str)):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if isinstance(value, Mapping):
        return f"`{json.dumps(dict(value), ensure_ascii=False)}`"
    if isinstance(value, (tuple, list, frozenset, set)):
        return f"`{json.dumps(list(value), ensure_ascii=False)}`"
    return f"`{value!r}`"


def cell(text: str) -> str:
    """One Markdown table cell: no newlines, no bare pipes."""
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def short_type(t: Any) -> str:
    s = t if isinstance(t, str) else getattr(t, "__name__", str(t))
    return s.replace("typing.", "").replace("collections.abc.", "")


# --- the agent's flags --------------------------------------------------------------------------


def agent_flags() -> dict[str, list[str]]:
    """setting name -> the flags that set it, found by feeding each flag to the real parser."""
    from registry import config as rc
    from registry.errors import ConfigError

    parser = argparse.ArgumentParser(allow_abbrev=False)
    rc.add_agent_flags(parser)
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        flag = next((o for o in action.option_strings if o.startswith("-")
                     and not o.startswith("--")), None)
        if flag is None or action.dest in ("help", "config_file", "config_dir"):
            continue
        metavar = str(action.metavar or "")
        sample: Any = "x"
        if ":" in metavar:
            sample = "k:v"
        elif "=" in metavar:
            sample = "k=v"
        elif metavar == "PORT":
            sample = "1"
        ns = parser.parse_args([])
        if action.nargs == 0:
            setattr(ns, action.dest, True)
        elif isinstance(action, argparse._AppendAction):
            setattr(ns, action.dest, [sample])
        else:
            setattr(ns, action.dest, sample)
        try:
            keys = rc.flags_to_settings(ns).keys()
        except ConfigError:   # a flag whose sample value it refuses: not a setting we can name
            continue
        for key in keys:
            out.setdefault(key, []).append(f"`{flag}`")
    return out


# --- sections -----------------------------------------------------------------------------------


Row = tuple[str, str, str, str]


def rows_for(cls: type, *, key: Callable[[str], str | None] = lambda n: n,
             instance: Any = None, skip: Iterable[str] = (),
             note: Mapping[str, str] | None = None) -> list[Row]:
    docs = field_docs(cls)
    skip = set(skip)
    out: list[Row] = []
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        k = key(f.name)
        if k is None:
            continue
        desc = docs.get(f.name, "")
        extra = (note or {}).get(f.name, "")
        if extra:
            desc = f"{desc} {extra}".strip()
        out.append((k, short_type(f.type), show(default_of(f, instance)),
                    desc or "*(no description in the code yet)*"))
    return out


def table(rows: list[Row], first: str = "Setting") -> str:
    lines = [f"| {first} | Type | Default | Description |", "|---|---|---|---|"]
    for k, t, d, desc in rows:
        lines.append(f"| {cell(k)} | {cell(t)} | {cell(d)} | {cell(desc)} |")
    return "\n".join(lines)


AGENT_KEYS = {"http_port": "ports.http", "dns_port": "ports.dns", "serf_lan_port": "ports.serf_lan"}


def agent_section() -> str:
    from registry.config import AgentConfig

    flags = agent_flags()
    docs = field_docs(AgentConfig)
    lines = [
        "## Agent (`AgentConfig`)",
        "",
        "Top-level keys of a config file; the flag, where there is one, overrides the file.",
        "",
        "| Setting | Flag | Type | Default | Description |",
        "|---|---|---|---|---|",
    ]
    for f in dataclasses.fields(AgentConfig):
        if f.name in ("config_files", "config_dirs"):
            continue
        key = AGENT_KEYS.get(f.name, f.name)
        flag = ", ".join(flags.get(f.name, [])) or "—"
        desc = docs.get(f.name, "") or "*(no description in the code yet)*"
        lines.append(f"| `{cell(key)}` | {cell(flag)} | {cell(short_type(f.type))} | "
                     f"{cell(show(default_of(f)))} | {cell(desc)} |")
    lines += ["", ("The flags `-config-file FILE` and `-config-dir DIR` (both repeatable) name the "
                   "files to read; `-profile lan|wan|local` sets `gossip.profile`.")]
    return "\n".join(lines)


def gossip_section() -> str:
    try:
        gossip = importlib.import_module("gossip")
        MemberlistConfig = gossip.MemberlistConfig
        SerfConfig = gossip.SerfConfig
    except (ImportError, AttributeError):
        return "## Gossip (`gossip`)\n\nThe gossip package is not part of this build."
    try:
        from registry.membership import _RESERVED as reserved
    except ImportError:
        reserved = {"name", "bind_addr", "bind_port", "advertise_addr", "advertise_port",
                    "secret_keys", "node_name", "tags", "snapshot_path", "event_handlers"}
    lan = MemberlistConfig.lan(name="n")
    presets = {"wan": MemberlistConfig.wan(name="n"), "local": MemberlistConfig.local(name="n")}
    notes: dict[str, str] = {}
    for f in dataclasses.fields(MemberlistConfig):
        diffs = [f"{p}: {show(getattr(c, f.name))}" for p, c in presets.items()
                 if getattr(c, f.name) != getattr(lan, f.name)]
        if diffs:
            notes[f.name] = "Presets — " + "; ".join(diffs) + "."
    ml_rows = rows_for(MemberlistConfig, key=lambda n: f"`gossip.{n}`", instance=lan,
                       skip=reserved, note=notes)
    # A name both layers have goes to memberlist (registry.membership checks it first).
    shadowed = {f.name for f in dataclasses.fields(MemberlistConfig)}
    serf_rows = rows_for(SerfConfig, key=lambda n: f"`gossip.{n}`",
                         skip=set(reserved) | shadowed)
    return "\n".join([
        "## Gossip (`gossip` section)",
        "",
        ("`gossip.profile` picks a preset: `lan` (default; memberlist's `DefaultLANConfig`), "
         "`wan` or `local` (short timers for one host and tests). Any setting below overrides the "
         "preset; durations are seconds or strings such as `\"500ms\"`. Addresses, ports, the "
         "node name, tags, keys and event handlers come from the agent's own settings and are "
         "refused here."),
        "",
        "### Membership and failure detection (`MemberlistConfig`; defaults of the `lan` preset)",
        "",
        table(ml_rows),
        "",
        "### Serf layer (`SerfConfig`)",
        "",
        table(serf_rows),
    ])


def dns_section() -> str:
    try:
        dnsserver = importlib.import_module("dnsserver")
        DNSConfig = dnsserver.DNSConfig
    except (ImportError, AttributeError):
        return "## DNS (`dns_config`)\n\nThe DNS package is not part of this build."
    from_agent = {"domain": "`domain`", "alt_domain": "`alt_domain`", "bind_addr": "`client_addr`",
                  "port": "`ports.dns`", "recursors": "`recursors`"}
    rows = rows_for(DNSConfig, key=lambda n: None if n in from_agent or n == "soa"
                    else f"`dns_config.{n}`")
    soa_cls = type(DNSConfig().soa)
    soa_rows = rows_for(soa_cls, key=lambda n: f"`dns_config.soa.{n}`")
    agent_set = ", ".join(f"`{k}` (from the agent's {v})" for k, v in from_agent.items())
    return "\n".join([
        "## DNS (`dns_config` section, `DNSConfig`)",
        "",
        (f"The DNS server's {agent_set} are taken from the agent's top-level settings. Keys "
         "Consul has that mean nothing here (`allow_stale`, `max_stale`, `use_cache`, "
         "`cache_max_age`, …) are accepted and ignored."),
        "",
        table(rows + soa_rows),
    ])


def lb_section() -> str:
    try:
        lb = importlib.import_module("lb")
        LBConfig = lb.LBConfig
        ListenerSpec = lb.ListenerSpec
    except (ImportError, AttributeError):
        return "## Load balancer (`lb`)\n\nThe load-balancer package is not part of this build."
    sample = ListenerSpec(name="x", bind="127.0.0.1:1", service="s").to_dict()

    def norm(s: str) -> str:
        return s.replace("_", "").lower()

    json_keys = {norm(k): k for k in sample}
    lrows = rows_for(ListenerSpec, key=lambda n: f"`{json_keys.get(norm(n), n)}`")
    return "\n".join([
        "## Load balancer (`lb` section)",
        "",
        "### Defaults and limits (`LBConfig`)",
        "",
        table(rows_for(LBConfig, key=lambda n: f"`lb.{n}`")),
        "",
        "### Listeners (`lb.listeners[]`, `ListenerSpec`)",
        "",
        ("Each entry of `lb.listeners` (and the body of `PUT /v1/lb/listener`) is an object with "
         "these keys, matched case-insensitively (`Name`, `name` and `NAME` are the same key)."),
        "",
        table(lrows, first="Key"),
    ])


def acl_section() -> str:
    from registry.acl import ACLConfig, ACLTokens, PolicyEntry, TokenEntry

    return "\n".join([
        "## ACLs (`acl` section)",
        "",
        ("Consul's ACL model, kept in the config files: policies (Consul's rules language) and "
         "tokens that carry them. Re-read on SIGHUP and `PUT /v1/agent/reload`; "
         "`rumor acl policy create` and `rumor acl token create` write them into `acl.json` of a "
         "`-config-dir`. Lists of `policies` and `token_list` from several files accumulate. "
         "See [security.md](security.md) for what each endpoint needs."),
        "",
        table(rows_for(ACLConfig, key=lambda n: None if n in ("tokens",) else f"`acl.{n}`")),
        "",
        "### Special tokens (`acl.tokens`)",
        "",
        table(rows_for(ACLTokens, key=lambda n: f"`acl.tokens.{n}`")),
        "",
        "### Policies (`acl.policies[]`)",
        "",
        table(rows_for(PolicyEntry), first="Key"),
        "",
        "### Tokens (`acl.token_list[]`)",
        "",
        table(rows_for(TokenEntry, skip={"management"}), first="Key"),
    ])


HEADER = """\
# Configuration reference

<!-- GENERATED by scripts/gen_config_docs.py from the field docstrings of the config
     dataclasses. Do not edit by hand: change the docstring in the code and run
     `python scripts/gen_config_docs.py`. tests/unit/test_docs_current.py fails when this file
     is out of date. -->

Rumor reads JSON (`.json`) or TOML (`.toml`) files given with `-config-file` and every such file
in each `-config-dir`, in order; later files override earlier ones, lists of `services` and
`checks` accumulate, and command-line flags override files. Keys follow Consul's agent
configuration, so `node_name`, `ports.http` or `dns_config.only_passing` mean what they mean
there; an unknown key stops start-up with a message naming it. Durations are seconds or Go-style
strings (`"250ms"`, `"10s"`, `"1m30s"`).

```json
{
  "node_name": "web-1",
  "data_dir": "/var/lib/rumor",
  "bind_addr": "10.0.0.5",
  "retry_join": ["10.0.0.2", "10.0.0.3"],
  "encrypt": "<output of rumor keygen>",
  "ports": {"http": 8500, "dns": 8600},
  "dns_config": {"only_passing": true, "service_ttl": {"*": "5s"}},
  "lb": {"listeners": [{"Name": "web", "Bind": "127.0.0.1:9000", "Mode": "http", "Service": "web"}]},
  "services": [{"name": "web", "port": 8080, "check": {"http": "http://127.0.0.1:8080/health", "interval": "10s"}}]
}
```
"""


def generate() -> str:
    parts = [HEADER, agent_section(), acl_section(), gossip_section(), dns_section(),
             lb_section()]
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n"


# --- the command line -------------------------------------------------------------------------

CLI_HEADER = """\
# Command line

<!-- The reference part of this file is GENERATED by scripts/gen_config_docs.py from the
     argument parsers of the `rumor` command. Do not edit by hand: change the help text in
     registry/commands/ and run `python scripts/gen_config_docs.py`. -->

`rumor` is one program with subcommands: `rumor agent` runs the agent; every other subcommand is a
client of a running agent's HTTP API. `make dev` installs it in `.venv/bin/rumor`;
`source .venv/bin/activate` puts it on the shell's `PATH`, as the examples here assume.

* Flags are Consul's and Serf's names and work with one dash or two (`-node` and `--node`).
* Client commands find the agent at `-http-addr` or `$RUMOR_HTTP_ADDR` (default
  `127.0.0.1:8500`), send `-token` or `$RUMOR_HTTP_TOKEN` as the ACL token, and print a table, or
  JSON with `-json`. These three flags are accepted by every client command and are not repeated
  below.
* Exit codes: 0 on success; 1 when the agent cannot be reached, refuses the request (the message
  says what it answered), or the flags are wrong (the usage is printed); 130 on Ctrl-C.
  `rumor agent` exits 0 after SIGTERM/SIGINT (it leaves the cluster first) and 1 when its
  configuration is invalid, with a message naming the setting.

```sh
rumor agent -dev                                   # a one-node agent for trying things out
rumor members                                      # who is in the cluster
rumor catalog services                             # every service in the cluster
rumor watch service web -passing                   # print web's healthy instances on every change
rumor maint -enable -reason "kernel upgrade"       # take this node out of DNS and LB pools
```
"""

_COMMON_CLIENT_FLAGS = {"-http-addr", "-token", "-json"}


def _flag_name(action: argparse.Action) -> str:
    single = [o for o in action.option_strings if not o.startswith("--")]
    name = (single or action.option_strings)[0]
    if action.nargs == 0:
        return f"`{name}`"
    metavar = action.metavar or action.dest.upper()
    return f"`{name} {metavar}`"


def _parser_section(parser: argparse.ArgumentParser, depth: int, out: list[str]) -> None:
    formatter = parser._get_formatter()
    out.append(f"{'#' * depth} `{parser.prog}`")
    out.append("")
    if parser.description:
        out.append(parser.description.strip())
        out.append("")
    out.append("```")
    out.append(parser.format_usage().strip())
    out.append("```")
    out.append("")
    rows = []
    subparsers: list[argparse.ArgumentParser] = []
    client = any("-http-addr" in a.option_strings for a in parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for sub in action.choices.values():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    subparsers.append(sub)
            continue
        if client and any(o in _COMMON_CLIENT_FLAGS for o in action.option_strings):
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        if action.option_strings:
            name = _flag_name(action)
        else:
            name = f"`{action.metavar or action.dest}`"
        if action.choices and not action.option_strings:
            help_text = (help_text + " One of: " + ", ".join(f"`{c}`" for c in action.choices)
                         + ".").strip()
        rows.append(f"| {cell(name)} | {cell(help_text) or '—'} |")
    if rows:
        out.append("| argument | meaning |")
        out.append("|---|---|")
        out.extend(rows)
        out.append("")
    if client:
        out.append("Also takes `-http-addr`, `-token` and `-json`.")
        out.append("")
    if parser.epilog:
        out.append("```sh")
        out.append(textwrap.dedent(parser.epilog).strip("\n"))
        out.append("```")
        out.append("")
    for sub in subparsers:
        _parser_section(sub, min(depth + 1, 4), out)


def generate_cli() -> str:
    import os

    from registry.cli import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"   # argparse wraps usage to the terminal: make it fixed
    try:
        parser = build_parser()
        out: list[str] = [CLI_HEADER.rstrip("\n"), "", "## Reference", ""]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    _parser_section(sub, 3, out)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(out).rstrip("\n") + "\n"


OUTPUTS: dict[Path, Callable[[], str]] = {OUT: lambda: generate(), CLI_OUT: lambda: generate_cli()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = p.parse_args(argv)
    stale = []
    for path, make in OUTPUTS.items():
        text = make()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date; run python scripts/gen_config_docs.py",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

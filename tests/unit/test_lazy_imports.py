"""The tables behind the lazy imports (issue 13) agree with the code they stand for.

``rumor <command>`` imports one command module, found in ``registry.cli.COMMANDS``; ``lb``
and ``dnsserver`` import some public names on first use (PEP 562). A command or a name added
without its table entry must fail here, not in front of a user.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_commands_table_names_the_module_that_registers_each_command() -> None:
    from registry import cli

    parser = cli.Parser(prog="rumor")
    sub = parser.add_subparsers(dest="command", parser_class=cli.Parser)
    registered: dict[str, str] = {}
    for name in cli.COMMAND_MODULES:
        before = set(sub.choices)
        importlib.import_module(f"registry.commands.{name}").register(sub)
        registered.update(dict.fromkeys(set(sub.choices) - before, name))
    assert registered == cli.COMMANDS


@pytest.mark.parametrize("command", ["agent", "members", "keygen", "health"])
def test_one_command_parser_parses_as_the_full_one(command: str) -> None:
    from registry import cli

    argv = {"agent": ["agent", "-dev", "-http-port", "0"], "members": ["members", "-json"],
            "keygen": ["keygen"], "health": ["health", "service", "web"]}[command]
    one = vars(cli.build_parser(command).parse_args(argv))
    full = vars(cli.build_parser().parse_args(argv))
    assert one.keys() == full.keys()
    assert {k: v for k, v in one.items() if k != "func"} == {
        k: v for k, v in full.items() if k != "func"}


def test_lb_exports_every_public_name() -> None:
    import lb

    assert set(lb.__all__) == set(lb._HOME)
    for name in lb.__all__:
        assert getattr(lb, name) is getattr(importlib.import_module(f"lb.{lb._HOME[name]}"), name)
    with pytest.raises(AttributeError):
        lb.NoSuchName  # noqa: B018


def test_dnsserver_exports_every_public_name() -> None:
    import dnsserver

    for name in dnsserver.__all__:
        assert getattr(dnsserver, name) is not None
    with pytest.raises(AttributeError):
        dnsserver.NoSuchName  # noqa: B018


def test_help_and_a_typo_still_list_every_command() -> None:
    p = subprocess.run([sys.executable, "-m", "registry.cli", "-h"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 0 and "keyring" in p.stdout and "agent" in p.stdout
    p = subprocess.run([sys.executable, "-m", "registry.cli", "membres"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, check=False)
    assert p.returncode == 1 and "did you mean 'members'?" in p.stderr


def test_gossip_and_registry_define_their_dataclasses_with_gossip_dclass() -> None:
    # The standard decorator compiles ~6 methods per frozen class at import (~0.6 ms each
    # class on 3.11; 75-81 ms of an agent's start before gossip/dclass.py). dnsserver and lb
    # may not import gossip (test_layering.py) and keep it.
    import ast

    offenders = []
    for package in ("gossip", "registry"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "dclass.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.ImportFrom) and node.module == "dataclasses" and any(
                        a.name == "dataclass" for a in node.names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                if isinstance(node, ast.Attribute) and node.attr == "dataclass" and isinstance(
                        node.value, ast.Name) and node.value.id == "dataclasses":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, ("use `from gossip.dclass import dataclass` (gossip: `from .dclass "
                           "import dataclass`): " + ", ".join(offenders))

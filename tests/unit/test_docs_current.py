"""docs/configuration.md and docs/cli.md are generated from the code and must match it."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_config_docs",
                                                  ROOT / "scripts" / "gen_config_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_current(path: Path, fresh: str) -> None:
    current = path.read_text() if path.exists() else ""
    if fresh != current:
        name = path.relative_to(ROOT)
        diff = "".join(list(difflib.unified_diff(
            current.splitlines(True), fresh.splitlines(True), f"{name} (committed)",
            "generated from the code", n=1))[:60])
        raise AssertionError(
            f"{name} is out of date with the code; run\n"
            "    python scripts/gen_config_docs.py\nand commit the result. Difference:\n" + diff)


def test_configuration_md_is_current() -> None:
    _assert_current(DOC, _generator().generate())


def test_cli_md_is_current() -> None:
    _assert_current(ROOT / "docs" / "cli.md", _generator().generate_cli())


def test_cli_reference_covers_every_command() -> None:
    from registry.cli import build_parser

    text = _generator().generate_cli()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert f"### `rumor {name}`" in text, name


def test_every_agent_setting_is_documented_with_its_flag() -> None:
    gen = _generator()
    text = gen.generate()
    from dataclasses import fields

    from registry.config import AgentConfig

    for f in fields(AgentConfig):
        if f.name == "config_files":
            continue
        key = gen.AGENT_KEYS.get(f.name, f.name)
        assert f"| `{key}` |" in text, key
    # flags are found by asking the real parser, so they cannot drift
    assert "| `ports.http` | `-http-port` |" in text
    assert "| `start_join` | `-join` |" in text


def test_field_docstrings_are_read_from_the_source() -> None:
    from registry.config import AgentConfig

    docs = _generator().field_docs(AgentConfig)
    assert docs["datacenter"].startswith("Datacenter name")
    assert "retry_interval" in docs

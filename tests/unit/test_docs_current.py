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
        if f.name in ("config_files", "config_dirs"):
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


def _shell_lines(markdown: str) -> list[str]:
    """The commands of every ```sh block, comments cut."""
    out, inside = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh" if not inside else False
            continue
        if inside:
            cmd = line.split(" #", 1)[0].strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def test_readme_rumor_commands_run_as_written() -> None:
    """Every bare ``rumor ...`` of the README comes after the line that puts it on the PATH, and
    the real parser accepts it; activating a venv does put ``rumor`` on the PATH."""
    import shlex
    import subprocess
    import sys

    from registry.cli import build_parser

    text = (ROOT / "README.md").read_text()
    assert ".venv/bin/rumor" not in text, "one style: activate the venv, then bare `rumor`"
    lines = _shell_lines(text)
    activate = lines.index("source .venv/bin/activate")
    rumor_lines = [i for i, c in enumerate(lines) if c.startswith("rumor ")]
    assert len(rumor_lines) >= 5 and min(rumor_lines) > activate
    for i in rumor_lines:
        argv = shlex.split(lines[i])[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:  # the parser refused it
            raise AssertionError(f"README command does not parse: {lines[i]}") from e
    # the activate script of the venv running these tests puts its `rumor` on the PATH
    venv = Path(sys.prefix)
    p = subprocess.run(["bash", "-c", f"source {shlex.quote(str(venv / 'bin/activate'))} && "
                        "command -v rumor && rumor version"],
                       capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == str(venv / "bin" / "rumor")
    assert "Rumor v" in p.stdout

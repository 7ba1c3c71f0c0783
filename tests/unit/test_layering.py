"""The direction of imports in shared/DESIGN.md: gossip, dnsserver and lb import nothing of ours."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"gossip", "dnsserver", "lb", "registry"}
ALLOWED = {
    "gossip": set(),
    "dnsserver": set(),
    "lb": set(),
    "registry": {"gossip", "dnsserver", "lb"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    bad = []
    for f in files:
        for imp in imported_packages(f) - {package} - ALLOWED[package]:
            bad.append(f"{f.relative_to(ROOT)} imports {imp}")
    assert not bad, "imports against DESIGN.md:\n" + "\n".join(bad)


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The checker itself must catch what it is for, including imports inside functions.
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from registry.config import AgentConfig\n    import lb.x\n")
    assert imported_packages(f) == {"registry", "lb"}

"""lb/ is usable on its own: it imports nothing from gossip/, registry/ or dnsserver/."""

from __future__ import annotations

import ast
from pathlib import Path

LB = Path(__file__).resolve().parents[3] / "lb"
FORBIDDEN = ("gossip", "registry", "dnsserver")


def test_lb_imports_no_other_rumor_package() -> None:
    offenders = []
    for path in sorted(LB.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for n in names:
                if n.split(".")[0] in FORBIDDEN:
                    offenders.append(f"{path.name}: {n}")
    assert offenders == []
    assert len(list(LB.glob("*.py"))) >= 10

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



def module_name(path: Path) -> str:
    parts = path.resolve().relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module that ``path`` (module ``module``) imports, relative imports resolved."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def imports_the_agent(path: Path, module: str) -> bool:
    return any(m == "registry.agent" or m.startswith("registry.agent.")
               for m in imported_modules(path, module))


# The agent is the composition root: it imports the HTTP API and the registry service and hands
# them what they serve; neither may reach back into it (issue 19, "Seams in the code").
AGENT_FREE = [*sorted((ROOT / "registry" / "api").rglob("*.py")), ROOT / "registry" / "service.py"]


@pytest.mark.parametrize("path", AGENT_FREE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_api_and_the_registry_service_do_not_import_the_agent(path: Path) -> None:
    assert not imports_the_agent(path, module_name(path)), \
        f"{path.relative_to(ROOT)} imports registry.agent; hand it what it needs instead"


@pytest.mark.parametrize("text, found", [
    ("from ..agent import Agent\n", True),
    ("def f():\n    from .. import agent\n", True),
    ("import registry.agent\n", True),
    ("if TYPE_CHECKING:\n    from registry.agent import Agent\n", True),
    ("from .base import json_response\nfrom ..agents import x\nfrom . import agent_routes\n",
     False),
])
def test_agent_checker_resolves_relative_imports(tmp_path: Path, text: str, found: bool) -> None:
    f = tmp_path / "probe.py"
    f.write_text(text)
    assert imports_the_agent(f, "registry.api.probe") is found


def test_the_registry_service_loads_without_the_http_layer_or_the_agent() -> None:
    # Transitively: importing the registry service pulls in neither the HTTP API (it used to,
    # for the response cache and through definitions.py) nor the agent.
    import subprocess
    import sys

    code = ("import sys, registry.service\n"
            "print(sorted(m for m in sys.modules if m.startswith(('registry.api', "
            "'registry.agent'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"

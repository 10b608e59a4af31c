"""Dependencies point inward: which of our top-level packages each package may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"eventstore", "sagas", "adapters", "activities", "workflows", "projections", "memsaga", "bench"}
MAY_IMPORT: dict[str, set[str]] = {
    "eventstore": set(),
    "sagas": {"eventstore"},
    "adapters": {"sagas"},
    "activities": {"eventstore", "sagas"},
    "workflows": {"activities", "eventstore", "sagas"},
    "projections": {"eventstore", "sagas"},
    "memsaga": OURS - {"bench"},
}
# The one arrow back up: `memsaga bench` imports its entry lazily and says so when it is missing.
LAZY_BENCH_ENTRY = Path("memsaga/cli/bench.py")
NO_HTTP_CLIENT = {"sagas"}  # pure domain: no I/O libraries
# The command modules of memsaga/cli/ share this one module; app.py composes them.
CLI = ROOT / "memsaga" / "cli"
CLI_SHARED = "memsaga.cli.common"
CLI_NOT_COMMANDS = {"__init__.py", "app.py", "common.py"}
CLI_COMMANDS = sorted(p.name for p in CLI.glob("*.py") if p.name not in CLI_NOT_COMMANDS)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports included); relative ones as ``.name``."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            modules.update([base] if node.module else [base + alias.name for alias in node.names])
    return modules


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (lazy imports included)."""
    return {module.split(".")[0] for module in imported_modules(path) if not module.startswith(".")}


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    allowed = MAY_IMPORT[package] | {package}
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        found = imported_roots(path)
        wrong = (found & OURS) - allowed - ({"bench"} if relative == LAZY_BENCH_ENTRY else set())
        assert not wrong, f"{relative} imports {sorted(wrong)}"
        if package in NO_HTTP_CLIENT:
            assert "httpx" not in found, f"{relative} imports httpx"


@pytest.mark.parametrize("command", CLI_COMMANDS)
def test_a_command_module_imports_no_other_command_module(command: str) -> None:
    found = imported_modules(CLI / command)
    siblings = {m for m in found if m == "memsaga.cli" or m.startswith(("memsaga.cli.", "."))} - {CLI_SHARED}
    assert not siblings, f"memsaga/cli/{command} imports {sorted(siblings)}: share through {CLI_SHARED}"

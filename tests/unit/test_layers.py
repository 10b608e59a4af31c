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
LAZY_BENCH_ENTRY = Path("memsaga/cli_bench.py")
NO_HTTP_CLIENT = {"sagas"}  # pure domain: no I/O libraries


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at any depth (lazy imports included)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


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

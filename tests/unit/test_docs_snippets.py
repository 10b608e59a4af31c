"""The docs cannot drift from the commands: every ``memsaga …`` line in README.md and docs/ parses
with today's CLI, and every Python snippet compiles with its imports resolving.
(tests/e2e/test_readme.py runs the README's Python snippet against a running stack.)"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup

from memsaga.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SHELL = re.compile(r"```(?:sh|bash|shell|console)\n(.*?)```", re.S)
_PYTHON = re.compile(r"```python\n(.*?)```", re.S)
_STOPS = ("|", "&", "&&", ">", "2>&1", ";", "||")


def shell_commands() -> list[tuple[str, str]]:
    """``(file name, command line)`` of every memsaga command in a shell block."""
    found = []
    for doc in DOCS:
        for block in _SHELL.findall(doc.read_text(encoding="utf-8")):
            for line in block.splitlines():
                line = line.strip().removeprefix("$ ").removeprefix(".venv/bin/")
                if line.startswith("memsaga "):
                    found.append((doc.name, line))
    return found


def python_snippets() -> list[tuple[str, str]]:
    return [(doc.name, block) for doc in DOCS for block in _PYTHON.findall(doc.read_text(encoding="utf-8"))]


def test_the_docs_show_commands_and_snippets() -> None:
    assert len(shell_commands()) >= 20 and len(python_snippets()) >= 3


@pytest.mark.parametrize(("doc", "line"), shell_commands())
def test_every_command_in_the_docs_parses(doc: str, line: str) -> None:
    words = shlex.split(line, comments=True)
    for stop in _STOPS:
        if stop in words:
            words = words[: words.index(stop)]
    args = [w.rstrip("&") for w in words[1:]]
    command = typer.main.get_command(app)
    parent = command.make_context("memsaga", [], resilient_parsing=True)
    while isinstance(command, TyperGroup) and args and args[0] in command.commands:
        command, args = command.commands[args[0]], args[1:]
    assert command is not parent.command, f"{doc}: `{line}` names no command"
    try:
        # parses, runs nothing (a group left here parses its own default: `memsaga project` is `project run`)
        command.make_context(command.name or "", list(args), parent=parent)
    except typer.TyperException as exc:  # a usage error: unknown option, missing argument...
        pytest.fail(f"{doc}: `{line}`: {exc}")


@pytest.mark.parametrize(("doc", "source"), python_snippets())
def test_every_python_snippet_compiles_and_its_imports_resolve(doc: str, source: str) -> None:
    tree = compile(source, doc, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    assert isinstance(tree, ast.Module)
    imports = ast.Module(
        body=[n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)], type_ignores=[]
    )
    exec(compile(imports, doc, "exec"), {})  # an import of a name that no longer exists fails here

"""``memsaga schema``: the committed JSON Schemas of event payloads, and the gate on them.

``check --json`` prints one object: ``{"ok": bool, "directory": str, "checked": <versions
registered>, "problems": [{"kind", "event_type", "version", "field" (or null), "message"}]}``;
it exits 1 when ``problems`` is not empty (docs/evolution.md lists the kinds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

import memsaga
from memsaga.bootstrap import build_registry
from memsaga.cli.common import ExitCode, JsonFlag, console, errors, fail_with
from memsaga.schema import Problem, SchemaGateError, check, dump

DEFAULT_DIR = Path(memsaga.__file__).resolve().parent.parent / "schemas"
"""``schemas/`` at the top of the checkout memsaga runs from."""

DirOption = Annotated[
    Path, typer.Option("--dir", help="The folder of committed schemas (default: the checkout's schemas/).")
]

schema_app = typer.Typer(
    help="JSON Schemas of every event version, committed, and the check `make test` runs.",
    no_args_is_help=True,
)


@schema_app.command("check")
def check_command(directory: DirOption = DEFAULT_DIR, as_json: JsonFlag = False) -> None:
    """Fail (exit 1) when a released event version changed, lacks upcasters, or lost its schema or model."""
    try:
        report = check(build_registry(), directory)
    except SchemaGateError as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    elif report.ok:
        console.print(f"schema check: {report.checked} event versions match {directory}", highlight=False)
    else:
        _print_problems(report.problems)
        errors.print(f"schema check failed: {len(report.problems)} problem(s)", highlight=False)
    if not report.ok:
        raise typer.Exit(code=int(ExitCode.ERROR))


@schema_app.command("dump")
def dump_command(directory: DirOption = DEFAULT_DIR, as_json: JsonFlag = False) -> None:
    """Write the schema of each event version that has none; never rewrite a released one."""
    try:
        report = dump(build_registry(), directory)
    except SchemaGateError as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "directory": str(report.directory),
                    "written": [str(p) for p in report.written],
                    "unchanged": report.unchanged,
                    "refused": [p.message for p in report.refused],
                }
            )
        )
    else:
        for path in report.written:
            console.print(f"wrote {path}", highlight=False)
        console.print(f"{report.unchanged} schema file(s) unchanged", highlight=False)
        _print_problems(report.refused, prefix="not rewritten: ")
    if report.refused:
        raise typer.Exit(code=int(ExitCode.ERROR))


def _print_problems(problems: list[Problem], prefix: str = "") -> None:
    for problem in problems:
        errors.print(
            f"[bold red]error:[/] {escape(prefix + problem.message)}", highlight=False, soft_wrap=True
        )


def register_schema_commands(app: typer.Typer) -> None:
    """Attach ``schema`` to the main app."""
    app.add_typer(schema_app, name="schema")

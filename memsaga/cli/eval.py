"""``memsaga eval extract``: precision and recall of the rule extractor on a fixture."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from memsaga.cli.common import ExitCode, JsonFlag, console, fail
from memsaga.extraction_eval import FIXTURE_PATH, EvalResult, FixtureInvalid, Memory, evaluate, load_fixture

eval_app = typer.Typer(no_args_is_help=True, help="Measure memsaga's parts on fixtures (offline).")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _print(result: EvalResult) -> None:
    table = Table(
        "kind", "expected", "extracted", "matched", "precision", "recall",
        title=f"{result.extractor} extractor on {result.cases} cases of {result.fixture}",
    )  # fmt: skip
    for score in [*result.kinds, result.overall]:
        style = "bold" if score is result.overall else None
        table.add_row(
            score.kind,
            str(score.expected),
            str(score.extracted),
            str(score.matched),
            _ratio(score.precision),
            _ratio(score.recall),
            style=style,
            end_section=score is result.kinds[-1] if result.kinds else False,
        )
    console.print(table)
    for failure in result.failures:
        console.print(
            f"[bold]{escape(failure.id)}[/]: {escape(repr(failure.text))}", highlight=False, soft_wrap=True
        )
        for memory in failure.missed:
            console.print(
                f"  missed      {escape(_line(memory))}", style="yellow", highlight=False, soft_wrap=True
            )
        for memory in failure.unexpected:
            console.print(
                f"  unexpected  {escape(_line(memory))}", style="red", highlight=False, soft_wrap=True
            )


def _line(memory: Memory) -> str:
    parts = memory.model_dump(exclude={"text"})
    return f"{memory.text}  " + " ".join(f"{key}={value}" for key, value in parts.items())


@eval_app.command("extract")
def eval_extract_command(
    fixture: Annotated[
        Path, typer.Option("--fixture", help="The fixture file (shape: docs/extractors.md).")
    ] = FIXTURE_PATH,
    as_json: JsonFlag = False,
) -> None:
    """Precision and recall of the rules extractor per kind and overall, and the cases it gets wrong."""
    try:
        result = evaluate(load_fixture(fixture), source=str(fixture))
    except FixtureInvalid as exc:
        raise fail(str(exc), error="FixtureInvalid", code=ExitCode.USAGE) from None
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json")))
        return
    _print(result)


def register_eval_commands(app: typer.Typer) -> None:
    """Attach the ``eval`` group to the main app."""
    app.add_typer(eval_app, name="eval")

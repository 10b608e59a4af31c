"""``memsaga demo``: what ``make demo`` runs (see :mod:`memsaga.demo`)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from memsaga.cli.common import JsonFlag, console, errors, fail_with
from memsaga.demo import DemoReport, run_demo
from memsaga.errors import MemsagaError
from memsaga.settings import Settings
from memsaga.trace import render_tree


def _print_report(console: Console, report: DemoReport, *, keep: bool) -> None:
    table = Table(
        "memory",
        "kind",
        "sensitive",
        "version",
        title=f"memories of {report.memories[0].user_id}" if report.memories else "memories",
    )
    for m in report.memories:
        table.add_row(m.text, m.kind, "yes" if m.sensitive else "", str(m.version))
    console.print(table)
    for result in report.recall:
        console.print(f"[bold]recall[/] {result.query!r}", highlight=False)
        for rank, hit in enumerate(result.hits, 1):
            console.print(
                f"  {rank}. {hit.text}  [dim]({hit.kind}, score {hit.score:.4f})[/]", highlight=False
            )
    if report.recall_skipped:
        console.print(f"recall skipped: {report.recall_skipped}", style="yellow", highlight=False)
    for run in report.sagas:
        if run.trace is not None:
            title = f"{run.handle.workflow_id} · {run.outcome} · correlation {run.handle.correlation_id}"
            console.print(render_tree(run.trace.roots, title=title))
        console.print(f"  Temporal UI: {run.handle.url}", soft_wrap=True, highlight=False)
    console.print(f"\nTemporal UI: {report.ui_url}", soft_wrap=True, highlight=False)
    if keep:
        console.print(
            "The stack keeps running: open the UI above, search [bold]CorrelationId[/] with an id from the "
            "trees, run `memsaga trace <correlation id>` or `memsaga memories --user demo-user`, and stop "
            "it with `memsaga dev down`."
        )
    elif report.started:
        console.print(f"Stopped what the demo started ({', '.join(report.started)}); `--keep` leaves it up.")


def demo_command(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the local stack running afterwards.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the whole product once: stack, worker, relay, projector, two sagas, their traces."""
    out = errors if as_json else console
    started = time.monotonic()

    def say(step: str) -> None:
        out.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {step}")

    try:
        report = asyncio.run(run_demo(Settings(), keep=keep, say=say))
    except MemsagaError as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        _print_report(out, report, keep=keep)
    say("done")


def register_demo_commands(app: typer.Typer) -> None:
    """Attach ``demo`` to the main app."""
    app.command("demo")(demo_command)

"""``memsaga demo``: what ``make demo`` runs (see :mod:`memsaga.demo`)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from temporalio.service import RPCError

from memsaga.cli.common import JsonFlag, console, errors, fail, fail_with
from memsaga.demo import CANARY, MOVE, Change, DemoReport, run_demo
from memsaga.errors import MemsagaError
from memsaga.history import history_lines
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
    if report.change is not None:
        _print_change(console, report.change)
    for run in report.sagas:
        if run.trace is not None:
            title = f"{run.handle.workflow_id} · {run.outcome} · correlation {run.handle.correlation_id}"
            console.print(render_tree(run.trace.roots, title=title))
        console.print(f"  Temporal UI: {run.handle.url}", soft_wrap=True, highlight=False)
    if report.forgotten is not None and report.verification is not None:
        _print_forgetting(console, report)
    console.print(f"\nTemporal UI: {report.ui_url}", soft_wrap=True, highlight=False)
    if keep:
        console.print(
            "The stack keeps running: open the UI above, search [bold]CorrelationId[/] with an id from the "
            "trees, run `memsaga trace <correlation id>` or "
            f"`memsaga memories --user {report.user}`, and stop "
            "it with `memsaga dev down`."
        )
    elif report.started:
        console.print(f"Stopped what the demo started ({', '.join(report.started)}); `--keep` leaves it up.")


def _print_forgetting(console: Console, report: DemoReport) -> None:
    assert report.forgotten is not None and report.verification is not None
    done, verified = report.forgotten, report.verification
    console.print(
        f"\n[bold]forgot {report.user}[/]: key destroyed, UserForgotten at position {done.position};"
        f" looking for {CANARY!r} everywhere memsaga keeps data:",
        highlight=False,
    )
    table = Table("place", "found", "searched")
    for place in verified.places:
        table.add_row(place.place, str(place.count), str(place.looked_at))
    console.print(table)
    verdict = "[green]nothing left[/]" if verified.clean else "[red]the canary was found[/]"
    console.print(f"  {verdict} (`memsaga forget --verify --user {report.user} --canary TEXT`)")


def _print_change(console: Console, change: Change) -> None:
    console.print(f"\n[bold]the user moved[/] ({change.run.handle.workflow_id}): {MOVE!r}", highlight=False)
    console.print("  memories now:", highlight=False)
    for m in change.now:
        console.print(f"    {m.text}  [dim](valid from {_day(m.valid_from)})[/]", highlight=False)
    console.print(
        f"  as of {change.before.isoformat(timespec='seconds')} (`memories --as-of`), memsaga believed:"
    )
    for m in change.believed_before:
        console.print(f"    {m.text}", highlight=False)
    if change.valid_at is not None:
        console.print(
            f"  valid at {change.valid_at.date().isoformat()} (`memories --valid-at`), as known now:"
        )
        for m in change.valid_then:
            console.print(f"    {m.text}  [dim]({m.status})[/]", highlight=False)
    if change.history is not None:
        console.print(f"  `memsaga history {change.history.memory_id}`:", highlight=False)
        for line in history_lines(change.history):
            console.print(f"    {line}", highlight=False, soft_wrap=True)


def _day(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment is not None else "?"


def demo_command(
    keep: Annotated[bool, typer.Option("--keep", help="Leave the local stack running afterwards.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run the whole product once: stack, worker, relay, projector, three sagas, their traces."""
    out = errors if as_json else console
    started = time.monotonic()

    def say(step: str) -> None:
        out.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {step}")

    try:
        report = asyncio.run(run_demo(Settings(), keep=keep, say=say))
    except MemsagaError as exc:
        raise fail_with(exc) from None
    except RPCError as exc:  # a refusal by Temporal the demo did not expect: say it, no traceback
        raise fail(f"Temporal refused: {exc}", error="RPCError") from None
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2, default=str))
    else:
        _print_report(out, report, keep=keep)
    say("done")


def register_demo_commands(app: typer.Typer) -> None:
    """Attach ``demo`` to the main app."""
    app.command("demo")(demo_command)

"""``memsaga verify``: check the invariants of the configured deployment (docs/reliability.md, *Verify*)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from memsaga.cli.common import ExitCode, JsonFlag, console, exits_at_once, run_command
from memsaga.settings import Settings
from memsaga.verify import Limits, VerifyReport, verify


def verify_command(
    stuck_after: Annotated[
        float,
        typer.Option(
            "--stuck-after", min=0, help="A saga open this long (seconds, not waiting for review) is stuck."
        ),
    ] = 600.0,
    max_lag: Annotated[
        float,
        typer.Option(
            "--max-lag",
            min=0,
            help="Relay or projection lag (age of the oldest event, s) that is a violation.",
        ),
    ] = 60.0,
    as_json: JsonFlag = False,
) -> None:
    """Check every invariant: events in JetStream, read models equal to a rebuild, lag, parked, open sagas."""
    limits = Limits(stuck_after=stuck_after, max_lag=max_lag)
    report = run_command(lambda: verify(Settings(), limits=limits))
    if as_json:
        typer.echo(report.model_dump_json())
    else:
        console.print(render(report))
    if not report.ok:
        raise typer.Exit(code=int(ExitCode.ERROR))


def _mark(ok: bool) -> str:
    return "[green]ok[/]" if ok else "[bold red]violated[/]"


def render(report: VerifyReport) -> Table:
    """The report as one table: each check, what it saw, and each violation with its fix."""
    table = Table("check", "result", "what was seen", title="memsaga verify")
    kinds = {v.check for v in report.violations}
    if report.stream is not None:
        s = report.stream
        seen = f"{s.checked:,} events up to position {s.relayed_up_to:,}, {s.messages:,} messages"
        seen += f"; {s.missing} missing"
        table.add_row("events in JetStream", _mark("stream" not in kinds), seen)
    for r in report.read_models:
        rows = ", ".join(f"{d.table} {d.live_rows:,}" for d in r.tables)
        seen = f"v{r.version}, {r.applied:,} events applied; rows {rows}; {r.seconds:.1f}s"
        if r.version is None:
            seen = "not built yet (its lag is under positions)"
        ok = r.equal and not r.unapplied
        table.add_row(f"{r.projection} = rebuild", _mark(ok), seen)
    if report.positions is not None:
        p = report.positions
        lags = [f"relay {p.relay.position:,} of {p.head:,} (lag {p.relay.lag_events})"]
        lags += [f"{x.name} lag {x.lag_events}, parked {x.parked}" for x in p.projections]
        table.add_row("positions", _mark("positions" not in kinds), "; ".join(lags))
    if report.sagas is not None:
        g = report.sagas
        seen = f"{g.running} open, {g.waiting_for_review} waiting for review, {len(g.stuck)} stuck"
        seen += f" (over {g.stuck_after_seconds:.0f}s)" + (f"; {g.temporal}" if g.temporal else "")
        table.add_row("sagas", _mark("sagas" not in kinds), escape(seen))
    for v in report.violations:
        fix = f" [dim]→ {escape(v.fix)}[/]" if v.fix else ""
        table.add_row(f"[red]{v.kind}[/]", escape(v.subject), escape(v.message) + fix)
    return table


def register_verify_commands(app: typer.Typer) -> None:
    """Attach ``verify`` to the main app."""
    app.command("verify")(exits_at_once(verify_command))

"""``memsaga chaos``: sagas under random faults on a stack of its own, then the invariants checked."""

from __future__ import annotations

import random
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from memsaga.chaos import ChaosOptions, ChaosReport, run_chaos
from memsaga.chaos.ledger import FaultRecord
from memsaga.chaos.stack import DEFAULT_REPLICAS
from memsaga.cli.common import ExitCode, JsonFlag, console, errors, exits_at_once, run_command, signal_stop


class ProgressReporter:
    """Two bars on stderr: faults injected and sagas terminal; one line per phase and fault."""

    def __init__(self, progress: Progress, faults: int, sagas: int) -> None:
        self.progress = progress
        self.faults: TaskID = progress.add_task("faults", total=faults)
        self.sagas_bar: TaskID = progress.add_task("sagas terminal", total=sagas)

    def phase(self, name: str) -> None:
        """A line per phase."""
        self.progress.console.print(f"[bold]chaos:[/] {name}")

    def fault(self, record: FaultRecord, done: int, total: int) -> None:
        """A line per fault."""
        self.progress.update(self.faults, completed=done)
        self.progress.console.print(
            f"  fault {done}/{total} at {record.started_at:.0f}s: {record.kind} ({escape(record.detail)})",
            highlight=False,
        )

    def sagas(self, started: int, terminal: int, total: int) -> None:
        """Move the sagas bar."""
        self.progress.update(
            self.sagas_bar, completed=terminal, description=f"sagas terminal ({started} started)"
        )


def chaos_command(
    sagas: Annotated[int, typer.Option("--sagas", min=1, help="How many sagas to start.")] = 20,
    faults: Annotated[int, typer.Option("--faults", min=0, help="How many faults to inject.")] = 8,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the random choices (default: random).")
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            "--settle", min=1, help="Seconds after the last fault by which every saga must be terminal."
        ),
    ] = 60.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the run's data and logs even when it passes.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Temporal worker processes.")] = (
        DEFAULT_REPLICAS["worker"]
    ),
    runners: Annotated[
        int, typer.Option("--runners", min=1, help="Projector processes (each runs every projection).")
    ] = DEFAULT_REPLICAS["projector"],
    relays: Annotated[
        int, typer.Option("--relays", min=1, help="Relay processes (one publishes, the others stand by).")
    ] = DEFAULT_REPLICAS["relay"],
    as_json: JsonFlag = False,
) -> None:
    """Start a stack of its own, run sagas under random faults, and check that nothing was lost or doubled."""
    options = ChaosOptions(
        sagas=sagas,
        faults=faults,
        seed=seed if seed is not None else random.randrange(2**31),
        settle=settle,
        keep=keep,
        replicas={"worker": workers, "relay": relays, "projector": runners},
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=errors, transient=True) as progress:
        reporter = ProgressReporter(progress, faults, sagas)

        async def main() -> ChaosReport:
            return await run_chaos(options, stop=signal_stop(), reporter=reporter)

        report = run_command(main)
    if as_json:
        typer.echo(report.model_dump_json())
    else:
        console.print(render(report))
    if not report.ok:
        raise typer.Exit(code=int(ExitCode.ERROR))


def render(report: ChaosReport) -> Table:
    """The run as one table: faults by kind, sagas by outcome, each check."""
    title = f"memsaga chaos: {report.sagas} sagas, {report.faults_requested} faults, seed {report.seed}"
    table = Table("", "", "", title=title, show_header=False)
    table.add_row("roles", "", ", ".join(f"{role} ×{n}" for role, n in report.replicas.items()))
    faults = ", ".join(f"{kind} {n}" for kind, n in report.faults_by_kind.items()) or "none"
    table.add_row("faults", "", faults)
    if report.failpoints["fired"] or report.failpoints["not_fired"]:
        table.add_row(
            "failpoints",
            "",
            f"fired {report.failpoints['fired']}, not fired {report.failpoints['not_fired']}",
        )
    table.add_row("sagas", "", ", ".join(f"{k} {n}" for k, n in report.sagas_by_outcome.items()))
    settled = report.settled_after_last_fault
    table.add_row("settled", "", "never" if settled is None else f"{settled:.1f}s after the last fault")
    table.add_row(
        "time",
        "",
        ", ".join(f"{k} {v:.0f}s" for k, v in report.phases.items()) + f"; {report.seconds:.0f}s in all",
    )
    for check in report.checks:
        mark = "[green]pass[/]" if check.ok else "[bold red]FAIL[/]"
        table.add_row(check.name, mark, escape(check.detail))
    for v in report.violations[:50]:
        table.add_row(f"[red]{escape(v.check)}[/]", escape(v.subject), escape(v.message))
    if len(report.violations) > 50:
        table.add_row("", "", f"… {len(report.violations) - 50} more (--json has them all)")
    if report.state_dir:
        table.add_row("data and logs", "", report.state_dir)
    return table


def register_chaos_commands(app: typer.Typer) -> None:
    """Attach ``chaos`` to the main app."""
    app.command("chaos")(exits_at_once(chaos_command))

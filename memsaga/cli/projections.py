"""``memsaga project [NAME ...]``, ``memsaga project rebuild NAME`` and ``memsaga projections``.

Run the read models from JetStream, rebuild one from the event store, and show how far each is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from typer.core import TyperGroup

from memsaga.bootstrap import Services, StoppedWhileWaiting, optional_nats, runner_config, services
from memsaga.cli.common import JsonFlag, console, errors, log_to_stderr, run_command, signal_stop
from memsaga.settings import Settings
from projections import (
    PROJECTIONS,
    Projection,
    ProjectionRunner,
    RebuildProgress,
    RebuildResult,
    find_projection,
    rebuild,
)
from projections.extensions import split_by_extensions
from projections.partitioning import SLOTS
from projections.status import ProjectionStatus, projection_status, with_consumers
from projections.wakeup import address_of


class _RunByDefault(TyperGroup):
    """``memsaga project a b`` means ``memsaga project run a b``; ``rebuild`` is a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's vendored click Context
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


project_app = typer.Typer(
    cls=_RunByDefault,
    help="Run projections from JetStream (`project [NAME ...]`), or rebuild one (`project rebuild NAME`).",
)

NamesArg = Annotated[
    list[str] | None, typer.Argument(help="Projections to run (default: all).", show_default=False)
]


def _chosen(names: list[str] | None) -> list[Projection]:
    return [find_projection(PROJECTIONS, n) for n in names] if names else list(PROJECTIONS.values())


PartitionsOption = Annotated[
    int | None,
    typer.Option(
        "--partitions",
        min=1,
        max=SLOTS,
        help="Partitions by user of the read models (1 to 64): a count other than the active version's"
        " builds a new version beside it. Default: the active version's (the projection's own at first).",
        show_default=False,
    ),
]


@project_app.command("run")
def project_run_command(names: NamesArg = None, partitions: PartitionsOption = None) -> None:
    """Run projections from their durable JetStream consumers until SIGTERM or Ctrl-C.

    A projection whose code version is newer than its active read model's, or whose partition
    count differs from ``--partitions``, is first built beside it from the event store (the
    live one keeps serving) and switched to once caught up. Runners of a partitioned projection
    share its partitions by lease (docs/deploy.md).
    """
    log_to_stderr()

    async def main() -> None:
        chosen = _chosen(names)
        stop = signal_stop()  # first: a signal while it waits for a service stops it cleanly
        try:
            async with services(Settings(), with_nats=True, name="memsaga-projections", stop=stop) as svc:
                await _run_projections(svc, chosen, stop, by_name=bool(names), partitions=partitions)
        except StoppedWhileWaiting:
            console.print("projections stopped before they connected: nothing applied")

    run_command(main)


async def _run_projections(
    svc: Services, chosen: list[Projection], stop: asyncio.Event, *, by_name: bool, partitions: int | None
) -> None:
    chosen, refused = await split_by_extensions(svc.pool, chosen)
    if refused and by_name:
        raise refused[0]  # asked for by name: refuse to start
    for problem in refused:  # running all: the others go on without it
        errors.print(f"not running {problem.projection}: {problem}", style="yellow", highlight=False)
    config = dataclasses.replace(runner_config(svc.settings), partitions=partitions)
    database = address_of(svc.settings.require_database_url())
    runners = [ProjectionRunner(p, svc.store, svc.js, config, database=database) for p in chosen]
    tasks = [asyncio.ensure_future(r.run(stop)) for r in runners]
    console.print(f"running {', '.join(p.name for p in chosen)} from stream {config.stream}", style="bold")
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()  # one failed: stop the others cleanly before reporting it
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


@project_app.command("rebuild")
def project_rebuild_command(
    name: Annotated[str, typer.Argument(help="The projection to rebuild.")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Events per transaction.")] = 500,
    as_json: JsonFlag = False,
) -> None:
    """Build a new version of a read model from the event store, then switch to it atomically.

    The live version keeps serving (and the runner keeps updating it) until the switch.
    """

    async def main() -> RebuildResult:
        chosen = find_projection(PROJECTIONS, name)
        async with services(Settings(), with_nats=False) as svc:
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, MofNCompleteColumn(), console=console, disable=as_json) as bar:
                task = bar.add_task(f"rebuild {chosen.name}", total=None)

                def report(p: RebuildProgress) -> None:
                    bar.update(
                        task, description=f"{p.projection} v{p.version}", completed=p.position, total=p.head
                    )

                return await rebuild(svc.pool, svc.store, chosen, batch_size=batch_size, progress=report)

    result = run_command(main)
    if as_json:
        typer.echo(json.dumps(_result_json(result)))
        return
    replaced = f"replaced v{result.previous_version}" if result.previous_version else "first build"
    console.print(
        f"[bold green]{result.projection} v{result.version} is active[/] ({replaced}): "
        f"{result.applied:,} events applied up to position {result.position:,}, "
        f"{result.parked} parked, in {result.seconds:.1f}s"
    )


def _result_json(result: RebuildResult) -> dict[str, Any]:
    return {k: getattr(result, k) for k in result.__slots__}


def projections_command(as_json: JsonFlag = False) -> None:
    """Each projection's checkpoint and lag, parked events, and rebuild progress."""

    async def main() -> list[ProjectionStatus]:
        async with services(Settings(), with_nats=False) as svc:
            statuses = [await projection_status(svc.pool, svc.store, p) for p in PROJECTIONS.values()]
            nc, _ = await optional_nats(svc.settings, "memsaga-projections-status")
            if nc is None:
                return statuses  # PostgreSQL has the checkpoints; NATS only adds the consumers' backlog
            try:
                stream = svc.settings.nats_stream
                return [
                    await with_consumers(nc.jetstream(), stream, PROJECTIONS[s.name], s) for s in statuses
                ]
            finally:
                await nc.close()

    statuses = run_command(main)
    if as_json:
        typer.echo(
            json.dumps([s.model_dump(mode="json") | {"needs_rebuild": s.needs_rebuild} for s in statuses])
        )
        return
    table = Table("projection", "active", "position", "applied", "lag", "NATS pending", "parked", "rebuild")
    table.columns[0].no_wrap = True
    for s in statuses:
        active = (
            "not built" if s.active_version is None else f"v{s.active_version} (code {s.active_code_version})"
        )
        if s.partitions > 1:
            runners = {p.runner_id for p in s.partition_detail if p.runner_id is not None}
            held = sum(1 for p in s.partition_detail if p.runner_id is not None)
            active += f", {s.partitions} partitions ({held} held by {len(runners)} runner(s))"
        building = next((v for v in s.versions if v.state == "building"), None)
        if s.needs_rebuild and (building is None or building.code_version != s.code_version):
            active += f" [bold red](code v{s.code_version}: `memsaga project run {s.name}` builds it)[/]"
        pending = "-" if s.consumer is None else f"{s.consumer.pending + s.consumer.ack_pending:,}"
        rebuild_cell: Any = "-"
        if building is not None:
            bar = ProgressBar(total=max(building.head or 0, 1), completed=building.position, width=20)
            label = (
                f"v{building.version} (code {building.code_version}) building {building.progress or 0:.0%}"
            )
            rebuild_cell = Group(label, f"{building.applied:,} applied, at {building.position:,}", bar)
        table.add_row(
            s.name,
            active,
            f"{s.position:,}",
            f"{s.applied:,}",
            f"{s.lag.events:,} / {s.lag.seconds:.1f}s",
            pending,
            f"[bold red]{s.parked}[/]" if s.parked else "0",
            rebuild_cell,
        )
    console.print(table)


def register_projection_commands(app: typer.Typer) -> None:
    """Attach ``project`` and ``projections`` to the main app."""
    app.add_typer(project_app, name="project")
    app.command("projections")(projections_command)

"""Projection commands: run and rebuild read models, inspect them, handle parked events, query them.

``memsaga project [NAME ...]`` · ``memsaga project rebuild NAME`` · ``memsaga projections`` ·
``memsaga dlq list|retry|drop`` · ``memsaga memories --user U`` · ``memsaga extractions``
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.console import Console, Group
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

from memsaga.cli_relay import log_to_stderr, optional_nats, run_command, services, signal_stop
from memsaga.cli_store import JsonFlag
from memsaga.settings import Settings
from projections import (
    PROJECTIONS,
    Extraction,
    ParkedEvent,
    Projection,
    ProjectionRunner,
    RebuildProgress,
    RebuildResult,
    RunnerConfig,
    drop_parked,
    find_projection,
    get_extraction,
    list_extractions,
    list_memories,
    list_parked,
    rebuild,
    retry_parked,
)
from projections.status import ProjectionStatus, consumer_status, projection_status

console = Console()


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
dlq_app = typer.Typer(help="Parked (poison) events: list, retry from the event store, or drop with a reason.")

NamesArg = Annotated[
    list[str] | None, typer.Argument(help="Projections to run (default: all).", show_default=False)
]
ProjectionOption = Annotated[str | None, typer.Option("--projection", "-p", help="Only this projection.")]


def _runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(
        stream=settings.nats_stream,
        subject_prefix=settings.subject_prefix,
        batch_size=settings.projection_batch_size,
        ack_wait=settings.projection_ack_wait_seconds,
        max_deliver=settings.projection_max_deliver,
        retry_delay=settings.projection_retry_delay_seconds,
    )


def _chosen(names: list[str] | None) -> list[Projection]:
    return [find_projection(PROJECTIONS, n) for n in names] if names else list(PROJECTIONS.values())


@project_app.command("run")
def project_run_command(names: NamesArg = None) -> None:
    """Run projections from their durable JetStream consumers until SIGTERM or Ctrl-C."""
    log_to_stderr()

    async def main() -> None:
        chosen = _chosen(names)
        async with services(with_nats=True, name="memsaga-projections") as svc:
            stop = signal_stop()
            config = _runner_config(svc.settings)
            runners = [ProjectionRunner(p, svc.store, svc.js, config) for p in chosen]
            tasks = [asyncio.ensure_future(r.run(stop)) for r in runners]
            console.print(
                f"running {', '.join(p.name for p in chosen)} from stream {config.stream}", style="bold"
            )
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()  # one failed: stop the others cleanly before reporting it
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                task.result()

    run_command(main)


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
        async with services(with_nats=False) as svc:
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
        async with services(with_nats=False) as svc:
            statuses = [await projection_status(svc.pool, svc.store, p) for p in PROJECTIONS.values()]
            nc, _ = await optional_nats(svc.settings, "memsaga-projections-status")
            if nc is None:
                return statuses  # PostgreSQL has the checkpoints; NATS only adds the consumers' backlog
            try:
                stream = svc.settings.nats_stream
                return [
                    s.model_copy(
                        update={
                            "consumer": await consumer_status(nc.jetstream(), stream, PROJECTIONS[s.name])
                        }
                    )
                    for s in statuses
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
        active = "not built" if s.active_version is None else f"v{s.active_version}"
        if s.needs_rebuild:
            active += f" [bold red](code v{s.code_version}: rebuild)[/]"
        pending = "-" if s.consumer is None else f"{s.consumer.pending + s.consumer.ack_pending:,}"
        rebuild_cell: Any = "-"
        if s.rebuild is not None:
            bar = ProgressBar(total=max(s.rebuild.head, 1), completed=s.rebuild.position, width=20)
            rebuild_cell = Group(f"v{s.rebuild.version} {s.rebuild.fraction:.0%}", bar)
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


@dlq_app.command("list")
def dlq_list_command(
    projection: ProjectionOption = None,
    include_resolved: Annotated[bool, typer.Option("--all", help="Also retried and dropped ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List parked events with their errors."""

    async def main() -> list[ParkedEvent]:
        async with services(with_nats=False) as svc:
            return await list_parked(svc.pool, projection=projection, include_resolved=include_resolved)

    parked = run_command(main)
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in parked]))
        return
    if not parked:
        console.print("no parked events")
        return
    table = Table("projection", "event id", "type", "position", "deliveries", "status", "error")
    for p in parked:
        status = p.status if p.drop_reason is None else f"{p.status}: {p.drop_reason}"
        table.add_row(
            p.projection,
            str(p.event_id),
            p.event_type or "?",
            str(p.position or "?"),
            str(p.deliveries),
            status,
            p.error_line,
        )
    console.print(table)


@dlq_app.command("retry")
def dlq_retry_command(
    event_ids: Annotated[
        list[uuid.UUID] | None, typer.Argument(help="Parked events to retry.", show_default=False)
    ] = None,
    projection: ProjectionOption = None,
    every: Annotated[bool, typer.Option("--all", help="Retry every parked event (of --projection).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Re-read parked events from the event store and apply them to the active read model."""
    if not event_ids and not every:
        raise typer.BadParameter("name event ids, or pass --all")

    async def main() -> list[dict[str, Any]]:
        async with services(with_nats=False) as svc:
            targets = [(e, projection) for e in event_ids or []]
            if every:
                targets = [
                    (p.event_id, p.projection) for p in await list_parked(svc.pool, projection=projection)
                ]
            results = []
            for event_id, name in targets:
                result = await retry_parked(svc.pool, svc.store, PROJECTIONS, event_id, projection=name)
                results.append(result.model_dump(mode="json"))
            return results

    results = run_command(main)
    if as_json:
        typer.echo(json.dumps(results))
    for r in [] if as_json else results:
        verdict = (
            "[green]applied[/]" if r["ok"] else f"[red]failed again[/]: {str(r['error']).splitlines()[0]}"
        )
        console.print(f"{r['projection']} {r['event_id']}: {verdict}")
    if any(not r["ok"] for r in results):
        raise typer.Exit(code=1)


@dlq_app.command("drop")
def dlq_drop_command(
    event_id: Annotated[uuid.UUID, typer.Argument(help="The parked event.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is given up (kept with it).")],
    projection: ProjectionOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Give up on a parked event, recording why; the event itself stays in the store."""

    async def main() -> ParkedEvent:
        async with services(with_nats=False) as svc:
            return await drop_parked(svc.pool, event_id, reason, projection=projection)

    dropped = run_command(main)
    if as_json:
        typer.echo(json.dumps(dropped.model_dump(mode="json")))
    else:
        console.print(f"dropped {dropped.event_id} from {dropped.projection}: {dropped.drop_reason}")


def memories_command(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose memories.")],
    as_json: JsonFlag = False,
) -> None:
    """A user's current memories (retracted ones are gone)."""

    async def main() -> list[Any]:
        async with services(with_nats=False) as svc:
            return await list_memories(svc.pool, user)

    memories = run_command(main)
    if as_json:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in memories]))
        return
    table = Table("memory", "kind", "text", "version", "correlation id", "created")
    for m in memories:
        table.add_row(m.memory_id, m.kind, m.text, str(m.version), m.correlation_id, m.created_at.isoformat())
    console.print(table if memories else f"no memories for {user}")


def extractions_command(
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", "-c", help="One saga, with its timeline.")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only sagas in this status.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many sagas to list.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Extraction sagas and their status; one saga's timeline with --correlation-id."""

    async def main() -> list[Extraction]:
        async with services(with_nats=False) as svc:
            if correlation_id is None:
                return await list_extractions(svc.pool, status=status, limit=limit)
            found = await get_extraction(svc.pool, correlation_id)
            if found is None:
                raise ValueError(f"no extraction with correlation id {correlation_id!r} in the read model")
            return [found]

    extractions = run_command(main)
    if as_json:
        data = [e.model_dump(mode="json") for e in extractions]
        typer.echo(json.dumps(data[0] if correlation_id else data))
        return
    if correlation_id is not None:
        _print_timeline(extractions[0])
        return
    table = Table("correlation id", "status", "user", "candidates", "memories", "retracted", "updated")
    for e in extractions:
        table.add_row(
            e.correlation_id,
            e.status,
            e.user_id or "-",
            str(e.candidates if e.candidates is not None else "-"),
            str(e.memories_created),
            str(e.memories_retracted),
            e.updated_at.isoformat(),
        )
    console.print(table if extractions else "no extractions")


def _print_timeline(e: Extraction) -> None:
    console.print(
        f"[bold]{e.correlation_id}[/]  {e.status}  user {e.user_id or '-'}  episode {e.episode_id or '-'}"
    )
    for detail in (e.reason, e.failed_step and f"failed step: {e.failed_step}", e.error):
        if detail:
            console.print(f"  {detail}")
    table = Table("position", "occurred (UTC)")
    table.add_column("event", min_width=max((len(t.event_type) for t in e.timeline), default=5), no_wrap=True)
    table.add_column("stream")
    table.add_column("summary")
    for t in e.timeline:
        occurred = t.occurred_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(t.position), occurred, t.event_type, t.stream_id, t.summary)
    console.print(table)


def register_projection_commands(app: typer.Typer) -> None:
    """Attach the projection commands to the main app."""
    app.add_typer(project_app, name="project")
    app.add_typer(dlq_app, name="dlq")
    app.command("projections")(projections_command)
    app.command("memories")(memories_command)
    app.command("extractions")(extractions_command)

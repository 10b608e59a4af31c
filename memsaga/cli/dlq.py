"""``memsaga dlq list | retry | drop``: parked (poison) events of the projections."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer
from rich.table import Table

from memsaga.bootstrap import services
from memsaga.cli.common import JsonFlag, console, keep_whole, run_command
from memsaga.settings import Settings
from projections import PROJECTIONS, ParkedEvent, drop_parked, list_parked, retry_parked

dlq_app = typer.Typer(help="Parked (poison) events: list, retry from the event store, or drop with a reason.")

ProjectionOption = Annotated[str | None, typer.Option("--projection", "-p", help="Only this projection.")]


@dlq_app.command("list")
def dlq_list_command(
    projection: ProjectionOption = None,
    include_resolved: Annotated[bool, typer.Option("--all", help="Also retried and dropped ones.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List parked events with their errors."""

    async def main() -> list[ParkedEvent]:
        async with services(Settings(), with_nats=False) as svc:
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
    console.print(keep_whole(table, "event id"))


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
        async with services(Settings(), with_nats=False) as svc:
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
        async with services(Settings(), with_nats=False) as svc:
            return await drop_parked(svc.pool, event_id, reason, projection=projection)

    dropped = run_command(main)
    if as_json:
        typer.echo(json.dumps(dropped.model_dump(mode="json")))
    else:
        console.print(f"dropped {dropped.event_id} from {dropped.projection}: {dropped.drop_reason}")


def register_dlq_commands(app: typer.Typer) -> None:
    """Attach ``dlq`` to the main app."""
    app.add_typer(dlq_app, name="dlq")

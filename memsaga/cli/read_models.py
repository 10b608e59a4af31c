"""``memsaga memories`` and ``memsaga extractions``: what the read models hold."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any

import typer
from rich.table import Table

from memsaga.bootstrap import services
from memsaga.cli.common import JsonFlag, console, run_command
from memsaga.errors import NotFound
from memsaga.settings import Settings
from projections import Extraction, get_extraction, list_extractions, list_memories


def memories_command(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose memories.")],
    as_json: JsonFlag = False,
) -> None:
    """A user's current memories (retracted ones are gone)."""

    async def main() -> list[Any]:
        async with services(Settings(), with_nats=False) as svc:
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
        async with services(Settings(), with_nats=False) as svc:
            if correlation_id is None:
                return await list_extractions(svc.pool, status=status, limit=limit)
            found = await get_extraction(svc.pool, correlation_id)
            if found is None:
                raise NotFound(f"no extraction with correlation id {correlation_id!r} in the read model")
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


def register_read_model_commands(app: typer.Typer) -> None:
    """Attach ``memories`` and ``extractions`` to the main app."""
    app.command("memories")(memories_command)
    app.command("extractions")(extractions_command)

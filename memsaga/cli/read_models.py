"""``memsaga memories`` and ``memsaga extractions``: what the read models hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from memsaga.bootstrap import services
from memsaga.cli.common import ExitCode, JsonFlag, console, fail, run_command
from memsaga.errors import NotFound
from memsaga.read_connection import read_pool
from memsaga.settings import Settings
from projections import Extraction, get_extraction, list_extractions
from projections.memories import LISTED_STATUSES, Memory, parse_moment, query_memories, statuses_for
from sagas.memory_extraction.identifiers import identifier_problem


def memories_command(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose memories.")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="What memsaga believed then (system time), e.g. 2026-05-01T12:00:00Z."),
    ] = None,
    valid_at: Annotated[
        str | None,
        typer.Option(
            "--valid-at",
            help="Only what was true in the world then, e.g. 2024-06-01 (a date is midnight UTC)."
            " Shows superseded and invalidated memories too.",
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Superseded and invalidated memories too (never retracted ones).")
    ] = False,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help=f"Only this status (repeatable): {', '.join(LISTED_STATUSES)}."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A user's memories: current ones, as memsaga believed them (--as-of), or true then (--valid-at)."""

    if problem := identifier_problem(user, "--user"):
        raise fail(problem, error="InvalidIdentifier", code=ExitCode.USAGE)

    async def main() -> list[Memory]:
        at = parse_moment(as_of, option="--as-of") if as_of is not None else None
        valid = parse_moment(valid_at, option="--valid-at") if valid_at is not None else None
        statuses = LISTED_STATUSES if every else status
        statuses_for(statuses, valid_at=valid)  # before connecting to anything
        settings = Settings()
        async with services(settings, with_nats=False) as svc, read_pool(settings, svc.pool) as pool:
            return await query_memories(pool, user, as_of=at, valid_at=valid, statuses=statuses)

    memories = run_command(main)
    if as_json:
        typer.echo(json.dumps([m.model_dump(mode="json") for m in memories]))
        return
    if not memories:
        console.print(f"no memories for {user}")
        return
    for m in memories:
        console.print(f"[bold]{escape(m.text)}[/]  ({m.kind}, {m.status})", highlight=False)
        until = _day(m.valid_to) if m.valid_to else "now"
        line = f"   memory {m.memory_id}  valid {_day(m.valid_from)} → {until}"
        if m.superseded_by:
            line += f"  superseded by {m.superseded_by}"
        console.print(line, style="dim", highlight=False, soft_wrap=True)
    if as_of is not None or valid_at is not None:
        asked = [f"as of {as_of}" if as_of else "", f"valid at {valid_at}" if valid_at else ""]
        console.print(" and ".join(a for a in asked if a), style="dim", highlight=False)


def _day(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def extractions_command(
    correlation_id: Annotated[
        str | None, typer.Option("--correlation-id", "-c", help="One saga, with its timeline.")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only sagas in this status.")] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Only this user's sagas (read as that user).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="How many sagas to list.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Extraction sagas and their status (every user's, or --user's); one saga's timeline with
    --correlation-id."""

    if user is not None and correlation_id is not None:
        raise fail("give --user or --correlation-id, not both", code=ExitCode.USAGE)
    if user is not None and (problem := identifier_problem(user, "--user")):
        raise fail(problem, error="InvalidIdentifier", code=ExitCode.USAGE)

    async def main() -> list[Extraction]:
        settings = Settings()
        async with services(settings, with_nats=False) as svc:
            if user is not None:
                async with read_pool(settings, svc.pool) as pool:
                    return await list_extractions(pool, status=status, limit=limit, user_id=user)
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
    if not extractions:
        console.print("no extractions")
        return
    for e in extractions:  # one line each, never wrapped: the ids stay whole to copy
        candidates = "-" if e.candidates is None else str(e.candidates)
        counts = f"{candidates} candidates, {e.memories_created} memories, {e.memories_retracted} retracted"
        console.print(
            f"[bold]{escape(e.correlation_id)}[/]  {e.status:<11}  user {escape(e.user_id or '-')}"
            f"  [dim]{counts}, updated {e.updated_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}[/]",
            soft_wrap=True,
            highlight=False,
        )


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

"""``memsaga migrate`` and ``memsaga migrations``: the event-store schema."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.table import Table

from eventstore import MigrationError, migrate
from eventstore.migrate import applied_migrations
from memsaga.bootstrap import MIGRATION_SOURCES, connect_database
from memsaga.cli.common import JsonFlag, console, fail_with
from memsaga.errors import MemsagaError
from memsaga.settings import Settings


def migrate_command(as_json: JsonFlag = False) -> None:
    """Apply the event-store schema (versioned SQL files; safe to run twice or concurrently)."""

    async def run() -> list[str]:
        conn = await connect_database(Settings())
        try:
            return [f"{m.source}/{m.name}" for m in await migrate(conn, MIGRATION_SOURCES)]
        finally:
            await conn.close()

    try:
        applied = asyncio.run(run())
    except (MemsagaError, MigrationError) as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps({"applied": applied}))
    elif applied:
        for name in applied:
            console.print(f"applied [bold]{name}[/]")
    else:
        console.print("schema is up to date")


def migrations_command(as_json: JsonFlag = False) -> None:
    """Show which migrations the database has applied."""

    async def run() -> list[dict[str, object]]:
        conn = await connect_database(Settings())
        try:
            rows = await applied_migrations(conn)
        finally:
            await conn.close()
        return [{**dict(r), "applied_at": r["applied_at"].isoformat()} for r in rows]

    try:
        rows = asyncio.run(run())
    except MemsagaError as exc:
        raise fail_with(exc) from None
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("source", "version", "name", "applied at")
    for row in rows:
        table.add_row(str(row["source"]), str(row["version"]), str(row["name"]), str(row["applied_at"]))
    console.print(table)


def register_store_commands(app: typer.Typer) -> None:
    """Attach the schema commands to the main app."""
    app.command("migrate")(migrate_command)
    app.command("migrations")(migrations_command)

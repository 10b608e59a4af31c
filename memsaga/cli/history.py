"""``memsaga history``: one memory's events, from the event store, with where each came from."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from memsaga.bootstrap import build_stores, services
from memsaga.cli.common import JsonFlag, console, run_command
from memsaga.history import MemoryHistory, history_lines, memory_history
from memsaga.settings import Settings


def history_command(
    memory_id: Annotated[str, typer.Argument(help="The memory's id (see `memsaga memories --all`).")],
    as_json: JsonFlag = False,
) -> None:
    """A memory's events in order: episode text, saga and its UI link, reviewer, successors."""

    async def main() -> MemoryHistory:
        settings = Settings()
        async with services(settings, with_nats=False) as svc:
            _, blobs = build_stores(svc.pool, settings)
            return await memory_history(
                svc.store,
                memory_id,
                blobs=blobs,
                temporal_ui=settings.temporal_ui(),
                namespace=settings.temporal_namespace,
            )

    history = run_command(main)
    if as_json:
        typer.echo(json.dumps(history.model_dump(mode="json")))
        return
    first, *rest = history_lines(history)
    console.print(f"[bold]{escape(first)}[/]", highlight=False, soft_wrap=True)
    for line in rest:
        console.print(
            escape(line), highlight=False, soft_wrap=True, style=None if line[0].isdigit() else "dim"
        )


def register_history_commands(app: typer.Typer) -> None:
    """Attach ``history`` to the main app."""
    app.command("history")(history_command)

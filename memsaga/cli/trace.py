"""``memsaga trace``: the causation tree of a correlation id, or below one event."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from memsaga.cli.common import ExitCode, JsonFlag, console, fail, run_command
from memsaga.settings import Settings
from memsaga.trace import render_tree
from memsaga.trace_loader import load_trace


def trace_command(
    correlation_id: Annotated[str | None, typer.Argument(help="Correlation id of a request.")] = None,
    event: Annotated[str | None, typer.Option("--event", help="Show this event and what it caused.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show a causation chain as a tree: each event under the event that caused it."""
    if (correlation_id is None) == (event is None):
        raise fail("give a CORRELATION_ID or --event EVENT_ID (exactly one)", code=ExitCode.USAGE)
    try:
        event_id = uuid.UUID(event) if event is not None else None
    except ValueError:
        raise fail(f"--event takes an event id (a UUID), not {event!r}", code=ExitCode.USAGE) from None
    loaded = run_command(lambda: load_trace(Settings(), correlation_id, event_id))
    if as_json:
        typer.echo(json.dumps(loaded.document, indent=2))
        return
    title = f"correlation {loaded.document['correlation_id']} · {loaded.document['events']} events"
    console.print(render_tree(loaded.roots, title=title))


def register_trace_commands(app: typer.Typer) -> None:
    """Attach ``trace`` to the main app."""
    app.command("trace")(trace_command)

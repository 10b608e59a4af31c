"""``memsaga retract``: withdraw one memory by hand (a user asks for it to be deleted)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from memsaga.bootstrap import services
from memsaga.cli.common import JsonFlag, console, run_command
from memsaga.retraction import Retraction, retract_memory
from memsaga.settings import Settings


def retract_command(
    memory_id: Annotated[str, typer.Argument(help="The memory's id (from `memsaga memories`).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the event).")],
    by: Annotated[str | None, typer.Option("--by", help="Who asks (recorded in the event).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Retract one memory: MemoryRetracted is appended and the memory leaves every read model."""

    async def main() -> Retraction:
        async with services(Settings(), with_nats=False) as svc:
            return await retract_memory(svc.store, memory_id, reason=reason, retracted_by=by)

    done = run_command(main)
    if as_json:
        typer.echo(json.dumps(done.model_dump()))
    elif done.outcome == "already_retracted":
        console.print(f"memory {memory_id} was already retracted ({done.reason})", highlight=False)
    else:
        console.print(f"retracted memory {memory_id} of {done.user_id}: {done.reason}", highlight=False)


def register_retract_commands(app: typer.Typer) -> None:
    """Attach ``retract`` to the main app."""
    app.command("retract")(retract_command)

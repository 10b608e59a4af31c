"""``memsaga codec-server``: let the Temporal UI show sealed payloads to an operator."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import typer

from memsaga.cli.common import console, run_command
from memsaga.codec_server import codec_app
from memsaga.payload_codec import KeyAccess, SealingCodec
from memsaga.settings import Settings
from memsaga.stackstate import load_stack_state

DEFAULT_PORT = 8081


def _stack_codec_port(settings: Settings) -> int | None:
    temporal = load_stack_state(settings.state_dir).services.get("temporal")
    return urlsplit(temporal.codec_url).port if temporal is not None and temporal.codec_url else None


def codec_server_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port (default: the one the local stack's UI calls, else 8081)."),
    ] = None,
    origins: Annotated[
        list[str] | None,
        typer.Option("--origin", help="A UI origin allowed to call it (repeat; default: the UI)."),
    ] = None,
) -> None:
    """Serve /decode and /encode for the Temporal UI (docs/privacy.md): it opens users' sealed
    payloads with the master key, so run it only where operators may see users' data."""
    settings = Settings()

    async def check() -> SealingCodec:
        access = KeyAccess(settings)
        await access.get()  # a missing database or master key is said now, not on the first request
        return SealingCodec(access)

    codec = run_command(check)
    chosen = port or _stack_codec_port(settings) or DEFAULT_PORT
    allowed = origins or [settings.temporal_ui().rstrip("/")]
    console.print(f"codec server on http://{host}:{chosen} for {', '.join(allowed)}", highlight=False)
    import uvicorn  # only this command needs it

    uvicorn.run(codec_app(codec, origins=allowed), host=host, port=chosen, log_level="warning")


def register_codec_commands(app: typer.Typer) -> None:
    """Attach ``codec-server`` to the main app."""
    app.command("codec-server")(codec_server_command)

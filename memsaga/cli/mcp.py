"""``memsaga mcp``: serve remember and recall to agents over the Model Context Protocol."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated

import typer

from memsaga.cli.common import exits_at_once, fail_with, known_error, log_to_stderr
from memsaga.settings import MCP_WAIT_SECONDS as DEFAULT_WAIT_SECONDS
from memsaga.settings import Settings

# memsaga.mcp_server is imported inside the command: the MCP SDK takes about half a second to
# import, which every other command would pay at start.


class Transport(enum.StrEnum):
    """How clients reach the server."""

    STDIO = "stdio"
    HTTP = "http"


def mcp_command(
    user: Annotated[
        str | None,
        typer.Option("--user", "-u", help="Serve this user only (else every call names its user_id)."),
    ] = None,
    transport: Annotated[
        Transport, typer.Option("--transport", help="stdio (a client spawns it) or streamable HTTP.")
    ] = Transport.STDIO,
    host: Annotated[str, typer.Option("--host", help="HTTP: the address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP: the port.")] = 8765,
    wait_seconds: Annotated[
        float,
        typer.Option("--wait-seconds", min=0, help="How long `remember` with wait waits for an outcome."),
    ] = DEFAULT_WAIT_SECONDS,
) -> None:
    """Serve the tools remember and recall over MCP (on stdio, stdout carries only the protocol)."""
    from memsaga.mcp_server import build_server

    log_to_stderr()  # before the server: the SDK's own logging setup then keeps ours
    try:
        settings = Settings()
        if transport is Transport.HTTP:
            # uvicorn reports a failed lifespan with a traceback: check the stack answers first.
            asyncio.run(_reachable(settings))
        server = build_server(settings, user=user, wait_seconds=wait_seconds)
        if transport is Transport.STDIO:
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    except KeyboardInterrupt:
        return
    except Exception as exc:
        if (message := known_error(exc)) is None:
            raise
        raise fail_with(exc, message) from None


async def _reachable(settings: Settings) -> None:
    from memsaga.mcp_server import open_services

    async with open_services(settings):
        pass


def register_mcp_commands(app: typer.Typer) -> None:
    """Attach ``mcp`` to the main app."""
    app.command("mcp")(exits_at_once(mcp_command))

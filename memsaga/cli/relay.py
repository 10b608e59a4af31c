"""``memsaga relay`` and ``memsaga stats``: publish the event store to JetStream, and watch it."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from memsaga.bootstrap import StoppedWhileWaiting, optional_nats, relay_config, services
from memsaga.cli.common import ExitCode, JsonFlag, console, log_to_stderr, run_command, signal_stop
from memsaga.settings import Settings
from projections import Relay
from projections.status import RelayStatus, StreamStatus, relay_status, stream_status
from projections.stream import describe_limits


def relay_command(
    from_position: Annotated[
        int | None,
        typer.Option("--from-position", min=1, help="Republish from this position (inclusive), then go on."),
    ] = None,
    to_position: Annotated[
        int | None,
        typer.Option("--to-position", min=1, help="Stop after this position (a one-shot republish)."),
    ] = None,
    accept_stream_limits: Annotated[
        bool,
        typer.Option("--accept-stream-limits", help="Run even if the stream has limits that drop history."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish every stored event to JetStream, in order, until SIGTERM or Ctrl-C."""
    log_to_stderr()

    async def main() -> dict[str, object] | None:
        stop = signal_stop()  # first: a signal while it waits for a service stops it cleanly
        try:
            async with services(Settings(), with_nats=True, name="memsaga-relay", stop=stop) as svc:
                s = svc.settings
                config = relay_config(s, accept_stream_limits=accept_stream_limits)
                relay = Relay(svc.store, svc.js, config, listen_dsn=s.require_database_url())
                stats = await relay.run(stop, from_position=from_position, to_position=to_position)
                return asdict(stats)
        except StoppedWhileWaiting:
            return None

    stats = run_command(main)
    if stats is None:
        if as_json:
            typer.echo(json.dumps({"stopped": "before connecting"}))
        else:
            console.print("relay stopped before it connected: nothing published")
        return
    if as_json:
        typer.echo(json.dumps(stats))
    else:
        console.print(
            f"relay stopped at position {stats['position']}: {stats['published']} published "
            f"({stats['duplicates']} duplicates dropped by JetStream)"
        )


def stats_command(as_json: JsonFlag = False) -> None:
    """Show the events stream's size and the relay's lag."""

    async def main() -> tuple[RelayStatus, StreamStatus | None, str | None]:
        async with services(Settings(), with_nats=False) as svc:
            relay = await relay_status(svc.pool, svc.store, svc.settings.nats_stream)
            nc, problem = await optional_nats(svc.settings, "memsaga-stats")
            if nc is None:
                return relay, None, problem
            try:
                return relay, await stream_status(nc.jetstream(), svc.settings.nats_stream), None
            finally:
                await nc.close()

    relay, stream, problem = run_command(main)
    if as_json:
        payload = {
            "relay": relay.model_dump(mode="json"),
            "stream": None if stream is None else stream.model_dump(mode="json"),
            "error": problem,
        }
        typer.echo(json.dumps(payload))
        _unavailable_if(problem)
        return
    table = Table("", "value", show_header=False)
    if stream is not None:
        table.add_row("stream", stream.name)
        table.add_row(
            "messages",
            f"{stream.messages:,} ({stream.bytes:,} bytes), seq {stream.first_seq}..{stream.last_seq}",
        )
        table.add_row("consumers", str(stream.consumers))
        limits = describe_limits(stream.limits)
        table.add_row("limits", f"[bold red]{limits}[/]" if stream.limits else limits)
    else:
        table.add_row(
            "stream", f"[yellow]{problem or f'{relay.stream} does not exist yet (start `memsaga relay`)'}[/]"
        )
    table.add_row("relay position", f"{relay.position:,} of {relay.head:,}")
    table.add_row("relay lag", f"{relay.lag.events:,} events, {relay.lag.seconds:.1f}s")
    table.add_row("relay updated", str(relay.updated_at or "never ran"))
    console.print(table)
    _unavailable_if(problem)


def _unavailable_if(problem: str | None) -> None:
    """What could be shown was; NATS could not be reached: exit like any unavailable service."""
    if problem is not None:
        raise typer.Exit(code=int(ExitCode.UNAVAILABLE))


def register_relay_commands(app: typer.Typer) -> None:
    """Attach ``relay`` and ``stats`` to the main app."""
    app.command("relay")(relay_command)
    app.command("stats")(stats_command)
